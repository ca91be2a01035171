//! Private network namespaces for integration tests.
//!
//! [`Netns::new`] creates `psd-<pid>-<counter>` with `ip netns add` and deletes it on drop, so a
//! test never touches the host's interfaces and never leaks a namespace (even when it panics).
//!
//! # Running a test body inside the namespace: re-exec
//!
//! A netlink socket belongs to the namespace of the thread that created it. To open one inside the
//! namespace, the outer test calls [`Netns::run_test_inside`], which spawns
//! `ip netns exec NAME <this test binary> --exact <inner test> --nocapture --ignored --test-threads=1`
//! with `PSD_IN_NETNS=NAME` in the environment. The inner test is `#[ignore]`d (so a normal run skips
//! it) and starts with [`Netns::inside`], which returns the namespace only when that variable is set
//! (otherwise the inner test returns without doing anything, e.g. under `cargo test -- --ignored`).
//! The whole child process, and every `ip` command it runs, is in the namespace.
//!
//! The alternative, `setns(2)` on a dedicated thread, needs `unsafe` libc calls and leaves every
//! helper process (`ip link ...`) in the host namespace unless it is run through `ip netns exec`
//! anyway; the re-exec keeps tests free of `unsafe` and impossible to point at the host.

// Compiled into every test crate that uses `common`; each uses a subset of it.
#![allow(dead_code)]

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// The environment variable that tells an inner test which namespace it runs in.
pub const IN_NETNS_ENV: &str = "PSD_IN_NETNS";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace; deleted on drop when this value created it.
pub struct Netns {
    pub name: String,
    owned: bool,
}

impl Netns {
    /// Creates a fresh namespace `psd-<pid>-<n>` with `lo` up.
    pub fn new() -> Netns {
        let name = format!(
            "psd-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run ip netns add");
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ns = Netns { name, owned: true };
        ns.ip("link set lo up");
        ns
    }

    /// The namespace this process was re-executed in by [`Netns::run_test_inside`], if any.
    /// The returned value does not delete the namespace on drop (the outer test owns it).
    pub fn inside() -> Option<Netns> {
        let name = std::env::var(IN_NETNS_ENV).ok()?;
        Some(Netns { name, owned: false })
    }

    /// Runs `args` (a program and its arguments) inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {} {args:?}: {e}", self.name))
    }

    /// Runs `ip ARGS` inside the namespace (ARGS split on whitespace); panics with stderr on failure.
    pub fn ip(&self, args: &str) -> String {
        let mut argv = vec!["ip"];
        argv.extend(args.split_whitespace());
        let out = self.exec(&argv);
        assert!(
            out.status.success(),
            "ip {args} in {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs many `ip` commands in one process (`ip -batch -`), one per line; much faster than
    /// spawning one `ip` per command when a test needs a burst of link changes.
    pub fn ip_batch(&self, commands: &str) {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "ip", "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ip -batch");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(commands.as_bytes())
            .expect("write ip batch");
        let out = child.wait_with_output().expect("wait ip -batch");
        assert!(
            out.status.success(),
            "ip -batch in {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Creates a veth pair `a` <-> `b`.
    pub fn add_veth(&self, a: &str, b: &str) {
        self.ip(&format!("link add {a} type veth peer name {b}"));
    }

    pub fn set_up(&self, dev: &str) {
        self.ip(&format!("link set {dev} up"));
    }

    pub fn set_down(&self, dev: &str) {
        self.ip(&format!("link set {dev} down"));
    }

    pub fn set_mtu(&self, dev: &str, mtu: u32) {
        self.ip(&format!("link set {dev} mtu {mtu}"));
    }

    pub fn del_link(&self, dev: &str) {
        self.ip(&format!("link del {dev}"));
    }

    /// The ifindex of `dev` in the namespace.
    pub fn ifindex(&self, dev: &str) -> u32 {
        let out = self.ip(&format!("-o link show dev {dev}"));
        out.split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no ifindex in {out:?}"))
    }

    /// The `ifi_flags` of `dev`, read from sysfs inside the namespace.
    pub fn flags(&self, dev: &str) -> u32 {
        let out = self.exec(&["cat", &format!("/sys/class/net/{dev}/flags")]);
        let text = String::from_utf8_lossy(&out.stdout);
        u32::from_str_radix(text.trim().trim_start_matches("0x"), 16)
            .unwrap_or_else(|_| panic!("bad flags {text:?} for {dev}"))
    }

    /// Re-executes the current test binary inside the namespace to run the `#[ignore]`d test
    /// `test_name` (with `extra_env` set), and panics with its output if it fails.
    pub fn run_test_inside(&self, test_name: &str, extra_env: &[(&str, &str)]) {
        let exe = std::env::current_exe().expect("current_exe");
        let exe = exe.to_str().expect("utf-8 test path");
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, exe])
            .args([
                "--exact",
                test_name,
                "--nocapture",
                "--ignored",
                "--test-threads=1",
            ])
            .env(IN_NETNS_ENV, &self.name)
            .envs(extra_env.iter().copied())
            .output()
            .expect("re-exec test binary in netns");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("--- {test_name} in {} ---\n{stdout}\n{stderr}", self.name);
        assert!(
            out.status.success(),
            "inner test {test_name} failed in {}",
            self.name
        );
        // `--exact` with a wrong name runs nothing and still succeeds: make sure it ran.
        assert!(
            stdout.contains("1 passed"),
            "inner test {test_name} did not run (wrong name?)"
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.owned {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .output();
        }
    }
}
