//! Workloads like production (issue 30): payload sizes drawn from a
//! distribution with `--seed`, and channels used unevenly with
//! `--channel-skew`. The arithmetic (sizes within sampling error, exact
//! per-channel counts, the per-channel ledgers) on the loopback transport on
//! virtual time; the bytes on the wire (every size framed right, samples
//! carried whole) against a real redis-server; bad values at the command line.

use crate::common::{self, assert_bad_input, assert_invariants, quick, stderr, RedisServer};
use eventbench::scenario::{ChannelSkew, Deck, Payload, TransportKind};
use eventbench::{Live, RunReport, Scenario, Status};
use std::sync::Arc;

fn loopback(name: &str, rate: f64, secs: f64) -> Scenario {
    Scenario { transport: TransportKind::Loopback, ..quick(name, rate, secs) }
}

/// A run on the caller's (paused) runtime, with every invariant checked (per channel too).
async fn virtual_run(s: Scenario) -> RunReport {
    let r = eventbench::run_with(s, Arc::new(Live::default())).await.expect("a loopback run on virtual time");
    assert_invariants(&r);
    r
}

/// What each channel was sent in the measured phase, as the deck says: each
/// producer's messages `[warmup, warmup + measured)` from its offset.
fn deck_counts(s: &Scenario, warmup: u64, measured: u64) -> Vec<u64> {
    let deck = Deck::new(s.channel_skew, s.channels, s.seed);
    let on = |p: u32, c: u32| {
        let offset = deck.offset(p, s.producers);
        deck.sent_to(offset, warmup + measured, c) - deck.sent_to(offset, warmup, c)
    };
    (0..s.channels).map(|c| (0..s.producers).map(|p| on(p, c)).sum()).collect()
}

#[tokio::test(start_paused = true)]
async fn weighted_sizes_are_drawn_as_specified_and_repeat_exactly_by_seed() {
    // 64 B and 1 KiB, half each: a mean of 544 B, a standard deviation of 480 B per message.
    let payload: Payload = "64:50%,1k:50%".parse().unwrap();
    let s = Scenario { producers: 2, payload, seed: 42, ..loopback("sizes", 4000.0, 2.0) };
    let a = virtual_run(s.clone()).await.summary;
    assert_eq!((a.status, a.sent, a.delivered, a.lost), (Status::Ok, 8000, 8000, 0), "{}", a.reason);
    // 8,000 messages: the mean's standard error is 480 / √8000 ≈ 5.4 B; five of them.
    let mean = a.sent_bytes as f64 / a.sent as f64;
    assert!((mean - 544.0).abs() < 27.0, "mean size {mean}");
    assert_eq!(a.payload_bytes, mean.round() as u64, "payload_bytes is the mean sent");
    assert_eq!(a.send_bytes_per_s, a.sent_bytes as f64 / 2.0, "bytes over the same 2 s as send_rate");
    let b = virtual_run(s.clone()).await.summary;
    assert_eq!(b.sent_bytes, a.sent_bytes, "the same seed draws the same sizes");
    let c = virtual_run(Scenario { seed: 43, ..s }).await.summary;
    assert_ne!(c.sent_bytes, a.sent_bytes, "another seed draws others");
    let fixed = virtual_run(loopback("fixed", 4000.0, 2.0)).await.summary;
    assert_eq!((fixed.sent_bytes, fixed.payload_bytes), (8000 * 64, 64), "one size: exactly");
}

#[tokio::test(start_paused = true)]
async fn a_hot_channel_gets_its_share_and_every_channel_is_expected_exactly() {
    let s = Scenario {
        producers: 2,
        consumers: 3,
        channels: 10,
        channel_skew: "hot:90%".parse().unwrap(),
        ..loopback("hot", 4000.0, 2.0)
    };
    let r = virtual_run(s.clone()).await;
    assert_eq!(r.summary.status, Status::Ok, "{}", r.summary.reason);
    let sent: Vec<u64> = r.channels.iter().map(|c| c.sent).collect();
    // Each producer sends 2,000/s: 600 in the 300 ms warmup, then 4,000 measured.
    assert_eq!(sent, deck_counts(&s, 600, 4000), "each producer's messages where the deck puts them");
    // Any stretch of the deck carries each share to within a message per channel, per producer.
    assert!((7180..=7220).contains(&sent[0]), "90% of 8,000: {sent:?}");
    for (c, row) in r.channels.iter().enumerate() {
        assert_eq!(row.expected, row.sent * 3, "channel {c}: every consumer expects what was sent to it");
        assert_eq!((row.delivered, row.lost, row.undelivered), (row.expected, 0, 0), "channel {c}");
        assert_eq!(row.subscribers, 3);
        assert!(row.p99_us.is_some(), "channel {c} had deliveries");
        assert_eq!((row.slot, row.node), (None, None), "no cluster");
    }
    assert_eq!(r.channels[0].share_pct, 90.0);
    let zipf = Scenario { channel_skew: ChannelSkew::Zipf(1.0), channels: 4, ..s };
    let r = virtual_run(zipf.clone()).await;
    let sent: Vec<u64> = r.channels.iter().map(|c| c.sent).collect();
    assert_eq!(sent, deck_counts(&zipf, 600, 4000));
    assert!(sent.windows(2).all(|w| w[0] > w[1]), "shares fall with rank: {sent:?}");
}

