//! bench-core: the sans-IO core's own cost, without kernel or Redis — CPU per link event, the cost of
//! the EOIU timeout check made after every batch of events, and the cost of rendering and snapshotting
//! metrics. Prints numbers (medians over several runs); asserts nothing.
//!
//!   cargo run --release --features tools --bin bench-core -- [--ports 2048] [--events 200000] [--runs 7]

#![deny(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::time::{Duration, Instant};

use portsyncd::core::link::{IFF_LOWER_UP, IFF_RUNNING, IFF_UP};
use portsyncd::core::{
    Core, CoreConfig, Link, LinkEvent, LinkOp, PortStatus, ReadBack, StartMode, WorkResult,
};
use portsyncd::metrics::Metrics;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("Ethernet{}", i * 4)).collect()
}

fn core(ports: &[String], now: Instant) -> Core {
    let set: BTreeSet<String> = ports.iter().cloned().collect();
    let mut c = Core::new(
        CoreConfig {
            mode: StartMode::Warm,
            configured: set.clone(),
            already_initialised: BTreeSet::new(),
            app_known: set,
            baseline: BTreeMap::new(),
            eoiu_timeout: Some(Duration::from_secs(10)),
        },
        now,
    );
    c.on_dump_requested(1, now);
    c.on_dump_done(1, false, false, now);
    c
}

/// This thread's CPU time in ns (`/proc/thread-self/schedstat`): unlike wall time, not inflated
/// when the machine is busy.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A core with every port up (flags of `event(i, _, 0)`) and published, anti-entropy every second.
fn consistent(ports: &[String]) -> (Core, Instant) {
    let t = Instant::now();
    let mut c = core(ports, t).with_resync_interval(Some(Duration::from_secs(1)));
    c.on_dump_requested(3, t);
    for i in 0..ports.len() {
        c.on_link(3, &event(i, ports, 0), false);
    }
    c.on_dump_done(3, false, false, t);
    c.on_tick(t);
    while c.take_work(t).is_some() {
        c.on_work_result(
            WorkResult::Done {
                known: vec![],
                read_back: None,
            },
            t,
        );
    }
    (c, t)
}

fn event(i: usize, ports: &[String], k: usize) -> LinkEvent {
    let flags = match k % 3 {
        0 => IFF_UP | IFF_RUNNING | IFF_LOWER_UP | 0x1002,
        1 => IFF_UP | 0x1002,
        _ => 0x1002,
    };
    LinkEvent {
        op: LinkOp::New,
        link: Link {
            ifindex: 10 + i as u32,
            name: ports[i].clone(),
            flags,
            mtu: 9100,
            kind: Some("veth".into()),
            master: 0,
        },
    }
}

fn main() {
    let n = arg("--ports", 2048);
    let events = arg("--events", 200_000);
    let runs = arg("--runs", 7);
    let ports = names(n);
    let evs: Vec<LinkEvent> = (0..events)
        .map(|k| event(k % n, &ports, k / n + k))
        .collect();

    // 1. Per event: on_link, with a batch taken and confirmed every 64 events (as the loop does).
    let mut per_event = Vec::new();
    let mut tick_cost = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let mut c = core(&ports, t0);
        let start = Instant::now();
        for (k, ev) in evs.iter().enumerate() {
            c.on_link(0, ev, false);
            if k % 64 == 63 {
                let now = Instant::now();
                c.on_tick(now);
                if c.take_work(now).is_some() {
                    c.on_work_result(
                        WorkResult::Done {
                            known: vec![],
                            read_back: None,
                        },
                        now,
                    );
                }
            }
        }
        per_event.push(start.elapsed().as_nanos() as f64 / events as f64);

        // 2. The EOIU timeout check alone, while waiting (the worst case: it runs every wake-up).
        let mut waiting = Core::new(
            CoreConfig {
                mode: StartMode::Warm,
                configured: BTreeSet::new(),
                already_initialised: BTreeSet::new(),
                app_known: BTreeSet::new(),
                baseline: BTreeMap::new(),
                eoiu_timeout: Some(Duration::from_secs(3600)),
            },
            t0,
        );
        let now = Instant::now();
        let reps = 1_000_000;
        let start = Instant::now();
        for _ in 0..reps {
            waiting.on_tick(black_box(now));
        }
        tick_cost.push(start.elapsed().as_nanos() as f64 / reps as f64);
        black_box(&waiting);
    }

    // 3. Anti-entropy checks on a consistent switch: the dump's replies, the read-back's answer
    //    (built before timing, as the Redis edge would hand it over) and the diff; no write may
    //    come out of them. CHECKS in a row per run: the thread CPU clock read from schedstat moves
    //    in scheduler ticks, so one check alone is too short to measure.
    const CHECKS: u32 = 20;
    let mut check_cost = Vec::new();
    for _ in 0..runs {
        let (mut c, t) = consistent(&ports);
        let replies: Vec<LinkEvent> = (0..n).map(|i| event(i, &ports, 0)).collect();
        let status = PortStatus::of(&replies[0].link);
        let answer = ReadBack {
            state: ports
                .iter()
                .map(|p| (p.clone(), status.fields().into_iter().collect()))
                .collect(),
            app_known: ports.iter().cloned().collect(),
        };
        let answers: Vec<ReadBack> = (0..CHECKS).map(|_| answer.clone()).collect();
        let start = thread_cpu_ns();
        for (k, answer) in answers.into_iter().enumerate() {
            let at = t + Duration::from_secs(3 * (k as u64 + 1));
            c.on_tick(at); // ends the previous check, schedules this one
            let at = at + Duration::from_secs(2); // due, and quiet for CHECK_IDLE
            c.on_tick(at);
            let seq = 10 + k as u32;
            c.on_dump_requested(seq, at);
            for r in &replies {
                c.on_link(seq, r, false);
            }
            c.on_dump_done(seq, false, false, at);
            let w = c.take_work(at).expect("the read-back");
            assert!(w.read_back.is_some());
            c.on_work_result(
                WorkResult::Done {
                    known: vec![],
                    read_back: Some(answer),
                },
                at,
            );
            assert!(
                c.take_work(at).is_none(),
                "a consistent switch gets no write"
            );
        }
        check_cost.push((thread_cpu_ns() - start) as f64 / 1e3 / f64::from(CHECKS));
    }

    // 4. Metrics: counter increment and a full render.
    let m = Metrics::default();
    let reps = 10_000_000u64;
    let start = Instant::now();
    for _ in 0..reps {
        m.netlink_messages.inc();
    }
    let inc_ns = start.elapsed().as_nanos() as f64 / reps as f64;
    let mut render = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        for _ in 0..1000 {
            black_box(m.render());
        }
        render.push(start.elapsed().as_micros() as f64 / 1000.0);
    }

    println!("bench-core: {n} ports, {events} link events, {runs} runs (medians)");
    println!(
        "  core CPU per link event (incl. batching):  {:>8.0} ns",
        median(per_event.clone())
    );
    println!(
        "  EOIU timeout check per call:               {:>8.1} ns",
        median(tick_cost)
    );
    println!(
        "  anti-entropy check, core only (thread CPU): {:>7.0} µs",
        median(check_cost)
    );
    println!(
        "  metrics counter increment:                 {:>8.1} ns",
        inc_ns
    );
    println!(
        "  metrics render (GET /metrics):             {:>8.1} µs",
        median(render)
    );
    println!(
        "  metrics share of per-event cost (2 incs):  {:>8.3} %",
        200.0 * inc_ns / median(per_event)
    );
}
