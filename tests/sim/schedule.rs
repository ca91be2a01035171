//! The fault schedule one seed draws: windows of chaos, each followed by a quiet period that ends
//! in a quiet point (every invariant checked). Each event carries every random choice it needs, so
//! the schedule alone replays the run and a shrunk schedule (events dropped) still runs.

use proptest::prelude::Rng as _;
use proptest::test_runner::{RngAlgorithm, TestRng};

/// The seeded PRNG (proptest's ChaCha: the same stream on every platform and run).
pub struct Rng(TestRng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        bytes[8..16].copy_from_slice(b"portsync");
        Rng(TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
    }
    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.u64() % n.max(1)
    }
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability `pct` %.
    pub fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}

/// How a foreign writer changes a port's STATE_DB entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// Adds a field of its own (orchagent's `host_tx_ready`): never a difference.
    ExtraField,
    /// Overwrites `mtu` with bytes portsyncd never writes.
    GarbageMtu,
    /// Flips `netdev_oper_status`.
    FlipOper,
    /// Deletes the key.
    DelKey,
    /// Replaces the hash by a string (every HSET gets WRONGTYPE until its owner deletes it).
    WrongType,
}

/// One scheduled event. Port numbers index the name slots `Ethernet{4*i}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Flap {
        port: u32,
    },
    Admin {
        port: u32,
    },
    Mtu {
        port: u32,
        mtu: u32,
    },
    Delete {
        port: u32,
    },
    Create {
        port: u32,
    },
    /// The port joins a bridge, or leaves it (a DELLINK with the master: the netdev stays).
    Bridge {
        port: u32,
    },
    /// Renames the port away (to `sw<i>`, a name portsyncd never publishes, for even ports; to
    /// `Ethernet<4i>x`, a qualifying name no one configured, for odd ones), or back.
    Rename {
        port: u32,
    },
    /// The daemon stops reading netlink (a slow or stopped loop) for `ms`: the socket queue fills,
    /// notifications beyond it are dropped, the overrun is reported when reading resumes.
    ReaderStall {
        ms: u64,
    },
    /// `n` flaps of random ports, at once or a few ms apart (drawn from `sub`).
    Storm {
        n: u32,
        sub: u64,
    },
    /// Notifications queued now are dropped (each with probability `pct`), then the overrun.
    Overrun {
        pct: u64,
        sub: u64,
    },
    /// The next dump ends with NLM_F_DUMP_INTR.
    DumpIntr,
    RedisStall {
        ms: u64,
    },
    /// Every connection cut; a batch in flight lands up to `cut` of its write stages.
    RedisDrop {
        cut: u32,
    },
    RedisRestartEmpty {
        down_ms: u64,
    },
    ForeignWrite {
        port: u32,
        how: Foreign,
    },
    /// Commits fail for `ms` (full or read-only disk).
    DiskFail {
        ms: u64,
    },
    /// SIGKILL (or a power cut of the state dir): `keep` of the unsynced store batches survive.
    Kill {
        keep: u32,
        restart_ms: u64,
        warm: bool,
    },
    /// SIGTERM: the batch in flight is finished, a final commit, then exit.
    Term {
        restart_ms: u64,
        warm: bool,
    },
    /// The process dies inside the next commit, at its `after_ops`-th backend operation.
    CrashInCommit {
        after_ops: u32,
        completes: bool,
        keep: u32,
        restart_ms: u64,
        warm: bool,
    },
    /// The owners of keys holding another type delete them (before every quiet period).
    FixWrongTypes,
    /// A quiet point: every invariant is checked.
    Check,
}

/// Length of a window's chaos phase.
pub const CHAOS_MS: u64 = 10_000;
/// Quiet time before a quiet point: long enough for retries (10 s at most), an EOIU timeout (10 s)
/// and an anti-entropy check (every 10 s, after 2 s without link messages).
pub const QUIET_MS: u64 = 45_000;

/// The schedule of `windows` windows for `seed`, and the number of configured ports.
pub fn generate(seed: u64, windows: u32) -> (u32, Vec<(u64, Ev)>) {
    let mut r = Rng::new(seed);
    let ports = r.range(3, 10) as u32;
    let slots = ports + 2; // two unconfigured names
    let mut out = Vec::new();
    let mut t = 1_000;
    for _ in 0..windows {
        let n = r.range(2, 24);
        let mut evs: Vec<(u64, Ev)> = Vec::new();
        let mut restart_planned = false;
        for _ in 0..n {
            let at = t + r.below(CHAOS_MS - 4_000);
            let port = r.below(slots as u64) as u32;
            let warm = r.pct(60);
            let restart_ms = r.range(10, 3_000);
            let ev = match r.below(100) {
                0..=14 => Ev::Flap { port },
                15..=21 => Ev::Admin { port },
                22..=29 => Ev::Mtu {
                    port,
                    mtu: r.pick(&[1500, 9100, 9216, 1280]),
                },
                30..=35 => Ev::Delete { port },
                36..=42 => Ev::Create { port },
                43..=45 => Ev::Rename { port },
                46..=47 => Ev::Bridge { port },
                48..=52 => Ev::Storm {
                    n: r.range(5, 200) as u32,
                    sub: {
                        let _ = r.range(0, 5); // (kept: the draws of every seed stay as they were)
                        r.u64()
                    },
                },
                53..=58 => Ev::Overrun {
                    pct: r.range(10, 100),
                    sub: r.u64(),
                },
                59..=60 => Ev::DumpIntr,
                61 => Ev::ReaderStall {
                    ms: r.pick(&[500, 3_000, 12_000]),
                },
                62..=65 => Ev::RedisStall {
                    ms: r.pick(&[300, 1_500, 2_500, 4_000]),
                },
                66..=69 => Ev::RedisDrop {
                    cut: r.below(4) as u32,
                },
                70..=71 => Ev::RedisRestartEmpty {
                    down_ms: r.range(50, 2_000),
                },
                72..=79 => Ev::ForeignWrite {
                    port,
                    how: r.pick(&[
                        Foreign::ExtraField,
                        Foreign::GarbageMtu,
                        Foreign::FlipOper,
                        Foreign::DelKey,
                        Foreign::WrongType,
                    ]),
                },
                80..=83 => Ev::DiskFail {
                    ms: r.range(100, 3_000),
                },
                84..=89 if !restart_planned => {
                    restart_planned = true;
                    Ev::Kill {
                        keep: r.below(4) as u32,
                        restart_ms,
                        warm,
                    }
                }
                90..=93 if !restart_planned => {
                    restart_planned = true;
                    Ev::Term { restart_ms, warm }
                }
                94..=99 if !restart_planned => {
                    restart_planned = true;
                    Ev::CrashInCommit {
                        after_ops: r.below(8) as u32,
                        completes: r.pct(50),
                        keep: r.below(4) as u32,
                        restart_ms,
                        warm,
                    }
                }
                _ => Ev::Flap { port },
            };
            evs.push((at, ev));
        }
        evs.sort_by_key(|(at, _)| *at);
        out.extend(evs);
        out.push((t + CHAOS_MS, Ev::FixWrongTypes));
        t += CHAOS_MS + QUIET_MS;
        out.push((t, Ev::Check));
        t += 1;
    }
    // One seed in 25 configures hundreds of ports: commits then take several store batches (256
    // records each), so a crash can hit between them. Drawn last: the events stay those of the
    // small configuration (they touch its ports; storms reach every port).
    let ports = if r.pct(4) {
        r.range(260, 400) as u32
    } else {
        ports
    };
    (ports, out)
}