#[tokio::test(start_paused = true)]
async fn under_skew_and_a_disconnect_each_channel_accounts_for_its_own_loss() {
    let s = Scenario {
        consumers: 4,
        channels: 4,
        channel_skew: "hot:70%".parse().unwrap(),
        disconnect: vec!["50%@500ms+500ms".parse().unwrap()],
        ..loopback("hot-loss", 4000.0, 2.0)
    };
    let r = virtual_run(s).await;
    let m = &r.summary;
    assert_eq!(m.status, Status::Ok, "{}", m.reason);
    // Two consumers away for 500 ms at 4,000/s: 2,000 each, give or take a tick at each end.
    assert!((3992..=4008).contains(&m.lost), "{m:?}");
    let hot = &r.channels[0];
    assert!(hot.lost as f64 > 0.65 * m.lost as f64, "the hot channel loses its share: {:?}", r.channels);
    assert!(r.channels.iter().all(|c| c.lost > 0), "every channel lost some: {:?}", r.channels);
}

#[tokio::test(start_paused = true)]
async fn a_checkpoint_keeps_the_channels_accounted() {
    use eventbench::pipeline::{self, Mode, Watch};
    let s = Scenario {
        channels: 3,
        consumers: 2,
        channel_skew: "zipf:1.5".parse().unwrap(),
        payload: "64..128".parse().unwrap(),
        checkpoint: "1s".parse().unwrap(),
        ..loopback("skew-checkpoint", 2000.0, 3.0)
    };
    let mut cuts = Vec::new();
    let mut sink = |r: RunReport| cuts.push(r);
    let watch = Watch { on_checkpoint: Some(&mut sink), ..Watch::default() };
    let target = pipeline::target_for(&s).unwrap();
    let done =
        pipeline::execute_with(s, Arc::new(Live::default()), &target, &Mode::Local, |_| {}, watch).await.unwrap();
    assert_invariants(&done.report);
    assert!(!cuts.is_empty(), "a checkpoint a second");
    for cut in &cuts {
        // A cut's ledgers add up per channel (its histograms are copies of other instants).
        let m = &cut.summary;
        for c in &cut.channels {
            assert_eq!(c.delivered + c.lost + c.undelivered, c.expected, "{c:?}");
        }
        assert_eq!(cut.channels.iter().map(|c| c.expected).sum::<u64>(), m.expected);
        assert_eq!(cut.channels.iter().map(|c| c.delivered).sum::<u64>(), m.delivered);
        if m.sent > 0 {
            let bytes = m.sent_bytes as f64 / m.sent as f64;
            assert!((64.0..=128.0).contains(&bytes), "bytes of the seconds cut: {bytes}");
        }
    }
}

/// Real Redis: every drawn size framed right on the wire (a wrong length
/// would make Redis refuse the command, or consumers find foreign bytes).
#[tokio::test]
async fn drawn_sizes_and_samples_travel_through_redis_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = tmp.path().join("samples.jsonl");
    let lines: Vec<String> =
        (0..20).map(|i| format!("{{\"id\":{i},\"pad\":\"{}\"}}", "x".repeat(40 + i * 37))).collect();
    std::fs::write(&samples, lines.join("\n") + "\n").unwrap();
    let sizes = tmp.path().join("sizes.txt");
    std::fs::write(&sizes, "# production sizes\n64\n100\n\n4k\n").unwrap();
    let forms =
        ["36..70000".to_string(), format!("samples:{}", samples.display()), format!("sizes:{}", sizes.display())];
    for (form, transport) in forms.iter().zip([TransportKind::Pubsub, TransportKind::Streams, TransportKind::Pubsub]) {
        let s = Scenario {
            transport,
            producers: 2,
            consumers: 2,
            channels: 3,
            payload: form.parse().unwrap(),
            channel_skew: "hot:60%".parse().unwrap(),
            ..quick("sizes-redis", 1000.0, 1.0)
        };
        let r = common::run(s).await;
        let m = &r.summary;
        assert_eq!(m.status, Status::Ok, "{form}: {}", m.reason);
        assert_eq!((m.sent, m.delivered, m.lost, m.foreign), (1000, 2000, 0, 0), "{form}: {m:?}");
        let mean = m.sent_bytes as f64 / m.sent as f64;
        let (lo, hi) = form.parse::<Payload>().unwrap().bounds();
        assert!(lo as f64 <= mean && mean <= hi as f64 && lo < hi, "{form}: mean {mean}");
    }
}

