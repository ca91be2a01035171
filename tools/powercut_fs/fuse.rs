//! The FUSE face of the model: translates fuser's callbacks into [`Model`] calls.
//!
//! No writeback cache is requested, so every `write(2)` reaches [`Model::write`] before the
//! syscall returns; flock and POSIX locks are left to the kernel (local locks), which is what sled's
//! `try_lock_exclusive` needs.

use std::ffi::OsStr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::model::{Kind, Model, Node};

const TTL: Duration = Duration::from_secs(1);

/// A fault hook: while set, every `fsync` blocks (a hung disk) until released.
#[derive(Debug, Default)]
pub struct FsyncGate {
    hung: Mutex<bool>,
    wake: Condvar,
}

impl FsyncGate {
    pub fn set(&self, hung: bool) {
        *self.hung.lock().unwrap_or_else(|p| p.into_inner()) = hung;
        self.wake.notify_all();
    }

    fn pass(&self) {
        let mut g = self.hung.lock().unwrap_or_else(|p| p.into_inner());
        while *g {
            g = self.wake.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The mounted filesystem; the model is shared with the signal thread that cuts the power.
pub struct PowercutFs {
    model: Arc<Mutex<Model>>,
    gate: Arc<FsyncGate>,
}

impl PowercutFs {
    pub fn new(model: Arc<Mutex<Model>>, gate: Arc<FsyncGate>) -> Self {
        Self { model, gate }
    }

    fn lock(&self) -> MutexGuard<'_, Model> {
        // A panic while holding the lock cannot leave the model half-updated in a way that matters
        // for a test filesystem; keep serving.
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn errno(e: i32) -> Errno {
    Errno::from_i32(e)
}

fn attr(ino: u64, node: &Node) -> FileAttr {
    let size = node.size();
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: node.atime,
        mtime: node.mtime,
        ctime: node.ctime,
        crtime: node.ctime,
        kind: file_type(node.kind),
        perm: node.perm,
        nlink: if node.kind == Kind::Dir { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
    }
}

fn perm_bits(mode: u32, umask: u32) -> u16 {
    // Masked to 12 bits, so the cast cannot truncate.
    (mode & !umask & 0o7777) as u16
}

impl PowercutFs {
    fn entry_of(&self, model: &Model, ino: u64, reply: ReplyEntry) {
        match model.node(ino) {
            Ok(node) => reply.entry(&TTL, &attr(ino, node), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }
}

impl Filesystem for PowercutFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let model = self.lock();
        match model.lookup(parent.0, name) {
            Ok(ino) => self.entry_of(&model, ino, reply),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let model = self.lock();
        match model.node(ino.0) {
            Ok(node) => reply.attr(&TTL, &attr(ino.0, node)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut model = self.lock();
        let res = model.set_attr(ino.0, size, mode.map(|m| perm_bits(m, 0)));
        match res.and_then(|()| model.node(ino.0)) {
            Ok(node) => reply.attr(&TTL, &attr(ino.0, node)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut model = self.lock();
        match model.create(parent.0, name, Kind::Dir, perm_bits(mode, umask)) {
            Ok(ino) => self.entry_of(&model, ino, reply),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            reply.error(Errno::EPERM);
            return;
        }
        let mut model = self.lock();
        match model.create(parent.0, name, Kind::File, perm_bits(mode, umask)) {
            Ok(ino) => self.entry_of(&model, ino, reply),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut model = self.lock();
        let ino = match model.create(parent.0, name, Kind::File, perm_bits(mode, umask)) {
            Ok(ino) => ino,
            Err(libc::EEXIST) if flags & libc::O_EXCL == 0 => match model.lookup(parent.0, name) {
                Ok(ino) => ino,
                Err(e) => return reply.error(errno(e)),
            },
            Err(e) => return reply.error(errno(e)),
        };
        if flags & libc::O_TRUNC != 0 {
            if let Err(e) = model.set_attr(ino, Some(0), None) {
                return reply.error(errno(e));
            }
        }
        match model.node(ino) {
            Ok(node) => reply.created(
                &TTL,
                &attr(ino, node),
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.lock().remove(parent.0, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.lock().remove(parent.0, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            reply.error(Errno::EINVAL);
            return;
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        match self
            .lock()
            .rename(parent.0, name, newparent.0, newname, no_replace)
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut model = self.lock();
        let res = model.node(ino.0).map(|_| ());
        // O_TRUNC reaches open() only with atomic_o_trunc, which is not requested; handle it anyway.
        let res = res.and_then(|()| {
            if flags.0 & libc::O_TRUNC != 0 {
                model.set_attr(ino.0, Some(0), None)
            } else {
                Ok(())
            }
        });
        match res {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.lock().read(ino.0, offset, size) {
            Ok(data) => reply.data(data),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.lock().write(ino.0, offset, data) {
            // FUSE never sends more than max_write (well under 4 GiB) in one request.
            Ok(n) => reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) is not a durability point.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Blocks the whole filesystem while hung (the session is single-threaded): a hung disk.
        self.gate.pass();
        match self.lock().sync(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.lock().node(ino.0) {
            Ok(n) if n.kind == Kind::Dir => reply.opened(FileHandle(0), FopenFlags::empty()),
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let list = match self.lock().list(ino.0) {
            Ok(l) => l,
            Err(e) => return reply.error(errno(e)),
        };
        // Offsets: 1 = ".", 2 = "..", 3.. = entries; the parent is reported as the root (FUSE
        // resolves ".." itself).
        let mut all = vec![
            (".".into(), ino.0, Kind::Dir),
            ("..".into(), crate::model::ROOT_INO, Kind::Dir),
        ];
        all.extend(list);
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (name, child, kind)) in all.into_iter().enumerate().skip(start) {
            if reply.add(INodeNo(child), (i + 1) as u64, file_type(kind), &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Blocks the whole filesystem while hung (the session is single-threaded): a hung disk.
        self.gate.pass();
        match self.lock().sync(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // A 4 GiB disk, mostly free; the model keeps everything in memory anyway.
        reply.statfs(1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        match self.lock().node(ino.0) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EOPNOTSUPP);
    }
}
