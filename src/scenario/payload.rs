//! `--payload`: how many bytes each message carries (header included), as one
//! size, a uniform range, weighted sizes, a file of sizes, or real payload
//! samples; and [`PayloadDraw`], each producer's seeded draw of them.
//!
//! A file is read when the value is parsed (a flag, or a scenario file's
//! key), so a missing or empty file is refused before anything starts, and
//! the run carries its contents (shared, never copied per producer).

use crate::wire::HEADER_LEN;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// The largest payload: Redis's limit for a string.
pub const MAX_PAYLOAD: usize = 512 * 1024 * 1024;
/// Most sizes a weighted list may name.
pub const MAX_WEIGHTS: usize = 64;
/// The largest file of sizes, bytes.
pub const MAX_SIZES_FILE: u64 = 64 << 20;
/// The most bytes of samples a run may load (a file, or a directory's files together).
pub const MAX_SAMPLE_BYTES: u64 = 256 << 20;
/// Most files a directory of samples may hold.
pub const MAX_SAMPLE_FILES: usize = 100_000;

/// Payload samples, back to back: sample `i` is `bytes[ends[i - 1]..ends[i]]`.
#[derive(Debug)]
pub struct Samples {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Samples {
    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    fn lens(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.ends.len()).map(|i| self.get(i).len())
    }
}

/// The sizes of a run's messages, header included.
#[derive(Debug, Clone)]
pub enum Payload {
    /// Every message this many bytes.
    Fixed(usize),
    /// `LO..HI`: uniform over LO to HI, both included.
    Range { lo: usize, hi: usize },
    /// `SIZE:PCT%,...`: each size with its share of the messages.
    Weighted(Vec<(usize, f64)>),
    /// `sizes:FILE`: one size per line, each line as likely as any other.
    Sizes { path: PathBuf, sizes: Arc<[u32]> },
    /// `samples:PATH`: real payloads, each as likely as any other; the
    /// header replaces a sample's first bytes, so a message is as long as its sample.
    Samples { path: PathBuf, samples: Arc<Samples> },
}

impl Default for Payload {
    fn default() -> Payload {
        Payload::Fixed(64)
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        self.to_string() == other.to_string()
    }
}

/// `64`, `1k` (1,024), `2m` (1,048,576 × 2).
fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => s.split_at(at),
        None => (s, ""),
    };
    let unit = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(format!("{}: not a size (bytes, or with k or m: 64, 1k, 2m)", crate::text::quote(s))),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{}: not a size (bytes, or with k or m: 64, 1k, 2m)", crate::text::quote(s)))?;
    n.checked_mul(unit).ok_or_else(|| format!("{}: too large", crate::text::quote(s)))
}

fn parse_weighted(s: &str) -> Result<Payload, String> {
    let mut list = Vec::new();
    for part in s.split(',') {
        let (size, pct) = part.split_once(':').ok_or_else(|| {
            format!("{}: expected SIZE:PCT% (e.g. 64:80%,1k:15%,64k:5%)", crate::text::quote(part.trim()))
        })?;
        let pct = pct.trim().strip_suffix('%').unwrap_or(pct.trim());
        let pct: f64 =
            pct.parse().ok().filter(|p: &f64| p.is_finite() && *p > 0.0 && *p <= 100.0).ok_or_else(|| {
                format!("{}: a weight is a percentage above 0, at most 100", crate::text::quote(part))
            })?;
        list.push((parse_size(size)?, pct));
    }
    if list.len() > MAX_WEIGHTS {
        return Err(format!("at most {MAX_WEIGHTS} sizes in a weighted list (have {})", list.len()));
    }
    let sum: f64 = list.iter().map(|(_, p)| p).sum();
    if (sum - 100.0).abs() > 1e-6 {
        return Err(format!("the weights sum to {sum}%, not 100%"));
    }
    Ok(Payload::Weighted(list))
}

