//! Pure decoding of rtnetlink datagrams into [`NetlinkItem`]s. No I/O, no panics on any input.
//!
//! One `recv` on a netlink socket returns one datagram that may hold many netlink messages (a dump
//! reply packs as many `RTM_NEWLINK` as fit, often followed by `NLMSG_DONE`). [`parse_datagram`]
//! walks every message and yields one item per message.
//!
//! # How a link message is decoded
//!
//! The `ifinfomsg` header is decoded with netlink-packet-route's [`LinkHeader::parse`]; the
//! attributes are walked with netlink-packet-core's [`NlasIterator`] and only the four portsyncd
//! acts on are decoded (`IFLA_IFNAME`, `IFLA_MTU`, `IFLA_MASTER`, `IFLA_LINKINFO`/`IFLA_INFO_KIND`).
//! Every other attribute is skipped by its length, so unknown or new attributes never cause a
//! rejection. The full `LinkMessage` decode of netlink-packet-route builds a `Vec<LinkAttribute>` with
//! stats, af-spec and per-attribute allocations. Measured on real 1.5-1.9 KiB veth `RTM_NEWLINK`s
//! (`tests/netlink_parser_bench.rs`, release, thread CPU time on a loaded 2-core machine): this path
//! 1.1-1.3 µs and 3 allocations (the item vector, the name, the kind); the full decode 6.2-8.7 µs and
//! 26-32 allocations. The full decode also rejects a whole message when any single attribute it
//! knows has an unexpected size; this path only fails on the attributes it needs.
//!
//! # Names that are not UTF-8
//!
//! Linux accepts any bytes but NUL, `/`, `:` and white space in an interface name, so `IFLA_IFNAME`
//! may not be UTF-8. Such a link is not dropped (a rename of a published port to such a name would
//! then be lost, leaving the old name's STATE_DB entry behind): its name is handed on escaped
//! ([`<[u8]>::escape_ascii`], so `Ethernet0\xff`) followed by [`NOT_UTF8_MARK`]. The mark holds
//! spaces, which no kernel name does, and which no SONiC port name does, so the escaped name can
//! never be a configured port: the core treats the link like any other netdev with a name it does
//! not publish, and a rename away from a port removes the port's entry as any rename does. The
//! escape is one-to-one (a backslash is escaped too), so two such links never share a name.
//! `IFLA_INFO_KIND` is decoded the same way.

use netlink_packet_core::{NetlinkBuffer, NlasIterator, NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP_INTR};
use netlink_packet_route::link::LinkHeader;

use crate::core::{Link, LinkEvent, LinkOp};

/// `RTM_NEWLINK` (linux/rtnetlink.h).
pub const RTM_NEWLINK: u16 = 16;
/// `RTM_DELLINK`.
pub const RTM_DELLINK: u16 = 17;
/// `RTM_GETLINK`.
pub const RTM_GETLINK: u16 = 18;

/// `IFLA_IFNAME` (linux/if_link.h).
const IFLA_IFNAME: u16 = 3;
/// `IFLA_MTU`.
const IFLA_MTU: u16 = 4;
/// `IFLA_MASTER`.
const IFLA_MASTER: u16 = 10;
/// `IFLA_LINKINFO` (nested).
const IFLA_LINKINFO: u16 = 18;
/// `IFLA_INFO_KIND`, inside `IFLA_LINKINFO`.
const IFLA_INFO_KIND: u16 = 1;

/// Appended to the escaped form of a name that is not UTF-8 (see the module docs). It holds spaces,
/// which no kernel interface name and no SONiC port name holds.
pub const NOT_UTF8_MARK: &str = " (not UTF-8)";

/// True for a name the parser escaped because the kernel's bytes were not UTF-8.
pub fn is_escaped_name(name: &str) -> bool {
    name.ends_with(NOT_UTF8_MARK)
}

/// `struct nlmsghdr` size.
const NLMSG_HDRLEN: usize = 16;
/// `struct ifinfomsg` size.
const IFINFOMSG_LEN: usize = 16;

