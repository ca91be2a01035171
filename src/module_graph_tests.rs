//! The crate's top-level modules (those `lib.rs` declares) name each other without a circle: a
//! module can be read, and changed, without the modules that depend on it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules declared in `lib.rs` (`mod x;`, `pub mod x;`, `pub(crate) mod x;`).
fn modules(src: &Path) -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.starts_with("//") {
                return None;
            }
            let rest = l.split_once("mod ")?;
            let vis = rest.0.trim();
            let ok = vis.is_empty() || vis == "pub" || vis.starts_with("pub(");
            let name = rest.1.strip_suffix(';')?;
            (ok && !name.ends_with("tests")).then(|| name.to_string())
        })
        .collect()
}

/// The `.rs` files of module `name`: `src/name.rs` and everything under `src/name/`, without the
/// test-only files (`*tests.rs`).
fn files(src: &Path, name: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    let file = src.join(format!("{name}.rs"));
    if file.exists() {
        out.push(file);
    }
    walk(&src.join(name), &mut out);
    out.retain(|p| !p.file_stem().unwrap().to_string_lossy().ends_with("tests"));
    out
}

/// The text without comments and without the modules under `#[cfg(test)]` (a `mod x;` line, or a
/// `mod x { … }` block up to its closing brace).
fn non_test_code(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != "#[cfg(test)]" {
            out.push_str(lines[i]);
            out.push('\n');
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < lines.len() && lines[j].trim_start().starts_with("#[") {
            j += 1;
        }
        let item = lines.get(j).map_or("", |l| l.trim());
        let is_mod = item.starts_with("mod ") || item.starts_with("pub(crate) mod ");
        if !is_mod {
            i += 1;
            continue;
        }
        // Skip to the end of the module: its `;`, or the brace that closes its block.
        let mut depth = 0i32;
        let mut opened = false;
        while j < lines.len() {
            depth += lines[j].matches('{').count() as i32;
            opened |= depth > 0;
            depth -= lines[j].matches('}').count() as i32;
            j += 1;
            if (opened && depth <= 0) || (!opened && lines[j - 1].trim_end().ends_with(';')) {
                break;
            }
        }
        i = j;
    }
    out
}

/// The first path segment of each item a `crate::` mention names: `crate::x::…` gives `x`,
/// `crate::{x::…, y}` gives `x` and `y`.
fn named(after: &str) -> Vec<&str> {
    let ident = |s: &str| -> usize {
        s.find(|c: char| !c.is_alphanumeric() && c != '_')
            .unwrap_or(s.len())
    };
    let Some(group) = after.strip_prefix('{') else {
        return vec![&after[..ident(after)]];
    };
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                out.push(group[start..at].trim());
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(group[start..at].trim());
                start = at + 1;
            }
            _ => {}
        }
    }
    out.into_iter().map(|s| &s[..ident(s)]).collect()
}

/// Each top-level module with the top-level modules its non-test code names through `crate::`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    let mut graph = BTreeMap::new();
    for m in &modules {
        let mut deps = BTreeSet::new();
        for f in files(&src, m) {
            let code = non_test_code(&std::fs::read_to_string(&f).unwrap());
            for (at, _) in code.match_indices("crate::") {
                for n in named(&code[at + "crate::".len()..]) {
                    if modules.contains(n) && n != m {
                        deps.insert(n.to_string());
                    }
                }
            }
        }
        graph.insert(m.clone(), deps);
    }
    graph
}

#[test]
fn no_top_level_module_imports_another_in_a_circle() {
    let graph = graph();
    // The graph, for `cargo test --lib module_graph_tests -- --nocapture`.
    for (m, deps) in &graph {
        let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
        println!("{m:<10} -> {}", deps.join(", "));
    }
    // Depth-first search for a back edge; every circle found is reported.
    fn visit<'a>(
        g: &'a BTreeMap<String, BTreeSet<String>>,
        n: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        circles: &mut Vec<String>,
    ) {
        if done.contains(n) {
            return;
        }
        if let Some(at) = path.iter().position(|p| *p == n) {
            circles.push(format!("{} -> {n}", path[at..].join(" -> ")));
            return;
        }
        path.push(n);
        for d in &g[n] {
            visit(g, d, path, done, circles);
        }
        path.pop();
        done.insert(n);
    }
    let mut done = BTreeSet::new();
    let mut circles = Vec::new();
    for n in graph.keys() {
        visit(&graph, n, &mut Vec::new(), &mut done, &mut circles);
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_graph_sees_the_imports_it_must() {
    // The scanner itself: edges that exist and must be found, in each form it reads.
    let graph = graph();
    assert!(graph["daemon"].contains("store"), "{graph:?}");
    assert!(graph["core"].contains("backoff"), "{graph:?}");
    assert_eq!(named("{a::b, c, d::{e, f}}, g"), ["a", "c", "d"]);
    assert_eq!(named("x::y;"), ["x"]);
    let code = non_test_code(
        "use crate::a;\n#[cfg(test)]\nmod tests {\n    use crate::b;\n}\n#[cfg(test)]\n#[path = \"t.rs\"]\nmod t;\nuse crate::c; // crate::d\n",
    );
    assert!(
        code.contains("crate::a") && code.contains("crate::c"),
        "{code}"
    );
    assert!(
        !code.contains("crate::b") && !code.contains("crate::d"),
        "{code}"
    );
}
