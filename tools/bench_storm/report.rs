//! The numbers: one storm's results, the table rows, medians.

pub struct StormResult {
    pub batch_ms: f64,
    pub notifications: u64,
    pub lost: u64,
    pub last_after_batch_ms: f64,
    pub converge_ms: f64,
    pub cpu_s: f64,
    pub cpu_sched_s: Option<f64>,
}

impl StormResult {
    /// schedstat (ns resolution, all threads) when the kernel has it, else utime+stime (10 ms ticks).
    pub fn cpu_best(&self) -> f64 {
        self.cpu_sched_s.unwrap_or(self.cpu_s)
    }
}

pub fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

pub fn row(what: &str, value: f64, unit: &str) {
    println!("  {what:<58} {value:>9.1} {unit}");
}

pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn per_change_us(r: &StormResult) -> f64 {
    if r.notifications == 0 {
        return f64::NAN;
    }
    r.cpu_best() * 1e6 / r.notifications as f64
}

pub fn print_storm(r: &StormResult, overrun: bool, flaps: usize) {
    let reference = if overrun {
        "SIGCONT"
    } else {
        "the kernel's last notification"
    };
    row("ip -batch of the storm", r.batch_ms, "ms");
    println!(
        "  {:<58} {:>9}",
        "kernel link notifications (RTM_NEWLINK/DELLINK)", r.notifications
    );
    if r.lost > 0 {
        println!(
            "  {:<58} {:>9}",
            "  monitor overruns (ENOBUFS): count is a lower bound", r.lost
        );
    }
    row(
        "last notification after the batch ended (linkwatch)",
        r.last_after_batch_ms,
        "ms",
    );
    row(
        &format!("STATE_DB converged after {reference}"),
        r.converge_ms,
        "ms",
    );
    row(
        "daemon CPU, utime+stime (/proc/pid/stat)",
        r.cpu_s * 1e3,
        "ms",
    );
    if let Some(s) = r.cpu_sched_s {
        row("daemon CPU, schedstat (all threads)", s * 1e3, "ms");
    }
    row(
        "daemon CPU per kernel link notification",
        per_change_us(r),
        "µs",
    );
    row(
        "daemon CPU per `ip link set` command",
        r.cpu_best() * 1e6 / flaps as f64,
        "µs",
    );
    if overrun {
        println!(
            "  (with --overrun the daemon never reads the notifications the kernel dropped, so the"
        );
        println!("   per-change CPU figures are not comparable with a run without it)");
    }
}
