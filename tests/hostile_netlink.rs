//! Generative tests of the netlink parser (issue 15): mutated captured datagrams, arbitrary attribute
//! sets against a model, arbitrary bytes.
//!
//! Oracle: no panic, bounded time, either a `Link` with sane values or a clear `Malformed`, and
//! untouched messages next to a damaged one decode exactly as they do alone.
//!
//! The generative tests are the `gen_*` ones (`tools/fuzz.sh netlink` runs only those, for as long
//! as asked). Their case count comes from `PROPTEST_CASES` (default: a CI-sized slice), their seed
//! from `PROPTEST_RNG_SEED` (default: random; fixed under CI, `CI` set); a failing case is kept by proptest in
//! `tests/hostile_netlink.proptest-regressions` and replayed first by every later run.

use std::time::{Duration, Instant};

use portsyncd::core::LinkOp;
use portsyncd::netlink::{is_escaped_name, parse_datagram, NetlinkItem};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

/// The seed of CI's slice (with `CI` set and no `PROPTEST_RNG_SEED`).
const CI_SEED: u64 = 0x5EED_0015;

/// Cases per generative test when `PROPTEST_CASES` is not set (a few seconds in a debug build).
const CI_CASES: u32 = 512;

/// Parsing one datagram (at most 64 KiB here) must take less than this, even on a loaded machine.
/// The real figure is microseconds; this only catches loops and quadratic blow-ups.
const PARSE_BOUND: Duration = Duration::from_secs(1);

fn config() -> ProptestConfig {
    let mut c = ProptestConfig::default(); // reads PROPTEST_CASES, PROPTEST_RNG_SEED, ...
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = CI_CASES;
    }
    // CI runs a fixed-seed slice unless a seed is given.
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() && std::env::var_os("CI").is_some() {
        c.rng_seed = RngSeed::Fixed(CI_SEED);
    }
    c
}

/// Decodes an annotated hex fixture (as tests/netlink_parser.rs does).
fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|s| s.bytes().filter(|c| !c.is_ascii_whitespace()))
        .collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).expect("ascii"), 16).expect("hex digit"))
        .collect()
}

/// Every captured datagram (tests/fixtures/netlink, described in tests/netlink_parser.rs).
fn fixtures() -> Vec<Vec<u8>> {
    [
        include_str!("fixtures/netlink/newlink_up.hex"),
        include_str!("fixtures/netlink/newlink_mtu.hex"),
        include_str!("fixtures/netlink/newlink_down.hex"),
        include_str!("fixtures/netlink/newlink_master.hex"),
        include_str!("fixtures/netlink/dellink.hex"),
        include_str!("fixtures/netlink/dellink_bridge.hex"),
        include_str!("fixtures/netlink/dump_0.hex"),
        include_str!("fixtures/netlink/dump_1.hex"),
        include_str!("fixtures/netlink/dump_2.hex"),
    ]
    .iter()
    .map(|t| hex(t))
    .collect()
}

/// The parse, timed, with the invariants every result must meet whatever the input.
fn parse_checked(bytes: &[u8]) -> Vec<NetlinkItem> {
    let start = Instant::now();
    let items = parse_datagram(bytes);
    let took = start.elapsed();
    assert!(took < PARSE_BOUND, "{} bytes took {took:?}", bytes.len());
    // One item per message of at least 16 bytes, plus at most one for a broken tail.
    assert!(items.len() <= bytes.len() / 16 + 1, "{} items", items.len());
    for item in &items {
        match item {
            NetlinkItem::Link { event, .. } => {
                let l = &event.link;
                assert_ne!(l.ifindex, 0, "{l:?}");
                // A name can never be longer than its attribute (escaped: 4 characters per byte
                // and the mark), so never longer than the datagram.
                assert!(l.name.len() <= bytes.len() * 4 + 16, "{l:?}");
                if l.name.contains('\0') {
                    panic!("NUL kept in a name: {l:?}");
                }
            }
            NetlinkItem::Malformed { reason } => assert!(!reason.is_empty()),
            NetlinkItem::Done { .. } | NetlinkItem::Error { .. } | NetlinkItem::Ignored => {}
        }
    }
    let _ = portsyncd::netlink::parser::find_ack(bytes, 1);
    items
}

