//! Captures real rtnetlink datagrams from the kernel inside a private namespace and prints them as
//! annotated hex files into `tests/fixtures/netlink/`, read by `tests/netlink_parser.rs`. A tool, not a
//! test: run it by hand (as root) with
//!
//! ```text
//! cargo test --test netlink_capture -- --ignored --nocapture capture_fixtures
//! ```

mod common;

use common::netns::Netns;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// `IFLA_*` names by attribute type (linux/if_link.h), for the annotations.
const IFLA_NAMES: &[&str] = &[
    "UNSPEC",
    "ADDRESS",
    "BROADCAST",
    "IFNAME",
    "MTU",
    "LINK",
    "QDISC",
    "STATS",
    "COST",
    "PRIORITY",
    "MASTER",
    "WIRELESS",
    "PROTINFO",
    "TXQLEN",
    "MAP",
    "WEIGHT",
    "OPERSTATE",
    "LINKMODE",
    "LINKINFO",
    "NET_NS_PID",
    "IFALIAS",
    "NUM_VF",
    "VFINFO_LIST",
    "STATS64",
    "VF_PORTS",
    "PORT_SELF",
    "AF_SPEC",
    "GROUP",
    "NET_NS_FD",
    "EXT_MASK",
    "PROMISCUITY",
    "NUM_TX_QUEUES",
    "NUM_RX_QUEUES",
    "CARRIER",
    "PHYS_PORT_ID",
    "CARRIER_CHANGES",
    "PHYS_SWITCH_ID",
    "LINK_NETNSID",
    "PHYS_PORT_NAME",
    "PROTO_DOWN",
    "GSO_MAX_SEGS",
    "GSO_MAX_SIZE",
    "PAD",
    "XDP",
    "EVENT",
    "NEW_NETNSID",
    "IF_NETNSID",
    "CARRIER_UP_COUNT",
    "CARRIER_DOWN_COUNT",
    "NEW_IFINDEX",
    "MIN_MTU",
    "MAX_MTU",
    "PROP_LIST",
    "ALT_IFNAME",
    "PERM_ADDRESS",
    "PROTO_DOWN_REASON",
    "PARENT_DEV_NAME",
    "PARENT_DEV_BUS_NAME",
    "GRO_MAX_SIZE",
    "TSO_MAX_SIZE",
    "TSO_MAX_SEGS",
    "ALLMULTI",
    "DEVLINK_PORT",
    "GSO_IPV4_MAX_SIZE",
    "GRO_IPV4_MAX_SIZE",
    "DPLL_PIN",
    "MAX_PACING_OFFLOAD_HORIZON",
    "NETNS_IMMUTABLE",
    "HEADROOM",
    "TAILROOM",
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

/// Writes one datagram as `tests/fixtures/netlink/<name>.hex`: one line per header and per
/// attribute, each annotated after a `#`.
fn emit(name: &str, what: &str, dgram: &[u8]) {
    use std::fmt::Write;
    let mut out = String::new();
    macro_rules! println {
        ($($t:tt)*) => { writeln!(out, $($t)*).unwrap() };
    }
    println!("# {what}");
    println!("# captured from the kernel in a private netns by tests/netlink_capture.rs");
    let mut off = 0;
    while off + 16 <= dgram.len() {
        let len = u32_at(dgram, off) as usize;
        let ty = u16_at(dgram, off + 4);
        let flags = u16_at(dgram, off + 6);
        let seq = u32_at(dgram, off + 8);
        let msg = &dgram[off..off + len];
        println!(
            "{}  # nlmsghdr: len {len}, type {ty}, flags {flags:#06x}, seq {seq}, portid {}",
            hex(&msg[..16]),
            u32_at(msg, 12)
        );
        if (ty == 16 || ty == 17) && len >= 32 {
            println!(
                "{}  # ifinfomsg: family {}, type {}, index {}, flags {:#x}, change {:#x}",
                hex(&msg[16..32]),
                msg[16],
                u16_at(msg, 18),
                u32_at(msg, 20),
                u32_at(msg, 24),
                u32_at(msg, 28)
            );
            let mut a = 32;
            while a + 4 <= len {
                let alen = u16_at(msg, a) as usize;
                let aty = u16_at(msg, a + 2) & 0x3fff;
                let nested = if u16_at(msg, a + 2) & 0x8000 != 0 {
                    " (nested)"
                } else {
                    ""
                };
                let end = (a + ((alen + 3) & !3)).min(len);
                let label = IFLA_NAMES.get(aty as usize).copied().unwrap_or("?");
                let value = &msg[a + 4..a + alen];
                let detail = match aty {
                    3 => format!(
                        " = {:?}",
                        String::from_utf8_lossy(value).trim_end_matches('\0')
                    ),
                    4 | 10 | 13 | 5 => format!(" = {}", u32_at(value, 0)),
                    18 => {
                        let kind_len = u16_at(value, 0) as usize;
                        format!(
                            " INFO_KIND = {:?}",
                            String::from_utf8_lossy(&value[4..kind_len]).trim_end_matches('\0')
                        )
                    }
                    _ => String::new(),
                };
                println!(
                    "{}  # IFLA_{label}{nested}, len {alen}{detail}",
                    hex(&msg[a..end])
                );
                a = end;
            }
        } else if len > 16 {
            println!("{}  # payload", hex(&msg[16..]));
        }
        off += (len + 3) & !3;
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/netlink");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(format!("{dir}/{name}.hex"), out).unwrap();
}

fn recv(sock: &Socket) -> Vec<u8> {
    let mut buf = Vec::with_capacity(65536);
    sock.recv(&mut buf, 0).expect("recv");
    buf
}

fn recv_until(sock: &Socket, pred: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    for _ in 0..50 {
        let d = recv(sock);
        if pred(&d) {
            return d;
        }
    }
    panic!("wanted datagram never came");
}

fn is_link(d: &[u8], ty: u16, ifindex: u32) -> bool {
    u16_at(d, 4) == ty && u32_at(d, 20) == ifindex
}

#[test]
#[ignore]
fn capture_fixtures() {
    let ns = Netns::new();
    ns.run_test_inside("capture_fixtures_inside", &[]);
}

#[test]
#[ignore]
fn capture_fixtures_inside() {
    let Some(ns) = Netns::inside() else { return };
    ns.add_veth("Ethernet0", "peer0");
    ns.ip("link add br0 type bridge");
    let e0 = ns.ifindex("Ethernet0");
    let p0 = ns.ifindex("peer0");

    // Dump first (lo, br0, the veth pair): a multi-message datagram, then NLMSG_DONE.
    let mut dump_sock = Socket::new(NETLINK_ROUTE).unwrap();
    dump_sock.bind_auto().unwrap();
    // RTM_GETLINK, NLM_F_REQUEST|NLM_F_DUMP, seq 4242, ifinfomsg all zero.
    let mut req = vec![32, 0, 0, 0, 18, 0, 0x01, 0x03];
    req.extend_from_slice(&4242u32.to_ne_bytes());
    req.extend_from_slice(&[0; 4 + 16]);
    dump_sock.send_to(&req, &SocketAddr::new(0, 0), 0).unwrap();
    let mut n = 0;
    loop {
        let d = recv(&dump_sock);
        let done = u16_at(&d, 4) == 3 || {
            // NLMSG_DONE may share the last datagram
            let mut off = 0;
            let mut found = false;
            while off + 16 <= d.len() {
                if u16_at(&d, off + 4) == 3 {
                    found = true;
                }
                off += (u32_at(&d, off) as usize + 3) & !3;
            }
            found
        };
        emit(&format!("dump_{n}"), "dump datagram", &d);
        n += 1;
        if done {
            break;
        }
    }

    let mut sock = Socket::new(NETLINK_ROUTE).unwrap();
    sock.bind_auto().unwrap();
    sock.add_membership(1).unwrap();

    ns.set_up("peer0");
    ns.set_up("Ethernet0");
    // Up and running (IFF_RUNNING 0x40: the peer is up, so the carrier is on).
    let d = recv_until(&sock, |d| is_link(d, 16, e0) && u32_at(d, 24) & 0x40 != 0);
    emit(
        "newlink_up",
        "RTM_NEWLINK notification: Ethernet0 up and running",
        &d,
    );
    ns.set_mtu("Ethernet0", 9100);
    let d = recv_until(&sock, |d| is_link(d, 16, e0) && u32_at(d, 28) == 0);
    emit(
        "newlink_mtu",
        "RTM_NEWLINK notification: Ethernet0 mtu 9100",
        &d,
    );
    ns.ip("link set peer0 master br0");
    let d = recv_until(&sock, |d| is_link(d, 16, p0) && d[16] == 0);
    emit(
        "newlink_master",
        "RTM_NEWLINK notification: peer0 enslaved to br0",
        &d,
    );
    ns.ip("link set peer0 nomaster");
    let d = recv_until(&sock, |d| is_link(d, 17, p0));
    emit(
        "dellink_bridge",
        "RTM_DELLINK notification (family AF_BRIDGE): peer0 left br0, the netdev still exists",
        &d,
    );
    ns.set_down("Ethernet0");
    let d = recv_until(&sock, |d| is_link(d, 16, e0) && u32_at(d, 24) & 1 == 0);
    emit(
        "newlink_down",
        "RTM_NEWLINK notification: Ethernet0 set down",
        &d,
    );
    ns.del_link("Ethernet0");
    let d = recv_until(&sock, |d| is_link(d, 17, e0));
    emit("dellink", "RTM_DELLINK notification: Ethernet0 deleted", &d);
}
