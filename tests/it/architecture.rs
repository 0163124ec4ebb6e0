//! The map stays true: no module imports one that imports it back, at two
//! scales (the top-level modules of ARCHITECTURE.md's map, and each file of
//! src/), and ARCHITECTURE.md names every top-level module.
//!
//! The guard reads each file whole; only comments and `#[cfg(test)]` items
//! (a `mod tests { ... }` block, found by matching its braces, or a test-only
//! `use` or helper) are left out. Each path is resolved to the file that
//! defines what it names: `crate::`, `super::` (at any depth, also from a
//! module nested in a file), `self::`, a child module's name, use groups
//! (`crate::a::{b, c::d}`), globs, and a name a facade re-exports (`pub use
//! conn::Streams`), followed to the file it comes from. A module naming its
//! own submodules (a `mod.rs` declaring, re-exporting or registering them)
//! is containment, not an import: only the other direction counts.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

/// Who imports whom: a node's successors are what it imports.
type Graph = BTreeMap<String, BTreeSet<String>>;
/// A module's path in the crate: `["drivers", "streams", "conn"]`; `[]` is the crate root.
type ModPath = Vec<String>;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Punct(char),
    /// `::`
    Sep,
}

/// One file, read: its tokens (no comments, no test items) and what it re-exports.
struct File {
    rel: String,
    module: ModPath,
    /// Every path its code names, with the module it was named in (a module nested in the file has its own).
    paths: Vec<(ModPath, Vec<String>)>,
    /// Names its `use` items bring in: what each stands for, in the module it was written in.
    imports: BTreeMap<String, Import>,
    /// Its `use x::*` items.
    globs: Vec<(ModPath, Vec<String>)>,
}

/// What a `use` name stands for: the module it was written in, the path, and whether it is re-exported (`pub use`).
type Import = (ModPath, Vec<String>, bool);

/// The library's files, ready to resolve paths against.
struct Crate {
    files: Vec<File>,
    /// Every module (a file's, or one nested in a file) and the file that holds it.
    holder: BTreeMap<ModPath, usize>,
}

