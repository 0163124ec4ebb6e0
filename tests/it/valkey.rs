//! The core set on both servers, Redis and Valkey: Pub/Sub with a
//! disconnect (through `compare --servers`), a slow subscriber cut off by its
//! output-buffer limit, sharded Pub/Sub, and Streams with a disconnect. Each
//! checks the ledgers and that the summary names the server that ran.

use crate::common::{self, both_servers, quick, stderr, valkey_server};
use eventbench::rows::SummaryRow;
use eventbench::scenario::TransportKind;
use eventbench::{Scenario, Status};
use std::collections::BTreeMap;

#[test]
fn compare_puts_redis_and_valkey_side_by_side_on_a_disconnect() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("servers");
    let servers = format!("redis-server,{}", valkey_server().display());
    let o = common::eventbench(&[
        "compare",
        "--servers",
        &servers,
        "--consumers",
        "2",
        "--rate",
        "2000",
        "--duration",
        "2s",
        "--warmup",
        "300ms",
        "--drain",
        "1s",
        "--disconnect",
        "50%@500ms+500ms",
        "--quiet",
        "--out",
        root.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows: Vec<SummaryRow> =
        csv::Reader::from_path(root.join("compare.csv")).unwrap().deserialize().map(Result::unwrap).collect();
    let servers: Vec<&str> = rows.iter().map(|r| r.server.as_str()).collect();
    assert_eq!(servers, ["redis", "valkey"], "one row per server, in order");
    for (r, dir) in rows.iter().zip(["redis-server", "valkey-server"]) {
        let s = common::assert_whole_run_dir(&root.join(dir));
        assert_eq!(&s, r, "compare.csv holds each run's summary");
        assert_eq!(r.status, Status::Ok, "{}: {}", r.server, r.reason);
        assert_eq!(r.delivered + r.lost + r.undelivered, r.expected, "{r:?}");
        assert!(r.lost_unsubscribed > 0 && r.lost_other == 0, "the away consumer missed its messages: {r:?}");
        assert!(r.server_cpu_pct.is_some(), "{r:?}");
    }
    assert!(rows[1].server_version.starts_with('9'), "Valkey's own version, not its redis_version: {:?}", rows[1]);
    let page = std::fs::read_to_string(root.join("compare.html")).unwrap();
    assert!(page.contains("valkey 9.") && page.contains("redis 7."), "runs labelled by server");
    let table = common::stdout(&o);
    assert!(table.contains("valkey") && table.contains("limit"), "{table}");
}

#[tokio::test]
async fn a_slow_subscriber_is_cut_off_by_its_output_buffer_limit_on_both() {
    for (name, binary) in both_servers() {
        let mut redis_config = BTreeMap::new();
        redis_config.insert("client-output-buffer-limit".to_string(), "pubsub 256kb 64kb 5".to_string());
        let s = Scenario {
            consumers: 2,
            slow: Some("50%:200us".parse().unwrap()),
            redis_config,
            redis_server: binary,
            ..quick("slow", 20_000.0, 2.0)
        };
        let r = common::run(s).await;
        let m = &r.summary;
        assert_eq!((m.status, m.server.as_str()), (Status::Ok, name), "{m:?}");
        assert!(r.events.iter().any(|e| e.kind == "server-kill" && e.consumer == 1), "{name}: {:?}", r.events);
        assert!(m.lost_in_buffer > 0 && m.lost_other == 0, "{name}: {m:?}");
        // Output buffers are sampled on both (a point in each second: a buffer
        // that fills to its limit and is cut off within the second may show 0).
        assert!(r.server.iter().all(|x| x.subscriber_omem_max_bytes.is_some()), "{name}: {:?}", r.server);
    }
}

#[tokio::test]
async fn sharded_pubsub_delivers_everything_on_both() {
    for (name, binary) in both_servers() {
        let s = Scenario {
            transport: TransportKind::Sharded,
            consumers: 2,
            channels: 2,
            redis_server: binary,
            ..quick("sharded", 2000.0, 1.0)
        };
        let r = common::run(s).await;
        let m = &r.summary;
        assert_eq!((m.status, m.server.as_str()), (Status::Ok, name), "{m:?}");
        assert_eq!((m.lost, m.delivered), (0, m.expected), "{name}: {m:?}");
        assert!(r.server.iter().any(|x| x.pubsub_shard_channels == Some(2)), "{name}: {:?}", r.server);
    }
}

#[tokio::test]
async fn streams_lose_nothing_to_a_disconnect_on_both() {
    for (name, binary) in both_servers() {
        let s = Scenario {
            transport: TransportKind::Streams,
            consumers: 2,
            disconnect: vec!["50%@300ms+400ms".parse().unwrap()],
            redis_server: binary,
            ..quick("streams", 2000.0, 1.5)
        };
        let r = common::run(s).await;
        let m = &r.summary;
        assert_eq!((m.status, m.server.as_str()), (Status::Ok, name), "{m:?}");
        assert_eq!((m.lost, m.delivered), (0, m.expected), "{name}: the stream kept what the away consumer missed");
        assert!(r.events.iter().any(|e| e.kind == "disconnect"), "{name}: {:?}", r.events);
        assert!(r.server.iter().any(|x| x.stream_length.is_some_and(|l| l > 0)), "{name}: {:?}", r.server);
    }
}

#[test]
fn compare_urls_runs_on_servers_a_user_runs_one_row_each() {
    let (a, b) = (common::RedisServer::start(&[]), common::RedisServer::start(&[]));
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("urls");
    let urls = format!("{},{}", a.url(), b.url());
    let o = common::eventbench(&[
        "compare",
        "--urls",
        &urls,
        "--transports",
        "streams",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--drain",
        "500ms",
        "--quiet",
        "--format",
        "json",
        "--out",
        root.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows: Vec<SummaryRow> = serde_json::from_str(common::stdout(&o).trim()).unwrap();
    assert_eq!(rows.len(), 2);
    for (r, server) in rows.iter().zip([&a, &b]) {
        assert_eq!((r.transport.as_str(), r.server.as_str(), r.lost), ("streams", "redis", 0), "{r:?}");
        assert_eq!(r.url, format!("redis://127.0.0.1:{}", server.port));
        common::assert_whole_run_dir(&root.join(format!("127.0.0.1-{}", server.port)));
    }
}

#[test]
fn compare_servers_refuses_what_it_cannot_do_before_anything_runs() {
    let valkey = valkey_server();
    let both = format!("redis-server,{}", valkey.display());
    for (args, says) in [
        (vec!["--servers", &both, "--url", "redis://127.0.0.1:1"], "leave out --url"),
        (vec!["--servers", &both, "--transports", "pubsub,streams"], "one transport"),
        (vec!["--servers", "redis-server,/nonexistent/valkey-server"], "/nonexistent/valkey-server"),
        (vec!["--urls", "redis://127.0.0.1:1", "--redis-server", "redis-server"], "leave out --redis-server"),
        (vec!["--urls", "redis://127.0.0.1:1", "--servers", "redis-server"], "cannot be used with"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("never");
        let args = [&["compare", "--quiet", "--out", out.to_str().unwrap()], &args[..]].concat();
        common::assert_bad_input(&args, says);
        assert!(!out.exists(), "{args:?}: nothing written");
    }
}
