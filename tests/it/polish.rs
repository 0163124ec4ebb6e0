//! What a first-time user meets: scenarios by name, error hints that say
//! what to do, completions and a man page, the README naming every flag.

use crate::common::{self, eventbench, stderr, stdout, RedisServer};

#[test]
fn an_invalid_choice_lists_the_possible_values() {
    for (args, values) in [
        (&["run", "--transport", "kafka"][..], "pubsub, streams, sharded"),
        (&["run", "--format", "xml"][..], "table, json"),
        (&["run", "--subscribe", "all"][..], "channel, pattern"),
        (&["compare", "--transports", "pubsub,kafka"][..], "pubsub, streams, sharded"),
    ] {
        let err = common::assert_bad_input(args, "possible values");
        assert!(err.contains(values), "{args:?}: {err}");
    }
}

#[test]
fn a_shipped_scenario_runs_by_name_from_any_directory() {
    let elsewhere = tempfile::tempdir().unwrap();
    let out = common::bin()
        .current_dir(elsewhere.path())
        .args(["run", "baseline", "--duration", "1s", "--warmup", "0s", "--rate", "200", "--quiet", "--out", "r"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let scenario = std::fs::read_to_string(elsewhere.path().join("r/scenario.toml")).unwrap();
    assert!(scenario.contains("name = \"baseline\""), "{scenario}");
    // Listed from there too, and a name that is neither a file nor shipped says which are.
    let listed = common::bin().current_dir(elsewhere.path()).arg("scenarios").output().unwrap();
    assert!(stdout(&listed).lines().any(|l| l.starts_with("cluster-node-kill")), "{}", stdout(&listed));
    let err = common::assert_bad_input(&["run", "basline"], "basline");
    assert!(err.contains("baseline, cluster-node-kill"), "{err}");
}

#[test]
fn scenarios_of_a_missing_directory_is_bad_input() {
    common::assert_bad_input(&["scenarios", "--dir", "/nonexistent"], "/nonexistent");
}

#[test]
fn a_redis_that_wants_a_password_says_how_to_give_it() {
    let redis = RedisServer::start(&["--requirepass", "s3cret-pw"]);
    let err = common::assert_bad_input(&["run", "--url", &redis.url(), "--duration", "1s"], "NOAUTH");
    for hint in ["REDIS_PASSWORD", "--password", "redis://[USER:]PASSWORD@HOST:PORT"] {
        assert!(err.contains(hint), "{hint} missing: {err}");
    }
    // And the hint works: the same password through the environment runs.
    let out = common::bin()
        .env("REDIS_PASSWORD", "s3cret-pw")
        .args(["run", "--url", &redis.url(), "--duration", "1s", "--warmup", "0s", "--rate", "100", "--quiet"])
        .args(["--out", tempfile::tempdir().unwrap().path().join("r").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn completions_cover_every_subcommand_and_flag() {
    for shell in ["bash", "zsh", "fish"] {
        let out = eventbench(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        for word in ["capacity", "scenarios", "--transports", "--kill-node", "--disconnect", "--slo"] {
            assert!(script.contains(word.trim_start_matches('-')), "{shell}: {word} missing");
        }
    }
    // The bash script is a script bash reads without a syntax error.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), stdout(&eventbench(&["completions", "bash"]))).unwrap();
    let check = std::process::Command::new("bash").arg("-n").arg(file.path()).output().unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    common::assert_bad_input(&["completions", "tcsh"], "possible values");
}

#[test]
fn the_man_pages_are_roff_from_the_same_definitions() {
    let page = stdout(&eventbench(&["man"]));
    assert!(page.starts_with(".ie") || page.contains(".TH eventbench"), "{page}");
    assert!(page.contains("compare") && page.contains("completions"), "{page}");
    let run = stdout(&eventbench(&["man", "run"]));
    assert!(run.contains(".TH eventbench-run") && run.contains("disconnect") && run.contains("1000"), "{run}");
    common::assert_bad_input(&["man", "frobnicate"], "capacity");
}

#[test]
fn compare_refuses_transport_and_report_refuses_an_existing_out() {
    common::assert_bad_input(&["compare", "--transport", "streams"], "--transports");
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let out = common::bin()
        .args(["run", "--duration", "1s", "--warmup", "0s", "--rate", "100", "--quiet", "--format", "json", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // --format json says where the results went.
    assert!(stdout(&out).starts_with("{\"run_id\":"), "summary.csv's column order: {}", stdout(&out));
    let json: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(json["results_dir"].as_str(), run.to_str(), "{json}");
    assert_eq!(json["lost"].as_u64(), Some(0), "{json}");

    let cmp = tmp.path().join("cmp");
    std::fs::create_dir(&cmp).unwrap();
    std::fs::write(cmp.join("compare.html"), "mine").unwrap();
    let run = run.to_str().unwrap();
    common::assert_bad_input(&["report", run, run, "--out", cmp.to_str().unwrap()], "already exists");
    assert_eq!(std::fs::read_to_string(cmp.join("compare.html")).unwrap(), "mine");
}

/// `eventbench report` on a copy of a committed reference run: the page and plot as a newcomer sees them.
fn rebuilt_reference(name: &str, tmp: &std::path::Path) -> (String, String) {
    let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results/reference").join(name);
    let dir = tmp.join(name);
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let out = eventbench(&["report", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let timeline = std::fs::read_to_string(dir.join("timeline.svg")).unwrap();
    (page, timeline)
}

#[test]
fn the_reference_pages_draw_the_node_kill_and_keep_numbers_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let (page, timeline) = rebuilt_reference("cluster-node-kill", tmp.path());
    assert!(timeline.contains("cluster node down"), "the node kill is drawn and named");
    // Tables scroll inside the page instead of widening it.
    assert_eq!(page.matches("<table>").count(), page.matches("<div class=\"scroll\"><table>").count(), "{page}");
    // Every number in a table cell has at most 3 decimals (harness_cpu_pct was 38.33058848714777).
    for cell in page.split("<td").skip(1).map(|c| c.split_once('>').unwrap().1.split("</td>").next().unwrap()) {
        if let Some((_, decimals)) = cell.split_once('.') {
            let digits = decimals.chars().take_while(char::is_ascii_digit).count();
            assert!(digits <= 3 || cell.contains(' ') || cell.contains('T'), "a cell reads {cell}");
        }
    }
    let (page, _) = rebuilt_reference("baseline", tmp.path());
    assert!(page.contains("target 10.0k/s"), "one form of rate");
}
