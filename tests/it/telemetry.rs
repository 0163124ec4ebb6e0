//! Server telemetry: `server.csv` second by second, the summary's server
//! columns, the switch that turns it off, and reports of runs without it.

use crate::common::{self, bin, quick, stderr};
use eventbench::rows::{Limit, ServerRow};
use eventbench::scenario::TransportKind;
use eventbench::{Scenario, Status};

#[tokio::test]
async fn a_pubsub_run_says_what_the_server_did_each_second() {
    let s = Scenario { consumers: 2, channels: 3, ..quick("telemetry", 2000.0, 2.0) };
    let r = common::run(s).await;
    assert_eq!(r.summary.status, Status::Ok, "{}", r.summary.reason);
    let seconds: Vec<u32> = r.server.iter().map(|x| x.second).collect();
    assert!(seconds.starts_with(&[0, 1]), "one row per second from the phase's start: {seconds:?}");
    assert!(r.server.iter().all(|x| x.node == 0));
    for row in r.server.iter().filter(|x| x.second < 2) {
        let ServerRow { server_cpu_pct, commands_per_s, pubsub_channels, subscriber_omem_bytes, .. } = row;
        assert!(server_cpu_pct.is_some_and(|c| c > 0.0 && c < 400.0), "{row:?}");
        // 2,000 PUBLISH a second, and a few of eventbench's own.
        assert!(commands_per_s.is_some_and(|c| (1500.0..4000.0).contains(&c)), "{row:?}");
        assert_eq!(*pubsub_channels, Some(3), "{row:?}");
        assert!(subscriber_omem_bytes.is_some() && row.stream_length.is_none(), "{row:?}");
        assert!(row.connected_clients.is_some(), "{row:?}");
    }
    // The last second's sample may come as the swarm closes its connections; the first's does not.
    assert!(
        r.server[0].connected_clients.is_some_and(|c| c >= 4),
        "producer, 2 consumers, the sampler: {:?}",
        r.server
    );
    let m = &r.summary;
    assert_eq!(m.server, "redis");
    assert!(m.server_version.starts_with(char::is_numeric), "{m:?}");
    let mean = m.server_cpu_pct.expect("sampled");
    assert!(mean > 0.0 && mean <= m.server_cpu_max_pct.unwrap(), "{m:?}");
    assert!(m.server_memory_peak_bytes.is_some_and(|b| b > 100_000), "{m:?}");
    assert_ne!(m.limit, Limit::Server, "2,000 messages a second leave Redis idle: {m:?}");
    assert_eq!(m.limit == Limit::Harness, m.harness_limited, "{m:?}");
}

#[tokio::test]
async fn a_streams_run_samples_its_streams_and_groups() {
    let s = Scenario {
        transport: TransportKind::Streams,
        consumers: 2,
        channels: 2,
        groups: 1,
        // One member stops for good: what it held stays pending in the group.
        crash: vec!["50%@500ms".parse().unwrap()],
        ..quick("telemetry-streams", 1000.0, 2.0)
    };
    let r = common::run(s).await;
    let measured: Vec<&ServerRow> = r.server.iter().filter(|x| x.second < 2).collect();
    assert_eq!(measured.len(), 2, "{:?}", r.server);
    for row in &measured {
        // The streams grow by 1,000 entries a second (nothing trims them).
        assert!(row.stream_length.is_some_and(|l| l >= 300), "{row:?}");
        assert!(row.group_pending.is_some() && row.group_lag.is_some(), "{row:?}");
        assert_eq!(row.subscriber_omem_bytes, None, "no subscribers on Streams: {row:?}");
    }
    assert!(measured[1].stream_length > measured[0].stream_length, "{measured:?}");
    assert_eq!(r.summary.server, "redis");
}

#[test]
fn telemetry_off_sends_nothing_and_a_run_without_server_csv_still_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("off");
    let o = bin()
        .args(["run", "--duration", "1s", "--warmup", "200ms", "--drain", "300ms", "--quiet"])
        .args(["--server-telemetry", "off", "--out", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = common::assert_whole_run_dir(&dir);
    assert_eq!((s.server.as_str(), s.server_cpu_pct, s.limit == Limit::Server), ("", None, false), "{s:?}");
    let server = std::fs::read_to_string(dir.join("server.csv")).unwrap();
    assert_eq!(server.lines().count(), 1, "only the header: {server}");
    assert!(server.starts_with("second,node,server_cpu_pct,"), "{server}");
    let scenario = std::fs::read_to_string(dir.join("scenario.toml")).unwrap();
    assert!(scenario.contains("server-telemetry = false"), "{scenario}");

    // Results written before server telemetry: no server.csv, no server columns.
    std::fs::remove_file(dir.join("server.csv")).unwrap();
    let summary = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    let mut lines = summary.lines();
    let (header, row) = (lines.next().unwrap(), lines.next().unwrap());
    let keep = header.split(',').position(|c| c == "server").unwrap();
    let cut = |l: &str| l.split(',').take(keep).collect::<Vec<_>>().join(",");
    std::fs::write(dir.join("summary.csv"), format!("{}\n{}\n", cut(header), cut(row))).unwrap();
    let o = bin().args(["report", dir.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(page.contains("The server did not say what it is"), "the page says what it does not know");
}

#[test]
fn a_bad_server_telemetry_value_is_refused_up_front() {
    common::assert_bad_input(&["run", "--server-telemetry", "sometimes"], "server-telemetry");
}
