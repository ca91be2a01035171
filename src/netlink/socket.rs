//! The rtnetlink link socket: multicast `RTNLGRP_LINK` notifications plus link dumps on one socket,
//! and a one-shot request socket for setting a link admin-down.
//!
//! # Fault injection
//!
//! Built with the `fault-injection` feature, [`LinkSocket::open`] reads the environment variable
//! `PORTSYNCD_FAULT_DROP_DUMP_DONE`; when it is `1`, every [`NetlinkItem::Done`] is removed from what
//! [`LinkSocket::recv`] returns, so the initial dump never completes (to test the EOIU timeout);
//! `PORTSYNCD_FAULT_NETLINK_RCVBUF=<bytes>` replaces the 16 MiB receive buffer (a small one
//! overruns quickly behind a slow loop). Without the feature the variables are not read.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use tracing::{debug, warn};

use super::parser::{find_ack, parse_datagram, Ack, NetlinkItem};
use super::sockopt;

/// `RTNLGRP_LINK` (linux/rtnetlink.h).
const RTNLGRP_LINK: u32 = 1;
/// What [`LinkSocket::open`] asks for, as SONiC does.
const WANTED_RCVBUF: usize = 16 * 1024 * 1024;
/// How long a blocked [`LinkSocket::recv`] waits before returning [`RecvOutcome::Timeout`].
const RECV_TIMEOUT: Duration = Duration::from_millis(200);
/// Receive buffer length. The kernel caps a dump datagram at 32 KiB (or a page, if larger); a
/// notification is one message of about 1.5 KiB.
const RECV_BUF_LEN: usize = 64 * 1024;
/// How long [`set_admin_down`] waits for the kernel's acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// Errors of the netlink socket layer. Each names the operation and carries the OS error.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// A socket call failed.
    #[error("netlink {op} failed: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// The kernel answered a request with a negative errno.
    #[error("netlink {op} on ifindex {ifindex} rejected by the kernel: {}", io::Error::from_raw_os_error(errno.saturating_neg()))]
    Kernel {
        op: &'static str,
        ifindex: u32,
        /// As the kernel sent it (negative).
        errno: i32,
    },
    /// The kernel did not acknowledge a request in time.
    #[error("netlink {op} on ifindex {ifindex}: no acknowledgement within {waited:?}")]
    NoAck {
        op: &'static str,
        ifindex: u32,
        waited: Duration,
    },
}

impl NetlinkError {
    fn io(op: &'static str) -> impl FnOnce(io::Error) -> NetlinkError {
        move |source| NetlinkError::Io { op, source }
    }

    /// The OS errno behind this error, if any (positive, like `libc::ENOBUFS`).
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Io { source, .. } => source.raw_os_error(),
            NetlinkError::Kernel { errno, .. } => Some(errno.saturating_neg()),
            NetlinkError::NoAck { .. } => None,
        }
    }
}

/// What one [`LinkSocket::recv`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecvOutcome {
    /// The decoded messages of one datagram (possibly empty after fault injection).
    Items(Vec<NetlinkItem>),
    /// `ENOBUFS` (or a datagram larger than the buffer): notifications were lost. Dump again.
    Overrun,
    /// Nothing arrived within the receive timeout (or the call was interrupted).
    Timeout,
}

/// A `NETLINK_ROUTE` socket subscribed to `RTNLGRP_LINK`, also used to request link dumps.
///
/// `Send + Sync`: one thread may block in [`recv`](Self::recv) while another calls
/// [`request_dump`](Self::request_dump) through an `Arc<LinkSocket>`.
#[derive(Debug)]
pub struct LinkSocket {
    socket: Socket,
    next_seq: AtomicU32,
    rcvbuf: AtomicUsize,
    #[cfg(feature = "fault-injection")]
    drop_dump_done: bool,
}

