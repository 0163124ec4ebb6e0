//! Paced efficiency (#19): at a rate whose period is shorter than a wake-up,
//! a producer releases what fell due once a window, on one thread with its
//! consumer; the schedule is kept exactly all the same, and nothing is lost.

use crate::common::{quick, run};
use eventbench::scenario::TransportKind;
use eventbench::Status;

#[tokio::test]
async fn a_coalesced_rate_keeps_its_schedule_on_one_thread() {
    for transport in [TransportKind::Pubsub, TransportKind::Streams] {
        // 10 µs between messages: about 5 in each 50 µs window.
        let r = run(eventbench::Scenario { transport, ..quick("coalesced", 100_000.0, 1.0) }).await;
        let m = &r.summary;
        assert_eq!(m.status, Status::Ok, "{transport:?}: {}", m.reason);
        assert_eq!(m.threads, 1, "{transport:?}: 200,000 sends and deliveries a second take one thread");
        assert_eq!(m.sent, 100_000, "{transport:?}: 1 s at 100,000/s, not a message more or less");
        assert_eq!((m.delivered, m.lost, m.duplicates), (m.sent, 0, 0), "{transport:?}");
        assert!(m.p50_us > 0.0 && m.p50_us <= m.p99_us, "{transport:?}: {m:?}");
    }
}
