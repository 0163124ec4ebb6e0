//! The map stays true: no two top-level modules of the library import each
//! other (directly or around a loop), and ARCHITECTURE.md names every module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module of src/ and the top-level modules its code names
/// as `crate::x` (tests and comments left out).
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel.iter().next().unwrap().to_string_lossy().trim_end_matches(".rs").to_string();
        if top == "main" || top == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        let deps = graph.entry(top.clone()).or_default();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for part in line.split("crate::").skip(1) {
                let name: String = part.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                if !name.is_empty() && name != top {
                    deps.insert(name);
                }
            }
        }
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    graph.values_mut().for_each(|d| d.retain(|m| modules.contains(m)));
    graph
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = imports();
    assert!(graph.len() > 10, "found the modules: {graph:?}");
    // A module that reaches itself through its imports is in a cycle.
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<(String, Vec<String>)> =
            graph[start].iter().map(|d| (d.clone(), vec![start.clone(), d.clone()])).collect();
        while let Some((m, p)) = todo.pop() {
            assert_ne!(&m, start, "module cycle: {}", p.join(" → "));
            if seen.insert(m.clone()) {
                todo.extend(graph[&m].iter().map(|d| (d.clone(), [p.clone(), vec![d.clone()]].concat())));
            }
        }
    }
}

#[test]
fn architecture_md_names_every_module() {
    let map = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md")).unwrap();
    for module in imports().keys() {
        assert!(map.contains(module.as_str()), "ARCHITECTURE.md does not mention src/{module}");
    }
}

#[test]
fn no_module_outside_drivers_and_scenario_names_a_transport() {
    // A transport declares what it does (its `Registration`); everything else
    // asks it, so a new transport needs no change elsewhere.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut todo = vec![src.clone()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            match p.is_dir() {
                true => todo.push(p),
                false if p.extension().is_some_and(|x| x == "rs") => files.push(p),
                false => {}
            }
        }
    }
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel.iter().next().unwrap().to_string_lossy().into_owned();
        if top == "drivers" || top == "scenario" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            assert!(
                !line.contains("TransportKind::"),
                "{}:{}: names a transport: {}",
                rel.display(),
                n + 1,
                line.trim()
            );
        }
    }
}
