//! The disk-cache model behind `powercut-fs`, with no I/O: every inode has a *volatile* view (what
//! the page cache shows) and a *durable* view (what reached the platter).
//!
//! - A file's bytes and size become durable only on `fsync`/`fdatasync` of that file.
//! - A directory's entries (create, mkdir, unlink, rmdir, rename) become durable only on `fsync` of
//!   that directory. A file created and fsynced whose directory was never fsynced afterwards is lost
//!   on a cut, as POSIX allows (and as ext4 does without `auto_da_alloc` luck).
//! - After [`Model::cut`] the disk is gone: every further operation fails with `EIO` and the durable
//!   view is frozen; [`Model::durable_tree`] is what survives.
//!
//! Inodes are never freed while the model lives (an unlinked, still-open file keeps working); the
//! test workloads are small, so this keeps the model simple.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

/// Inode number of the root directory (FUSE's fixed root).
pub const ROOT_INO: u64 = 1;

/// An errno value (`libc::E*`), returned to the kernel as is.
pub type Errno = i32;

/// What an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// One inode with both views.
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Kind,
    pub perm: u16,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub atime: SystemTime,
    /// Volatile file bytes (the page cache).
    pub data: Vec<u8>,
    /// File bytes (and so size) as of the last fsync.
    pub durable_data: Vec<u8>,
    /// Volatile directory entries.
    pub entries: BTreeMap<OsString, u64>,
    /// Directory entries as of the last fsync of this directory.
    pub durable_entries: BTreeMap<OsString, u64>,
}

impl Node {
    fn new(kind: Kind, perm: u16) -> Self {
        let now = SystemTime::now();
        Self {
            kind,
            perm,
            mtime: now,
            ctime: now,
            atime: now,
            data: Vec::new(),
            durable_data: Vec::new(),
            entries: BTreeMap::new(),
            durable_entries: BTreeMap::new(),
        }
    }

    /// Volatile size as the kernel sees it.
    pub fn size(&self) -> u64 {
        match self.kind {
            Kind::File => self.data.len() as u64,
            Kind::Dir => 4096,
        }
    }
}

/// The durable content of a tree: what a power cut leaves on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tree {
    File {
        perm: u16,
        data: Vec<u8>,
    },
    Dir {
        perm: u16,
        entries: BTreeMap<OsString, Tree>,
    },
}

/// Counters of what the model saw, printed by the binary on exit.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub writes: u64,
    pub file_syncs: u64,
    pub dir_syncs: u64,
}

/// The whole filesystem.
#[derive(Debug)]
pub struct Model {
    nodes: BTreeMap<u64, Node>,
    next_ino: u64,
    cut: bool,
    /// Fault hook: treat every change as durable at once (a disk with no cache). A harness run on
    /// such a disk must see no loss even from the negative control, which shows the control's losses
    /// come from the dropped cache.
    write_through: bool,
    /// Fault hook: the disk refuses changes (full, or remounted read-only) until cleared.
    refusal: Option<Refusal>,
    pub stats: Stats,
}

/// Why the disk refuses a change (fault hooks `full` and `read-only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No free space: anything that needs a new block or inode fails with `ENOSPC`; overwrites
    /// inside a file's current size, removals, renames and syncs still work.
    Full,
    /// Remounted read-only: every change fails with `EROFS`; reads and syncs still work.
    ReadOnly,
}

impl Model {
    /// A model whose durable and volatile views both equal `tree` (must be a directory).
    pub fn from_tree(tree: &Tree, write_through: bool) -> Self {
        let mut model = Self {
            nodes: BTreeMap::new(),
            next_ino: ROOT_INO + 1,
            cut: false,
            write_through,
            refusal: None,
            stats: Stats::default(),
        };
        let perm = match tree {
            Tree::Dir { perm, .. } => *perm,
            Tree::File { .. } => 0o755,
        };
        model.nodes.insert(ROOT_INO, Node::new(Kind::Dir, perm));
        if let Tree::Dir { entries, .. } = tree {
            model.load_entries(ROOT_INO, entries);
        }
        model
    }