/// The split of a datagram into its messages by their `nlmsg_len` (valid datagrams only).
fn messages(datagram: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= datagram.len() {
        let len = u32::from_ne_bytes(datagram[off..off + 4].try_into().unwrap()) as usize;
        out.push(datagram[off..off + len].to_vec());
        off += (len + 3) & !3;
    }
    out
}

/// One way to damage a message.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte with a non-zero mask.
    Flip { at: usize, mask: u8 },
    /// Overwrite an aligned u16 (attribute lengths and types are u16) with a boundary value.
    U16 { at: usize, value: u16 },
    /// Overwrite an aligned u32 (nlmsg_len, ifindex, flags, MTU, master) with a boundary value.
    U32 { at: usize, value: u32 },
    /// Cut the message at this length (and say so in nlmsg_len, or not).
    Truncate { at: usize, fix_len: bool },
    /// Insert bytes (and grow nlmsg_len, or not).
    Insert {
        at: usize,
        bytes: Vec<u8>,
        fix_len: bool,
    },
}

fn boundary_u16() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(0u16),
        Just(1),
        Just(3),
        Just(4),
        Just(5),
        Just(0x7fff),
        Just(0x8000),
        Just(0xffff),
        any::<u16>()
    ]
}

fn boundary_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(15),
        Just(16),
        Just(17),
        Just(0x7fff_ffff),
        Just(0x8000_0000),
        Just(u32::MAX),
        any::<u32>()
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), 1..=255u8)
            .prop_map(|(i, mask)| Mutation::Flip { at: i.index(usize::MAX), mask }),
        2 => (any::<prop::sample::Index>(), boundary_u16())
            .prop_map(|(i, value)| Mutation::U16 { at: i.index(usize::MAX), value }),
        2 => (any::<prop::sample::Index>(), boundary_u32())
            .prop_map(|(i, value)| Mutation::U32 { at: i.index(usize::MAX), value }),
        1 => (any::<prop::sample::Index>(), any::<bool>())
            .prop_map(|(i, fix_len)| Mutation::Truncate { at: i.index(usize::MAX), fix_len }),
        1 => (any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 1..64), any::<bool>())
            .prop_map(|(i, bytes, fix_len)| Mutation::Insert { at: i.index(usize::MAX), bytes, fix_len }),
    ]
}

fn set_len(msg: &mut [u8]) {
    if msg.len() >= 4 {
        let len = msg.len() as u32;
        msg[..4].copy_from_slice(&len.to_ne_bytes());
    }
}

/// Applies `m` to `msg` (positions are taken modulo the message's size).
fn apply(msg: &mut Vec<u8>, m: &Mutation) {
    if msg.is_empty() {
        return;
    }
    match m {
        Mutation::Flip { at, mask } => {
            let i = at % msg.len();
            msg[i] ^= mask;
        }
        Mutation::U16 { at, value } => {
            let i = (at % msg.len()) & !1;
            if i + 2 <= msg.len() {
                msg[i..i + 2].copy_from_slice(&value.to_ne_bytes());
            }
        }
        Mutation::U32 { at, value } => {
            let i = (at % msg.len()) & !3;
            if i + 4 <= msg.len() {
                msg[i..i + 4].copy_from_slice(&value.to_ne_bytes());
            }
        }
        Mutation::Truncate { at, fix_len } => {
            msg.truncate(at % msg.len());
            if *fix_len {
                set_len(msg);
            }
        }
        Mutation::Insert { at, bytes, fix_len } => {
            let i = at % (msg.len() + 1);
            msg.splice(i..i, bytes.iter().copied());
            if *fix_len {
                set_len(msg);
            }
        }
    }
}

/// The captured messages, one per fixture message, with what they decode to alone.
fn captured() -> Vec<(Vec<u8>, Vec<NetlinkItem>)> {
    fixtures()
        .iter()
        .flat_map(|d| messages(d))
        .map(|m| {
            let items = parse_datagram(&m);
            (m, items)
        })
        .collect()
}

