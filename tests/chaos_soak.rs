//! The chaos soak (`tools/chaos_soak.rs`) in CI: a short run in which every fault comes at least once,
//! and a planted fault that the soak must catch. Long runs: `chaos-soak --duration 1h` (README).

mod common;

use std::process::{Command, Output};

fn soak(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chaos-soak"));
    cmd.args(["--portsyncd", env!("CARGO_BIN_EXE_portsyncd")])
        .args(args)
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run chaos-soak")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every fault in turn (cycle order) on 64 ports for about 100 s: no invariant may break, and every
/// fault and every invariant must have been exercised.
#[test]
fn a_short_soak_with_every_fault_breaks_no_invariant() {
    if !common::powercut::fuse_available() {
        return;
    }
    let o = soak(
        &[
            "--ports",
            "64",
            "--duration",
            "100s",
            "--order",
            "cycle",
            "--seed",
            "1",
        ],
        &[],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    for fault in [
        "link-storm",
        "link-churn",
        "redis-sigstop",
        "redis-restart-empty",
        "daemon-sigkill",
        "daemon-sigterm",
        "disk-full",
        "disk-read-only",
        "foreign-bytes",
        "foreign-wrong-type",
        "power-cut",
    ] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(fault)),
            "{fault} never ran\n{out}"
        );
    }
    for invariant in [
        "Redis equals the kernel",
        "no DEL for a port that exists",
        "a warm restart writes nothing for unchanged ports",
        "every acknowledged generation loads",
        "the store catches up",
        "foreign fields survive",
    ] {
        assert!(
            stdout.contains(invariant),
            "{invariant} never checked\n{out}"
        );
    }
    assert!(stdout.contains("invariant violations: 0"), "{out}");
}

/// The soak catches a daemon that dies: the Redis writer panics at its third batch and every later
/// one, so each start ends with exit status 1 (a planted bug; `PORTSYNCD_FAULT_PANIC` exists only in
/// `fault-injection` builds, which the tests use).
#[test]
fn the_soak_reports_a_daemon_that_dies() {
    if !common::powercut::fuse_available() {
        return;
    }
    let o = soak(
        &[
            "--ports",
            "16",
            "--duration",
            "5s",
            "--order",
            "cycle",
            "--converge-timeout-secs",
            "10",
        ],
        &[("PORTSYNCD_FAULT_PANIC", "redis:2")],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("exited by itself"), "{out}");
}
