//! A whole test switch: a private netns for the "front-panel ports", a private redis-server seeded
//! with a CONFIG_DB PORT table, the orchagent stand-in, and the state directory for portsyncd.

// Compiled into every test crate that uses `common`; each uses a subset of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::daemon::{self, wait_until, Daemon, Standin};
use super::netns::Netns;
use super::redis::RedisServer;

pub struct Rig {
    pub ns: Netns,
    pub redis: RedisServer,
    pub state_dir: PathBuf,
    _standin: Standin,
    _tmp: tempfile::TempDir,
}

impl Rig {
    /// A rig whose CONFIG_DB lists `ports`.
    pub fn new(ports: &[&str]) -> Rig {
        let redis = RedisServer::start();
        daemon::seed_config_ports(&redis.socket, ports);
        let standin = Standin::start(&redis.url());
        let tmp = tempfile::tempdir().expect("tempdir");
        let state_dir = tmp.path().join("state");
        Rig {
            ns: Netns::new(),
            redis,
            state_dir,
            _standin: standin,
            _tmp: tmp,
        }
    }

    pub fn start(&self, extra: &[&str]) -> Daemon {
        Daemon::start(&self.ns.name, &self.redis.url(), &self.state_dir, extra)
    }

    pub fn start_with_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with_env(
            &self.ns.name,
            &self.redis.url(),
            &self.state_dir,
            extra,
            env,
        )
    }

    /// `redis-cli -n db ARGS`.
    pub fn cli(&self, db: u32, args: &[&str]) -> String {
        daemon::cli(&self.redis.socket, db, args)
    }

    pub fn state(&self, port: &str) -> BTreeMap<String, String> {
        daemon::state_port(&self.redis.socket, port)
    }

    pub fn appl(&self, key: &str) -> BTreeMap<String, String> {
        daemon::hgetall(&self.redis.socket, daemon::APPL_DB, key)
    }

    /// Creates `port` (veth peer `p<port>`), both ends up.
    pub fn add_port(&self, port: &str) {
        let peer = peer_of(port);
        self.ns.add_veth(port, &peer);
        self.ns.set_up(&peer);
        self.ns.set_up(port);
    }

    /// Creates every port of `names` (veth peers `p<port>`, both ends up) in one `ip -batch`.
    pub fn add_ports(&self, names: &[String]) {
        let batch: String = names.iter().map(|p| add_port_commands(p)).collect();
        self.ns.ip_batch(&batch);
    }

    /// The kernel's truth for `port` in STATE_DB's terms: (oper, admin, mtu), or None if absent.
    pub fn kernel(&self, port: &str) -> Option<(String, String, String)> {
        let out = self
            .ns
            .exec(&["cat", &format!("/sys/class/net/{port}/flags")]);
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let flags = u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()?;
        let mtu_out = self
            .ns
            .exec(&["cat", &format!("/sys/class/net/{port}/mtu")]);
        let mtu = String::from_utf8_lossy(&mtu_out.stdout).trim().to_string();
        let ud = |b: bool| if b { "up" } else { "down" }.to_string();
        // sysfs `flags` is dev->flags, which never holds IFF_RUNNING; the kernel sets IFF_RUNNING in
        // netlink messages when the operstate is up or unknown.
        let op = self
            .ns
            .exec(&["cat", &format!("/sys/class/net/{port}/operstate")]);
        let operstate = String::from_utf8_lossy(&op.stdout).trim().to_string();
        let running = operstate == "up" || operstate == "unknown";
        Some((ud(running), ud(flags & 0x1 != 0), mtu))
    }

    /// True when STATE_DB matches the kernel for every port in `ports` (absent = no entry).
    pub fn converged(&self, ports: &[String]) -> bool {
        ports.iter().all(|p| {
            let s = self.state(p);
            match self.kernel(p) {
                Some((oper, admin, mtu)) => {
                    s.get("state").map(String::as_str) == Some("ok")
                        && s.get("netdev_oper_status") == Some(&oper)
                        && s.get("admin_status") == Some(&admin)
                        && s.get("mtu") == Some(&mtu)
                }
                None => s.is_empty(),
            }
        })
    }

    /// Ports that differ between STATE_DB and the kernel (for failure messages).
    pub fn mismatches(&self, ports: &[String]) -> Vec<String> {
        ports
            .iter()
            .filter(|p| !self.converged(std::slice::from_ref(*p)))
            .map(|p| format!("{p}: kernel {:?} state {:?}", self.kernel(p), self.state(p)))
            .collect()
    }

    pub fn wait_converged(&self, ports: &[String], timeout: Duration) -> bool {
        daemon::wait_until(timeout, || self.converged(ports))
    }

    /// Enables SONiC warm restart for the next start.
    pub fn enable_warm(&self) {
        self.cli(
            daemon::STATE_DB,
            &["HSET", "WARM_RESTART_ENABLE_TABLE|system", "enable", "true"],
        );
    }

    pub fn warm_table(&self) -> BTreeMap<String, String> {
        daemon::hgetall(
            &self.redis.socket,
            daemon::STATE_DB,
            "WARM_RESTART_TABLE|portsyncd",
        )
    }
}

