//! The core harness against a real redis-server: exact accounting, loss that
//! matches the arithmetic, the set rate, and many consumers.

use crate::common::{quick, run};
use eventbench::Status;

#[tokio::test]
async fn without_disconnects_everything_arrives_exactly_once() {
    let s = eventbench::Scenario { producers: 2, consumers: 3, channels: 2, ..quick("clean", 4000.0, 2.0) };
    let r = run(s).await;
    let m = &r.summary;
    assert_eq!(r.summary.status, Status::Ok, "{}", m.reason);
    assert_eq!(m.sent, 8000, "2 s at 4000/s");
    assert_eq!(m.expected, m.sent * 3, "every consumer expects every message");
    assert_eq!((m.delivered, m.lost, m.duplicates, m.out_of_order, m.foreign), (m.expected, 0, 0, 0, 0));
    assert_eq!(m.reached, m.expected, "PUBLISH reached every subscriber");
    assert!(m.p50_us > 0.0 && m.p50_us <= m.p99_us && m.p99_us <= m.max_us, "{m:?}");
    assert!(m.raw_p50_us <= m.p50_us, "raw latency starts later than the intended send time");
    assert!(r.timeseries.iter().all(|t| t.connected_consumers == 3 && t.lost == 0));
}

#[tokio::test]
async fn disconnect_loss_matches_rate_times_downtime_times_consumers() {
    let s = eventbench::Scenario {
        consumers: 4,
        disconnect: vec!["50%@1s+1s".parse().unwrap()],
        ..quick("disconnect", 5000.0, 3.0)
    };
    let r = run(s).await;
    let m = &r.summary;
    assert_eq!(r.summary.status, Status::Ok, "{}", m.reason);
    let arithmetic = 5000.0 * 1.0 * 2.0;
    let error = (m.lost as f64 - arithmetic).abs() / arithmetic;
    assert!(error < 0.15, "lost {} vs {arithmetic} expected ({:.1}% off)", m.lost, error * 100.0);
    // Only the two disconnected consumers lost anything, and each lost about half.
    for c in &r.consumers {
        if c.consumer < 2 {
            assert_eq!(c.disconnects, 1);
            assert!((c.lost as f64 - 5000.0).abs() < 750.0, "consumer {} lost {}", c.consumer, c.lost);
        } else {
            assert_eq!((c.disconnects, c.lost), (0, 0), "consumer {}", c.consumer);
        }
    }
    // A scenario disconnect unsubscribes first: all of the loss is "nobody was
    // subscribed", and PUBLISH's replies say exactly the same.
    assert_eq!((m.lost_unsubscribed, m.lost_in_buffer, m.lost_other), (m.lost, 0, 0), "{m:?}");
    assert_eq!(m.expected - m.reached, m.lost_unsubscribed, "cross-check against PUBLISH's replies");
    let closes: Vec<_> = r.events.iter().filter(|e| e.kind == "disconnect").collect();
    assert_eq!(closes.len(), 2);
    for e in closes {
        assert!((e.at_s - 1.0).abs() < 0.05 && (e.downtime_ms.unwrap() - 1000.0).abs() < 50.0, "{e:?}");
        assert!((e.lost_during as f64 - 5000.0).abs() < 750.0, "{e:?}");
    }
    assert_eq!(r.events.iter().filter(|e| e.kind == "resubscribed").count(), 2);
    assert_eq!(r.timeseries[1].connected_consumers, 2, "the outage shows in second 1");
    assert_eq!(r.timeseries[0].connected_consumers, 4);
    assert!(r.timeseries[1].lost > 9000, "the loss lands in the second it happened");
}

#[tokio::test]
async fn achieved_rate_is_within_one_percent_of_the_target() {
    let r = run(quick("rate", 20_000.0, 3.0)).await;
    let m = &r.summary;
    assert_eq!(r.summary.status, Status::Ok, "{}", m.reason);
    let off = (m.send_rate - 20_000.0).abs() / 20_000.0;
    assert!(off < 0.01, "send rate {} is {:.2}% off", m.send_rate, off * 100.0);
    assert_eq!(m.lost, 0);
    let off = (m.delivery_rate - 20_000.0).abs() / 20_000.0;
    assert!(off < 0.01, "delivery rate {} is {:.2}% off", m.delivery_rate, off * 100.0);
}

#[tokio::test]
async fn hundreds_of_consumers() {
    let s = eventbench::Scenario { consumers: 300, ..quick("many", 200.0, 2.0) };
    let r = run(s).await;
    let m = &r.summary;
    assert_eq!(r.summary.status, Status::Ok, "{}", m.reason);
    assert_eq!(r.consumers.len(), 300);
    assert_eq!((m.expected, m.delivered, m.lost), (400 * 300, 400 * 300, 0));
}

#[tokio::test]
async fn unlimited_rate_still_accounts_for_every_message() {
    let s = eventbench::Scenario { payload: 36, ..quick("max", 0.0, 1.0) };
    let r = run(s).await;
    assert!(r.summary.sent > 10_000, "sent only {}", r.summary.sent);
}