proptest! {
    #![proptest_config(config())]

    /// A captured message damaged by a few mutations decodes or reports, never panics; when it is
    /// followed by untouched messages and its own length still frames it, those decode exactly as
    /// they do alone.
    #[test]
    fn gen_mutated_captured_messages(
        pick in any::<prop::sample::Index>(),
        muts in prop::collection::vec(mutation(), 1..6),
        tail in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
    ) {
        let all = captured();
        let mut msg = all[pick.index(all.len())].0.clone();
        for m in &muts {
            apply(&mut msg, m);
        }
        // Alone.
        parse_checked(&msg);
        // Followed by untouched messages, framed by the real length of the damaged one.
        let mut framed = msg.clone();
        set_len(&mut framed);
        if framed.len() >= 16 {
            while !framed.len().is_multiple_of(4) {
                framed.push(0);
            }
            let mut datagram = framed.clone();
            let mut want = Vec::new();
            for t in &tail {
                let (m, items) = &all[t.index(all.len())];
                datagram.extend_from_slice(m);
                while !datagram.len().is_multiple_of(4) {
                    datagram.push(0);
                }
                want.extend(items.iter().cloned());
            }
            let items = parse_checked(&datagram);
            prop_assert_eq!(items.len(), 1 + want.len(), "{:?}", items);
            prop_assert_eq!(&items[1..], &want[..]);
        }
    }

    /// Any bytes at all: no panic, bounded time, invariants hold.
    #[test]
    fn gen_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        parse_checked(&bytes);
    }

    /// Arbitrary attribute sets in an RTM_NEWLINK/DELLINK agree with a model of the decoding.
    #[test]
    fn gen_arbitrary_attribute_sets(msg in link_message()) {
        let bytes = msg.encode();
        let items = parse_checked(&bytes);
        prop_assert_eq!(items.len(), 1);
        match (msg.expected(), &items[0]) {
            (Ok(want), NetlinkItem::Link { seq, event, .. }) => {
                prop_assert_eq!(*seq, msg.seq);
                prop_assert_eq!(event.op, if msg.del { LinkOp::Del } else { LinkOp::New });
                prop_assert_eq!(&event.link.name, &want.name);
                prop_assert_eq!(event.link.ifindex, msg.ifindex);
                prop_assert_eq!(event.link.flags, msg.flags);
                prop_assert_eq!(event.link.mtu, want.mtu);
                prop_assert_eq!(event.link.master, want.master);
                prop_assert_eq!(&event.link.kind, &want.kind);
            }
            (Err(()), NetlinkItem::Malformed { .. }) => {}
            (want, got) => prop_assert!(false, "model {:?}, parser {:?}", want, got),
        }
    }
}

/// One attribute of a generated link message.
#[derive(Debug, Clone)]
enum Attr {
    /// Any attribute type (flags included) with any value.
    Raw { kind: u16, value: Vec<u8> },
    /// IFLA_LINKINFO (18) holding these nested attributes.
    LinkInfo(Vec<(u16, Vec<u8>)>),
}

#[derive(Debug, Clone)]
struct LinkMsg {
    del: bool,
    seq: u32,
    ifindex: u32,
    flags: u32,
    attrs: Vec<Attr>,
}

#[derive(Debug, PartialEq)]
struct Want {
    name: String,
    mtu: u32,
    master: u32,
    kind: Option<String>,
}

fn push_attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(4 + value.len()).expect("attribute fits");
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// The model's reading of a string attribute (module docs of src/netlink/parser.rs).
fn model_string(value: &[u8]) -> String {
    let bytes = value.split(|&b| b == 0).next().unwrap_or_default();
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => {
            let s = format!("{} (not UTF-8)", bytes.escape_ascii());
            assert!(is_escaped_name(&s));
            s
        }
    }
}

const TYPE_MASK: u16 = 0x3fff;

