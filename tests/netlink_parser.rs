//! `parse_datagram` on real kernel bytes.
//!
//! The fixtures in `tests/fixtures/netlink/*.hex` were captured from this kernel (6.18) inside a
//! private network namespace by `tests/netlink_capture.rs`. Each file holds one datagram exactly as
//! `recv` returned it, one line per header or attribute, annotated after `#`. Layout reminders
//! (all integers host order, little-endian here):
//!
//! ```text
//! nlmsghdr  (16 bytes): len u32 | type u16 (16 NEWLINK, 17 DELLINK, 3 DONE, 2 ERROR)
//!                       | flags u16 (0x0002 NLM_F_MULTI, 0x0010 NLM_F_DUMP_INTR) | seq u32 | portid u32
//! ifinfomsg (16 bytes): family u8 | pad u8 | type u16 | index i32 | flags u32 (IFF_*) | change u32
//! attribute ( 4 bytes + value, padded to 4): len u16 | type u16 (3 IFNAME, 4 MTU, 10 MASTER,
//!                       18 LINKINFO, nested: 1 INFO_KIND)
//! ```
//!
//! Key flags: 0x1002 = BROADCAST|MULTICAST (down); 0x11043 = UP|BROADCAST|RUNNING|MULTICAST|LOWER_UP.

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo};
use netlink_packet_route::RouteNetlinkMessage;
use portsyncd::core::{Link, LinkEvent, LinkOp};
use portsyncd::netlink::{parse_datagram, NetlinkItem};
use proptest::prelude::*;

/// Decodes an annotated hex fixture: everything after `#` on a line is a comment.
fn hex(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|s| s.chars().filter(|c| !c.is_whitespace()))
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// `Ethernet0` (ifindex 3, veth) after `ip link set Ethernet0 up` with its peer up:
/// ifi_flags 0x11043 (UP, RUNNING, LOWER_UP), ifi_change 0x1 (IFF_UP changed), IFLA_MTU 1500,
/// IFLA_LINKINFO/INFO_KIND "veth", no IFLA_MASTER. 1500 bytes, seq 0 (a notification).
const NEWLINK_UP: &str = include_str!("fixtures/netlink/newlink_up.hex");
/// `Ethernet0` after `ip link set Ethernet0 mtu 9100`: IFLA_MTU 9100, ifi_change 0 (MTU changes
/// do not set ifi_change).
const NEWLINK_MTU: &str = include_str!("fixtures/netlink/newlink_mtu.hex");
/// `Ethernet0` after `ip link set Ethernet0 down`: ifi_flags 0x1002, ifi_change 0x1.
const NEWLINK_DOWN: &str = include_str!("fixtures/netlink/newlink_down.hex");
/// `peer0` (ifindex 2, veth) after `ip link set peer0 master br0`: IFLA_MASTER 4 (br0). Its
/// IFLA_LINKINFO (364 bytes) holds INFO_KIND "veth" and also INFO_SLAVE_KIND "bridge" with slave
/// data; the kind must be "veth".
const NEWLINK_MASTER: &str = include_str!("fixtures/netlink/newlink_master.hex");
/// RTM_DELLINK for `Ethernet0` (688 bytes, ifi_change 0xffffffff, no master).
const DELLINK: &str = include_str!("fixtures/netlink/dellink.hex");
/// RTM_DELLINK with family 7 (AF_BRIDGE) after `ip link set peer0 nomaster`: 88 bytes, carries
/// IFLA_MASTER 4. The netdev still exists; the core ignores a DELLINK with a master.
const DELLINK_BRIDGE: &str = include_str!("fixtures/netlink/dellink_bridge.hex");
/// First datagram of an RTM_GETLINK dump with seq 4242: two RTM_NEWLINK (lo ifindex 1, no
/// LINKINFO; peer0 ifindex 2), both with NLM_F_MULTI (0x0002).
const DUMP_0: &str = include_str!("fixtures/netlink/dump_0.hex");
/// Second datagram: Ethernet0 (3, veth) and br0 (4, bridge, 1880 bytes).
const DUMP_1: &str = include_str!("fixtures/netlink/dump_1.hex");
/// Third datagram: NLMSG_DONE (type 3, len 20, seq 4242) with a 4-byte zero payload.
const DUMP_DONE: &str = include_str!("fixtures/netlink/dump_2.hex");

