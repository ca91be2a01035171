//! The product stands alone: nothing in its sources, docs or packaging refers to the design notes it
//! was built from outside this repository.

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn no_reference_to_outside_notes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    for d in ["src", "tools", "docs", "deploy", "migrations", ".ci"] {
        files(&root.join(d), &mut all);
    }
    all.extend(["README.md", "Cargo.toml"].map(|f| root.join(f)));
    let needles = [format!("../{}", "shared"), format!("{}/spec", "shared")];
    let hits: Vec<String> = all
        .iter()
        .filter_map(|p| Some((p, std::fs::read_to_string(p).ok()?)))
        .flat_map(|(p, text)| {
            text.lines()
                .enumerate()
                .filter(|(_, l)| needles.iter().any(|n| l.contains(n.as_str())))
                .map(|(i, l)| format!("{}:{}: {l}", p.display(), i + 1))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(hits.is_empty(), "{hits:#?}");
}