/// How long integration tests wait for anything.
pub const T: Duration = Duration::from_secs(20);

/// A rig whose CONFIG_DB lists `Ethernet0`, `Ethernet4`, ... (`n` ports), and those names.
pub fn rig_with(n: usize) -> (Rig, Vec<String>) {
    let names = port_names(n);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    (Rig::new(&refs), names)
}

impl Rig {
    /// Starts the daemon (cold: the ports are created after its initial dump, so they are not
    /// SONiC's "old netdevs"), creates `names` and waits until STATE_DB matches the kernel for them.
    pub fn start_with_ports(&self, names: &[String], extra: &[&str]) -> Daemon {
        let d = self.start(extra);
        assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
        self.add_ports(names);
        assert!(
            self.wait_converged(names, T),
            "{:?}\n{}",
            self.mismatches(names),
            d.log_text()
        );
        d
    }

    /// A first, cold run: `names` created (all at once, or one at a time so that each lands in a
    /// generation of its own), converged, and a clean stop with the final commit.
    pub fn first_run(&self, names: &[String], extra: &[&str], one_at_a_time: bool) {
        let mut d = self.start(extra);
        assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
        let last = format!("PORT_TABLE:{}", names[names.len() - 1]);
        assert!(wait_until(T, || self.appl(&last).len() == 7));
        let cmds = |p: &String| add_port_commands(p);
        if one_at_a_time {
            for p in names {
                self.ns.ip_batch(&cmds(p));
                assert!(self.wait_converged(std::slice::from_ref(p), T));
                std::thread::sleep(Duration::from_millis(250)); // > the commit interval
            }
        } else {
            self.ns
                .ip_batch(&names.iter().map(cmds).collect::<String>());
        }
        assert!(
            self.wait_converged(names, T),
            "{:?}",
            self.mismatches(names)
        );
        // PortInitDone once every configured port exists (not before: some tests leave one out).
        if self.cli(4, &["KEYS", "PORT|*"]).lines().count() == names.len() {
            assert!(wait_until(T, || !self
                .appl("PORT_TABLE:PortInitDone")
                .is_empty()));
        }
        assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
        assert!(
            d.log_text().contains("final state committed"),
            "{}",
            d.log_text()
        );
    }

    /// Enables warm restart, starts the daemon and waits until it reconciled and STATE_DB matches
    /// the kernel for `names`.
    pub fn warm_restart(&self, names: &[String], extra: &[&str]) -> Daemon {
        self.enable_warm();
        // The previous run's `reconciled` must not be mistaken for this one's.
        self.cli(
            daemon::STATE_DB,
            &["HDEL", "WARM_RESTART_TABLE|portsyncd", "state"],
        );
        let d = self.start(extra);
        self.wait_reconciled(&d);
        assert!(
            self.wait_converged(names, T),
            "{:?}",
            self.mismatches(names)
        );
        assert!(!d.log_text().contains("fatal"), "{}", d.log_text());
        d
    }

    /// Waits for `WARM_RESTART_TABLE|portsyncd state reconciled`.
    pub fn wait_reconciled(&self, d: &Daemon) {
        assert!(
            wait_until(T, || self.warm_table().get("state").map(String::as_str)
                == Some("reconciled")),
            "not reconciled: {:?}\n{}",
            self.warm_table(),
            d.log_text()
        );
    }
}

/// The veth peer of a port: `p` + the port's number (`Ethernet12` -> `p12`).
/// The `ip -batch` lines that create `port` and its veth peer, both up.
pub fn add_port_commands(port: &str) -> String {
    let peer = peer_of(port);
    format!("link add {port} type veth peer name {peer}\nlink set {peer} up\nlink set {port} up\n")
}

pub fn peer_of(port: &str) -> String {
    format!("p{}", port.trim_start_matches(|c: char| c.is_alphabetic()))
}

/// `Ethernet0`, `Ethernet4`, ... (`n` names).
pub fn port_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("Ethernet{}", i * 4)).collect()
}
