//! Paced efficiency (#19): at a rate whose period is shorter than a wake-up,
//! a producer releases what fell due once a window, on one thread with its
//! consumer; the schedule is kept exactly all the same, and nothing is lost.
//!
//! What this build keeps up with on this machine is a measurement, not a
//! behaviour: `scripts/efficiency.sh` measures it (release build, quiet,
//! 100,000/s among its rates, delivered and CPU per message). Here the
//! figures are the ones that hold however busy the machine: the count the
//! schedule makes, the accounting, and no message lost or doubled.

use crate::common::{quick, run};
use eventbench::scenario::TransportKind;
use eventbench::Status;

#[tokio::test]
async fn a_coalesced_rate_keeps_its_schedule_on_one_thread() {
    for transport in [TransportKind::Pubsub, TransportKind::Streams] {
        // 10 µs between messages: about 2 in each 20 µs window.
        let r = run(eventbench::Scenario {
            transport,
            // Room for the whole run in the subscriber's output buffer: a consumer
            // that falls behind on a busy machine is behind, never cut off.
            redis_config: [("client-output-buffer-limit".to_string(), "pubsub 0 0 0".to_string())].into(),
            ..quick("coalesced", 100_000.0, 1.0)
        })
        .await;
        let m = &r.summary;
        assert_eq!(m.status, Status::Ok, "{transport:?}: {}", m.reason);
        assert_eq!(m.threads, 1, "{transport:?}: 200,000 sends and deliveries a second take one thread");
        // The schedule's count: sent, or counted unsent by a producer this
        // machine left too far behind it (the count sent exactly on a clock
        // that keeps time: `paused::a_coalesced_rate_sends_its_schedule_exactly`).
        assert_eq!(m.sent + m.unsent, 100_000, "{transport:?}: 1 s at 100,000/s, not a message more or less");
        // Late is allowed (the drain may end first: undelivered), lost or doubled is not.
        assert_eq!((m.lost, m.duplicates), (0, 0), "{transport:?}: {m:?}");
        assert_eq!(m.delivered + m.undelivered, m.expected, "{transport:?}: {m:?}");
        assert!(m.delivered > 0 && m.p50_us.is_some_and(|p| p > 0.0) && m.p50_us <= m.p99_us, "{transport:?}: {m:?}");
        // A run that says it kept up delivered everything.
        assert!(!m.sustained || m.undelivered == 0, "{transport:?}: {m:?}");
    }
}
