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
    assert!(m.p50_us.is_some_and(|p| p > 0.0) && m.p50_us <= m.p99_us && m.p99_us <= m.max_us, "{m:?}");
    assert!(m.raw_p50_us.is_some() && m.raw_p50_us <= m.p50_us, "raw latency starts later than the intended send time");
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
    // Each outage as it happened (events.csv), not as it was scheduled: a busy
    // machine closes and resubscribes late, never early.
    let closes: Vec<_> = r.events.iter().filter(|e| e.kind == "disconnect").collect();
    assert_eq!(closes.len(), 2);
    let outages: Vec<(f64, f64)> = closes.iter().map(|e| (e.at_s, e.at_s + e.downtime_ms.unwrap() / 1000.0)).collect();
    for (e, &(down, up)) in closes.iter().zip(&outages) {
        assert!(down >= 0.999 && up >= 1.999, "away at 1 s, back at 2 s, never before: {e:?}");
        // What a consumer away for that long misses at the rate the run
        // actually sent (its own send times), not the one it was asked for.
        // The exact arithmetic is `paused::a_disconnect_loses_rate_times_downtime_per_consumer_to_the_tick`.
        let arithmetic = m.send_rate * e.downtime_ms.unwrap() / 1000.0;
        let error = (e.lost_during as f64 - arithmetic).abs() / arithmetic;
        assert!(
            error < 0.15,
            "lost {} in its downtime vs {arithmetic} ({:.1}% off): {e:?}",
            e.lost_during,
            error * 100.0
        );
    }
    assert_eq!(m.lost, closes.iter().map(|e| e.lost_during).sum::<u64>(), "every loss is an outage's");
    // Only the two disconnected consumers lost anything: what their outage lost.
    for c in &r.consumers {
        match closes.iter().find(|e| e.consumer == c.consumer) {
            Some(e) => assert_eq!((c.disconnects, c.lost), (1, e.lost_during), "consumer {}", c.consumer),
            None => assert_eq!((c.disconnects, c.lost), (0, 0), "consumer {}", c.consumer),
        }
    }
    // A scenario disconnect unsubscribes first: all of the loss is "nobody was
    // subscribed", and PUBLISH's replies say exactly the same.
    assert_eq!((m.lost_unsubscribed, m.lost_in_buffer, m.lost_other), (m.lost, 0, 0), "{m:?}");
    assert_eq!(m.expected - m.reached, m.lost_unsubscribed, "cross-check against PUBLISH's replies");
    assert_eq!(r.events.iter().filter(|e| e.kind == "resubscribed").count(), 2);
    // The outages show in the seconds they overlap, and the loss lands there
    // (give or take 100 ms: a message is counted in the second it was due).
    let overlapping = |from: f64, to: f64| outages.iter().filter(|&&(a, b)| a < to && b > from).count() as u32;
    for t in &r.timeseries {
        let second = t.second as f64;
        assert_eq!(t.connected_consumers, 4 - overlapping(second, second + 1.0), "second {}: {outages:?}", t.second);
        if t.lost > 0 {
            assert!(overlapping(second - 0.1, second + 1.1) > 0, "second {} lost {}: {outages:?}", t.second, t.lost);
        }
    }
}

#[tokio::test]
async fn achieved_rate_is_within_one_percent_of_the_target() {
    let r = run(quick("rate", 20_000.0, 3.0)).await;
    let m = &r.summary;
    assert_eq!(r.summary.status, Status::Ok, "{}", m.reason);
    // The schedule's count, however late the machine let it go out: sent,
    // or counted as unsent by a producer that fell too far behind it.
    assert_eq!(m.sent + m.unsent, 60_000, "3 s at 20,000/s");
    assert_eq!((m.lost, m.delivered), (0, m.expected), "{m:?}");
    // Pacing never sends ahead of its schedule: the rate is the target at most.
    assert!(m.send_rate <= 20_000.0 * 1.000_01, "send rate {} above the target", m.send_rate);
    // The rates are measured from the run's own send and arrival times. A
    // harness that kept its schedule (by its own send lag and CPU) reaches the
    // target; one that did not says so, and names itself as the limit.
    if m.harness_limited {
        eprintln!("harness-limited (send lag p99 {} µs, CPU {}%): {m:?}", m.send_lag_p99_us, m.harness_cpu_pct);
        assert_ne!(m.limit, eventbench::rows::Limit::Neither, "{m:?}");
        return;
    }
    let off = (m.send_rate - 20_000.0).abs() / 20_000.0;
    assert!(off < 0.01, "send rate {} is {:.2}% off: {m:?}", m.send_rate, off * 100.0);
    // What arrived within the phase is what was sent, but for the messages
    // still on their way at its end: no more than the run's own send rate
    // over its slowest delivery (its measured maximum latency).
    let arrived = m.delivery_rate * m.duration_s;
    let on_the_way = m.send_rate * m.max_us.expect("deliveries have a max") / 1e6 + 1.0;
    assert!(arrived <= m.sent as f64, "more arrived than was sent: {m:?}");
    assert!(
        m.sent as f64 - arrived <= on_the_way,
        "delivery rate {}: {} of {} sent arrived in the phase, more than {on_the_way:.0} short: {m:?}",
        m.delivery_rate,
        arrived,
        m.sent
    );
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
    let s = eventbench::Scenario { payload: eventbench::scenario::Payload::Fixed(36), ..quick("max", 0.0, 1.0) };
    let r = run(s).await;
    assert!(r.summary.sent > 10_000, "sent only {}", r.summary.sent);
}
