//! Redis Cluster against real processes: a private 3-node cluster carries
//! every transport with exact accounting, each node takes its share, and a
//! killed node costs Pub/Sub messages and Streams none.

use crate::common;
use crate::common::{eventbench, quick, stderr};
use eventbench::scenario::TransportKind;
use eventbench::target::Target;
use eventbench::{Live, Scenario, Status};
use std::sync::Arc;
use std::time::Duration;

/// Calls of `command` each node of the cluster served so far (INFO commandstats).
fn calls_per_node(ports: &[u16], command: &str) -> Vec<u64> {
    ports
        .iter()
        .map(|port| {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
            let mut con = client.get_connection_with_timeout(Duration::from_secs(2)).unwrap();
            let info: String = redis::cmd("INFO").arg("commandstats").query(&mut con).unwrap();
            let line = info.lines().find(|l| l.starts_with(&format!("cmdstat_{command}:")));
            line.and_then(|l| l.split("calls=").nth(1)?.split(',').next()?.parse().ok()).unwrap_or(0)
        })
        .collect()
}

/// The masters' ports, in slot order.
fn ports(target: &Target) -> Vec<u16> {
    let client = redis::Client::open(target.url()).unwrap();
    let mut con = client.get_connection_with_timeout(Duration::from_secs(2)).unwrap();
    let slots: redis::Value = redis::cmd("CLUSTER").arg("SLOTS").query(&mut con).unwrap();
    let t = eventbench::topology::Topology::from_slots(&slots, "127.0.0.1").unwrap();
    t.nodes.iter().map(|n| n.port).collect()
}

#[tokio::test]
async fn a_private_cluster_carries_every_transport_with_exact_accounting() {
    let target = Target::private_cluster(None, 3, false).expect("a private cluster (redis-server, redis-cli)");
    let ports = ports(&target);
    assert_eq!(ports.len(), 3);
    let base = Scenario {
        consumers: 3,
        channels: 6,
        private_cluster: 3,
        // Applied on every node (a private cluster keeps it: it stops with the test).
        redis_config: [("hz".to_string(), "20".to_string())].into(),
        ..quick("cluster", 2000.0, 1.5)
    };
    for transport in [TransportKind::Pubsub, TransportKind::Sharded, TransportKind::Streams] {
        let verb = match transport {
            TransportKind::Pubsub => "publish",
            TransportKind::Sharded => "spublish",
            TransportKind::Streams => "xadd",
            TransportKind::Loopback => unreachable!("loopback runs on no server"),
        };
        let before = calls_per_node(&ports, verb);
        let s = Scenario { transport, ..base.clone() };
        let r = eventbench::run_on(s, Arc::new(Live::default()), &target).await.unwrap();
        common::assert_invariants(&r);
        let m = &r.summary;
        assert_eq!(r.summary.status, Status::Ok, "{transport}: {}", m.reason);
        assert_eq!((m.delivered, m.lost, m.nodes), (m.expected, 0, 3), "{transport}: {m:?}");
        assert_eq!(m.expected, m.sent * 3, "{transport}: every consumer gets every channel");
        assert_eq!((m.redirections, m.write_errors), (0, 0), "{transport}: every write went to its owner");
        let after = calls_per_node(&ports, verb);
        let per_node: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        // Six channels round-robin over three nodes: each node takes a third of the writes (warmup too).
        let total: u64 = per_node.iter().sum();
        for n in &per_node {
            assert!((*n as f64 - total as f64 / 3.0).abs() < total as f64 * 0.05, "{transport}: {per_node:?}");
        }
        match transport {
            // SPUBLISH is answered by the shard the subscribers are on: it counts them all.
            TransportKind::Sharded => assert_eq!(m.reached, m.expected, "{m:?}"),
            // PUBLISH counts only the subscribers on the node it was sent to.
            TransportKind::Pubsub => assert!(m.reached < m.expected, "{m:?}"),
            TransportKind::Streams => assert_eq!(m.reached, m.sent, "{m:?}"),
            TransportKind::Loopback => unreachable!("loopback runs on no server"),
        }
    }
    for port in &ports {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut con = client.get_connection_with_timeout(Duration::from_secs(2)).unwrap();
        let hz: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("hz").query(&mut con).unwrap();
        assert_eq!(hz[1], "20", "--redis-config reached node {port}");
    }
}

