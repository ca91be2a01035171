//! The store's files import each other without a circle, and each starts with a `//!` line saying
//! its one job.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each file of `src/store/` (module name) with the store modules it names outside its test module:
/// `super::x`, `crate::store::x`, `use super::{x, …}`. `mod.rs` (the facade: declarations and
/// re-exports) and the test-only files are left out.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "mod" || name.ends_with("tests") {
            continue;
        }
        files.insert(name, std::fs::read_to_string(&path).unwrap());
    }
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (name, text) in &files {
        // The inline test module (last in a file) is left out.
        let end = [
            "#[cfg(test)]\nmod tests",
            "#[cfg(test)]\npub(crate) mod tests",
        ]
        .iter()
        .filter_map(|m| text.find(m))
        .min()
        .unwrap_or(text.len());
        let text = &text[..end];
        let code: String = text
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let mut deps = BTreeSet::new();
        for prefix in ["super::", "crate::store::"] {
            for (at, _) in code.match_indices(prefix) {
                let rest = &code[at + prefix.len()..];
                let names: Vec<&str> = match rest.strip_prefix('{') {
                    Some(group) => group
                        .split('}')
                        .next()
                        .unwrap_or("")
                        .split(',')
                        .map(|s| s.trim().split("::").next().unwrap_or(""))
                        .collect(),
                    None => vec![rest
                        .split(|c: char| !c.is_alphanumeric() && c != '_')
                        .next()
                        .unwrap_or("")],
                };
                for n in names {
                    if modules.contains(n) && n != name {
                        deps.insert(n.to_string());
                    }
                }
            }
        }
        graph.insert(name.clone(), deps);
    }
    graph
}

#[test]
fn no_file_of_the_store_imports_another_in_a_circle() {
    let graph = imports();
    // The graph, for `cargo test --lib store::layout_tests -- --nocapture`.
    for (file, deps) in &graph {
        let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
        println!("{file:<14} -> {}", deps.join(", "));
    }
    // Depth-first search for a back edge.
    fn visit<'a>(
        g: &'a BTreeMap<String, BTreeSet<String>>,
        n: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(n) {
            return;
        }
        if let Some(at) = path.iter().position(|p| *p == n) {
            panic!("import circle: {} -> {n}", path[at..].join(" -> "));
        }
        path.push(n);
        for d in &g[n] {
            visit(g, d, path, done);
        }
        path.pop();
        done.insert(n);
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        visit(&graph, n, &mut Vec::new(), &mut done);
    }
    assert!(
        graph["layout"].is_empty(),
        "layout.rs imports {:?}",
        graph["layout"]
    );
}

#[test]
fn every_file_of_the_store_starts_with_its_job() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("//! "),
            "{} has no //! first line",
            path.display()
        );
    }
}
