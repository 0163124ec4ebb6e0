//! The message header every eventbench payload starts with.
//!
//! Fixed-size little-endian fields, so encoding and decoding are a handful of
//! loads and stores with no allocation. Timestamps are nanoseconds since the
//! run's epoch (see [`crate::clock::Clock`]), which every task of one process shares.

use thiserror::Error;

/// Two bytes that mark a payload as ours; anything else is foreign traffic.
pub const MAGIC: [u8; 2] = *b"EB";
/// Bumped whenever the layout below changes.
pub const VERSION: u8 = 1;
/// Bytes taken by the header; the smallest payload eventbench can send.
pub const HEADER_LEN: usize = 36;

/// What a consumer needs from a message to place it in its ledger and histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Index of the producer that sent it.
    pub producer: u32,
    /// Index of the channel (or stream) it was sent on.
    pub channel: u32,
    /// Sequence number within (producer, channel), starting at 0 with no gaps.
    pub seq: u64,
    /// When the schedule said it should be sent, ns since the run epoch.
    pub intended_ns: u64,
    /// When it was actually written to the socket, ns since the run epoch.
    pub sent_ns: u64,
}

/// Why a payload could not be read as an eventbench header.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("payload of {0} bytes is shorter than the {HEADER_LEN}-byte header")]
    Short(usize),
    #[error("payload does not start with the eventbench magic bytes")]
    BadMagic,
    #[error("header format version {0} is not {VERSION}")]
    BadVersion(u8),
}

impl Header {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`.
    ///
    /// Panics if `buf` is shorter than the header; callers size payloads from a
    /// validated scenario, which never allows that.
    #[inline]
    pub fn encode(&self, buf: &mut [u8]) {
        let b = &mut buf[..HEADER_LEN];
        b[0..2].copy_from_slice(&MAGIC);
        b[2] = VERSION;
        b[3] = 0; // flags, reserved
        b[4..8].copy_from_slice(&self.producer.to_le_bytes());
        b[8..12].copy_from_slice(&self.channel.to_le_bytes());
        b[12..20].copy_from_slice(&self.seq.to_le_bytes());
        b[20..28].copy_from_slice(&self.intended_ns.to_le_bytes());
        b[28..36].copy_from_slice(&self.sent_ns.to_le_bytes());
    }

    /// Reads a header from the start of `buf`; any bytes after it are filler.
    #[inline]
    pub fn decode(buf: &[u8]) -> Result<Header, DecodeError> {
        if buf.len() < HEADER_LEN {
            return Err(DecodeError::Short(buf.len()));
        }
        if buf[0..2] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        if buf[2] != VERSION {
            return Err(DecodeError::BadVersion(buf[2]));
        }
        let u32_at = |i: usize| u32::from_le_bytes(buf[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(buf[i..i + 8].try_into().unwrap());
        Ok(Header {
            producer: u32_at(4),
            channel: u32_at(8),
            seq: u64_at(12),
            intended_ns: u64_at(20),
            sent_ns: u64_at(28),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header { producer: 7, channel: 3, seq: u64::MAX - 1, intended_ns: 1_234_567_890, sent_ns: 1_234_567_999 }
    }

    #[test]
    fn round_trip_with_filler() {
        let mut buf = vec![0xAAu8; 128];
        sample().encode(&mut buf);
        assert_eq!(Header::decode(&buf), Ok(sample()));
        assert!(buf[HEADER_LEN..].iter().all(|&b| b == 0xAA), "filler untouched");
    }

    #[test]
    fn rejects_short_foreign_and_future_payloads() {
        let mut buf = [0u8; HEADER_LEN];
        sample().encode(&mut buf);
        assert_eq!(Header::decode(&buf[..HEADER_LEN - 1]), Err(DecodeError::Short(35)));
        assert_eq!(Header::decode(b"hello world, not ours at all, no no no"), Err(DecodeError::BadMagic));
        buf[2] = VERSION + 1;
        assert_eq!(Header::decode(&buf), Err(DecodeError::BadVersion(VERSION + 1)));
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes() {
        // A cheap deterministic sweep of lengths and contents; a proper fuzz target lives in tests/.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if i < 2 {
                        MAGIC[i]
                    } else if i == 2 {
                        VERSION
                    } else {
                        x as u8
                    }
                })
                .collect();
            let _ = Header::decode(&bytes);
        }
    }
}
