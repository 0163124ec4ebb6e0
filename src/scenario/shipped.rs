//! The scenario files of `scenarios/`, built into the binary: `eventbench run
//! baseline` finds them by name from any directory, and a binary installed
//! with `cargo install --locked --path .` carries them along.

/// Each shipped scenario: its name (the file's stem) and its TOML, in file-name order.
pub const SHIPPED: &[(&str, &str)] = &[
    ("baseline", include_str!("../../scenarios/baseline.toml")),
    ("cluster-node-kill", include_str!("../../scenarios/cluster-node-kill.toml")),
    ("deep-backlog", include_str!("../../scenarios/deep-backlog.toml")),
    ("disconnect-loss", include_str!("../../scenarios/disconnect-loss.toml")),
    ("fanout", include_str!("../../scenarios/fanout.toml")),
    ("fanout-sweep", include_str!("../../scenarios/fanout-sweep.toml")),
    ("hot-channel", include_str!("../../scenarios/hot-channel.toml")),
    ("morning-ramp", include_str!("../../scenarios/morning-ramp.toml")),
    ("slow-consumer", include_str!("../../scenarios/slow-consumer.toml")),
    ("spike", include_str!("../../scenarios/spike.toml")),
    ("staircase", include_str!("../../scenarios/staircase.toml")),
    ("swarm", include_str!("../../scenarios/swarm.toml")),
];

/// The TOML of the shipped scenario called `name` (`baseline` or `baseline.toml`).
pub fn find(name: &str) -> Option<&'static str> {
    let name = name.strip_suffix(".toml").unwrap_or(name);
    SHIPPED.iter().find(|(n, _)| *n == name).map(|(_, text)| *text)
}

/// The shipped names, for a message that lists them.
pub fn names() -> String {
    SHIPPED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_scenarios_is_built_in_unchanged() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
            .collect();
        files.sort();
        let built_in: Vec<(String, String)> = SHIPPED.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
        assert_eq!(built_in, files, "add the new file of scenarios/ to SHIPPED");
        assert_eq!(find("fanout.toml"), find("fanout"));
        assert!(find("fanout").is_some() && find("nope").is_none());
    }
}
