//! What a reader of a run is told: each assertion's verdict wherever the
//! run's figures go, completions that offer the shipped scenarios, and a man
//! page that says what the exit codes mean.

use crate::common::{eventbench, stderr, stdout};

#[test]
fn every_assertion_leaves_a_verdict_on_the_terminal_in_json_in_a_file_and_on_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("gated");
    let base = ["run", "--duration", "1s", "--warmup", "200ms", "--rate", "500", "--quiet"];
    let gates = ["--assert", "lost==0", "--assert", "sent>1000000"];
    let mut args = base.to_vec();
    args.extend(gates);
    args.extend(["--out", out_dir.to_str().unwrap()]);
    let out = eventbench(&args);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("  assertions  ✓ lost==0 (lost = 0)"), "{text}");
    assert!(text.contains("✗ sent>1000000 (sent = 500)"), "{text}");
    // The file, rebuilt from scenario.toml and summary.csv like the page.
    let csv = std::fs::read_to_string(out_dir.join("assertions.csv")).unwrap();
    assert_eq!(
        csv,
        "assertion,verdict,measured,observed\nlost==0,pass,lost = 0,0.0\nsent>1000000,fail,sent = 500,500.0\n"
    );
    let page = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(page.contains("<h2 id=\"assertions\">Assertions</h2>"), "the page has a section");
    assert!(page.contains("1 of 2 failed (exit code 3)"), "and says what failed");
    assert!(page.contains("href=\"assertions.csv\""), "and links the file");

    // --format json: an `assertions` array beside the summary's columns.
    let json_dir = dir.path().join("json");
    let mut args = base.to_vec();
    args.extend(["--assert", "lost==0", "--format", "json", "--out", json_dir.to_str().unwrap()]);
    let out = eventbench(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["assertions"][0]["assertion"], "lost==0");
    assert_eq!(v["assertions"][0]["verdict"], "pass");
    assert_eq!(v["assertions"][0]["measured"], "lost = 0");

    // Without assertions: an empty array, no file, no section.
    let plain = dir.path().join("plain");
    let mut args = base.to_vec();
    args.extend(["--format", "json", "--out", plain.to_str().unwrap()]);
    let out = eventbench(&args);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["assertions"], serde_json::json!([]));
    assert!(!plain.join("assertions.csv").exists());
}

#[test]
fn completions_offer_the_shipped_scenarios_and_the_man_page_says_what_exits_mean() {
    let bash = stdout(&eventbench(&["completions", "bash"]));
    for (name, _) in eventbench::scenario::shipped::SHIPPED {
        assert!(bash.contains(name), "bash completion lacks {name}");
    }
    let zsh = stdout(&eventbench(&["completions", "zsh"]));
    assert!(zsh.contains("disconnect-loss"), "zsh completion lacks the shipped scenarios");
    let fish = stdout(&eventbench(&["completions", "fish"]));
    for sub in ["run", "compare", "capacity"] {
        let line = fish
            .lines()
            .find(|l| l.contains(&format!("using_subcommand {sub}\" -a \"baseline ")))
            .unwrap_or_else(|| panic!("fish completion offers no scenario names to {sub}:\n{fish}"));
        for (name, _) in eventbench::scenario::shipped::SHIPPED {
            assert!(line.contains(name), "fish completion of {sub} lacks {name}: {line}");
        }
    }
    // A scenario of one's own still parses: the names are offered, not required.
    let out = eventbench(&["run", "/nonexistent/mine.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/mine.toml"), "{}", stderr(&out));

    let man = stdout(&eventbench(&["man"]));
    let section = man.split(".SH \"EXIT STATUS\"").nth(1).expect("an EXIT STATUS section");
    for (code, _) in eventbench::cli::EXIT_STATUS {
        assert!(section.contains(&format!("\\fB{code}\\fR")), "{code} missing from EXIT STATUS:\n{section}");
    }
    let help = stdout(&eventbench(&["--help"]));
    assert!(help.contains("Exit status:") && help.contains("130"), "{help}");
}

#[test]
fn a_shipped_scenarios_path_outside_the_repository_says_to_give_its_name() {
    let elsewhere = tempfile::tempdir().unwrap();
    let out = crate::common::bin()
        .current_dir(elsewhere.path())
        .args(["run", "scenarios/fanout.toml", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "bad input: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("fanout is a shipped scenario") && err.contains("eventbench run fanout"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}
