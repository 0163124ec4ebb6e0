//! A lean reader for XREADGROUP (and XREAD) replies, on the model of the
//! Pub/Sub push fast path (`connect::resp`): the entries are taken straight
//! from the read buffer, without the redis crate's `Value` tree. Profiled
//! under callgrind at 10,000 entries/s, the crate's parser (combine, one
//! `Value` and its buffers per field) took about half of every instruction
//! eventbench executed for a Streams delivery.
//!
//! Both protocols: RESP2 (an array of `[key, entries]` pairs, `*-1` when a
//! BLOCK times out) and RESP3 (a map of key to entries, `_` for the timeout).
//! An entry is `[id, [field, value, ...]]`; an entry trimmed from the stream
//! while pending has a nil body (`*-1`, or `_`) and is skipped, as
//! `entries_into` skips it in the crate's reply. The unit tests check it
//! against the crate, from the same bytes.

use crate::connect::resp::RespError;

/// One entry as a consumer received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Index into the run's stream keys (`conn::Streams::keys`).
    pub key: usize,
    pub id: Vec<u8>,
    pub payload: Vec<u8>,
}

/// Why a reply could not be taken.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// Not RESP, or not the shape of an XREADGROUP reply.
    Malformed(RespError),
    /// An error reply (`-NOGROUP ...`, `!...` in RESP3): its text.
    Refused(String),
}

impl From<RespError> for ReplyError {
    fn from(e: RespError) -> ReplyError {
        ReplyError::Malformed(e)
    }
}

/// The outcome of looking at the start of a buffer.
enum Stop {
    /// The reply is not all there yet.
    Incomplete,
    Failed(ReplyError),
}

impl From<RespError> for Stop {
    fn from(e: RespError) -> Stop {
        Stop::Failed(ReplyError::Malformed(e))
    }
}

type Step<T> = Result<T, Stop>;

/// Reads one reply at the start of `buf`: appends its entries to `out` (`key`
/// the index given for the stream's name in `keys`; a stream that is not
/// there is skipped) and returns the bytes it took, or `None` (and `out` as
/// it was) if the reply is not complete yet.
pub fn read_entries(buf: &[u8], keys: &[(usize, String)], out: &mut Vec<Entry>) -> Result<Option<usize>, ReplyError> {
    let before = out.len();
    let mut at = 0;
    match reply(buf, &mut at, keys, out) {
        Ok(()) => Ok(Some(at)),
        Err(Stop::Incomplete) => {
            out.truncate(before);
            Ok(None)
        }
        Err(Stop::Failed(e)) => {
            out.truncate(before);
            Err(e)
        }
    }
}

fn reply(buf: &[u8], at: &mut usize, keys: &[(usize, String)], out: &mut Vec<Entry>) -> Step<()> {
    let (kind, n) = header(buf, at)?;
    match kind {
        // RESP2: [[key, entries], ...]; RESP3 (XREAD may still send arrays): the same.
        b'*' => {
            for _ in 0..count(n) {
                let (kind, pair) = header(buf, at)?;
                if kind != b'*' || pair != 2 {
                    return Err(RespError("a stream in an XREADGROUP reply is not [key, entries]").into());
                }
                stream(buf, at, keys, out)?;
            }
            Ok(())
        }
        // RESP3: {key: entries, ...}
        b'%' => {
            for _ in 0..count(n) {
                stream(buf, at, keys, out)?;
            }
            Ok(())
        }
        b'_' => Ok(()),
        _ => Err(RespError("an XREADGROUP reply is not an array or a map").into()),
    }
}

/// A stream's name and its entries.
fn stream(buf: &[u8], at: &mut usize, keys: &[(usize, String)], out: &mut Vec<Entry>) -> Step<()> {
    let name = bulk(buf, at)?.ok_or(RespError("a nil stream name"))?;
    let key = keys.iter().find(|(_, k)| k.as_bytes() == name).map(|&(k, _)| k);
    let (kind, n) = header(buf, at)?;
    if kind == b'_' || n < 0 {
        return Ok(());
    }
    if kind != b'*' {
        return Err(RespError("a stream's entries are not an array").into());
    }
    for _ in 0..n {
        let (kind, parts) = header(buf, at)?;
        if kind != b'*' || parts != 2 {
            return Err(RespError("an entry is not [id, fields]").into());
        }
        let id = bulk(buf, at)?.ok_or(RespError("a nil entry id"))?;
        let (kind, fields) = header(buf, at)?;
        let mut payload: &[u8] = &[];
        match kind {
            // Trimmed while pending: the id stays, the body is gone. Skipped, as
            // `entries_into` skips it: its loss is accounted as trimmed.
            b'_' => continue,
            b'*' if fields < 0 => continue,
            b'*' => {
                for i in 0..count(fields) {
                    let value = bulk(buf, at)?;
                    if i == 1 {
                        payload = value.unwrap_or_default();
                    }
                }
            }
            _ => return Err(RespError("an entry's fields are not an array").into()),
        }
        if let Some(key) = key {
            out.push(Entry { key, id: id.to_vec(), payload: payload.to_vec() });
        }
    }
    Ok(())
}

