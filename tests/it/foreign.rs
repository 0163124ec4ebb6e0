//! Foreign traffic: payloads on the benchmark channels that are not this
//! run's messages are counted as `foreign` and never crash a consumer. Then
//! the decoders that read untrusted bytes, property-tested on arbitrary input.

use crate::common::{bin, stderr, wait_exit, RedisServer};
use eventbench::connect::resp;
use eventbench::stats::{ConsumerStats, ThreadStats, Window};
use eventbench::wire::{Header, HEADER_LEN, VERSION};
use proptest::prelude::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Payloads another publisher might send: none is a message of this run.
fn foreign_payloads() -> Vec<Vec<u8>> {
    let header = |producer, channel, seq| {
        let mut b = vec![0u8; 64];
        Header { producer, channel, seq, intended_ns: 1, sent_ns: 1 }.encode(&mut b);
        b
    };
    let mut bad_version = header(0, 0, 0);
    bad_version[2] = VERSION + 1;
    vec![
        b"hello from another publisher".to_vec(),
        Vec::new(),
        header(0, 0, 0)[..HEADER_LEN - 16].to_vec(), // truncated header
        header(u32::MAX, 0, 0),                      // no such producer (and an overflowing index)
        header(0, 999, 0),                           // no such channel
        header(0, 0, u64::MAX),                      // a sequence no producer reaches
        bad_version,
        vec![b'x'; 1 << 20], // 1 MiB: larger than any read buffer
    ]
}

#[test]
fn another_publisher_on_the_benchmark_channels_is_counted_as_foreign() {
    let server = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mut child = bin()
        .args(["run", "--url", &server.url(), "--rate", "1000", "--consumers", "2", "--duration", "2s"])
        .args(["--warmup", "300ms", "--quiet", "--format", "json", "--out"])
        .arg(dir.path().join("run"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let channel = server.wait_for_channels(Duration::from_secs(10)).remove(0);
    let mut con = server.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Both consumers subscribed, so each gets every foreign payload.
    while redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel).query::<(String, u64)>(&mut con).unwrap().1 < 2 {
        assert!(Instant::now() < deadline, "consumers did not subscribe");
        std::thread::sleep(Duration::from_millis(5));
    }
    let payloads = foreign_payloads();
    for p in &payloads {
        let reached: u64 = redis::cmd("PUBLISH").arg(&channel).arg(p).query(&mut con).unwrap();
        assert_eq!(reached, 2);
    }
    let status = wait_exit(&mut child, Duration::from_secs(20));
    let out = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(0), "{}", stderr(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(s["status"], "ok");
    assert_eq!(s["foreign"], payloads.len() as u64 * 2, "{s}");
    assert_eq!((s["lost"].as_u64(), s["delivered"].as_u64()), (Some(0), s["expected"].as_u64()), "{s}");
}

fn window() -> Window {
    Window { start_ns: 1_000, end_ns: 3_000_000_000 }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn header_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        if let Ok(h) = Header::decode(&bytes) {
            // Whatever it accepts re-encodes to the same bytes (the reserved flags byte aside).
            let mut again = [0u8; HEADER_LEN];
            h.encode(&mut again);
            prop_assert_eq!(&again[..3], &bytes[..3]);
            prop_assert_eq!(&again[4..], &bytes[4..HEADER_LEN]);
        }
    }

    #[test]
    fn header_decode_with_our_magic_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..80)) {
        let mut bytes = vec![b'E', b'B', VERSION];
        bytes.extend(tail);
        prop_assert_eq!(Header::decode(&bytes).is_ok(), bytes.len() >= HEADER_LEN);
    }

    #[test]
    fn resp_parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(Some((_, used))) = resp::parse(&bytes) {
            prop_assert!(used > 0 && used <= bytes.len());
        }
    }

    #[test]
    fn resp_parse_never_panics_on_resp_like_bytes(
        tokens in proptest::collection::vec(
            prop::sample::select(vec![
                "*", "$", "+", "-", ":", "\r\n", "\r", "0", "1", "3", "4", "-1", "-7", "99999999999999999",
                "999999999999999999999", "message", "pmessage", "abc",
            ]),
            0..40,
        )
    ) {
        let bytes = tokens.concat().into_bytes();
        if let Ok(Some((_, used))) = resp::parse(&bytes) {
            prop_assert!(used > 0 && used <= bytes.len());
        }
    }

    #[test]
    fn a_consumer_survives_any_payload(
        payload in proptest::collection::vec(any::<u8>(), 0..80),
        magic in any::<bool>(),
        now_ns in any::<u64>(),
    ) {
        let mut payload = payload;
        if magic && payload.len() >= 3 {
            payload[..3].copy_from_slice(&[b'E', b'B', VERSION]);
        }
        let w = window();
        let mut thread = ThreadStats::new(&w);
        let mut c = ConsumerStats::new(0, 2, 3);
        let first = c.record(&payload, now_ns, &w, &mut thread);
        // Once more: a duplicate, or foreign again.
        let second = c.record(&payload, now_ns, &w, &mut thread);
        prop_assert!(!second);
        prop_assert_eq!(c.delivered, first as u64);
        prop_assert!(c.foreign == 0 || c.foreign == 2);
    }

    #[test]
    fn assertions_never_panic(text in "\\PC{0,40}") {
        let _ = text.parse::<eventbench::assertion::Assertion>();
    }

    #[test]
    fn url_errors_never_show_the_password(
        password in "[A-Za-z0-9!$&()*+,;=._~-]{1,12}",
        rest in "[ -~]{0,20}",
    ) {
        let secret = format!("SECRET{password}");
        for url in [format!("redis://u:{secret}@{rest}"), format!("u:{secret}@{rest}"), format!("rediss://:{secret}@h:{rest}")] {
            if let Err(e) = eventbench::connect::parse_url(&url) {
                prop_assert!(!e.contains(&secret), "{}", e);
            }
            prop_assert!(!eventbench::connect::redact_url(&url).contains(&secret));
        }
    }
}