/// What one netlink message in a datagram means to portsyncd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetlinkItem {
    /// `RTM_NEWLINK` / `RTM_DELLINK`: a dump reply or a notification (notifications have seq 0).
    Link {
        seq: u32,
        dump_intr: bool,
        event: LinkEvent,
    },
    /// `NLMSG_DONE`: the end of the dump with this sequence number.
    Done { seq: u32, dump_intr: bool },
    /// `NLMSG_ERROR` with a non-zero code (a negative errno, as the kernel sends it).
    Error { seq: u32, code: i32 },
    /// Any other message type, and `NLMSG_ERROR` acks (code 0).
    Ignored,
    /// A message that could not be decoded.
    Malformed { reason: String },
}

/// Decodes every netlink message in one datagram.
///
/// A malformed message yields [`NetlinkItem::Malformed`]; when its length header is still usable
/// the walk continues with the next message, otherwise it stops there.
pub fn parse_datagram(buf: &[u8]) -> Vec<NetlinkItem> {
    // A link message is rarely below 600 bytes; this avoids regrowth for single notifications and
    // most dump datagrams without over-allocating.
    let mut items = Vec::with_capacity(buf.len() / 512 + 1);
    let mut offset = 0;
    while offset < buf.len() {
        let Some(rest) = buf.get(offset..) else {
            break;
        };
        let msg = match NetlinkBuffer::new_checked(rest) {
            Ok(msg) => msg,
            Err(e) => {
                items.push(NetlinkItem::Malformed {
                    reason: format!("at offset {offset}: {e}"),
                });
                break;
            }
        };
        // new_checked guarantees 16 <= length <= rest.len(), so the slice and the sum stay in bounds.
        let len = nlmsg_len(&msg);
        let Some(this) = rest.get(..len) else {
            break;
        };
        items.push(parse_message(this));
        offset = next_offset(offset, len);
    }
    items
}

/// `nlmsg_len` as a `usize` (lossless: `usize` is at least 32 bits on every Linux target).
fn nlmsg_len<T: AsRef<[u8]>>(msg: &NetlinkBuffer<T>) -> usize {
    usize::try_from(msg.length()).unwrap_or(usize::MAX)
}

/// The offset of the message after one of `len` bytes at `offset` (messages are 4-byte aligned);
/// saturates, which ends any walk.
fn next_offset(offset: usize, len: usize) -> usize {
    offset.saturating_add(align4(len))
}

/// The outcome of a request's acknowledgement (`NLMSG_ERROR`) found in a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Code 0: the request succeeded.
    Ok,
    /// The negative errno the kernel returned.
    Err(i32),
}

/// Finds the acknowledgement for request `seq` in a datagram, if it holds one.
pub fn find_ack(buf: &[u8], seq: u32) -> Option<Ack> {
    let mut offset = 0;
    while offset < buf.len() {
        let rest = buf.get(offset..)?;
        let msg = NetlinkBuffer::new_checked(rest).ok()?;
        let len = nlmsg_len(&msg);
        if msg.message_type() == NLMSG_ERROR && msg.sequence_number() == seq {
            let code = read_i32(rest.get(NLMSG_HDRLEN..len)?)?;
            return Some(if code == 0 { Ack::Ok } else { Ack::Err(code) });
        }
        offset = next_offset(offset, len);
    }
    None
}

/// Decodes one message; `msg` is exactly `nlmsg_len` bytes (header included), already checked.
fn parse_message(msg: &[u8]) -> NetlinkItem {
    let nl = NetlinkBuffer::new(msg);
    let seq = nl.sequence_number();
    let dump_intr = nl.flags() & NLM_F_DUMP_INTR != 0;
    let payload = msg.get(NLMSG_HDRLEN..).unwrap_or_default();
    match nl.message_type() {
        NLMSG_DONE => NetlinkItem::Done { seq, dump_intr },
        NLMSG_ERROR => match read_i32(payload) {
            Some(0) => NetlinkItem::Ignored,
            Some(code) => NetlinkItem::Error { seq, code },
            None => NetlinkItem::Malformed {
                reason: format!("NLMSG_ERROR (seq {seq}) shorter than its error code"),
            },
        },
        kind @ (RTM_NEWLINK | RTM_DELLINK) => {
            let op = if kind == RTM_NEWLINK {
                LinkOp::New
            } else {
                LinkOp::Del
            };
            match parse_link(payload) {
                Ok(link) => NetlinkItem::Link {
                    seq,
                    dump_intr,
                    event: LinkEvent { op, link },
                },
                Err(reason) => NetlinkItem::Malformed {
                    reason: format!("{op:?} link message (seq {seq}): {reason}"),
                },
            }
        }
        _ => NetlinkItem::Ignored,
    }
}