impl LinkMsg {
    fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&[0, 0]); // family, pad
        body.extend_from_slice(&1u16.to_ne_bytes()); // ARPHRD_ETHER
        body.extend_from_slice(&self.ifindex.to_ne_bytes());
        body.extend_from_slice(&self.flags.to_ne_bytes());
        body.extend_from_slice(&0u32.to_ne_bytes()); // change
        for a in &self.attrs {
            match a {
                Attr::Raw { kind, value } => push_attr(&mut body, *kind, value),
                Attr::LinkInfo(nested) => {
                    let mut inner = Vec::new();
                    for (k, v) in nested {
                        push_attr(&mut inner, *k, v);
                    }
                    push_attr(&mut body, 18, &inner);
                }
            }
        }
        let mut msg = Vec::new();
        let len = u32::try_from(16 + body.len()).expect("fits");
        msg.extend_from_slice(&len.to_ne_bytes());
        msg.extend_from_slice(&(if self.del { 17u16 } else { 16 }).to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend(body);
        msg
    }

    /// What the parser must make of it: the link, or Err for a malformed message.
    fn expected(&self) -> Result<Want, ()> {
        if self.ifindex == 0 {
            return Err(());
        }
        let mut name = None;
        let mut want = Want {
            name: String::new(),
            mtu: 0,
            master: 0,
            kind: None,
        };
        let u32_of = |v: &[u8]| -> Result<u32, ()> {
            Ok(u32::from_ne_bytes(
                v.get(..4).ok_or(())?.try_into().map_err(|_| ())?,
            ))
        };
        for a in &self.attrs {
            match a {
                Attr::Raw { kind, value } => match kind & TYPE_MASK {
                    3 => name = Some(model_string(value)),
                    4 => want.mtu = u32_of(value)?,
                    10 => want.master = u32_of(value)?,
                    // A raw IFLA_LINKINFO is only generated empty (no nested attribute).
                    18 => want.kind = None,
                    _ => {}
                },
                Attr::LinkInfo(nested) => {
                    want.kind = nested
                        .iter()
                        .find(|(k, _)| k & TYPE_MASK == 1)
                        .map(|(_, v)| model_string(v));
                }
            }
        }
        want.name = name.ok_or(())?;
        Ok(want)
    }
}

fn name_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"Ethernet0\0".to_vec()),
        Just(b"PortChannel1\0".to_vec()),
        Just(b"Ethernet\xff\0".to_vec()),
        Just(b"\0".to_vec()),
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 0..24),
        "[A-Za-z0-9\\\\ é]{0,15}".prop_map(|s| s.into_bytes()),
    ]
}

fn attr() -> impl Strategy<Value = Attr> {
    let value = prop::collection::vec(any::<u8>(), 0..12);
    prop_oneof![
        3 => name_bytes().prop_map(|value| Attr::Raw { kind: 3, value }),
        2 => value.clone().prop_map(|value| Attr::Raw { kind: 4, value }),
        2 => value.clone().prop_map(|value| Attr::Raw { kind: 10, value }),
        1 => Just(Attr::Raw { kind: 18, value: Vec::new() }),
        2 => prop::collection::vec(
            prop_oneof![
                (Just(1u16), name_bytes()),
                (any::<u16>(), prop::collection::vec(any::<u8>(), 0..12)),
            ],
            0..4,
        )
        .prop_map(Attr::LinkInfo),
        // Any other attribute, including the flag bits (NLA_F_NESTED, NLA_F_NET_BYTEORDER).
        3 => (any::<u16>(), prop::collection::vec(any::<u8>(), 0..40))
            .prop_filter("not a linkinfo (generated above)", |(k, _)| k & TYPE_MASK != 18)
            .prop_map(|(kind, value)| Attr::Raw { kind, value }),
    ]
}

fn link_message() -> impl Strategy<Value = LinkMsg> {
    (
        any::<bool>(),
        any::<u32>(),
        prop_oneof![Just(0u32), 1..100u32, any::<u32>()],
        any::<u32>(),
        prop::collection::vec(attr(), 0..12),
    )
        .prop_map(|(del, seq, ifindex, flags, attrs)| LinkMsg {
            del,
            seq,
            ifindex,
            flags,
            attrs,
        })
}

/// Every single-bit flip of every captured message (deterministic, exhaustive): the invariants hold.
#[test]
fn every_bit_flip_of_every_captured_message() {
    let mut flips = 0;
    for (msg, _) in captured() {
        for i in 0..msg.len() {
            for bit in 0..8 {
                let mut m = msg.clone();
                m[i] ^= 1 << bit;
                parse_checked(&m);
                flips += 1;
            }
        }
    }
    assert!(flips > 40_000, "{flips}");
}

/// Inputs AFL++ found crashing or hanging (`tools/afl/run.sh` keeps them in
/// tests/fixtures/netlink/afl/): each must now parse within the bound, with the invariants.
#[test]
fn replays_the_inputs_kept_by_afl() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/netlink/afl");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return; // none kept
    };
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|e| e == "bin") {
            let bytes = std::fs::read(&path).expect("read a kept input");
            parse_checked(&bytes);
        }
    }
}