const NLM_F_DUMP_INTR: u16 = 0x10;

fn link(item: &NetlinkItem) -> (&LinkEvent, u32, bool) {
    match item {
        NetlinkItem::Link {
            seq,
            dump_intr,
            event,
        } => (event, *seq, *dump_intr),
        other => panic!("expected a link, got {other:?}"),
    }
}

fn single_link(fixture: &str) -> LinkEvent {
    let items = parse_datagram(&hex(fixture));
    assert_eq!(items.len(), 1, "{items:?}");
    let (event, seq, dump_intr) = link(&items[0]);
    assert_eq!(seq, 0, "notifications carry seq 0");
    assert!(!dump_intr);
    event.clone()
}

/// Sets `flags` in the nlmsghdr of every message of a datagram (flags are bytes 6..8).
fn with_header_flag(mut bytes: Vec<u8>, flag: u16) -> Vec<u8> {
    let mut off = 0;
    while off + 16 <= bytes.len() {
        let len = u32::from_ne_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        let flags = u16::from_ne_bytes([bytes[off + 6], bytes[off + 7]]) | flag;
        bytes[off + 6..off + 8].copy_from_slice(&flags.to_ne_bytes());
        off += (len + 3) & !3;
    }
    bytes
}

fn set_nlmsg_len(bytes: &mut [u8], len: u32) {
    bytes[0..4].copy_from_slice(&len.to_ne_bytes());
}

#[test]
fn newlink_up_and_running() {
    let event = single_link(NEWLINK_UP);
    assert_eq!(
        event,
        LinkEvent {
            op: LinkOp::New,
            link: Link {
                ifindex: 3,
                name: "Ethernet0".into(),
                flags: 0x11043,
                mtu: 1500,
                kind: Some("veth".into()),
                master: 0,
            },
        }
    );
    assert!(event.link.admin_up());
    assert!(event.link.oper_up());
}

#[test]
fn newlink_mtu_change() {
    let event = single_link(NEWLINK_MTU);
    assert_eq!(event.link.mtu, 9100);
    assert_eq!(event.link.name, "Ethernet0");
    assert!(event.link.admin_up() && event.link.oper_up());
}

#[test]
fn newlink_admin_down() {
    let event = single_link(NEWLINK_DOWN);
    assert_eq!(event.op, LinkOp::New);
    assert_eq!(event.link.flags, 0x1002);
    assert!(!event.link.admin_up());
    assert!(!event.link.oper_up());
    assert_eq!(event.link.mtu, 9100);
}

#[test]
fn newlink_with_master_keeps_own_kind() {
    let event = single_link(NEWLINK_MASTER);
    assert_eq!(event.link.name, "peer0");
    assert_eq!(event.link.ifindex, 2);
    assert_eq!(event.link.master, 4);
    assert_eq!(event.link.kind.as_deref(), Some("veth"));
}

#[test]
fn dellink() {
    let event = single_link(DELLINK);
    assert_eq!(event.op, LinkOp::Del);
    assert_eq!(event.link.name, "Ethernet0");
    assert_eq!(event.link.ifindex, 3);
    assert_eq!(event.link.master, 0);
}

#[test]
fn dellink_from_bridge_carries_master() {
    let event = single_link(DELLINK_BRIDGE);
    assert_eq!(event.op, LinkOp::Del);
    assert_eq!(event.link.name, "peer0");
    assert_eq!(event.link.master, 4);
    assert_eq!(
        event.link.kind, None,
        "the AF_BRIDGE notice has no IFLA_LINKINFO"
    );
}

