//! The backing directory: the "platter". Loaded once at mount, replaced with the durable tree at a
//! power cut or unmount. Plain files and directories only.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::model::Tree;

/// Read `dir` into a tree; a missing directory is an empty disk.
pub fn load(dir: &Path) -> io::Result<Tree> {
    match fs::metadata(dir) {
        Ok(_) => load_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Tree::Dir {
            perm: 0o755,
            entries: BTreeMap::new(),
        }),
        Err(e) => Err(e),
    }
}

fn perm_of(meta: &fs::Metadata) -> u16 {
    // The mask keeps the value within 12 bits, so the cast cannot truncate.
    (meta.permissions().mode() & 0o7777) as u16
}

fn load_dir(dir: &Path) -> io::Result<Tree> {
    let meta = fs::metadata(dir)?;
    let mut entries = BTreeMap::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let ft = entry.file_type()?;
        if ft.is_dir() {
            entries.insert(entry.file_name(), load_dir(&path)?);
        } else if ft.is_file() {
            let meta = entry.metadata()?;
            entries.insert(
                entry.file_name(),
                Tree::File {
                    perm: perm_of(&meta),
                    data: fs::read(&path)?,
                },
            );
        } else {
            tracing::warn!(path = %path.display(), "skipping entry that is neither file nor directory");
        }
    }
    Ok(Tree::Dir {
        perm: perm_of(&meta),
        entries,
    })
}

/// Replace `dir` with `tree`: written beside it, then swapped in by rename.
pub fn persist(tree: &Tree, dir: &Path) -> io::Result<()> {
    let staging = sibling(dir, "staging");
    let old = sibling(dir, "old");
    for p in [&staging, &old] {
        if p.exists() {
            fs::remove_dir_all(p)?;
        }
    }
    write_tree(tree, &staging)?;
    if dir.exists() {
        fs::rename(dir, &old)?;
    }
    fs::rename(&staging, dir)?;
    if old.exists() {
        fs::remove_dir_all(&old)?;
    }
    Ok(())
}

fn sibling(dir: &Path, tag: &str) -> PathBuf {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "backing".into());
    name.push(format!(".powercut-{tag}"));
    dir.with_file_name(name)
}

fn write_tree(tree: &Tree, path: &Path) -> io::Result<()> {
    match tree {
        Tree::File { perm, data } => {
            fs::write(path, data)?;
            fs::set_permissions(path, fs::Permissions::from_mode(u32::from(*perm)))
        }
        Tree::Dir { perm, entries } => {
            fs::create_dir(path)?;
            for (name, sub) in entries {
                write_tree(sub, &path.join(name))?;
            }
            fs::set_permissions(path, fs::Permissions::from_mode(u32::from(*perm)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persist_then_load_round_trips_and_replaces_old_content() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("disk");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("stale"), b"gone after persist").unwrap();
        let mut sub = BTreeMap::new();
        sub.insert(
            "db".into(),
            Tree::File {
                perm: 0o644,
                data: vec![1, 2, 3],
            },
        );
        let mut top = BTreeMap::new();
        top.insert(
            "data".into(),
            Tree::Dir {
                perm: 0o755,
                entries: sub,
            },
        );
        let tree = Tree::Dir {
            perm: 0o755,
            entries: top,
        };
        persist(&tree, &dir).unwrap();
        assert_eq!(load(&dir).unwrap(), tree);
    }

    #[test]
    fn missing_dir_is_an_empty_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let t = load(&tmp.path().join("nope")).unwrap();
        assert_eq!(
            t,
            Tree::Dir {
                perm: 0o755,
                entries: BTreeMap::new()
            }
        );
    }
}