impl LinkSocket {
    /// Opens the socket: bind, join `RTNLGRP_LINK` (before any dump can be requested), receive buffer
    /// of 16 MiB (`SO_RCVBUFFORCE`, falling back to `SO_RCVBUF`), receive timeout of 200 ms.
    pub fn open() -> Result<LinkSocket, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::io("socket"))?;
        socket.bind_auto().map_err(NetlinkError::io("bind"))?;
        socket
            .add_membership(RTNLGRP_LINK)
            .map_err(NetlinkError::io("join RTNLGRP_LINK"))?;
        #[cfg(feature = "fault-injection")]
        let wanted = std::env::var("PORTSYNCD_FAULT_NETLINK_RCVBUF")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(WANTED_RCVBUF);
        #[cfg(not(feature = "fault-injection"))]
        let wanted = WANTED_RCVBUF;
        if let Err(e) = sockopt::set_rcvbuf_force(socket.as_fd(), wanted) {
            debug!(error = %e, "SO_RCVBUFFORCE refused, falling back to SO_RCVBUF");
            sockopt::set_rcvbuf(socket.as_fd(), wanted)
                .map_err(NetlinkError::io("set SO_RCVBUF"))?;
        }
        sockopt::set_recv_timeout(socket.as_fd(), RECV_TIMEOUT)
            .map_err(NetlinkError::io("set SO_RCVTIMEO"))?;
        let rcvbuf = socket
            .get_rx_buf_sz()
            .map_err(NetlinkError::io("get SO_RCVBUF"))?;
        if rcvbuf < wanted {
            warn!(rcvbuf, wanted, "netlink receive buffer smaller than wanted");
        }
        debug!(rcvbuf, "netlink link socket open");
        Ok(LinkSocket {
            socket,
            next_seq: AtomicU32::new(1),
            rcvbuf: AtomicUsize::new(rcvbuf),
            #[cfg(feature = "fault-injection")]
            drop_dump_done: std::env::var("PORTSYNCD_FAULT_DROP_DUMP_DONE").as_deref() == Ok("1"),
        })
    }

    /// The socket's netlink port id (what another process would send to).
    pub fn port_id(&self) -> Result<u32, NetlinkError> {
        let mut addr = SocketAddr::new(0, 0);
        self.socket
            .get_address(&mut addr)
            .map_err(NetlinkError::io("getsockname"))?;
        Ok(addr.port_number())
    }

    /// The effective receive buffer size, as read back from the kernel (which doubles the request).
    pub fn rcvbuf_bytes(&self) -> usize {
        self.rcvbuf.load(Ordering::Relaxed)
    }

    /// Notifications the kernel dropped for this socket so far (`SO_MEMINFO` drops; `/proc/net/netlink`
    /// shows the same number). An increase means notifications were lost, with or without an
    /// `ENOBUFS`: after reporting one overrun the kernel drops silently until the queue is read empty.
    pub fn drops(&self) -> Result<u32, NetlinkError> {
        sockopt::drops(self.socket.as_fd()).map_err(NetlinkError::io("get SO_MEMINFO"))
    }

    /// Shrinks (or grows) the receive buffer with plain `SO_RCVBUF`; for overrun tests.
    pub fn set_rcvbuf_for_test(&self, bytes: usize) -> Result<(), NetlinkError> {
        sockopt::set_rcvbuf(self.socket.as_fd(), bytes)
            .map_err(NetlinkError::io("set SO_RCVBUF"))?;
        let rcvbuf = self
            .socket
            .get_rx_buf_sz()
            .map_err(NetlinkError::io("get SO_RCVBUF"))?;
        self.rcvbuf.store(rcvbuf, Ordering::Relaxed);
        Ok(())
    }

    /// Sends `RTM_GETLINK` with `NLM_F_REQUEST | NLM_F_DUMP` and returns its (fresh, non-zero)
    /// sequence number; the replies end with `NLMSG_DONE` carrying it.
    pub fn request_dump(&self) -> Result<u32, NetlinkError> {
        let seq = self.fresh_seq();
        let bytes = link_request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
        );
        self.socket
            .send_to(&bytes, &SocketAddr::new(0, 0), 0)
            .map_err(NetlinkError::io("send RTM_GETLINK dump request"))?;
        debug!(seq, "link dump requested");
        Ok(seq)
    }

    /// Receives one datagram into `buf` (grown as needed) and decodes it.
    ///
    /// `ENOBUFS` becomes [`RecvOutcome::Overrun`]; the receive timeout and `EINTR` become
    /// [`RecvOutcome::Timeout`].
    pub fn recv(&self, buf: &mut Vec<u8>) -> Result<RecvOutcome, NetlinkError> {
        self.recv_flags(buf, 0)
    }

    /// Like [`LinkSocket::recv`], but returns [`RecvOutcome::Timeout`] at once when no datagram is
    /// queued (`MSG_DONTWAIT`): drains a burst without blocking.
    pub fn recv_nowait(&self, buf: &mut Vec<u8>) -> Result<RecvOutcome, NetlinkError> {
        self.recv_flags(buf, libc::MSG_DONTWAIT)
    }

    fn recv_flags(&self, buf: &mut Vec<u8>, flags: i32) -> Result<RecvOutcome, NetlinkError> {
        buf.clear();
        buf.reserve(RECV_BUF_LEN);
        let room = buf.capacity();
        // MSG_TRUNC: the return value is the datagram's real length even when it did not fit.
        let (len, from) = match self.socket.recv_from(buf, libc::MSG_TRUNC | flags) {
            Ok(got) => got,
            Err(e) => {
                return match e.raw_os_error() {
                    Some(libc::ENOBUFS) => Ok(RecvOutcome::Overrun),
                    Some(libc::EAGAIN | libc::EINTR) => Ok(RecvOutcome::Timeout),
                    _ => Err(NetlinkError::Io {
                        op: "recv",
                        source: e,
                    }),
                };
            }
        };
        if len > room {
            warn!(
                len,
                room, "netlink datagram larger than the receive buffer; treating as overrun"
            );
            buf.clear();
            buf.reserve(len);
            return Ok(RecvOutcome::Overrun);
        }
        if from.port_number() != 0 {
            // Only the kernel (port id 0) speaks for the links; another process (root may send to
            // any port id) is not believed.
            return Ok(RecvOutcome::Items(vec![NetlinkItem::Malformed {
                reason: format!(
                    "datagram of {len} bytes from port id {} (not the kernel) dropped",
                    from.port_number()
                ),
            }]));
        }
        // `mut` only for the fault-injection hook below; without that feature it is unused.
        #[allow(unused_mut)]
        let mut items = parse_datagram(buf);
        #[cfg(feature = "fault-injection")]
        if self.drop_dump_done {
            items.retain(|item| !matches!(item, NetlinkItem::Done { .. }));
        }
        Ok(RecvOutcome::Items(items))
    }

    fn fresh_seq(&self) -> u32 {
        loop {
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            // 0 is what notifications carry; never use it for a request.
            if seq != 0 {
                return seq;
            }
        }
    }
}