fn count(n: i64) -> i64 {
    n.max(0)
}

/// A type byte and the number after it (`*3`, `%1`, `$5`; 0 for `_`). An error
/// reply stops the reading with its text.
#[inline]
fn header(buf: &[u8], at: &mut usize) -> Step<(u8, i64)> {
    let start = *at;
    let &kind = buf.get(start).ok_or(Stop::Incomplete)?;
    let rest = &buf[start + 1..];
    let cr = rest.iter().position(|&b| b == b'\r').ok_or(Stop::Incomplete)?;
    if rest.len() < cr + 2 {
        return Err(Stop::Incomplete);
    }
    if rest[cr + 1] != b'\n' {
        return Err(RespError("a line does not end in CRLF").into());
    }
    let text = &rest[..cr];
    *at = start + 1 + cr + 2;
    match kind {
        b'-' => Err(Stop::Failed(ReplyError::Refused(String::from_utf8_lossy(text).into_owned()))),
        b'!' => {
            // A blob error: its length, then the text.
            let n = number(text)?;
            let body = blob(buf, at, n)?;
            Err(Stop::Failed(ReplyError::Refused(String::from_utf8_lossy(body).into_owned())))
        }
        b'_' if text.is_empty() => Ok((b'_', 0)),
        b'*' | b'%' | b'$' => Ok((kind, number(text)?)),
        _ => Err(RespError("an unexpected type in an XREADGROUP reply").into()),
    }
}

/// A bulk string (`None` for a nil: `$-1`, or `_`).
#[inline]
fn bulk<'a>(buf: &'a [u8], at: &mut usize) -> Step<Option<&'a [u8]>> {
    match header(buf, at)? {
        (b'_', _) => Ok(None),
        (b'$', n) if n < 0 => Ok(None),
        (b'$', n) => Ok(Some(blob(buf, at, n)?)),
        _ => Err(RespError("expected a bulk string").into()),
    }
}

/// `n` bytes and their CRLF.
#[inline]
fn blob<'a>(buf: &'a [u8], at: &mut usize, n: i64) -> Step<&'a [u8]> {
    let n = usize::try_from(n).map_err(|_| RespError("a negative length"))?;
    let end = *at + n;
    if buf.len() < end + 2 {
        return Err(Stop::Incomplete);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(RespError("a bulk string does not end in CRLF").into());
    }
    let body = &buf[*at..end];
    *at = end + 2;
    Ok(body)
}