impl Crate {
    /// Reads `src/` of this repository (the library: `main.rs` is the binary's own crate).
    fn from_disk() -> Crate {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut sources = Vec::new();
        let mut todo = vec![src.clone()];
        while let Some(dir) = todo.pop() {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    todo.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
                    if rel != "main.rs" {
                        sources.push((rel, std::fs::read_to_string(&p).unwrap()));
                    }
                }
            }
        }
        Crate::read(sources.iter().map(|(r, t)| (r.as_str(), t.as_str())))
    }

    /// Reads sources given as (path under src/, text).
    fn read<'a>(sources: impl IntoIterator<Item = (&'a str, &'a str)>) -> Crate {
        let mut files = Vec::new();
        let mut holder = BTreeMap::new();
        for (rel, text) in sources {
            let module = module_of(rel);
            let tokens = without_tests(&lex(text));
            let scanned = scan(&module, &tokens);
            holder.insert(module.clone(), files.len());
            for m in scanned.nested {
                holder.insert(m, files.len());
            }
            let (paths, imports, globs) = (scanned.paths, scanned.imports, scanned.globs);
            files.push(File { rel: rel.to_string(), module, paths, imports, globs });
        }
        Crate { files, holder }
    }

    /// The file a path named in `file` (in its module `at`) leads to, or
    /// `None` for a path outside the crate (std, a dependency, a local name).
    fn resolve(&self, file: usize, at: &ModPath, path: &[String], depth: u32) -> Option<usize> {
        let first = path.first()?.as_str();
        if depth > 8 {
            return None;
        }
        let (mut abs, rest): (ModPath, &[String]) = match first {
            "crate" => (Vec::new(), &path[1..]),
            "self" => (at.clone(), &path[1..]),
            "super" => {
                let ups = path.iter().take_while(|s| *s == "super").count();
                (at[..at.len().checked_sub(ups)?].to_vec(), &path[ups..])
            }
            name => {
                let child = [at.clone(), vec![name.to_string()]].concat();
                if self.holder.contains_key(&child) {
                    (at.clone(), path)
                } else {
                    return self.through_use(file, name, &path[1..], depth);
                }
            }
        };
        abs.extend(rest.iter().cloned());
        // The deepest module the path reaches, then the item it names there.
        let k = (0..=abs.len()).rev().find(|k| self.holder.contains_key(&abs[..*k]))?;
        let file = self.holder[&abs[..k]];
        let Some(item) = abs.get(k) else { return Some(file) };
        match self.files[file].imports.get(item) {
            Some((from, target, true)) => self.resolve(file, from, target, depth + 1).or(Some(file)),
            _ => Some(file),
        }
    }

    /// A path whose first name (not a child module) a `use` of `file` brought in: by name, or as a module under a glob.
    fn through_use(&self, file: usize, name: &str, rest: &[String], depth: u32) -> Option<usize> {
        let f = &self.files[file];
        if let Some((from, target, _)) = f.imports.get(name) {
            let whole: Vec<String> = target.iter().chain(rest).cloned().collect();
            return self.resolve(file, from, &whole, depth + 1);
        }
        f.globs.iter().find_map(|(from, prefix)| {
            let module: Vec<String> = prefix.iter().cloned().chain([name.to_string()]).collect();
            let whole: Vec<String> = module.iter().chain(rest).cloned().collect();
            // Only a module the glob brings in: an item would be its own path's file.
            let there = self.resolve(file, from, &module, depth + 1)?;
            self.files[there]
                .module
                .ends_with(&[name.to_string()])
                .then(|| self.resolve(file, from, &whole, depth + 1))?
        })
    }

    /// Which file imports which (files named by their path under src/).
    fn files(&self) -> Graph {
        let mut graph = Graph::new();
        for (i, f) in self.files.iter().enumerate() {
            let deps = graph.entry(f.rel.clone()).or_default();
            for (at, path) in &f.paths {
                let Some(j) = self.resolve(i, at, path, 0) else { continue };
                let to = &self.files[j];
                // A module naming its own submodules contains them.
                if j != i && !to.module.starts_with(&f.module) {
                    deps.insert(to.rel.clone());
                }
            }
        }
        graph
    }

    /// Which top-level module imports which (the crate root left out).
    fn top_level(&self) -> Graph {
        let top = |rel: &str| self.files.iter().find(|f| f.rel == rel).and_then(|f| f.module.first().cloned());
        let mut graph = Graph::new();
        for (from, deps) in self.files() {
            let Some(a) = top(&from) else { continue };
            let out = graph.entry(a.clone()).or_default();
            out.extend(deps.iter().filter_map(|d| top(d)).filter(|b| *b != a));
        }
        graph
    }
}

