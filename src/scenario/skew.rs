//! `--channel-skew`: how a producer's messages spread over the channels, and
//! [`Deck`], the one cyclic order of channels every producer follows.
//!
//! A producer's message `i` goes to the channel of slot `(i + offset) % len`
//! of the deck. Uniform is today's round-robin (the deck is the channels in
//! order, a producer's offset its index); a skewed deck holds each channel
//! in proportion to its weight ([`DECK_SLOTS`] slots, whole counts by largest
//! remainders), spread evenly over the cycle (each channel's slots at equal
//! distances, phased by the seed), so that any stretch of messages carries
//! each channel's share to within a message per channel. Every process of a run
//! builds the same deck from the scenario, so where each producer's message
//! went is known everywhere without asking (settling, workers' positions).

use super::payload::SplitMix;
use crate::chaos::forms::serde_as_string;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Slots of a skewed deck: its shares are whole thousandths of a percent.
pub const DECK_SLOTS: u64 = 100_000;
/// The largest Zipf exponent taken.
pub const MAX_ZIPF: f64 = 10.0;

/// How messages spread over the channels.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ChannelSkew {
    /// Round-robin: every channel the same share.
    #[default]
    Uniform,
    /// `zipf:S`: channel k (from 0) gets a share proportional to 1/(k+1)^S.
    Zipf(f64),
    /// `hot:P%`: channel 0 gets P% of the messages, the others share the rest evenly.
    Hot(f64),
}

impl FromStr for ChannelSkew {
    type Err = String;
    fn from_str(s: &str) -> Result<ChannelSkew, String> {
        let s = s.trim();
        let bad =
            || format!("{}: expected uniform, zipf:S (0 < S ≤ 10) or hot:P% (0 < P ≤ 100)", crate::text::quote(s));
        if s == "uniform" {
            return Ok(ChannelSkew::Uniform);
        }
        if let Some(exp) = s.strip_prefix("zipf:") {
            let exp: f64 = exp.trim().parse().map_err(|_| bad())?;
            if !(exp > 0.0 && exp <= MAX_ZIPF) {
                return Err(format!("{}: the exponent S is out of range (0 < S ≤ {MAX_ZIPF})", crate::text::quote(s)));
            }
            return Ok(ChannelSkew::Zipf(exp));
        }
        if let Some(pct) = s.strip_prefix("hot:") {
            let pct: f64 = pct.trim().strip_suffix('%').unwrap_or(pct.trim()).parse().map_err(|_| bad())?;
            if !(pct > 0.0 && pct <= 100.0) {
                return Err(format!("{}: P is out of range (0 < P ≤ 100)", crate::text::quote(s)));
            }
            return Ok(ChannelSkew::Hot(pct));
        }
        Err(bad())
    }
}

impl fmt::Display for ChannelSkew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelSkew::Uniform => f.write_str("uniform"),
            ChannelSkew::Zipf(s) => write!(f, "zipf:{s}"),
            ChannelSkew::Hot(p) => write!(f, "hot:{p}%"),
        }
    }
}

serde_as_string!(ChannelSkew);

impl ChannelSkew {
    /// Each channel's weight (not normalized).
    fn weights(&self, channels: u32) -> Vec<f64> {
        let n = channels as usize;
        match *self {
            ChannelSkew::Uniform => vec![1.0; n],
            ChannelSkew::Zipf(s) => (0..n).map(|k| 1.0 / ((k + 1) as f64).powf(s)).collect(),
            ChannelSkew::Hot(p) if n == 1 => vec![p],
            ChannelSkew::Hot(p) => (0..n).map(|k| if k == 0 { p } else { (100.0 - p) / (n - 1) as f64 }).collect(),
        }
    }
}

/// The cycle of channels producers follow (see the module's doc).
#[derive(Debug, Clone)]
pub struct Deck {
    /// The channel of each slot.
    slots: Vec<u32>,
    /// Per channel, its slots in ascending order, back to back: channel c's are `by_channel[starts[c]..starts[c + 1]]`.
    by_channel: Vec<u32>,
    starts: Vec<u32>,
    /// Round-robin: a producer starts at its own index (as eventbench always did).
    round_robin: bool,
}

impl Deck {
    /// The deck of `channels` channels under `skew`, phased by `seed`.
    pub fn new(skew: ChannelSkew, channels: u32, seed: u64) -> Deck {
        let channels = channels.max(1);
        if skew == ChannelSkew::Uniform {
            return Deck::from_slots((0..channels).collect(), channels, true);
        }
        let counts = whole_counts(&skew.weights(channels), DECK_SLOTS);
        let mut rng = SplitMix::new(seed, u64::MAX);
        // Channel c's k-th slot at (k + phase_c) / count_c of the cycle: evenly spread.
        let mut timed: Vec<(f64, u32)> = Vec::with_capacity(DECK_SLOTS as usize);
        for (c, &n) in counts.iter().enumerate() {
            let phase = rng.unit();
            timed.extend((0..n).map(|k| ((k as f64 + phase) / n as f64, c as u32)));
        }
        timed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        Deck::from_slots(timed.into_iter().map(|(_, c)| c).collect(), channels, false)
    }

