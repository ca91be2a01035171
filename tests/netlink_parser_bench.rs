//! Prints the CPU cost of decoding a real RTM_NEWLINK: portsyncd's parser (netlink-packet-route's
//! `LinkHeader` + netlink-packet-core's `NlasIterator`, only four attributes decoded) against
//! netlink-packet-route's full `RouteNetlinkMessage` decode. Numbers only, no assertions on time:
//!
//! ```text
//! cargo test --release --test netlink_parser_bench -- --ignored --nocapture
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::{LinkAttribute, LinkInfo};
use netlink_packet_route::RouteNetlinkMessage;
use portsyncd::netlink::{parse_datagram, NetlinkItem};

/// Counts heap allocations, to report allocations per decode.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

#[allow(unsafe_code)] // a counting global allocator cannot be written without it
                      // SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn hex(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|s| s.chars().filter(|c| !c.is_whitespace()))
        .collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

/// The same fields portsyncd needs, through the full decode.
fn full_decode(bytes: &[u8]) -> (u32, String, u32, Option<String>, u32) {
    let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).unwrap();
    let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(lm)) = msg.payload else {
        panic!("not a NEWLINK")
    };
    let (mut name, mut mtu, mut kind, mut master) = (String::new(), 0, None, 0);
    for attr in lm.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = n,
            LinkAttribute::Mtu(m) => mtu = m,
            LinkAttribute::Controller(m) => master = m,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    (lm.header.index, name, mtu, kind, master)
}

/// CPU time of the calling thread (not wall time: the build machine is shared and loaded).
#[allow(unsafe_code)] // clock_gettime(2): std has no per-thread CPU clock
fn thread_cpu_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

fn measure<T>(label: &str, bytes: usize, iters: u32, mut f: impl FnMut() -> T) {
    for _ in 0..iters / 10 {
        black_box(f());
    }
    let allocs = ALLOCS.load(Ordering::Relaxed);
    let wall = Instant::now();
    let cpu = thread_cpu_ns();
    for _ in 0..iters {
        black_box(f());
    }
    let cpu = thread_cpu_ns() - cpu;
    let wall = wall.elapsed();
    let allocs = ALLOCS.load(Ordering::Relaxed) - allocs;
    println!(
        "{label:<48} {bytes:>5} B  {:>7.0} ns/op CPU  {:>7.0} ns/op wall  {:>4.1} allocs/op",
        cpu as f64 / f64::from(iters),
        wall.as_nanos() as f64 / f64::from(iters),
        allocs as f64 / f64::from(iters)
    );
}

#[test]
#[ignore]
fn bench_link_decode() {
    if cfg!(debug_assertions) {
        println!("(debug build: numbers are not representative; use --release)");
    }
    let up = hex(include_str!("fixtures/netlink/newlink_up.hex"));
    let master = hex(include_str!("fixtures/netlink/newlink_master.hex"));
    let dump = hex(include_str!("fixtures/netlink/dump_1.hex"));
    assert!(matches!(
        parse_datagram(&up)[..],
        [NetlinkItem::Link { .. }]
    ));
    let n = 200_000;
    measure("parse_datagram, RTM_NEWLINK veth", up.len(), n, || {
        parse_datagram(black_box(&up))
    });
    measure("full decode, RTM_NEWLINK veth", up.len(), n, || {
        full_decode(black_box(&up))
    });
    measure(
        "parse_datagram, RTM_NEWLINK veth in a bridge",
        master.len(),
        n,
        || parse_datagram(black_box(&master)),
    );
    measure(
        "full decode, RTM_NEWLINK veth in a bridge",
        master.len(),
        n,
        || full_decode(black_box(&master)),
    );
    measure(
        "parse_datagram, dump datagram (veth + bridge)",
        dump.len(),
        n,
        || parse_datagram(black_box(&dump)),
    );
}