#[tokio::test]
async fn sharded_pubsub_also_runs_on_a_single_server() {
    let s = Scenario { transport: TransportKind::Sharded, consumers: 2, channels: 3, ..quick("sharded", 2000.0, 1.0) };
    let r = common::run(s).await;
    let m = &r.summary;
    assert_eq!(r.summary.status, Status::Ok, "{}", m.reason);
    assert_eq!((m.delivered, m.lost, m.nodes, m.reached), (m.expected, 0, 1, m.expected), "{m:?}");
}

#[tokio::test]
async fn a_killed_node_loses_pubsub_messages_and_no_streams_entries() {
    let target = Target::private_cluster(None, 3, true).expect("a private cluster (redis-server, redis-cli)");
    let base = Scenario {
        consumers: 3,
        channels: 3,
        private_cluster: 3,
        kill_node: Some("1@500ms+500ms".parse().unwrap()),
        // Node 1's messages wait for it: about 2.5 s after the kill (Redis keeps a
        // restarted master unwritable for 2 s), then the backlog drains.
        drain: Duration::from_secs(6),
        ..quick("kill", 1000.0, 2.0)
    };
    let mut reports = Vec::new();
    for transport in [TransportKind::Pubsub, TransportKind::Sharded, TransportKind::Streams] {
        // Pub/Sub never gets everything: its drain only has to cover node 1's comeback.
        let drain = if transport == TransportKind::Pubsub { Duration::from_secs(3) } else { base.drain };
        let s = Scenario { transport, drain, ..base.clone() };
        let r = eventbench::run_on(s, Arc::new(Live::default()), &target).await.unwrap();
        common::assert_invariants(&r);
        assert_eq!(r.summary.status, Status::Ok, "{transport}: {}", r.summary.reason);
        let kinds: Vec<&str> = r.events.iter().map(|e| e.kind.as_str()).collect();
        assert!(kinds.contains(&"node-down") && kinds.contains(&"node-up"), "{transport}: {kinds:?}");
        let up = r.events.iter().find(|e| e.kind == "node-up").unwrap();
        assert!((400.0..1500.0).contains(&up.downtime_ms.unwrap()), "{transport}: {up:?}");
        let recover = r.summary.recover_ms.expect("node 1's channels delivered again");
        assert!(recover > 0.0 && recover < 5000.0, "{transport}: {recover}");
        // The server telemetry watched every node, and the killed one's second is an empty cell, not a failure.
        let cpu =
            |node, second| r.server.iter().find(|x| x.node == node && x.second == second).map(|x| x.server_cpu_pct);
        assert!(cpu(0, 0).flatten().is_some() && cpu(2, 0).flatten().is_some(), "{transport}: {:?}", r.server);
        assert_eq!(cpu(1, 0), Some(None), "{transport}: node 1 was killed in second 0: {:?}", r.server);
        assert!(r.server.iter().filter(|x| x.node == 1).any(|x| x.used_memory_bytes.is_some()), "it came back");
        assert_eq!(r.summary.server, "redis", "{transport}");
        reports.push(r);
    }
    let (pubsub, sharded, streams) = (&reports[0].summary, &reports[1].summary, &reports[2].summary);
    // Consumer 1 is on node 1: it is cut off with it, and misses what was published meanwhile.
    assert!(pubsub.lost >= 300, "pubsub lost {}: {pubsub:?}", pubsub.lost);
    assert_eq!(pubsub.lost_other, 0, "every Pub/Sub loss has its outage: {pubsub:?}");
    assert!(reports[0].events.iter().any(|e| e.kind == "server-kill" && e.consumer == 1), "{:?}", reports[0].events);
    // Every sharded consumer has a connection to node 1 and loses it, but keeps
    // reading nodes 0 and 2 meanwhile: it can only miss node 1's messages, and
    // those wait in the producers until node 1 takes writes again.
    let cut: Vec<u32> = reports[1].events.iter().filter(|e| e.kind == "server-kill").map(|e| e.consumer).collect();
    assert_eq!(cut.len(), 3, "{:?}", reports[1].events);
    assert!(sharded.lost < pubsub.lost, "sharded lost {} vs pubsub {}", sharded.lost, pubsub.lost);
    assert_eq!(sharded.lost_other, 0, "{sharded:?}");
    assert_eq!((streams.lost, streams.delivered), (0, streams.expected), "{streams:?}");
    // Every member read node 1's streams and lost them with it, as sharded
    // consumers do (issue 28 item 22: Streams recorded no server kill).
    let cut: Vec<u32> = reports[2].events.iter().filter(|e| e.kind == "server-kill").map(|e| e.consumer).collect();
    assert!((0..3).all(|c| cut.contains(&c)), "{:?}", reports[2].events);
    assert!(reports[2].consumers.iter().all(|c| c.server_kills >= 1), "{:?}", reports[2].consumers);
    assert_eq!(streams.write_errors, 0, "nothing was written to a node that refused it: {streams:?}");
    assert!(streams.max_us.is_some_and(|m| m > 1_000_000.0), "node 1's entries waited for it: {streams:?}");
}