#[test]
fn dump_datagrams_hold_several_links_then_done() {
    let first = parse_datagram(&hex(DUMP_0));
    let second = parse_datagram(&hex(DUMP_1));
    let done = parse_datagram(&hex(DUMP_DONE));
    let names: Vec<(u32, String, Option<String>)> = first
        .iter()
        .chain(&second)
        .map(|item| {
            let (event, seq, dump_intr) = link(item);
            assert_eq!(seq, 4242);
            assert!(!dump_intr);
            assert_eq!(event.op, LinkOp::New);
            (
                event.link.ifindex,
                event.link.name.clone(),
                event.link.kind.clone(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            (1, "lo".into(), None),
            (2, "peer0".into(), Some("veth".into())),
            (3, "Ethernet0".into(), Some("veth".into())),
            (4, "br0".into(), Some("bridge".into())),
        ]
    );
    assert_eq!(
        done,
        vec![NetlinkItem::Done {
            seq: 4242,
            dump_intr: false
        }]
    );
    // lo: ifi_flags 0x10049 (UP, LOOPBACK, RUNNING, LOWER_UP), MTU 65536.
    let (lo, _, _) = link(&first[0]);
    assert!(lo.link.admin_up() && lo.link.oper_up());
    assert_eq!(lo.link.mtu, 65536);
}

#[test]
fn links_and_done_in_one_datagram() {
    let mut bytes = hex(DUMP_1);
    bytes.extend(hex(DUMP_DONE));
    let items = parse_datagram(&bytes);
    assert_eq!(items.len(), 3);
    assert!(matches!(items[0], NetlinkItem::Link { seq: 4242, .. }));
    assert!(matches!(items[1], NetlinkItem::Link { seq: 4242, .. }));
    assert_eq!(
        items[2],
        NetlinkItem::Done {
            seq: 4242,
            dump_intr: false
        }
    );
}

#[test]
fn dump_intr_flag_on_links_and_done() {
    let items = parse_datagram(&with_header_flag(hex(DUMP_0), NLM_F_DUMP_INTR));
    assert_eq!(items.len(), 2);
    for item in &items {
        let (_, seq, dump_intr) = link(item);
        assert_eq!(seq, 4242);
        assert!(dump_intr);
    }
    assert_eq!(
        parse_datagram(&with_header_flag(hex(DUMP_DONE), NLM_F_DUMP_INTR)),
        vec![NetlinkItem::Done {
            seq: 4242,
            dump_intr: true
        }]
    );
}

#[test]
fn empty_datagram_has_no_items() {
    assert!(parse_datagram(&[]).is_empty());
}

#[test]
fn error_and_ack() {
    // NLMSG_ERROR, len 36: nlmsghdr (16) + error -19 (ENODEV) + the offending request's header (16).
    let mut error = vec![36, 0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0];
    error.extend_from_slice(&(-19i32).to_ne_bytes());
    error.extend_from_slice(&[32, 0, 0, 0, 19, 0, 5, 0, 7, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        parse_datagram(&error),
        vec![NetlinkItem::Error { seq: 7, code: -19 }]
    );
    // An ack is an NLMSG_ERROR with code 0.
    let mut ack = error.clone();
    ack[16..20].copy_from_slice(&0i32.to_ne_bytes());
    assert_eq!(parse_datagram(&ack), vec![NetlinkItem::Ignored]);
    // An NLMSG_ERROR too short to hold its code.
    let mut short = error[..18].to_vec();
    set_nlmsg_len(&mut short, 18);
    assert!(matches!(
        parse_datagram(&short)[..],
        [NetlinkItem::Malformed { .. }]
    ));
}

#[test]
fn other_types_are_ignored() {
    // NLMSG_NOOP (1) and RTM_NEWADDR (20), header only.
    let mut bytes = vec![16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    bytes.extend_from_slice(&[16, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        parse_datagram(&bytes),
        vec![NetlinkItem::Ignored, NetlinkItem::Ignored]
    );
}

#[test]
fn unknown_attribute_is_skipped() {
    let mut bytes = hex(NEWLINK_UP);
    let expected = single_link(NEWLINK_UP);
    // Append attribute type 0x3ffe (unknown), len 8, value 0xdeadbeef; grow nlmsg_len.
    bytes.extend_from_slice(&[8, 0, 0xfe, 0x3f, 0xef, 0xbe, 0xad, 0xde]);
    let len = bytes.len() as u32;
    set_nlmsg_len(&mut bytes, len);
    let items = parse_datagram(&bytes);
    assert_eq!(link(&items[0]).0, &expected);
}

#[test]
fn truncated_header_stops_the_walk() {
    let bytes = hex(NEWLINK_UP);
    for cut in [1, 8, 15] {
        let items = parse_datagram(&bytes[..cut]);
        assert!(
            matches!(items[..], [NetlinkItem::Malformed { .. }]),
            "{cut}: {items:?}"
        );
    }
    // The length header says 1500 but only 1000 bytes arrived.
    let items = parse_datagram(&bytes[..1000]);
    assert!(
        matches!(items[..], [NetlinkItem::Malformed { .. }]),
        "{items:?}"
    );
}

#[test]
fn nlmsg_len_below_header_size_stops_the_walk() {
    for len in [0u32, 4, 15] {
        let mut bytes = hex(NEWLINK_UP);
        set_nlmsg_len(&mut bytes, len);
        let items = parse_datagram(&bytes);
        assert!(
            matches!(items[..], [NetlinkItem::Malformed { .. }]),
            "{len}: {items:?}"
        );
    }
}

#[test]
fn malformed_message_does_not_hide_the_next_one() {
    // First message: a real RTM_NEWLINK whose nlmsg_len cuts an attribute in half (header 16 +
    // ifinfomsg 16 + 6 bytes of the 12-byte IFLA_IFNAME), then a complete RTM_DELLINK.
    let mut first = hex(NEWLINK_UP)[..40].to_vec();
    set_nlmsg_len(&mut first, 38);
    let mut bytes = first;
    bytes.extend(hex(DELLINK));
    let items = parse_datagram(&bytes);
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(matches!(items[0], NetlinkItem::Malformed { .. }));
    assert_eq!(link(&items[1]).0.op, LinkOp::Del);
}

#[test]
fn link_without_name_or_header_is_malformed() {
    // A NEWLINK with only an ifinfomsg (no IFLA_IFNAME).
    let bytes = hex(NEWLINK_UP)[..32].to_vec();
    let mut no_name = bytes.clone();
    set_nlmsg_len(&mut no_name, 32);
    assert!(matches!(
        parse_datagram(&no_name)[..],
        [NetlinkItem::Malformed { .. }]
    ));
    // A NEWLINK shorter than its ifinfomsg.
    let mut short = bytes[..24].to_vec();
    set_nlmsg_len(&mut short, 24);
    assert!(matches!(
        parse_datagram(&short)[..],
        [NetlinkItem::Malformed { .. }]
    ));
}

#[test]
fn every_prefix_of_a_dump_decodes_or_reports() {
    let mut bytes = hex(DUMP_1);
    bytes.extend(hex(DUMP_DONE));
    let whole = parse_datagram(&bytes);
    for cut in 0..bytes.len() {
        let items = parse_datagram(&bytes[..cut]);
        // Every complete message before the cut decodes as in the whole datagram; the cut one (if
        // any) is reported as malformed, and nothing follows it.
        let good = items
            .iter()
            .take_while(|i| !matches!(i, NetlinkItem::Malformed { .. }))
            .count();
        assert_eq!(&items[..good], &whole[..good], "cut at {cut}");
        assert!(items.len() <= good + 1, "cut at {cut}: {items:?}");
    }
}

/// The fast path must agree with netlink-packet-route's full decode on every captured message.
#[test]
fn agrees_with_full_netlink_packet_route_decode() {
    for fixture in [
        NEWLINK_UP,
        NEWLINK_MTU,
        NEWLINK_DOWN,
        NEWLINK_MASTER,
        DELLINK,
        DUMP_0,
        DUMP_1,
    ] {
        let bytes = hex(fixture);
        let items = parse_datagram(&bytes);
        let mut off = 0;
        for item in &items {
            let len = u32::from_ne_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[off..off + len])
                .expect("netlink-packet-route decodes the real message");
            let lm = match msg.payload {
                NetlinkPayload::InnerMessage(
                    RouteNetlinkMessage::NewLink(m) | RouteNetlinkMessage::DelLink(m),
                ) => m,
                other => panic!("unexpected {other:?}"),
            };
            let (event, seq, _) = link(item);
            assert_eq!(seq, msg.header.sequence_number);
            assert_eq!(event.link.ifindex, lm.header.index);
            assert_eq!(event.link.flags, lm.header.flags.bits());
            let mut mtu = 0;
            let mut master = 0;
            let mut name = None;
            let mut kind = None;
            for attr in &lm.attributes {
                match attr {
                    LinkAttribute::IfName(n) => name = Some(n.clone()),
                    LinkAttribute::Mtu(m) => mtu = *m,
                    LinkAttribute::Controller(m) => master = *m,
                    LinkAttribute::LinkInfo(infos) => {
                        for info in infos {
                            if let LinkInfo::Kind(k) = info {
                                kind = Some(match k {
                                    InfoKind::Other(s) => s.clone(),
                                    k => k.to_string(),
                                });
                            }
                        }
                    }
                    _ => {}
                }
            }
            assert_eq!(Some(&event.link.name), name.as_ref());
            assert_eq!(event.link.mtu, mtu);
            assert_eq!(event.link.master, master);
            assert_eq!(event.link.kind, kind);
            off += (len + 3) & !3;
        }
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let items = parse_datagram(&bytes);
        // At most one item per 16 bytes (the smallest message); an empty input gives none.
        prop_assert!(items.len() <= bytes.len() / 16 + 1);
    }

    #[test]
    fn mutated_real_bytes_never_panic(
        flips in proptest::collection::vec((0usize..3000, any::<u8>()), 1..16),
        cut in 0usize..3500,
    ) {
        let mut bytes = hex(NEWLINK_MASTER);
        bytes.extend(hex(DELLINK));
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        let cut = cut.min(bytes.len());
        let _ = parse_datagram(&bytes[..cut]);
    }
}

/// NEWLINK_UP with the 9 name bytes (`Ethernet0`, at offset 36) replaced.
fn newlink_up_named(name: &[u8; 9]) -> Vec<u8> {
    let mut bytes = hex(NEWLINK_UP);
    bytes[36..45].copy_from_slice(name);
    bytes
}

#[test]
fn name_that_is_not_utf8_comes_escaped_and_marked() {
    let items = parse_datagram(&newlink_up_named(b"Ethernet\xff"));
    let (event, _, _) = link(&items[0]);
    assert_eq!(event.link.name, "Ethernet\\xff (not UTF-8)");
    assert!(portsyncd::netlink::is_escaped_name(&event.link.name));
    assert_eq!(event.link.ifindex, 3);
    assert_eq!(event.link.mtu, 1500);
    // A backslash is escaped too: a real name that looks like an escape stays distinct.
    let items = parse_datagram(&newlink_up_named(b"E\\xff\xfe\0\0\0"));
    assert_eq!(link(&items[0]).0.link.name, "E\\\\xff\\xfe (not UTF-8)");
    // A UTF-8 name is never marked.
    let items = parse_datagram(&newlink_up_named(b"Ethern\xc3\xa9t"));
    assert_eq!(link(&items[0]).0.link.name, "Ethernét");
    assert!(!portsyncd::netlink::is_escaped_name("Ethernét"));
}

#[test]
fn kind_that_is_not_utf8_does_not_drop_the_message() {
    let mut bytes = hex(NEWLINK_UP);
    let at = bytes
        .windows(4)
        .position(|w| w == b"veth")
        .expect("INFO_KIND veth");
    bytes[at] = 0xff;
    let items = parse_datagram(&bytes);
    let (event, _, _) = link(&items[0]);
    assert_eq!(event.link.kind.as_deref(), Some("\\xffeth (not UTF-8)"));
    assert_eq!(event.link.name, "Ethernet0");
}

#[test]
fn ifindex_zero_is_malformed() {
    let mut bytes = hex(NEWLINK_UP);
    bytes[20..24].copy_from_slice(&0u32.to_ne_bytes()); // ifi_index
    assert!(matches!(
        parse_datagram(&bytes)[..],
        [NetlinkItem::Malformed { .. }]
    ));
}
