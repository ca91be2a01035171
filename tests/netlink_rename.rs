//! A published port renamed to a name that is not UTF-8 (Linux allows any bytes but NUL, '/', ':' and
//! white space in an ifname). The parser hands the core an escaped name that can never be a port
//! name, so the rename is handled like any rename to an unconfigured name: the old name's STATE_DB
//! entry is deleted at once, nothing is written under the new name, and the other ports keep
//! publishing. Real redis-server (judged by MONITOR and by what it holds) and a real netns.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use common::daemon::wait_until;
use common::monitor::Monitor;
use common::rig::{Rig, T};

/// `ip link set <dev> name <new>` inside the rig's namespace, with `new` as raw bytes.
fn rename(rig: &Rig, dev: &[u8], new: &[u8]) {
    let out = Command::new("ip")
        .args(["netns", "exec", &rig.ns.name, "ip", "link", "set"])
        .arg(OsStr::from_bytes(dev))
        .arg("name")
        .arg(OsStr::from_bytes(new))
        .output()
        .expect("run ip link set name");
    assert!(
        out.status.success(),
        "rename {:?} -> {:?}: {}",
        dev.escape_ascii().to_string(),
        new.escape_ascii().to_string(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rename_to_a_non_utf8_name_deletes_the_old_entry() {
    let rig = Rig::new(&["Ethernet0", "Ethernet4"]);
    let ports = ["Ethernet0".to_string(), "Ethernet4".to_string()];
    let mut d = rig.start_with_ports(&ports, &[]);
    // A netdev must be down to be renamed.
    rig.ns.set_down("Ethernet0");
    assert!(
        wait_until(T, || rig.state("Ethernet0").get("admin_status")
            == Some(&"down".to_string())),
        "{}",
        d.log_text()
    );
    let mon = Monitor::start(&rig.redis.socket, rig.state_dir.with_extension("monitor"));

    let weird: &[u8] = b"Ethernet0\xff\xfe";
    rename(&rig, b"Ethernet0", weird);
    assert!(
        wait_until(T, || rig.state("Ethernet0").is_empty()),
        "the old name's STATE_DB entry stayed after the rename: {:?}\n{}",
        rig.state("Ethernet0"),
        d.log_text()
    );
    // Redis received exactly one STATE_DB port write: the DEL of the old name.
    let writes = mon.state_port_writes();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert!(
        writes[0].contains("\"DEL\"") && writes[0].contains("\"PORT_TABLE|Ethernet0\""),
        "{writes:#?}"
    );
    assert!(
        d.log_text().contains("not UTF-8"),
        "the name is not logged: {}",
        d.log_text()
    );

    // The other port keeps publishing.
    rig.ns.set_mtu("Ethernet4", 4000);
    assert!(
        wait_until(T, || rig.state("Ethernet4").get("mtu")
            == Some(&"4000".to_string())),
        "{}",
        d.log_text()
    );
    // Renamed back, the port is published again under its own name; the odd name never was.
    rename(&rig, weird, b"Ethernet0");
    assert!(
        wait_until(T, || rig.converged(&ports)),
        "{:?}\n{}",
        rig.mismatches(&ports),
        d.log_text()
    );
    // Nothing was ever written under the odd name: it is no port name.
    let sets: Vec<String> = mon
        .state_port_writes()
        .into_iter()
        .filter(|l| {
            !l.contains("\"PORT_TABLE|Ethernet0\"") && !l.contains("\"PORT_TABLE|Ethernet4\"")
        })
        .collect();
    assert!(sets.is_empty(), "{sets:#?}");
    let keys = rig.cli(common::daemon::STATE_DB, &["KEYS", "PORT_TABLE|*"]);
    assert!(!keys.contains("\\x"), "{keys}");
    assert!(d.terminate().success());
}
