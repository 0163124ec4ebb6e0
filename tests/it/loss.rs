//! Why Pub/Sub loses messages: slow consumers cut off by Redis, consumers that
//! are gone, and the attribution of every lost message to one cause.

use crate::common::{quick, run};
use eventbench::target::Target;
use eventbench::{Scenario, Status};
use std::collections::BTreeMap;

fn slow_scenario(secs: f64) -> Scenario {
    let mut redis_config = BTreeMap::new();
    redis_config.insert("client-output-buffer-limit".to_string(), "pubsub 256kb 64kb 5".to_string());
    Scenario { consumers: 4, slow: Some("25%:200us".parse().unwrap()), redis_config, ..quick("slow", 20_000.0, secs) }
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_and_its_loss_is_attributed() {
    let r = run(slow_scenario(4.0)).await;
    let m = &r.summary;
    assert_eq!(r.summary.status, Status::Ok, "{}", m.reason);
    let kills: Vec<_> = r.events.iter().filter(|e| e.kind == "server-kill").collect();
    assert!(!kills.is_empty(), "no server-kill in {:?}", r.events);
    assert!(kills.iter().all(|e| e.consumer == 3), "only the slow consumer (the last) is cut off: {kills:?}");
    assert!(m.lost_in_buffer > 0, "{m:?}");
    assert_eq!(m.lost_other, 0, "{m:?}");
    // Redis counted the slow consumer in PUBLISH's reply until it closed it; our
    // attribution of "nobody subscribed" agrees to within 20 ms of traffic.
    let by_redis = m.expected - m.reached;
    assert!(
        m.lost_unsubscribed.abs_diff(by_redis) <= 400,
        "unsubscribed {} vs {by_redis} by PUBLISH",
        m.lost_unsubscribed
    );
    for c in &r.consumers[..3] {
        assert_eq!((c.lost, c.server_kills), (0, 0), "fast consumer {} lost messages", c.consumer);
    }
    assert_eq!(r.consumers[3].server_kills as usize, kills.len());
}

#[tokio::test]
async fn without_reconnect_a_cut_off_consumer_stays_away() {
    let r = run(Scenario { reconnect: false, ..slow_scenario(3.0) }).await;
    let m = &r.summary;
    assert_eq!(r.summary.status, Status::Ok, "{}", m.reason);
    assert_eq!(r.events.iter().filter(|e| e.kind == "server-kill").count(), 1, "{:?}", r.events);
    assert_eq!(r.events.iter().filter(|e| e.kind == "resubscribed").count(), 0);
    assert_eq!(r.timeseries.last().unwrap().connected_consumers, 3);
    assert_eq!(m.lost_other, 0, "{m:?}");
}

#[tokio::test]
async fn pattern_subscriptions_account_exactly() {
    let s = Scenario {
        channels: 3,
        producers: 2,
        consumers: 2,
        subscribe: eventbench::scenario::SubscribeMode::Pattern,
        disconnect: vec!["50%@1s+500ms".parse().unwrap()],
        ..quick("pattern", 3000.0, 2.0)
    };
    let r = run(s).await;
    let m = &r.summary;
    assert_eq!(r.summary.status, Status::Ok, "{}", m.reason);
    assert_eq!(m.expected, m.sent * 2);
    assert!(m.lost > 0 && m.lost == m.lost_unsubscribed, "{m:?}");
    assert_eq!(m.expected - m.reached, m.lost_unsubscribed);
    assert_eq!(r.consumers[1].lost, 0);
}

#[tokio::test]
async fn redis_config_is_applied_and_then_restored_on_a_users_redis() {
    let server = Target::private(None).expect("redis-server (scripts/test.sh installs it)");
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let get = |key: &'static str| redis::cmd("CONFIG").arg("GET").arg(key).to_owned();
    let before: Vec<String> = get("client-output-buffer-limit").query_async(&mut con).await.unwrap();
    let s = Scenario { url: Some(server.url().to_string()), reconnect: false, ..slow_scenario(2.0) };
    let r = run(s).await;
    assert!(r.events.iter().any(|e| e.kind == "server-kill"), "the setting took effect: {:?}", r.events);
    let after: Vec<String> = get("client-output-buffer-limit").query_async(&mut con).await.unwrap();
    assert_eq!(before, after, "restored after the run");

    // A setting Redis refuses is bad input, reported before the run.
    let mut bad = BTreeMap::new();
    bad.insert("no-such-setting".to_string(), "1".to_string());
    let s = Scenario { url: Some(server.url().to_string()), redis_config: bad, ..quick("bad", 100.0, 1.0) };
    let err = eventbench::run(s).await.unwrap_err().to_string();
    assert!(err.contains("no-such-setting"), "{err}");
}