    fn load_entries(&mut self, dir: u64, entries: &BTreeMap<OsString, Tree>) {
        for (name, sub) in entries {
            let ino = self.alloc();
            let node = match sub {
                Tree::File { perm, data } => {
                    let mut n = Node::new(Kind::File, *perm);
                    n.data = data.clone();
                    n.durable_data = data.clone();
                    n
                }
                Tree::Dir { perm, .. } => Node::new(Kind::Dir, *perm),
            };
            self.nodes.insert(ino, node);
            if let Some(d) = self.nodes.get_mut(&dir) {
                d.entries.insert(name.clone(), ino);
                d.durable_entries.insert(name.clone(), ino);
            }
            if let Tree::Dir { entries, .. } = sub {
                self.load_entries(ino, entries);
            }
        }
    }

    fn alloc(&mut self) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        ino
    }

    fn alive(&self) -> Result<(), Errno> {
        if self.cut {
            Err(libc::EIO)
        } else {
            Ok(())
        }
    }

    /// Sets or clears the refusal fault hook.
    pub fn set_refusal(&mut self, refusal: Option<Refusal>) {
        self.refusal = refusal;
    }

    /// Whether a change may go ahead under the refusal hook; `grows` when it needs new space.
    fn may_change(&self, grows: bool) -> Result<(), Errno> {
        match self.refusal {
            Some(Refusal::ReadOnly) => Err(libc::EROFS),
            Some(Refusal::Full) if grows => Err(libc::ENOSPC),
            _ => Ok(()),
        }
    }

    /// True once the power was cut.
    pub fn is_cut(&self) -> bool {
        self.cut
    }

    /// Cut the power: from now on every operation fails with `EIO`.
    pub fn cut(&mut self) {
        self.cut = true;
    }

    pub fn node(&self, ino: u64) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(libc::ENOENT)
    }

    fn node_mut(&mut self, ino: u64) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn dir_mut(&mut self, ino: u64) -> Result<&mut Node, Errno> {
        let node = self.node_mut(ino)?;
        if node.kind != Kind::Dir {
            return Err(libc::ENOTDIR);
        }
        Ok(node)
    }

    /// Inode of `name` in directory `parent` (volatile view).
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        self.alive()?;
        let dir = self.node(parent)?;
        if dir.kind != Kind::Dir {
            return Err(libc::ENOTDIR);
        }
        dir.entries.get(name).copied().ok_or(libc::ENOENT)
    }

    /// Entries of a directory, sorted by name (volatile view).
    pub fn list(&self, dir: u64) -> Result<Vec<(OsString, u64, Kind)>, Errno> {
        self.alive()?;
        let node = self.node(dir)?;
        if node.kind != Kind::Dir {
            return Err(libc::ENOTDIR);
        }
        Ok(node
            .entries
            .iter()
            .map(|(name, ino)| {
                let kind = self.nodes.get(ino).map_or(Kind::File, |n| n.kind);
                (name.clone(), *ino, kind)
            })
            .collect())
    }

    /// Create a file or directory named `name` in `parent`.
    pub fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        kind: Kind,
        perm: u16,
    ) -> Result<u64, Errno> {
        self.alive()?;
        self.may_change(true)?;
        if self.dir_mut(parent)?.entries.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.alloc();
        self.nodes.insert(ino, Node::new(kind, perm));
        let dir = self.dir_mut(parent)?;
        dir.entries.insert(name.to_owned(), ino);
        dir.mtime = SystemTime::now();
        self.after_dir_change(parent);
        Ok(ino)
    }

    /// Remove `name` from `parent`; `want_dir` selects rmdir semantics.
    pub fn remove(&mut self, parent: u64, name: &OsStr, want_dir: bool) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        self.may_change(false)?;
        let node = self.node(ino)?;
        match (node.kind, want_dir) {
            (Kind::Dir, false) => return Err(libc::EISDIR),
            (Kind::File, true) => return Err(libc::ENOTDIR),
            (Kind::Dir, true) if !node.entries.is_empty() => return Err(libc::ENOTEMPTY),
            _ => {}
        }
        let dir = self.dir_mut(parent)?;
        dir.entries.remove(name);
        dir.mtime = SystemTime::now();
        self.after_dir_change(parent);
        Ok(())
    }

    /// `renameat2` with flags 0 or `RENAME_NOREPLACE`.
    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        self.may_change(false)?;
        let kind = self.node(ino)?.kind;
        if let Ok(target) = self.lookup(new_parent, new_name) {
            if target == ino {
                return Ok(());
            }
            if no_replace {
                return Err(libc::EEXIST);
            }
            let t = self.node(target)?;
            match (kind, t.kind) {
                (Kind::File, Kind::Dir) => return Err(libc::EISDIR),
                (Kind::Dir, Kind::File) => return Err(libc::ENOTDIR),
                (Kind::Dir, Kind::Dir) if !t.entries.is_empty() => return Err(libc::ENOTEMPTY),
                _ => {}
            }
        }
        self.dir_mut(new_parent)?;
        self.dir_mut(parent)?.entries.remove(name);
        self.dir_mut(new_parent)?
            .entries
            .insert(new_name.to_owned(), ino);
        let now = SystemTime::now();
        self.dir_mut(parent)?.mtime = now;
        self.dir_mut(new_parent)?.mtime = now;
        self.after_dir_change(parent);
        self.after_dir_change(new_parent);
        Ok(())
    }

    /// Write `data` at `offset`, zero-filling any gap.
    pub fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<usize, Errno> {
        self.alive()?;
        let node = self.node_mut(ino)?;
        if node.kind != Kind::File {
            return Err(libc::EISDIR);
        }
        let start = usize::try_from(offset).map_err(|_| libc::EFBIG)?;
        let end = start.checked_add(data.len()).ok_or(libc::EFBIG)?;
        let grows = node.data.len() < end;
        self.may_change(grows)?;
        let node = self.node_mut(ino)?;
        if node.data.len() < end {
            node.data.resize(end, 0);
        }
        node.data[start..end].copy_from_slice(data);
        node.mtime = SystemTime::now();
        self.stats.writes += 1;
        self.after_file_change(ino);
        Ok(data.len())
    }

    /// Read up to `size` bytes at `offset` (volatile view).
    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<&[u8], Errno> {
        self.alive()?;
        let node = self.node(ino)?;
        if node.kind != Kind::File {
            return Err(libc::EISDIR);
        }
        let len = node.data.len();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(len);
        let end = start.saturating_add(size as usize).min(len);
        Ok(&node.data[start..end])
    }

    /// Change size and/or permissions (`setattr`).
    pub fn set_attr(
        &mut self,
        ino: u64,
        size: Option<u64>,
        perm: Option<u16>,
    ) -> Result<(), Errno> {
        self.alive()?;
        let grows = size.is_some_and(|n| self.node(ino).is_ok_and(|node| n > node.size()));
        self.may_change(grows)?;
        let node = self.node_mut(ino)?;
        if let Some(size) = size {
            if node.kind != Kind::File {
                return Err(libc::EISDIR);
            }
            let size = usize::try_from(size).map_err(|_| libc::EFBIG)?;
            node.data.resize(size, 0);
            node.mtime = SystemTime::now();
        }
        if let Some(perm) = perm {
            node.perm = perm;
        }
        node.ctime = SystemTime::now();
        self.after_file_change(ino);
        Ok(())
    }

    /// `fsync`/`fdatasync` of a file, or `fsync` of a directory: make that inode durable.
    pub fn sync(&mut self, ino: u64) -> Result<(), Errno> {
        self.alive()?;
        let node = self.node_mut(ino)?;
        match node.kind {
            Kind::File => {
                if node.durable_data != node.data {
                    node.durable_data.clone_from(&node.data);
                }
                self.stats.file_syncs += 1;
            }
            Kind::Dir => {
                node.durable_entries.clone_from(&node.entries);
                self.stats.dir_syncs += 1;
            }
        }
        Ok(())
    }

    fn after_file_change(&mut self, ino: u64) {
        if self.write_through {
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.durable_data.clone_from(&n.data);
            }
        }
    }

    fn after_dir_change(&mut self, ino: u64) {
        if self.write_through {
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.durable_entries.clone_from(&n.entries);
            }
        }
    }

    /// What is on disk after a cut that drops the whole cache: the tree reachable from the root
    /// through durable entries, with durable bytes. A directory reached twice (a cross-directory
    /// rename made durable on both sides) is kept only at its first position.
    pub fn durable_tree(&self) -> Tree {
        let mut seen = std::collections::BTreeSet::new();
        self.durable_subtree(ROOT_INO, &mut seen, &mut None)
    }

    /// What is on disk after a cut during which the disk had written back *part* of its cache:
    /// the same durable entries, but each file's unsynced 4 KiB pages independently reached the
    /// platter or not, and its size is either the durable or the volatile one (a grown size with
    /// unwritten pages reads as zeros). `coin` returns random bits.
    pub fn torn_tree(&self, coin: &mut dyn FnMut() -> u64) -> Tree {
        let mut seen = std::collections::BTreeSet::new();
        self.durable_subtree(ROOT_INO, &mut seen, &mut Some(coin))
    }

    fn durable_subtree(
        &self,
        ino: u64,
        seen: &mut std::collections::BTreeSet<u64>,
        coin: &mut Option<&mut dyn FnMut() -> u64>,
    ) -> Tree {
        let Some(node) = self.nodes.get(&ino) else {
            return Tree::File {
                perm: 0o644,
                data: Vec::new(),
            };
        };
        match node.kind {
            Kind::File => Tree::File {
                perm: node.perm,
                data: match coin {
                    Some(coin) => crate::torn::torn_bytes(&node.durable_data, &node.data, *coin),
                    None => node.durable_data.clone(),
                },
            },
            Kind::Dir => {
                seen.insert(ino);
                let mut entries = BTreeMap::new();
                for (name, child) in &node.durable_entries {
                    let is_dir = self.nodes.get(child).is_some_and(|c| c.kind == Kind::Dir);
                    if is_dir && seen.contains(child) {
                        continue;
                    }
                    entries.insert(name.clone(), self.durable_subtree(*child, seen, coin));
                }
                Tree::Dir {
                    perm: node.perm,
                    entries,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Model {
        Model::from_tree(
            &Tree::Dir {
                perm: 0o755,
                entries: BTreeMap::new(),
            },
            false,
        )
    }

    fn entries(t: &Tree) -> &BTreeMap<OsString, Tree> {
        match t {
            Tree::Dir { entries, .. } => entries,
            Tree::File { .. } => panic!("not a dir"),
        }
    }

    fn file_data(t: &Tree) -> &[u8] {
        match t {
            Tree::File { data, .. } => data,
            Tree::Dir { .. } => panic!("not a file"),
        }
    }

    #[test]
    fn new_file_without_dir_sync_is_lost_even_if_file_synced() {
        let mut m = empty();
        let f = m
            .create(ROOT_INO, OsStr::new("a"), Kind::File, 0o644)
            .unwrap();
        m.write(f, 0, b"hello").unwrap();
        m.sync(f).unwrap();
        assert!(entries(&m.durable_tree()).is_empty());
        m.sync(ROOT_INO).unwrap();
        assert_eq!(
            file_data(&entries(&m.durable_tree())[OsStr::new("a")]),
            b"hello"
        );
    }

    #[test]
    fn unsynced_bytes_and_size_are_dropped() {
        let mut m = empty();
        let f = m
            .create(ROOT_INO, OsStr::new("a"), Kind::File, 0o644)
            .unwrap();
        m.sync(ROOT_INO).unwrap();
        m.write(f, 0, b"durable").unwrap();
        m.sync(f).unwrap();
        m.write(f, 3, b"VOLATILE-TAIL").unwrap();
        assert_eq!(m.read(f, 0, 100).unwrap(), b"durVOLATILE-TAIL");
        assert_eq!(
            file_data(&entries(&m.durable_tree())[OsStr::new("a")]),
            b"durable"
        );
        m.set_attr(f, Some(2), None).unwrap();
        assert_eq!(
            file_data(&entries(&m.durable_tree())[OsStr::new("a")]),
            b"durable"
        );
    }

    #[test]
    fn rename_is_durable_only_after_dir_sync() {
        let mut m = empty();
        let f = m
            .create(ROOT_INO, OsStr::new("tmp"), Kind::File, 0o644)
            .unwrap();
        m.write(f, 0, b"x").unwrap();
        m.sync(f).unwrap();
        m.sync(ROOT_INO).unwrap();
        m.rename(
            ROOT_INO,
            OsStr::new("tmp"),
            ROOT_INO,
            OsStr::new("final"),
            false,
        )
        .unwrap();
        let before: Vec<_> = entries(&m.durable_tree()).keys().cloned().collect();
        assert_eq!(before, vec![OsString::from("tmp")]);
        m.sync(ROOT_INO).unwrap();
        let after: Vec<_> = entries(&m.durable_tree()).keys().cloned().collect();
        assert_eq!(after, vec![OsString::from("final")]);
    }

    #[test]
    fn a_full_disk_refuses_growth_and_a_read_only_one_every_change() {
        let mut m = empty();
        let f = m
            .create(ROOT_INO, OsStr::new("a"), Kind::File, 0o644)
            .unwrap();
        m.write(f, 0, b"abcd").unwrap();
        m.set_refusal(Some(Refusal::Full));
        assert_eq!(m.write(f, 2, b"xyz"), Err(libc::ENOSPC));
        assert_eq!(m.write(f, 0, b"xy"), Ok(2), "an overwrite needs no space");
        assert_eq!(m.set_attr(f, Some(10), None), Err(libc::ENOSPC));
        assert_eq!(
            m.create(ROOT_INO, OsStr::new("b"), Kind::File, 0o644),
            Err(libc::ENOSPC)
        );
        assert_eq!(m.sync(f), Ok(()));
        m.set_refusal(Some(Refusal::ReadOnly));
        assert_eq!(m.write(f, 0, b"x"), Err(libc::EROFS));
        assert_eq!(m.set_attr(f, Some(1), None), Err(libc::EROFS));
        assert_eq!(m.remove(ROOT_INO, OsStr::new("a"), false), Err(libc::EROFS));
        assert_eq!(m.read(f, 0, 4), Ok(&b"xycd"[..]));
        m.set_refusal(None);
        assert_eq!(m.write(f, 4, b"e"), Ok(1));
    }

    #[test]
    fn cut_freezes_everything() {
        let mut m = empty();
        let f = m
            .create(ROOT_INO, OsStr::new("a"), Kind::File, 0o644)
            .unwrap();
        m.cut();
        assert_eq!(m.write(f, 0, b"x"), Err(libc::EIO));
        assert_eq!(m.sync(f), Err(libc::EIO));
        assert_eq!(m.lookup(ROOT_INO, OsStr::new("a")), Err(libc::EIO));
    }

    #[test]
    fn write_through_fault_hook_keeps_everything() {
        let mut m = Model::from_tree(
            &Tree::Dir {
                perm: 0o755,
                entries: BTreeMap::new(),
            },
            true,
        );
        let f = m
            .create(ROOT_INO, OsStr::new("a"), Kind::File, 0o644)
            .unwrap();
        m.write(f, 0, b"kept").unwrap();
        assert_eq!(
            file_data(&entries(&m.durable_tree())[OsStr::new("a")]),
            b"kept"
        );
    }

    #[test]
    fn loaded_tree_round_trips() {
        let mut inner = BTreeMap::new();
        inner.insert(
            OsString::from("f"),
            Tree::File {
                perm: 0o600,
                data: b"abc".to_vec(),
            },
        );
        let mut top = BTreeMap::new();
        top.insert(
            OsString::from("d"),
            Tree::Dir {
                perm: 0o700,
                entries: inner,
            },
        );
        let tree = Tree::Dir {
            perm: 0o755,
            entries: top,
        };
        let m = Model::from_tree(&tree, false);
        assert_eq!(m.durable_tree(), tree);
    }

    #[test]
    fn rmdir_refuses_non_empty_and_rename_no_replace_refuses_existing() {
        let mut m = empty();
        let d = m
            .create(ROOT_INO, OsStr::new("d"), Kind::Dir, 0o755)
            .unwrap();
        m.create(d, OsStr::new("x"), Kind::File, 0o644).unwrap();
        m.create(ROOT_INO, OsStr::new("y"), Kind::File, 0o644)
            .unwrap();
        assert_eq!(
            m.remove(ROOT_INO, OsStr::new("d"), true),
            Err(libc::ENOTEMPTY)
        );
        assert_eq!(
            m.rename(ROOT_INO, OsStr::new("y"), d, OsStr::new("x"), true),
            Err(libc::EEXIST)
        );
        m.rename(ROOT_INO, OsStr::new("y"), d, OsStr::new("x"), false)
            .unwrap();
        assert_eq!(m.lookup(ROOT_INO, OsStr::new("y")), Err(libc::ENOENT));
    }

    #[test]
    fn torn_tree_never_invents_entries() {
        let mut m = empty();
        let f = m
            .create(ROOT_INO, OsStr::new("a"), Kind::File, 0o644)
            .unwrap();
        m.write(f, 0, b"x").unwrap();
        let mut coin = || u64::MAX;
        assert!(entries(&m.torn_tree(&mut coin)).is_empty());
        m.sync(ROOT_INO).unwrap();
        assert_eq!(
            file_data(&entries(&m.torn_tree(&mut coin))[OsStr::new("a")]),
            b"x"
        );
    }
}