fn read_sizes(path: &Path) -> Result<Arc<[u32]>, String> {
    let shown = path.display();
    let text = crate::sys::read_regular(path, MAX_SIZES_FILE + 1)
        .map_err(|e| format!("cannot read the file of sizes {shown}: {e}"))?;
    if text.len() as u64 > MAX_SIZES_FILE {
        return Err(format!("the file of sizes {shown} is larger than {} MiB", MAX_SIZES_FILE >> 20));
    }
    let mut sizes = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let size = parse_size(line).map_err(|m| format!("{shown}, line {}: {m}", n + 1))?;
        let size = u32::try_from(size.min(MAX_PAYLOAD + 1)).expect("512 MiB fits in u32");
        sizes.push(size);
    }
    if sizes.is_empty() {
        return Err(format!("the file of sizes {shown} holds no size (one per line)"));
    }
    Ok(sizes.into())
}

fn read_samples(path: &Path) -> Result<Arc<Samples>, String> {
    let shown = path.display();
    let mut samples = Samples { bytes: Vec::new(), ends: Vec::new() };
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read the samples {shown}: {e}"))?;
    let read = |file: &Path, held: usize| -> Result<Vec<u8>, String> {
        use std::io::Read;
        let left = MAX_SAMPLE_BYTES - held as u64;
        let mut bytes = Vec::new();
        crate::sys::open_regular(file, left + 1)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read the sample {}: {e}", file.display()))?;
        if bytes.len() as u64 > left {
            return Err(format!("the samples {shown} hold more than {} MiB", MAX_SAMPLE_BYTES >> 20));
        }
        Ok(bytes)
    };
    if meta.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("cannot list the samples {shown}: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .take(MAX_SAMPLE_FILES + 1)
            .collect();
        if files.len() > MAX_SAMPLE_FILES {
            return Err(format!("the directory of samples {shown} holds more than {MAX_SAMPLE_FILES} files"));
        }
        files.sort();
        for file in files {
            let bytes = read(&file, samples.bytes.len())?;
            if bytes.is_empty() {
                continue;
            }
            samples.bytes.extend_from_slice(&bytes);
            samples.ends.push(samples.bytes.len());
        }
    } else {
        let bytes = read(path, 0)?;
        for line in bytes.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            samples.bytes.extend_from_slice(line);
            samples.ends.push(samples.bytes.len());
        }
    }
    if samples.ends.is_empty() {
        return Err(format!("the samples {shown} hold no sample (a file of lines, or a directory of files)"));
    }
    Ok(Arc::new(samples))
}

impl FromStr for Payload {
    type Err = String;
    fn from_str(s: &str) -> Result<Payload, String> {
        let s = s.trim();
        // Kept absolute once read: scenario.toml repeats the run from anywhere,
        // and a worker started elsewhere reads the same file.
        let absolute = |path: PathBuf| std::fs::canonicalize(&path).unwrap_or(path);
        if let Some(path) = s.strip_prefix("sizes:") {
            let path = PathBuf::from(path);
            return Ok(Payload::Sizes { sizes: read_sizes(&path)?, path: absolute(path) });
        }
        if let Some(path) = s.strip_prefix("samples:") {
            let path = PathBuf::from(path);
            return Ok(Payload::Samples { samples: read_samples(&path)?, path: absolute(path) });
        }
        if let Some((lo, hi)) = s.split_once("..") {
            let (lo, hi) = (parse_size(lo)?, parse_size(hi)?);
            if lo > hi {
                return Err(format!("{}: the range's start is above its end", crate::text::quote(s)));
            }
            return Ok(Payload::Range { lo, hi });
        }
        if s.contains(':') {
            return parse_weighted(s);
        }
        Ok(Payload::Fixed(parse_size(s)?))
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Fixed(n) => write!(f, "{n}"),
            Payload::Range { lo, hi } => write!(f, "{lo}..{hi}"),
            Payload::Weighted(list) => {
                let parts: Vec<String> = list.iter().map(|(size, pct)| format!("{size}:{pct}%")).collect();
                f.write_str(&parts.join(","))
            }
            Payload::Sizes { path, .. } => write!(f, "sizes:{}", path.display()),
            Payload::Samples { path, .. } => write!(f, "samples:{}", path.display()),
        }
    }
}