    fn from_slots(slots: Vec<u32>, channels: u32, round_robin: bool) -> Deck {
        let mut starts = vec![0u32; channels as usize + 1];
        for &c in &slots {
            starts[c as usize + 1] += 1;
        }
        for c in 0..channels as usize {
            starts[c + 1] += starts[c];
        }
        let mut fill = starts.clone();
        let mut by_channel = vec![0u32; slots.len()];
        for (at, &c) in slots.iter().enumerate() {
            by_channel[fill[c as usize] as usize] = at as u32;
            fill[c as usize] += 1;
        }
        Deck { slots, by_channel, starts, round_robin }
    }

    /// Slots in the cycle.
    pub fn len(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Never: a deck has a slot per channel at least.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Where producer `producer` of `producers` starts in the cycle: skewed
    /// decks spread the producers evenly over it.
    pub fn offset(&self, producer: u32, producers: u32) -> u64 {
        if self.round_robin {
            u64::from(producer) % self.len()
        } else {
            u64::from(producer) * self.len() / u64::from(producers.max(1))
        }
    }

    /// The channel of a producer's message `i` (`offset` from [`Deck::offset`]).
    #[inline]
    pub fn channel(&self, offset: u64, i: u64) -> u32 {
        self.slots[((offset + i) % self.len()) as usize]
    }

    /// Channel `c`'s slots among the positions `[0, p)` of the repeated cycle.
    fn count_before(&self, c: u32, p: u64) -> u64 {
        let mine = &self.by_channel[self.starts[c as usize] as usize..self.starts[c as usize + 1] as usize];
        let (cycles, rest) = (p / self.len(), p % self.len());
        cycles * mine.len() as u64 + mine.partition_point(|&s| u64::from(s) < rest) as u64
    }

    /// How many of a producer's messages `[0, n)` went to channel `c`: the
    /// sequence number of its next message on `c`.
    pub fn sent_to(&self, offset: u64, n: u64, c: u32) -> u64 {
        self.count_before(c, offset + n) - self.count_before(c, offset)
    }

    /// The channel and sequence number of a producer's message `i`.
    pub fn message(&self, offset: u64, i: u64) -> (u32, u64) {
        let c = self.channel(offset, i);
        (c, self.sent_to(offset, i, c))
    }

    /// The share of the cycle channel `c` has.
    pub fn share(&self, c: u32) -> f64 {
        (self.starts[c as usize + 1] - self.starts[c as usize]) as f64 / self.len() as f64
    }
}

/// `total` split in proportion to `weights`, in whole numbers (largest remainders).
fn whole_counts(weights: &[f64], total: u64) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    let exact: Vec<f64> = weights.iter().map(|w| w / sum * total as f64).collect();
    let mut counts: Vec<u64> = exact.iter().map(|x| x.floor() as u64).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b)));
    let short = total - counts.iter().sum::<u64>();
    for &i in order.iter().take(short as usize) {
        counts[i] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_the_old_round_robin() {
        let d = Deck::new(ChannelSkew::Uniform, 3, 9);
        let off = d.offset(1, 2);
        assert_eq!((0..6).map(|i| d.channel(off, i)).collect::<Vec<_>>(), [1, 2, 0, 1, 2, 0]);
        assert_eq!(d.message(off, 4), (2, 1));
        assert_eq!(d.sent_to(off, 5, 0), 1);
    }

    #[test]
    fn a_hot_deck_gives_the_hot_channel_its_share_in_any_stretch() {
        let d = Deck::new(ChannelSkew::Hot(90.0), 10, 1);
        assert_eq!(d.share(0), 0.9);
        let off = d.offset(1, 3);
        let hot = (0..1000).filter(|&i| d.channel(off, i) == 0).count();
        // Within a message per channel of 900: each channel's slots are evenly spaced.
        assert!((890..=910).contains(&hot), "{hot}");
        for i in [0, 17, 99_999, 100_000, 250_001] {
            let (c, seq) = d.message(off, i);
            assert_eq!(seq, (0..i).filter(|&j| d.channel(off, j) == c).count() as u64, "message {i}");
        }
    }

    #[test]
    fn zipf_shares_fall_with_rank_and_forms_read_back() {
        let d = Deck::new(ChannelSkew::Zipf(1.0), 4, 1);
        let shares: Vec<f64> = (0..4).map(|c| d.share(c)).collect();
        assert!(shares.windows(2).all(|w| w[0] > w[1]), "{shares:?}");
        assert!((shares[0] - 0.48).abs() < 0.001, "1 / (1 + 1/2 + 1/3 + 1/4) = 0.48: {shares:?}");
        for s in ["uniform", "zipf:1.2", "hot:90%"] {
            assert_eq!(s.parse::<ChannelSkew>().unwrap().to_string(), s);
        }
        assert!("hot:120%".parse::<ChannelSkew>().is_err());
        assert!("zipf:0".parse::<ChannelSkew>().is_err());
    }
}