/// `--workers` on a cluster goes through the same pipeline: the control keys
/// live on the master that owns their slot, the coordinator kills and restarts
/// the node, the shares see its channels come back, and every master counts.
#[test]
fn workers_on_a_cluster_kill_a_node_and_count_every_master() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("split");
    let o = eventbench(&[
        "run",
        "--private-cluster",
        "3",
        "--workers",
        "2",
        "--transport",
        "sharded",
        "--channels",
        "3",
        "--consumers",
        "2",
        "--rate",
        "1000",
        "--duration",
        "2s",
        "--warmup",
        "300ms",
        "--drain",
        "6s",
        "--kill-node",
        "1@500ms+500ms",
        "--redis-config",
        "client-output-buffer-limit pubsub 64mb 32mb 60",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = common::assert_whole_run_dir(&dir);
    assert_eq!((s.nodes, s.workers), (3, 2), "{s:?}");
    assert_eq!(s.delivered + s.lost + s.undelivered, s.expected, "{s:?}");
    let events = std::fs::read_to_string(dir.join("events.csv")).unwrap();
    assert!(events.contains("node-down") && events.contains("node-up"), "{events}");
    assert!(s.recover_ms.is_some_and(|ms| ms > 0.0 && ms < 5000.0), "{s:?}");
    // The coordinator sampled every master; nothing of it came from the workers.
    let server = std::fs::read_to_string(dir.join("server.csv")).unwrap();
    for node in 0..3 {
        assert!(server.lines().any(|l| l.starts_with(&format!("0,{node},"))), "node {node}: {server}");
    }
    assert!(s.server == "redis" && s.server_cpu_pct.is_some(), "{s:?}");
}

#[test]
fn cluster_flags_are_checked_before_anything_starts() {
    for (args, says) in [
        (&["--private-cluster", "1"][..], "at least 3"),
        (&["--kill-node", "1@1s+1s"], "--private-cluster"),
        (&["--private-cluster", "3", "--kill-node", "3@1s+1s"], "node 3 does not exist"),
        (&["--private-cluster", "3", "--kill-node", "1@9s+2s"], "within --duration"),
        (&["--private-cluster", "3", "--url", "redis://127.0.0.1:1"], "leave out --url"),
        (&["--transport", "sharded", "--subscribe", "pattern"], "SPSUBSCRIBE"),
    ] {
        let o = eventbench(&[&["run", "--duration", "10s", "--quiet"], args].concat());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(says) && err.lines().count() == 1, "{args:?}: {err}");
    }
    // A single server is not a cluster.
    let o = eventbench(&["run", "--cluster", "--duration", "1s", "--quiet"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("not a Redis Cluster"), "{}", stderr(&o));
}

/// A connection to one node of the private cluster.
fn con(port: u16) -> redis::Connection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    client.get_connection_with_timeout(Duration::from_secs(2)).unwrap()
}

