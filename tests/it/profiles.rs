//! Rate profiles: a run's seconds follow its stages, its files and page
//! tell them, and the forms that cannot be followed are refused before
//! anything runs. The count each second sends is exact on virtual time (`paused.rs`).

use crate::common::{assert_bad_input, eventbench, stderr};
use eventbench::rows::{SummaryRow, TimeseriesRow};

fn read<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Vec<T> {
    csv::Reader::from_path(path).unwrap().deserialize().collect::<Result<_, _>>().unwrap()
}

#[test]
fn each_second_sends_what_its_stage_schedules() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    // A ramp from 0, a hold, a silence, a spike: 6 s in all, 2 producers.
    let rate = "0..4k/2s,2k/1s,0/1s,6k/1s,1k/1s";
    let o = eventbench(&[
        "run",
        "--rate",
        rate,
        "--producers",
        "2",
        "--consumers",
        "2",
        "--warmup",
        "300ms",
        "--drain",
        "1s",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let summary: Vec<SummaryRow> = read(&out.join("summary.csv"));
    let s = &summary[0];
    assert_eq!(s.duration_s, 6.0, "the stages set the measured phase");
    assert_eq!(s.delivered + s.lost + s.undelivered, s.expected);
    let ts: Vec<TimeseriesRow> = read(&out.join("timeseries.csv"));
    assert_eq!(ts.len(), 6);
    // Integral of each second: 0..4k over 2 s gives 1,000 then 3,000. What
    // each second sent, exactly that, is `paused::each_second_of_a_profile_sends_its_stages_integral_exactly`.
    let want = [1000.0, 3000.0, 2000.0, 0.0, 6000.0, 1000.0];
    for (r, w) in ts.iter().zip(want) {
        assert_eq!(r.target_rate, w, "second {}", r.second);
    }
    assert_eq!(ts[3].sent, 0, "the silence sends nothing");
    assert_eq!(s.sent, ts.iter().map(|r| r.sent).sum::<u64>());
    assert!((s.target_rate - 13_000.0 / 6.0).abs() < 1e-6, "the mean target: {}", s.target_rate);
    // The page tells the stages; the spike is told with its recovery.
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(page.contains("profile of 5 stages over 6 s"), "{page}");
    assert!(page.contains("Stage 4 (seconds 4–5, hold at 6.0k/s)"), "{page}");
    assert!(
        page.contains("After this spike, p99"),
        "the level before a spike after a silence is the last stage that delivered: {page}"
    );
    let svg = std::fs::read_to_string(out.join("timeline.svg")).unwrap();
    assert!(svg.contains("target/s"), "the timeline draws the target");
    // The written scenario runs again as it was.
    let toml = std::fs::read_to_string(out.join("scenario.toml")).unwrap();
    assert!(toml.contains("rate = \"0..4000/2s,2000/1s,0/1s,6000/1s,1000/1s\""), "{toml}");
    assert!(toml.contains("duration = \"6s\""), "{toml}");
}

#[test]
fn profiles_that_cannot_be_followed_are_refused() {
    assert_bad_input(&["run", "--rate", "1k..20k", "--quiet"], "a ramp needs a length");
    assert_bad_input(&["run", "--rate", "1k/5s,2k/5s", "--duration", "20s", "--quiet"], "duration");
    assert_bad_input(&["run", "--rate", "0/5s", "--quiet"], "sends nothing");
    assert_bad_input(&["run", "--rate", "1k/5s,2k/soon", "--quiet"], "not a duration");
    assert_bad_input(&["capacity", "--rate", "1k/5s", "--slo", "p99_us<1000", "--quiet"], "profile");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("both.toml");
    std::fs::write(&file, "rate = \"1k/2s\"\nduration = \"3s\"\n").unwrap();
    assert_bad_input(&["run", file.to_str().unwrap(), "--quiet"], "duration");
    // The file's duration gives way to a profile on the command line, and says the same when it matches.
    std::fs::write(&file, "rate = \"1k/2s\"\nduration = \"2s\"\nbogus-check = 1\n").unwrap();
    assert_bad_input(&["run", file.to_str().unwrap(), "--quiet"], "bogus-check");
}