/// `drivers/streams/conn.rs` → `drivers::streams::conn`; `a/mod.rs` → `a`; `lib.rs` → the root.
fn module_of(rel: &str) -> ModPath {
    let mut parts: ModPath = rel.trim_end_matches(".rs").split('/').map(str::to_owned).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// Tokens of Rust source: identifiers and punctuation; comments, numbers,
/// strings and characters are dropped, except a string that is a path
/// (`#[serde(with = "serial::hist")]`), which is read as one.
fn lex(text: &str) -> Vec<Tok> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let at = |j: usize| c.get(j).copied().unwrap_or('\0');
        match c[i] {
            '/' if at(i + 1) == '/' => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if at(i + 1) == '*' => {
                let mut depth = 0;
                loop {
                    if i >= c.len() {
                        break;
                    } else if c[i] == '/' && at(i + 1) == '*' {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && at(i + 1) == '/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            '"' => {
                let start = i + 1;
                i += 1;
                while i < c.len() && c[i] != '"' {
                    i += if c[i] == '\\' { 2 } else { 1 };
                }
                let s: String = c[start..i.min(c.len())].iter().collect();
                if is_path(&s) {
                    out.extend(lex(&s));
                }
                i += 1;
            }
            'r' | 'b' if raw_string_at(&c, i).is_some() => {
                let (hashes, open) = raw_string_at(&c, i).unwrap();
                let close: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
                let rest: String = c[open..].iter().collect();
                i = open + rest.find(&close).map_or(rest.chars().count(), |b| rest[..b].chars().count()) + close.len();
            }
            '\'' if at(i + 1) == '\\' => {
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            }
            '\'' if at(i + 2) == '\'' => i += 3,
            ch if ch.is_alphabetic() || ch == '_' => {
                let start = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                out.push(Tok::Ident(c[start..i].iter().collect()));
            }
            ch if ch.is_ascii_digit() => {
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
            }
            ':' if at(i + 1) == ':' => {
                out.push(Tok::Sep);
                i += 2;
            }
            ch if ch.is_whitespace() => i += 1,
            ch => {
                out.push(Tok::Punct(ch));
                i += 1;
            }
        }
    }
    out
}

/// At `r"`, `r#"`, `br"`...: the number of `#` and where the text starts
/// (`b"..."` is lexed as `b` and an ordinary string).
fn raw_string_at(c: &[char], i: usize) -> Option<(usize, usize)> {
    if i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    if c.get(j) == Some(&'b') {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = c[j..].iter().take_while(|ch| **ch == '#').count();
    (c.get(j + hashes) == Some(&'"')).then_some((hashes, j + hashes + 1))
}

fn is_path(s: &str) -> bool {
    s.contains("::") && s.split("::").all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
}

/// The tokens without `#[cfg(test)]` items: the attribute, any attributes
/// after it, and the item up to its `;` or its matching closing brace.
fn without_tests(toks: &[Tok]) -> Vec<Tok> {
    let cfg_test: Vec<Tok> = lex("#[cfg(test)]");
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if !toks[i..].starts_with(&cfg_test) {
            out.push(toks[i].clone());
            i += 1;
            continue;
        }
        i += cfg_test.len();
        // Further attributes of the same item.
        while toks.get(i) == Some(&Tok::Punct('#')) {
            i = past_group(toks, i + 1);
        }
        while i < toks.len() {
            match toks[i] {
                Tok::Punct(';') => {
                    i += 1;
                    break;
                }
                Tok::Punct('{') => {
                    i = past_group(toks, i);
                    break;
                }
                Tok::Punct('(' | '[') => i = past_group(toks, i),
                _ => i += 1,
            }
        }
    }
    out
}

/// From an opening `(`, `[` or `{` at `i`: the index after its match.
fn past_group(toks: &[Tok], mut i: usize) -> usize {
    let mut depth = 0i32;
    while i < toks.len() {
        match toks[i] {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// What a file's code names.
#[derive(Default)]
struct Scanned {
    /// Each path, with the module it is named in.
    paths: Vec<(ModPath, Vec<String>)>,
    imports: BTreeMap<String, Import>,
    globs: Vec<(ModPath, Vec<String>)>,
    /// The modules nested in the file (`mod x { ... }`).
    nested: Vec<ModPath>,
}

fn scan(module: &ModPath, toks: &[Tok]) -> Scanned {
    let mut out = Scanned::default();
    // The nested modules open at this point, with the brace depth inside each.
    let mut open: Vec<(String, i32)> = Vec::new();
    let mut depth = 0;
    let ident = |j: usize| match toks.get(j) {
        Some(Tok::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let mut i = 0;
    while i < toks.len() {
        let here: ModPath = module.iter().cloned().chain(open.iter().map(|(m, _)| m.clone())).collect();
        match &toks[i] {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                if open.last().is_some_and(|(_, d)| *d == depth) {
                    open.pop();
                }
                depth -= 1;
            }
            Tok::Ident(k) if k == "mod" && toks.get(i + 2) == Some(&Tok::Punct('{')) => {
                let name = ident(i + 1).unwrap_or_default().to_string();
                out.nested.push([here.clone(), vec![name.clone()]].concat());
                open.push((name, depth + 1));
            }
            Tok::Ident(k) if k == "use" => {
                let public = i > 0 && (ident(i - 1) == Some("pub") || toks[i - 1] == Tok::Punct(')'));
                let mut leaves = Vec::new();
                i = use_tree(toks, i + 1, Vec::new(), &mut leaves);
                for (path, name) in leaves {
                    match name.as_str() {
                        "*" => out.globs.push((here.clone(), path.clone())),
                        _ => drop(out.imports.insert(name, (here.clone(), path.clone(), public))),
                    }
                    out.paths.push((here.clone(), path));
                }
                continue;
            }
            Tok::Ident(first) if toks.get(i + 1) == Some(&Tok::Sep) && (i == 0 || toks[i - 1] != Tok::Sep) => {
                let mut path = vec![first.clone()];
                let mut j = i + 1;
                while toks.get(j) == Some(&Tok::Sep) {
                    match ident(j + 1) {
                        Some(s) => path.push(s.to_string()),
                        None => break,
                    }
                    j += 2;
                }
                out.paths.push((here, path));
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Reads a use tree from `i` (after `use`, or inside a group) under
/// `prefix`; each leaf goes to `out` as (path, the name it brings in).
/// Returns the index after the tree (after the `;` at the top).
fn use_tree(toks: &[Tok], mut i: usize, prefix: Vec<String>, out: &mut Vec<(Vec<String>, String)>) -> usize {
    let mut path = prefix;
    if toks.get(i) == Some(&Tok::Sep) {
        i += 1;
    }
    loop {
        match toks.get(i) {
            Some(Tok::Punct('*')) => {
                out.push((path.clone(), "*".into()));
                i += 1;
                break;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                while !matches!(toks.get(i), Some(Tok::Punct('}')) | None) {
                    i = use_tree(toks, i, path.clone(), out);
                    if toks.get(i) == Some(&Tok::Punct(',')) {
                        i += 1;
                    }
                }
                i += 1;
                break;
            }
            Some(Tok::Ident(s)) if s == "self" && !path.is_empty() => {
                let name = path.last().cloned().unwrap();
                i += 1;
                i = alias(toks, i, path.clone(), name, out);
                break;
            }
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                i += 1;
                if toks.get(i) == Some(&Tok::Sep) {
                    i += 1;
                    continue;
                }
                let name = s.clone();
                i = alias(toks, i, path.clone(), name, out);
                break;
            }
            _ => break,
        }
    }
    if toks.get(i) == Some(&Tok::Punct(';')) {
        i += 1;
    }
    i
}

/// A leaf of a use tree, renamed by `as` if it is.
fn alias(
    toks: &[Tok],
    mut i: usize,
    path: Vec<String>,
    mut name: String,
    out: &mut Vec<(Vec<String>, String)>,
) -> usize {
    if toks.get(i) == Some(&Tok::Ident("as".into())) {
        if let Some(Tok::Ident(n)) = toks.get(i + 1) {
            name = n.clone();
        }
        i += 2;
    }
    out.push((path, name));
    i
}

/// One cycle through each group of nodes that reach one another, as a path
/// from a node back to it (shortest first found; empty when there is none).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let mut found: Vec<Vec<String>> = Vec::new();
    let mut covered: BTreeSet<String> = BTreeSet::new();
    for start in graph.keys() {
        if covered.contains(start) {
            continue;
        }
        // Breadth first from `start`: the shortest way back to it.
        let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
        let mut todo: VecDeque<&String> = VecDeque::from([start]);
        let mut back = None;
        while let Some(m) = todo.pop_front() {
            for d in graph.get(m).into_iter().flatten() {
                if d == start {
                    back = Some(m);
                    break;
                }
                if !came_from.contains_key(d) {
                    came_from.insert(d, m);
                    todo.push_back(d);
                }
            }
            if back.is_some() {
                break;
            }
        }
        let Some(mut m) = back else { continue };
        let mut cycle = vec![start.clone()];
        while m != start {
            cycle.push(m.clone());
            m = came_from[m];
        }
        cycle.push(start.clone());
        let last = cycle.len() - 1;
        cycle[1..last].reverse();
        covered.extend(cycle.iter().cloned());
        found.push(cycle);
    }
    found
}

#[test]
fn no_top_level_module_imports_one_that_imports_it_back() {
    let graph = Crate::from_disk().top_level();
    assert!(graph.len() > 10, "found the modules: {graph:?}");
    let found: Vec<String> = cycles(&graph).iter().map(|c| c.join(" → ")).collect();
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let graph = Crate::from_disk().files();
    assert!(graph.len() > 50, "found the files: {graph:?}");
    let found: Vec<String> = cycles(&graph).iter().map(|c| c.join(" → ")).collect();
    assert!(found.is_empty(), "import cycles between files:\n{}", found.join("\n"));
}

/// The guard can fail: a cycle between two sources is reported, whichever
/// form its paths take, and what is not an import (a comment, a test
/// module, a string, a module naming its own submodules) makes none.
#[test]
fn the_guard_reports_a_cycle_between_two_sources() {
    let facade = "pub mod html;\npub mod stages;\npub mod fmt;\npub use stages::Story;\nfn f() { html::page(); }";
    let html = "use super::fmt::{self, latency};\npub fn page() -> String { super::stages::story() }";
    let quiet = "// super::html::escape, in a comment\n\
                 const S: &str = \"see super::html::escape\";\n\
                 #[cfg(test)]\nmod tests {\n    use super::super::html;\n    fn t() { if true { html::page(); } }\n}\n\
                 pub struct Story;\npub fn story() -> String { String::new() }";
    let files = |stages: &'static str| {
        Crate::read([
            ("report/mod.rs", facade),
            ("report/html.rs", html),
            ("report/fmt.rs", ""),
            ("report/stages.rs", stages),
        ])
        .files()
    };
    assert_eq!(cycles(&files(quiet)), Vec::<Vec<String>>::new(), "{:?}", files(quiet));

    let cycle = vec!["report/html.rs".to_string(), "report/stages.rs".into(), "report/html.rs".into()];
    let forms = [
        "pub fn story() -> String { super::html::escape(\"a\") }",
        "use super::html::escape;",
        "use crate::report::{fmt, html::{self as page}};",
        "mod inner { use super::super::html; }",
        "use super::*;\nfn f() { html::page(); }",
        "#[cfg(test)]\nmod tests {}\nfn f() { crate::report::html::page(); }",
        "/* a /* nested */ comment */ fn f() -> &'static str { let _c = '\\''; page() }\nuse super::html::page;",
    ];
    for form in forms {
        let stages: &'static str = Box::leak(format!("{quiet}\n{form}").into_boxed_str());
        assert_eq!(cycles(&files(stages)), std::slice::from_ref(&cycle), "{form}: {:?}", files(stages));
    }

    // Through a facade's re-export: html names `super::Story`, which stages defines.
    let html_story = "use super::Story;\nfn f() -> Story { Story }";
    let stages_html = "pub struct Story;\nfn g() { super::html::f(); }";
    let g = Crate::read([("report/mod.rs", facade), ("report/html.rs", html_story), ("report/stages.rs", stages_html)]);
    assert_eq!(cycles(&g.files()), [cycle]);

    // Between top-level modules, around a loop of three.
    let g = Crate::read([
        ("a.rs", "use crate::b::x;"),
        ("b/mod.rs", "pub mod x;"),
        ("b/x.rs", "fn f() { crate::c::g() }"),
        ("c.rs", "use super::a;"),
    ]);
    assert_eq!(cycles(&g.top_level()), [vec!["a".to_string(), "b".into(), "c".into(), "a".into()]]);
}

#[test]
fn architecture_md_names_every_module() {
    let map = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md")).unwrap();
    for module in Crate::from_disk().top_level().keys() {
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