/// Decodes an `ifinfomsg` and the attributes portsyncd needs.
fn parse_link(payload: &[u8]) -> Result<Link, String> {
    let header = LinkHeader::parse(payload).map_err(|e| format!("ifinfomsg: {e}"))?;
    let attrs = payload.get(IFINFOMSG_LEN..).unwrap_or_default();
    if header.index == 0 {
        // The kernel numbers links from 1; 0 would alias every absent ifindex in the core.
        return Err("ifindex 0".to_string());
    }
    let mut name: Option<String> = None;
    let mut mtu = 0;
    let mut master = 0;
    let mut kind = None;
    for nla in NlasIterator::new(attrs) {
        let nla = nla.map_err(|e| format!("attribute: {e}"))?;
        let value = nla.value();
        match nla.kind() {
            IFLA_IFNAME => name = Some(c_string(value)),
            IFLA_MTU => mtu = read_u32(value).ok_or("IFLA_MTU shorter than 4 bytes")?,
            IFLA_MASTER => master = read_u32(value).ok_or("IFLA_MASTER shorter than 4 bytes")?,
            IFLA_LINKINFO => kind = info_kind(value)?,
            _ => {}
        }
    }
    let name = name.ok_or("no IFLA_IFNAME")?;
    Ok(Link {
        ifindex: header.index,
        name,
        flags: header.flags.bits(),
        mtu,
        kind,
        master,
    })
}

/// `IFLA_INFO_KIND` from the nested attributes of `IFLA_LINKINFO`.
fn info_kind(linkinfo: &[u8]) -> Result<Option<String>, String> {
    for nla in NlasIterator::new(linkinfo) {
        let nla = nla.map_err(|e| format!("IFLA_LINKINFO attribute: {e}"))?;
        if nla.kind() == IFLA_INFO_KIND {
            return Ok(Some(c_string(nla.value())));
        }
    }
    Ok(None)
}

/// A NUL-terminated (or unterminated) string attribute; bytes that are not UTF-8 come back escaped
/// and marked (module docs, "Names that are not UTF-8").
fn c_string(value: &[u8]) -> String {
    let bytes = value.split(|&b| b == 0).next().unwrap_or_default();
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("{}{NOT_UTF8_MARK}", bytes.escape_ascii()),
    }
}

fn read_u32(value: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(value.get(..4)?.try_into().ok()?))
}

fn read_i32(value: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(value.get(..4)?.try_into().ok()?))
}

fn align4(len: usize) -> usize {
    len.saturating_add(3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An NLMSG_ERROR for request `seq` with `code`, followed by the echoed request header.
    fn error_msg(seq: u32, code: i32) -> Vec<u8> {
        let mut msg = Vec::new();
        msg.extend_from_slice(&36u32.to_ne_bytes()); // nlmsg_len: 16 + 4 + 16
        msg.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // portid (the kernel)
        msg.extend_from_slice(&code.to_ne_bytes());
        msg.extend_from_slice(&[0; 16]); // the request's nlmsghdr, unused here
        msg
    }

    #[test]
    fn find_ack_matches_the_sequence_number() {
        assert_eq!(find_ack(&error_msg(5, 0), 5), Some(Ack::Ok));
        assert_eq!(find_ack(&error_msg(5, -19), 5), Some(Ack::Err(-19)));
        assert_eq!(find_ack(&error_msg(4, 0), 5), None);
        let mut two = error_msg(4, -1);
        two.extend(error_msg(5, 0));
        assert_eq!(find_ack(&two, 5), Some(Ack::Ok));
    }

    #[test]
    fn find_ack_on_garbage_is_none() {
        assert_eq!(find_ack(&[], 1), None);
        assert_eq!(find_ack(&[0xff; 7], 1), None);
        assert_eq!(find_ack(&error_msg(1, 0)[..18], 1), None);
    }
}
