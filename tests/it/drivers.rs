//! The driver seam: what a transport cannot honour is refused before
//! anything runs (no server is started), and what every driver supports
//! works on each of them.

use crate::common::{assert_bad_input, quick, run};
use eventbench::scenario::TransportKind;
use eventbench::{Scenario, Status};
use std::time::{Duration, Instant};

#[test]
fn options_a_transport_or_a_mode_cannot_honour_exit_2_before_anything_runs() {
    let cases: &[(&[&str], &str)] = &[
        (&["--transport", "pubsub", "--maxlen", "100"], "maxlen"),
        (&["--transport", "sharded", "--maxlen", "100"], "maxlen"),
        (&["--transport", "pubsub", "--groups", "1"], "groups"),
        (&["--transport", "pubsub", "--replay-at", "1s"], "replay-at"),
        (&["--transport", "sharded", "--claim-idle", "2s"], "claim-idle"),
        (&["--transport", "sharded", "--subscribe", "pattern"], "SPSUBSCRIBE"),
        (&["--transport", "streams", "--subscribe", "pattern"], "subscribe"),
        (&["--transport", "streams", "--groups", "1", "--workers", "2"], "one process"),
        (&["--transport", "streams", "--replay-at", "1s", "--workers", "2"], "one process"),
    ];
    for (args, needle) in cases {
        // A private redis-server takes ~100 ms to start: a refusal comes well before.
        let started = Instant::now();
        let line = assert_bad_input(&[&["run", "--duration", "2s", "--quiet"], *args].concat(), needle);
        assert!(started.elapsed() < Duration::from_secs(2), "{args:?} took {:?}", started.elapsed());
        assert!(line.contains("--transport") || line.contains("process"), "{args:?}: names the way out: {line}");
    }
}

/// A slow consumer is slow on every transport: it spends its delay on each
/// message, its latency shows the wait, and on Streams what it has not read
/// stays in the stream (the backlog), not in the consumer.
#[tokio::test]
async fn slow_consumers_are_slow_on_every_transport() {
    for transport in [TransportKind::Pubsub, TransportKind::Sharded, TransportKind::Streams] {
        let s =
            Scenario { transport, consumers: 1, slow: Some("100%:4ms".parse().unwrap()), ..quick("slow", 1000.0, 1.5) };
        let r = run(s).await;
        let m = &r.summary;
        assert_eq!(m.status, Status::Ok, "{transport}: {}", m.reason);
        // 4 ms a message: at most 250 a second, of 1,000 sent a second.
        assert!(m.delivered <= 700, "{transport}: a 4 ms consumer took {} of {}: {m:?}", m.delivered, m.sent);
        assert!(m.p50_us.is_some_and(|p| p > 100_000.0), "{transport}: the wait shows in the latency: {m:?}");
        if transport == TransportKind::Streams {
            assert!(m.backlog_max > 500, "the unread entries wait in the stream: {m:?}");
        }
    }
}