/// Sets link `ifindex` administratively down (`RTM_SETLINK`, `ifi_change = IFF_UP`, flags 0) on a
/// short-lived socket and waits for the kernel's acknowledgement.
pub fn set_admin_down(ifindex: u32) -> Result<(), NetlinkError> {
    const OP: &str = "set admin down";
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::io("socket"))?;
    socket.bind_auto().map_err(NetlinkError::io("bind"))?;
    sockopt::set_recv_timeout(socket.as_fd(), Duration::from_millis(200))
        .map_err(NetlinkError::io("set SO_RCVTIMEO"))?;

    let mut msg = LinkMessage::default();
    msg.header.index = ifindex;
    msg.header.flags = LinkFlags::empty();
    msg.header.change_mask = LinkFlags::Up;
    let seq = 1;
    let bytes = link_request(
        RouteNetlinkMessage::SetLink(msg),
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
    );
    socket
        .send_to(&bytes, &SocketAddr::new(0, 0), 0)
        .map_err(NetlinkError::io("send RTM_SETLINK"))?;

    let start = Instant::now();
    let mut buf = Vec::with_capacity(8192);
    while start.elapsed() < ACK_TIMEOUT {
        buf.clear();
        match socket.recv(&mut buf, 0) {
            Ok(_) => match find_ack(&buf, seq) {
                Some(Ack::Ok) => {
                    debug!(ifindex, "link set admin down");
                    return Ok(());
                }
                Some(Ack::Err(errno)) => {
                    return Err(NetlinkError::Kernel {
                        op: OP,
                        ifindex,
                        errno,
                    })
                }
                None => {}
            },
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) => {}
            Err(source) => {
                return Err(NetlinkError::Io {
                    op: "recv RTM_SETLINK ack",
                    source,
                })
            }
        }
    }
    Err(NetlinkError::NoAck {
        op: OP,
        ifindex,
        waited: ACK_TIMEOUT,
    })
}

/// Serializes a request message with the given flags and sequence number.
fn link_request(payload: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
    msg.finalize();
    let mut bytes = vec![0; msg.buffer_len()];
    msg.serialize(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_errno_from_the_wire_displays_without_overflow() {
        for errno in [i32::MIN, -1, 0, 1, i32::MAX] {
            let e = NetlinkError::Kernel {
                op: "set admin down",
                ifindex: 3,
                errno,
            };
            assert!(e.to_string().contains("ifindex 3"));
            assert_eq!(e.errno(), Some(errno.saturating_neg()));
        }
    }
}
