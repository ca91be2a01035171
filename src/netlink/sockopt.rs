//! The socket options netlink-sys does not wrap: `SO_RCVBUFFORCE`, `SO_RCVBUF`, `SO_RCVTIMEO` (through
//! `nix`) and `SO_MEMINFO` (by hand: neither `nix` nor `socket2` offers it).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

/// `SO_RCVBUFFORCE`: sets the receive buffer past `net.core.rmem_max` (needs CAP_NET_ADMIN).
/// The kernel doubles the value for bookkeeping, as for `SO_RCVBUF`.
pub fn set_rcvbuf_force(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    setsockopt(&fd, sockopt::RcvBufForce, &clamp_int(bytes)).map_err(io::Error::from)
}

/// `SO_RCVBUF`: sets the receive buffer, capped by `net.core.rmem_max`.
pub fn set_rcvbuf(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    setsockopt(&fd, sockopt::RcvBuf, &clamp_int(bytes)).map_err(io::Error::from)
}

/// `SO_RCVTIMEO`: a blocking `recv` returns `EAGAIN` after `timeout`.
pub fn set_recv_timeout(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<()> {
    let tv = TimeVal::new(
        timeout.as_secs() as libc::time_t,
        timeout.subsec_micros() as libc::suseconds_t,
    );
    setsockopt(&fd, sockopt::ReceiveTimeout, &tv).map_err(io::Error::from)
}

/// `bytes` as the kernel's `int`, saturated (nix casts its `usize` to `c_int`, which would wrap).
fn clamp_int(bytes: usize) -> usize {
    bytes.min(libc::c_int::MAX as usize)
}

/// `SO_MEMINFO`'s `SK_MEMINFO_DROPS`: how many messages the kernel dropped for this socket since it
/// was opened (the `Drops` column of `/proc/net/netlink`). For a netlink socket it also counts the
/// notifications dropped *without* an `ENOBUFS`: after an overrun the kernel reports `ENOBUFS` once
/// and then drops every notification silently until the receive queue has been read empty.
///
/// Hand-written: neither `nix` nor `socket2` wraps `SO_MEMINFO` (an array of `SK_MEMINFO_VARS` u32s
/// whose length grows with the kernel), so this is the one raw `getsockopt` of the crate.
#[allow(unsafe_code)] // the getsockopt(2) call below; see its SAFETY comment
pub fn drops(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SK_MEMINFO_VARS is 9 on every kernel since 4.12; newer kernels may add entries (the kernel
    // copies at most `len` bytes), older ones lack SO_MEMINFO (ENOPROTOOPT).
    let mut mem = [0u32; 16];
    let mut len = std::mem::size_of_val(&mem) as libc::socklen_t;
    // SAFETY: `fd` is a live descriptor (borrowed for the call); the pointer and `len` describe
    // `mem`, an array on our stack that outlives the call; the kernel writes at most `len` bytes
    // into it and updates `len`.
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