/// Waits until the run is 800 ms into its measured phase, on the run's own
/// clock (the phase is known before its warmup has passed).
async fn into_the_run(live: &Live) {
    loop {
        let now = live.now_ns();
        if let (Some((start, _)), Some(now)) = (live.measured_phase(), now) {
            if now >= start + 800_000_000 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `CLUSTER SETSLOT slot NODE id` on every node, the new owner first, as a resharding ends.
fn give_slot(ports: &[u16], slot: u16, to: usize) {
    let id: String = redis::cmd("CLUSTER").arg("MYID").query(&mut con(ports[to])).unwrap();
    let order = std::iter::once(ports[to]).chain(ports.iter().copied().filter(|&p| p != ports[to]));
    for port in order {
        let _: () = redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("NODE").arg(&id).query(&mut con(port)).unwrap();
    }
}

/// A 2 s run at 1000 msg/s on a private cluster, 3 channels (one per node)
/// and 2 consumers; `mover` gets the masters' ports 800 ms into it (to move a
/// slot). Returns the run's report, checked for the invariants and status ok,
/// and what `mover` returned.
async fn run_with_slot_move<T, F: std::future::Future<Output = T>>(
    transport: TransportKind,
    name: &str,
    mover: impl FnOnce(Vec<u16>) -> F,
) -> (eventbench::RunReport, T) {
    let target = Target::private_cluster(None, 3, false).expect("a private cluster (redis-server, redis-cli)");
    let ports = ports(&target);
    let s = Scenario { transport, consumers: 2, channels: 3, private_cluster: 3, ..quick(name, 1000.0, 2.0) };
    let live = Arc::new(Live::default());
    let run = eventbench::run_on(s, live.clone(), &target);
    let mover = async {
        into_the_run(&live).await;
        mover(ports).await
    };
    let (r, moved) = tokio::join!(run, mover);
    let r = r.unwrap();
    common::assert_invariants(&r);
    assert_eq!(r.summary.status, Status::Ok, "{}", r.summary.reason);
    (r, moved)
}

#[tokio::test]
async fn a_sharded_channel_whose_slot_moves_is_followed_by_producers_and_consumers() {
    let (r, subscribers) = run_with_slot_move(TransportKind::Sharded, "moved", |ports| async move {
        // Node 0's channel and its slot go to node 1, as a resharding would move it.
        let channels: Vec<String> =
            redis::cmd("PUBSUB").arg("SHARDCHANNELS").arg("eventbench:*").query(&mut con(ports[0])).unwrap();
        assert_eq!(channels.len(), 1, "channel 0 of 3 lives on node 0: {channels:?}");
        let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(&channels[0]).query(&mut con(ports[0])).unwrap();
        give_slot(&ports, slot, 1);
        // Both consumers subscribe to it on node 1 now (within a second, even on a loaded machine).
        let since = std::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let subscribers: Vec<redis::Value> =
                redis::cmd("PUBSUB").arg("SHARDNUMSUB").arg(&channels[0]).query(&mut con(ports[1])).unwrap();
            if subscribers.get(1) == Some(&redis::Value::Int(2)) || since.elapsed() > Duration::from_secs(1) {
                break subscribers;
            }
        }
    })
    .await;
    let m = &r.summary;
    assert_eq!(subscribers.get(1), Some(&redis::Value::Int(2)), "{subscribers:?}");
    // Before, every message of channel 0 after the move was MOVED and lost (~400 of them, twice).
    // Now the producers resend what was MOVED to node 1 and write there from then on.
    assert!(m.redirections > 0, "{m:?}");
    assert_eq!(m.write_errors, 0, "{m:?}");
    // Redis dropped both consumers' subscription (an sunsubscribe push): each
    // subscribed again on node 1, an outage that costs only what was published
    // in between, and nothing else is lost.
    let moved: Vec<u32> = r.events.iter().filter(|e| e.kind == "slot-moved").map(|e| e.consumer).collect();
    assert_eq!(moved.len(), 2, "{:?}", r.events);
    assert_eq!(m.lost, m.lost_unsubscribed, "{m:?}");
    assert!(m.lost < 20, "only the few ms of the resubscribe: {m:?}");
    assert_eq!(m.delivered + m.lost, m.expected, "{m:?}");
}

#[tokio::test]
async fn a_stream_migrated_during_a_run_is_followed_through_ask_and_moved_and_loses_nothing() {
    let (r, asking) = run_with_slot_move(TransportKind::Streams, "migrated", |ports| async move {
        let asking_before = calls_per_node(&ports, "asking");
        // A resharding of channel 0's slot from node 0 to node 1, step by step:
        // IMPORTING and MIGRATING, MIGRATE the stream (its group goes with it), then NODE.
        let (_, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(0)
            .arg("MATCH")
            .arg("eventbench:*")
            .arg("COUNT")
            .arg(1000)
            .query(&mut con(ports[0]))
            .unwrap();
        assert_eq!(keys.len(), 1, "stream 0 of 3 lives on node 0: {keys:?}");
        let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(&keys[0]).query(&mut con(ports[0])).unwrap();
        let id = |port| -> String { redis::cmd("CLUSTER").arg("MYID").query(&mut con(port)).unwrap() };
        let setslot = |port, state: &str, node: String| {
            let _: () =
                redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg(state).arg(node).query(&mut con(port)).unwrap();
        };
        setslot(ports[1], "IMPORTING", id(ports[0]));
        setslot(ports[0], "MIGRATING", id(ports[1]));
        let _: () = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(ports[1])
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys[0])
            .query(&mut con(ports[0]))
            .unwrap();
        // Node 0 answers ASK for the stream it no longer has until the slot is
        // node 1's: at least 300 ms, and until 20 writes went there with ASKING
        // (a loaded machine may not write for a while).
        let asked = || -> Vec<u64> {
            calls_per_node(&ports, "asking").iter().zip(&asking_before).map(|(a, b)| a - b).collect()
        };
        let since = std::time::Instant::now();
        while since.elapsed() < Duration::from_millis(300)
            || (asked()[1] < 20 && since.elapsed() < Duration::from_secs(1))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        give_slot(&ports, slot, 1);
        asked()
    })
    .await;
    let m = &r.summary;
    // ~100 XADDs were answered ASK in those 300 ms, then a few MOVED: each written again where it said.
    assert!(asking[1] >= 20 && asking[0] == 0 && asking[2] == 0, "ASKING went to node 1: {asking:?}");
    assert!(m.redirections >= asking[1], "{m:?}");
    assert_eq!((m.delivered, m.lost, m.write_errors), (m.expected, 0, 0), "{m:?}");
    assert_eq!(m.reached, m.sent, "every entry was stored once: {m:?}");
}

#[tokio::test]
async fn classic_publish_is_not_redirected_when_its_channels_slot_moves() {
    let (r, ()) = run_with_slot_move(TransportKind::Pubsub, "publish-moved", |ports| async move {
        // Consumer 0 subscribes every channel on node 0; channel 0's slot is node 0's.
        let channels: Vec<String> =
            redis::cmd("PUBSUB").arg("CHANNELS").arg("eventbench:*").query(&mut con(ports[0])).unwrap();
        let slots: Vec<u16> = channels
            .iter()
            .map(|c| redis::cmd("CLUSTER").arg("KEYSLOT").arg(c).query(&mut con(ports[0])).unwrap())
            .collect();
        let slot = *slots.iter().min().expect("channels subscribed on node 0");
        assert!(slot < 5461, "node 0 serves slots 0-5460 in a fresh 3-node cluster: {slots:?}");
        give_slot(&ports, slot, 1);
    })
    .await;
    let m = &r.summary;
    // PUBLISH names no key: any node takes it and broadcasts it over the cluster bus.
    assert_eq!((m.redirections, m.write_errors, m.lost, m.delivered), (0, 0, 0, m.expected), "{m:?}");
}

#[test]
fn sharded_on_a_redis_without_spublish_is_refused_before_the_run() {
    // Redis before 7 has no SPUBLISH; this one has it renamed away.
    let server = common::RedisServer::start(&["--rename-command", "SPUBLISH", ""]);
    let o = eventbench(&["run", "--url", &server.url(), "--transport", "sharded", "--duration", "1s", "--quiet"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("needs Redis 7") && err.lines().count() == 1, "{err}");
}
