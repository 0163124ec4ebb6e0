//! Histograms in serde: HdrHistogram's own V2 format, deflate-compressed and
//! base64-encoded, so that a worker's results travel through Redis as text
//! and any HdrHistogram implementation can read them. Counts are kept
//! exactly; decoded histograms resize themselves, so they merge with `add`.

use base64::Engine;
use hdrhistogram::serialization::{Deserializer as HdrDeserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::{Counter, Histogram};

/// `#[serde(with = "serial::hist")]` for a `Histogram<T>` field.
pub mod hist {
    use super::*;
    use serde::{de::Error as _, ser::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Counter, S: Serializer>(h: &Histogram<T>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(h).map_err(S::Error::custom)?)
    }

    pub fn deserialize<'de, T: Counter, D: Deserializer<'de>>(d: D) -> Result<Histogram<T>, D::Error> {
        decode(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// `#[serde(with = "serial::hists")]` for a `Vec<Histogram<T>>` field.
pub mod hists {
    use super::*;
    use serde::{de::Error as _, ser::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Counter, S: Serializer>(hs: &[Histogram<T>], s: S) -> Result<S::Ok, S::Error> {
        let texts: Result<Vec<String>, String> = hs.iter().map(encode).collect();
        s.collect_seq(texts.map_err(S::Error::custom)?)
    }

    pub fn deserialize<'de, T: Counter, D: Deserializer<'de>>(d: D) -> Result<Vec<Histogram<T>>, D::Error> {
        Vec::<String>::deserialize(d)?.iter().map(|t| decode(t).map_err(D::Error::custom)).collect()
    }
}

/// A histogram as base64 of its V2 deflate serialization.
pub fn encode<T: Counter>(h: &Histogram<T>) -> Result<String, String> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut bytes).map_err(|e| format!("serializing a histogram: {e:?}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The inverse of [`encode`].
pub fn decode<T: Counter>(text: &str) -> Result<Histogram<T>, String> {
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| format!("histogram is not base64: {e}"))?;
    let mut h: Histogram<T> = HdrDeserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("histogram is not HdrHistogram V2: {e:?}"))?;
    h.auto(true);
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_count() {
        let mut h = crate::stats::latency_histogram();
        for v in [0u64, 1, 999, 1_000, 123_456, 9_999_999_999] {
            h.record_n(v, v % 7 + 1).unwrap();
        }
        let back: Histogram<u64> = decode(&encode(&h).unwrap()).unwrap();
        assert_eq!(back.len(), h.len());
        let counts = |h: &Histogram<u64>| {
            h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect::<Vec<_>>()
        };
        assert_eq!(counts(&back), counts(&h));
        let mut compact = crate::stats::compact_histogram();
        crate::stats::record(&mut compact, 5_000);
        crate::stats::record(&mut compact, 50_000_000);
        let back: crate::stats::CompactHistogram = decode(&encode(&compact).unwrap()).unwrap();
        assert_eq!((back.len(), back.max()), (2, compact.max()));
        assert!(decode::<u64>("not base64!").is_err());
        assert!(decode::<u64>("aGVsbG8=").is_err(), "base64, but not a histogram");
    }
}