/// A sharded cluster: each channel's slot and node, and the hot one's node doing its share.
#[tokio::test]
async fn a_cluster_lists_each_channels_slot_and_node() {
    let s = Scenario {
        transport: TransportKind::Sharded,
        private_cluster: 3,
        channels: 6,
        consumers: 2,
        channel_skew: "hot:80%".parse().unwrap(),
        ..quick("hot-cluster", 1000.0, 1.0)
    };
    let r = common::run(s).await;
    assert_eq!(r.summary.status, Status::Ok, "{}", r.summary.reason);
    for c in &r.channels {
        assert!(c.slot.is_some_and(|s| s < 16384) && c.node.is_some_and(|n| n < 3), "{c:?}");
        assert_eq!((c.delivered, c.lost), (c.expected, 0), "{c:?}");
    }
    assert!((798..=802).contains(&r.channels[0].sent), "{:?}", r.channels[0]);
}

#[test]
fn two_workers_merge_the_channels_exactly_like_one_process() {
    let redis = RedisServer::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let url = redis.url();
    let flags = [
        "--url",
        &url,
        "--quiet",
        "--warmup",
        "300ms",
        "--drain",
        "1s",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--channels",
        "4",
        "--rate",
        "2000",
        "--duration",
        "2s",
        "--channel-skew",
        "zipf:1",
        "--payload",
        "64:70%,512:30%",
        "--seed",
        "7",
    ];
    let mut tables = Vec::new();
    for (name, extra) in [("one", &[][..]), ("two", &["--workers", "2"][..])] {
        let dir = tmp.path().join(name);
        let mut args = vec!["run", "--out", dir.to_str().unwrap()];
        args.extend(flags);
        args.extend(extra);
        let out = common::eventbench(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let rows: Vec<eventbench::rows::ChannelRow> =
            csv::Reader::from_path(dir.join("channels.csv")).unwrap().deserialize().map(Result::unwrap).collect();
        let summary = common::assert_whole_run_dir(&dir);
        let recorded = std::fs::read_to_string(dir.join("scenario.toml")).unwrap();
        for key in ["seed = 7", "channel-skew = \"zipf:1\"", "payload = \"64:70%,512:30%\""] {
            assert!(recorded.contains(key), "scenario.toml records {key}: {recorded}");
        }
        tables.push((rows, summary));
    }
    let ((one, a), (two, b)) = (&tables[0], &tables[1]);
    let sent = |rows: &[eventbench::rows::ChannelRow]| rows.iter().map(|r| r.sent).collect::<Vec<_>>();
    assert_eq!(sent(one), sent(two), "the same deck in every process");
    assert_eq!(a.sent_bytes, b.sent_bytes, "the same sizes drawn by each producer wherever it runs");
    for r in one.iter().chain(two) {
        assert_eq!((r.expected, r.delivered, r.lost), (r.sent * 2, r.sent * 2, 0), "{r:?}");
    }
}

#[test]
fn bad_sizes_and_skews_are_one_line_and_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "\n\n").unwrap();
    let empty_sizes = format!("sizes:{}", empty.display());
    let empty_samples = format!("samples:{}", empty.display());
    let short = tmp.path().join("short.txt");
    std::fs::write(&short, "64\n20\n").unwrap();
    let short_sizes = format!("sizes:{}", short.display());
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--payload", "10..100"], "minimum of 36"),
        (&["run", "--payload", "20:50%,64:50%"], "minimum of 36"),
        (&["run", "--payload", &short_sizes], "minimum of 36"),
        (&["run", "--payload", "64:50%,1k:40%"], "sum to 90%"),
        (&["run", "--payload", "64:50%,1k"], "SIZE:PCT%"),
        (&["run", "--payload", "4096..64"], "start is above its end"),
        (&["run", "--payload", "1g"], "not a size"),
        (&["run", "--payload", "sizes:/no/such/file"], "cannot read"),
        (&["run", "--payload", &empty_sizes], "holds no size"),
        (&["run", "--payload", &empty_samples], "no sample"),
        (&["run", "--channel-skew", "hot:150%"], "out of range"),
        (&["run", "--channel-skew", "zipf:0"], "out of range"),
        (&["run", "--channel-skew", "zipf:11"], "out of range"),
        (&["run", "--channel-skew", "lukewarm"], "uniform, zipf:S"),
        (&["run", "--channel-skew", "hot:90%"], "--channels 2 or more"),
        (&["run", "--seed", "-1"], "seed"),
    ];
    for (args, needle) in cases {
        assert_bad_input(args, needle);
    }
    // In a scenario file too, naming the key.
    let file = tmp.path().join("bad.toml");
    std::fs::write(&file, "payload = \"64:50%,1k:40%\"\n").unwrap();
    let err = assert_bad_input(&["run", file.to_str().unwrap()], "sum to 90%");
    assert!(err.contains("payload"), "{err}");
}
