//! The socket options netlink-sys does not wrap: `SO_RCVBUFFORCE`, `SO_RCVTIMEO` and `SO_MEMINFO`.
//!
//! They need `libc::setsockopt`/`getsockopt`, which are `unsafe` because they take raw pointers; std
//! offers no safe way to use options on an arbitrary file descriptor.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Sets an integer-valued `SOL_SOCKET` option.
fn set_int(fd: BorrowedFd<'_>, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `fd` is a live descriptor (borrowed for the call); the pointer and length describe
    // `value`, a c_int on our stack that outlives the call; the kernel only reads from it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SO_RCVBUFFORCE`: sets the receive buffer past `net.core.rmem_max` (needs CAP_NET_ADMIN).
/// The kernel doubles the value for bookkeeping, as for `SO_RCVBUF`.
pub fn set_rcvbuf_force(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    set_int(fd, libc::SO_RCVBUFFORCE, clamp_int(bytes))
}

/// `SO_RCVBUF`: sets the receive buffer, capped by `net.core.rmem_max`.
pub fn set_rcvbuf(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    set_int(fd, libc::SO_RCVBUF, clamp_int(bytes))
}

/// `SO_RCVTIMEO`: a blocking `recv` returns `EAGAIN` after `timeout`.
pub fn set_recv_timeout(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: `fd` is a live descriptor; the pointer and length describe `tv`, a timeval on our stack
    // that outlives the call; the kernel only reads from it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn clamp_int(bytes: usize) -> libc::c_int {
    libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX)
}

/// `SO_MEMINFO`'s `SK_MEMINFO_DROPS`: how many messages the kernel dropped for this socket since it
/// was opened (the `Drops` column of `/proc/net/netlink`). For a netlink socket it also counts the
/// notifications dropped *without* an `ENOBUFS`: after an overrun the kernel reports `ENOBUFS` once
/// and then drops every notification silently until the receive queue has been read empty.
pub fn drops(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SK_MEMINFO_VARS is 9 on every kernel since 4.12; newer kernels may add entries (the kernel
    // copies at most `len` bytes), older ones lack SO_MEMINFO (ENOPROTOOPT).
    let mut mem = [0u32; 16];
    let mut len = std::mem::size_of_val(&mem) as libc::socklen_t;
    // SAFETY: `fd` is a live descriptor; the pointer and `len` describe `mem`, an array on our stack
    // that outlives the call; the kernel writes at most `len` bytes into it and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            mem.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let idx = libc::SK_MEMINFO_DROPS as usize;
    if (len as usize) < (idx + 1) * std::mem::size_of::<u32>() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_MEMINFO without SK_MEMINFO_DROPS",
        ));
    }
    Ok(mem[idx])
}