/// A fixed size stays a number in a scenario file (`payload = 64`); the other forms are strings.
impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Payload::Fixed(n) => s.serialize_u64(*n as u64),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Payload, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Bytes(i64),
            Text(String),
        }
        match Form::deserialize(d)? {
            Form::Bytes(n) => Ok(Payload::Fixed(usize::try_from(n).unwrap_or(0))),
            Form::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Payload {
    /// The smallest and the largest size a message may have.
    pub fn bounds(&self) -> (usize, usize) {
        let of = |it: &mut dyn Iterator<Item = usize>| it.fold((usize::MAX, 0), |(lo, hi), n| (lo.min(n), hi.max(n)));
        match self {
            Payload::Fixed(n) => (*n, *n),
            Payload::Range { lo, hi } => (*lo, *hi),
            Payload::Weighted(list) => of(&mut list.iter().map(|(n, _)| *n)),
            Payload::Sizes { sizes, .. } => of(&mut sizes.iter().map(|&n| n as usize)),
            Payload::Samples { samples, .. } => of(&mut samples.lens()),
        }
    }

    /// The largest size a message may have.
    pub fn max(&self) -> usize {
        self.bounds().1
    }

    /// The mean size the draw aims at, bytes.
    pub fn mean(&self) -> f64 {
        let mean = |it: &mut dyn ExactSizeIterator<Item = usize>| {
            let n = it.len().max(1) as f64;
            it.map(|x| x as f64).sum::<f64>() / n
        };
        match self {
            Payload::Fixed(n) => *n as f64,
            Payload::Range { lo, hi } => (*lo as f64 + *hi as f64) / 2.0,
            Payload::Weighted(list) => list.iter().map(|&(n, p)| n as f64 * p / 100.0).sum(),
            Payload::Sizes { sizes, .. } => mean(&mut sizes.iter().map(|&n| n as usize)),
            Payload::Samples { samples, .. } => mean(&mut samples.lens().collect::<Vec<_>>().into_iter()),
        }
    }

    /// Why the sizes cannot be sent, if they cannot: one under the header, or above Redis's limit.
    pub fn check(&self) -> Result<(), String> {
        let (lo, hi) = self.bounds();
        if lo < HEADER_LEN {
            let what = if matches!(self, Payload::Fixed(_)) { String::new() } else { format!("{self}: ") };
            return Err(format!("{what}{lo} bytes is below the minimum of {HEADER_LEN} (the header size)"));
        }
        if hi > MAX_PAYLOAD {
            return Err(format!("{hi} bytes: must be at most 512 MiB (Redis's limit for a string)"));
        }
        Ok(())
    }
}

/// splitmix64: a cheap, well-mixed 64-bit generator; the same seed gives the same draws everywhere.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator for stream `stream` (a producer) of `seed`.
    pub fn new(seed: u64, stream: u64) -> SplitMix {
        SplitMix(seed ^ stream.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform over `0..n` (multiply-shift: no division).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform over `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

enum Draw {
    Fixed(usize),
    Range {
        lo: usize,
        span: u64,
    },
    /// Cumulative thresholds over the 64-bit range, and each one's size.
    Weighted(Vec<(u64, usize)>),
    Sizes(Arc<[u32]>),
    Samples(Arc<Samples>),
}

/// One producer's payloads, drawn in order from its own seeded stream:
/// nothing is allocated per message (zeros come from one buffer sized to the
/// largest payload, samples from the run's shared copy).
pub struct PayloadDraw {
    draw: Draw,
    rng: SplitMix,
    zeros: Vec<u8>,
}

impl PayloadDraw {
    /// Producer `producer`'s draw of `payload` under `seed`.
    pub fn new(payload: &Payload, seed: u64, producer: u32) -> PayloadDraw {
        let draw = match payload {
            Payload::Fixed(n) => Draw::Fixed(*n),
            Payload::Range { lo, hi } => Draw::Range { lo: *lo, span: (hi - lo) as u64 + 1 },
            Payload::Weighted(list) => {
                let mut cum = 0.0;
                let mut thresholds: Vec<(u64, usize)> = list
                    .iter()
                    .map(|&(size, pct)| {
                        cum += pct / 100.0;
                        ((cum * 18_446_744_073_709_551_616.0).min(u64::MAX as f64) as u64, size)
                    })
                    .collect();
                if let Some(last) = thresholds.last_mut() {
                    last.0 = u64::MAX;
                }
                Draw::Weighted(thresholds)
            }
            Payload::Sizes { sizes, .. } => Draw::Sizes(sizes.clone()),
            Payload::Samples { samples, .. } => Draw::Samples(samples.clone()),
        };
        let zeros = match payload {
            Payload::Samples { .. } => Vec::new(),
            other => vec![0; other.max()],
        };
        PayloadDraw { draw, rng: SplitMix::new(seed, u64::from(producer)), zeros }
    }

    /// The next message's payload: its length is the message's; the header
    /// goes over its first bytes when it is written.
    #[inline]
    pub fn draw(&mut self) -> &[u8] {
        let len = match &self.draw {
            Draw::Fixed(n) => *n,
            Draw::Range { lo, span } => lo + self.rng.below(*span) as usize,
            Draw::Weighted(list) => {
                let r = self.rng.next_u64();
                list.iter().find(|(t, _)| r < *t).unwrap_or(&list[list.len() - 1]).1
            }
            Draw::Sizes(sizes) => sizes[self.rng.below(sizes.len() as u64) as usize] as usize,
            Draw::Samples(samples) => {
                let i = self.rng.below(samples.ends.len() as u64) as usize;
                return samples.get(i);
            }
        };
        &self.zeros[..len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(p: &str, n: usize, seed: u64) -> Vec<usize> {
        let p: Payload = p.parse().unwrap();
        let mut d = PayloadDraw::new(&p, seed, 0);
        (0..n).map(|_| d.draw().len()).collect()
    }

    #[test]
    fn forms_read_and_print_back() {
        for s in ["64", "64..4096", "64:80%,1024:15%,65536:5%"] {
            assert_eq!(s.parse::<Payload>().unwrap().to_string(), s);
        }
        assert_eq!("1k".parse::<Payload>().unwrap(), Payload::Fixed(1024));
        assert!("64:80%,1k:15%".parse::<Payload>().unwrap_err().contains("sum to 95%"));
        assert!("4096..64".parse::<Payload>().is_err());
        assert!("sizes:/nonexistent/eb".parse::<Payload>().unwrap_err().contains("cannot read"));
        assert!("10".parse::<Payload>().unwrap().check().unwrap_err().contains("minimum of 36"));
        assert!("10..100".parse::<Payload>().unwrap().check().unwrap_err().contains("minimum of 36"));
    }

    #[test]
    fn weighted_draws_follow_their_weights_and_repeat_by_seed() {
        let n = 100_000;
        let d = draws("64:80%,1k:15%,64k:5%", n, 7);
        let share = |size| d.iter().filter(|&&x| x == size).count() as f64 / n as f64;
        // Binomial standard error at n = 100,000 is at most 0.0016: 5 of them.
        assert!((share(64) - 0.80).abs() < 0.008, "{}", share(64));
        assert!((share(1024) - 0.15).abs() < 0.008, "{}", share(1024));
        assert!((share(65536) - 0.05).abs() < 0.008, "{}", share(65536));
        assert_eq!(d, draws("64:80%,1k:15%,64k:5%", n, 7), "same seed, same draws");
        assert_ne!(d, draws("64:80%,1k:15%,64k:5%", n, 8), "another seed, other draws");
    }

    #[test]
    fn a_range_is_uniform_with_both_ends_included() {
        let d = draws("36..45", 100_000, 1);
        assert_eq!((*d.iter().min().unwrap(), *d.iter().max().unwrap()), (36, 45));
        for size in 36..=45 {
            let share = d.iter().filter(|&&x| x == size).count() as f64 / 100_000.0;
            assert!((share - 0.1).abs() < 0.005, "{size}: {share}");
        }
    }
}