fn number(text: &[u8]) -> Step<i64> {
    let s = std::str::from_utf8(text).map_err(|_| RespError("a length is not a number"))?;
    Ok(s.parse().map_err(|_| RespError("a length is not a number"))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    fn keys() -> Vec<(usize, String)> {
        vec![(0, "eb:0".to_string()), (3, "eb:3".to_string())]
    }

    /// What eventbench took from the redis crate's parse of the same bytes:
    /// `xreadgroup`'s walk of a RESP2 reply, and the same walk over a RESP3 map.
    fn through_the_crate(bytes: &[u8], keys: &[(usize, String)]) -> Result<Vec<Entry>, String> {
        let value = redis::parse_redis_value(bytes).map_err(|e| e.to_string())?;
        let value = value.extract_error().map_err(|e| e.code().unwrap_or("?").to_string())?;
        let pairs: Vec<(Value, Value)> = match value {
            Value::Array(streams) => streams
                .into_iter()
                .filter_map(|s| match s {
                    Value::Array(mut kv) if kv.len() == 2 => {
                        let entries = kv.pop()?;
                        Some((kv.pop()?, entries))
                    }
                    _ => None,
                })
                .collect(),
            Value::Map(m) => m,
            Value::Nil => Vec::new(),
            other => return Err(format!("{other:?}")),
        };
        let mut out = Vec::new();
        for (name, entries) in pairs {
            let (Value::BulkString(name), Value::Array(entries)) = (name, entries) else { continue };
            let Some(&(key, _)) = keys.iter().find(|(_, k)| k.as_bytes() == name.as_slice()) else { continue };
            super::super::conn::entries_into(key, entries, &mut out);
        }
        Ok(out)
    }

    fn lean(bytes: &[u8]) -> Result<Vec<Entry>, ReplyError> {
        let mut out = Vec::new();
        let used = read_entries(bytes, &keys(), &mut out)?;
        assert_eq!(used, Some(bytes.len()), "the whole reply, and no more");
        Ok(out)
    }

    fn entry(key: usize, id: &str, payload: &str) -> Entry {
        Entry { key, id: id.as_bytes().to_vec(), payload: payload.as_bytes().to_vec() }
    }

    const RESP2: &[u8] = b"*2\r\n*2\r\n$4\r\neb:0\r\n*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nd\r\n$5\r\nhello\r\n\
*2\r\n$3\r\n1-1\r\n*-1\r\n*2\r\n$4\r\neb:3\r\n*1\r\n*2\r\n$3\r\n2-0\r\n*4\r\n$1\r\nd\r\n$2\r\nhi\r\n$1\r\nx\r\n$1\r\ny\r\n";
    const RESP3: &[u8] = b"%2\r\n$4\r\neb:0\r\n*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nd\r\n$5\r\nhello\r\n\
*2\r\n$3\r\n1-1\r\n_\r\n$4\r\neb:3\r\n*1\r\n*2\r\n$3\r\n2-0\r\n*4\r\n$1\r\nd\r\n$2\r\nhi\r\n$1\r\nx\r\n$1\r\ny\r\n";

    #[test]
    fn the_same_entries_as_the_crate_from_the_same_bytes() {
        // 1-1 was trimmed while pending (a nil body): skipped by both.
        let want = vec![entry(0, "1-0", "hello"), entry(3, "2-0", "hi")];
        for bytes in [RESP2, RESP3] {
            assert_eq!(through_the_crate(bytes, &keys()).unwrap(), want, "{}", String::from_utf8_lossy(bytes));
            assert_eq!(lean(bytes).unwrap(), want, "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn a_timed_out_block_and_empty_streams_are_no_entries() {
        for bytes in [&b"*-1\r\n"[..], b"_\r\n", b"*0\r\n", b"%0\r\n", b"*1\r\n*2\r\n$4\r\neb:0\r\n*0\r\n"] {
            assert_eq!(through_the_crate(bytes, &keys()).unwrap(), vec![], "{}", String::from_utf8_lossy(bytes));
            assert_eq!(lean(bytes).unwrap(), vec![], "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn an_error_reply_is_a_refusal_with_its_text() {
        let nogroup = b"-NOGROUP No such key 'eb:0' or consumer group 'g' in XREADGROUP with GROUP option\r\n";
        assert_eq!(through_the_crate(nogroup, &keys()), Err("NOGROUP".to_string()));
        let Err(ReplyError::Refused(text)) = lean(nogroup) else { panic!("not a refusal") };
        assert!(text.starts_with("NOGROUP No such key"), "{text}");
        let blob = b"!21\r\nNOGROUP no such group\r\n";
        assert_eq!(lean(blob), Err(ReplyError::Refused("NOGROUP no such group".into())));
    }

    #[test]
    fn a_stream_not_asked_for_is_skipped() {
        let other = b"*1\r\n*2\r\n$5\r\nother\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nd\r\n$1\r\nz\r\n";
        assert_eq!(through_the_crate(other, &keys()).unwrap(), vec![]);
        assert_eq!(lean(other).unwrap(), vec![]);
    }

    #[test]
    fn a_partial_reply_takes_nothing_and_a_following_one_is_left() {
        for bytes in [RESP2, RESP3] {
            let mut out = vec![entry(9, "0-1", "kept")];
            for cut in 0..bytes.len() {
                assert_eq!(read_entries(&bytes[..cut], &keys(), &mut out), Ok(None), "cut at {cut}");
                assert_eq!(out.len(), 1, "cut at {cut}: nothing appended");
            }
            let mut two = bytes.to_vec();
            two.extend_from_slice(b"*-1\r\n");
            assert_eq!(read_entries(&two, &keys(), &mut out), Ok(Some(bytes.len())));
            assert_eq!(out.len(), 3);
        }
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for bytes in [
            &b"+OK\r\n"[..],
            b":3\r\n",
            b"*1\r\n:1\r\n",
            b"*1\r\n*2\r\n$4\r\neb:0\r\n+x\r\n",
            b"*x\r\n",
            b"$3\r\nabcd\r\n",
        ] {
            let mut out = Vec::new();
            assert!(
                matches!(read_entries(bytes, &keys(), &mut out), Err(ReplyError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bytes)
            );
            assert!(out.is_empty());
        }
    }
}