/// Every key of a scenario file, for the fuzzers below.
const SCENARIO_KEYS: &[&str] = &[
    "name",
    "description",
    "transport",
    "url",
    "producers",
    "consumers",
    "channels",
    "rate",
    "payload",
    "duration",
    "warmup",
    "drain",
    "disconnect",
    "threads",
    "connect-timeout",
    "slow",
    "reconnect",
    "subscribe",
    "user",
    "tls-ca",
    "tls-insecure",
    "assert",
    "redis-config",
    "maxlen",
    "groups",
    "crash",
    "claim-idle",
    "replay-at",
    "cluster",
    "private-cluster",
    "kill-node",
    "redis-server",
    "bogus",
];

/// A value a scenario file might hold for any key: numbers at their edges,
/// the forms the keys read (`10s`, `50%@1s+1s`, `25%:1ms`, `p99_us<1`), and noise.
fn toml_value() -> impl Strategy<Value = toml::Value> {
    let text = prop_oneof![
        "\\PC{0,30}",
        "[0-9]{1,25}(ns|us|ms|s|m|h|d|w|y|years)?",
        "-?[0-9.]{1,6}%[@:][0-9]{1,20}[a-z]{0,2}(\\+[0-9]{1,20}[a-z]{0,2})?",
        "[a-z_]{1,12}(<|<=|==|>|!=)[-0-9.e()*/+a-z_]{0,12}",
        "rediss?://[a-z:*@0-9.\\[\\]]{0,20}",
    ];
    let leaf = prop_oneof![
        text.prop_map(toml::Value::String),
        any::<i64>().prop_map(toml::Value::Integer),
        prop::sample::select(vec![0.0, -1.0, 1e19, 1e300, f64::INFINITY, f64::NAN, 0.5, 1e-300])
            .prop_map(toml::Value::Float),
        any::<f64>().prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            proptest::collection::btree_map("[a-z-]{1,12}", inner, 0..3)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

/// Everything a scenario that parsed can be asked: it validates (or not), is
/// written back, and reads back as itself; nothing panics.
fn exercise(s: eventbench::Scenario) -> Result<(), TestCaseError> {
    let valid = s.validate().is_ok();
    let _ = eventbench::drivers::check(&s, false);
    let written = s.to_toml();
    if let Ok(back) = eventbench::Scenario::from_toml(&written) {
        if valid && s.redis_config.keys().all(|k| !eventbench::scenario::is_secret_config_key(k)) {
            prop_assert_eq!(back, s);
        }
    }
    Ok(())
}

proptest! {
    // Fuzzing that runs in `cargo test`: a few hundred cases, a second or two.
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_scenario_parser_never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        if let Ok(s) = eventbench::Scenario::from_toml(&text) {
            exercise(s)?;
        }
    }

    #[test]
    fn the_scenario_parser_never_panics_on_toml_like_text(
        lines in proptest::collection::vec(
            (prop::sample::select(SCENARIO_KEYS.to_vec()), "[ =\"\\[\\]{},.0-9a-z%@:+<-]{0,30}"),
            0..6,
        )
    ) {
        let text: String = lines.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        if let Ok(s) = eventbench::Scenario::from_toml(&text) {
            exercise(s)?;
        }
    }

    #[test]
    fn any_value_for_any_key_is_read_or_refused_never_a_panic(
        entries in proptest::collection::vec((prop::sample::select(SCENARIO_KEYS.to_vec()), toml_value()), 1..5)
    ) {
        let table: toml::Table = entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let Ok(text) = toml::to_string(&table) else { return Ok(()) };
        if let Ok(s) = eventbench::Scenario::from_toml(&text) {
            exercise(s)?;
        }
    }

    #[test]
    fn the_assert_grammar_never_panics_and_checks_what_it_accepts(
        tokens in proptest::collection::vec(
            prop::sample::select(vec![
                "p99_us", "lost", "delivery_rate", "target_rate", "sent", "status", "x", "_", "<", "<=", ">", ">=",
                "==", "!=", "=", "!", "+", "-", "*", "/", "(", ")", "0", "1", ".", "1e5", "0.99", "99999999999999999999",
                " ", "\t", "é", "%", "#",
            ]),
            0..30,
        )
    ) {
        let text = tokens.concat();
        if let Ok(a) = text.parse::<eventbench::assertion::Assertion>() {
            let v = a.check(&eventbench::rows::SummaryRow::default());
            prop_assert!(v.line.starts_with(&a.to_string()));
            // What it accepts reads back the same (scenario.toml writes it so).
            let again = a.to_string().parse::<eventbench::assertion::Assertion>();
            prop_assert!(again.is_ok());
        }
    }
}
