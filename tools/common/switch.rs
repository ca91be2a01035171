//! The switch both `bench-storm` and `chaos-soak` build: a private redis-server on a unix socket,
//! CONFIG_DB's port table, and the kernel's view of the ports in the namespace.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

/// Starts redis-server, private (no TCP port, socket mode 700, nothing saved), on `sock`, logging to
/// `dir/redis.log`, in a process group of its own; `extra` options go after the common ones. The
/// caller waits for it to answer.
pub fn spawn_redis(sock: &Path, dir: &Path, extra: &[&str]) -> Result<Child> {
    Command::new("redis-server")
        .args(["--port", "0", "--unixsocket"])
        .arg(sock)
        .args([
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(extra)
        .args(["--logfile", "redis.log", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting redis-server")
}

/// CONFIG_DB `PORT|<port>` for every port, like a real switch's port table: alias, lanes, speed,
/// mtu, admin_status and index, then `extra` fields. `con` has CONFIG_DB selected.
pub fn seed_port_table(
    con: &mut redis::Connection,
    ports: &[String],
    extra: &[(&str, &str)],
) -> Result<()> {
    let mut pipe = redis::pipe();
    for (i, p) in ports.iter().enumerate() {
        let lanes = format!("{},{},{},{}", i * 4 + 1, i * 4 + 2, i * 4 + 3, i * 4 + 4);
        let mut fields = vec![
            ("alias", format!("etp{}", i + 1)),
            ("lanes", lanes),
            ("speed", "100000".into()),
            ("mtu", "9100".into()),
            ("admin_status", "up".into()),
            ("index", (i + 1).to_string()),
        ];
        fields.extend(extra.iter().map(|&(f, v)| (f, v.to_string())));
        pipe.cmd("HSET").arg(format!("PORT|{p}")).arg(&fields);
    }
    pipe.query::<()>(con).context("seeding CONFIG_DB")
}

/// A link as the kernel has it: admin = IFF_UP, oper = operstate UP or UNKNOWN (what IFF_RUNNING
/// reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub admin_up: bool,
    pub oper_up: bool,
    pub mtu: u32,
}

/// Every link of namespace `ns`, by name, from `ip -json link show`.
pub fn kernel_links(ns: &str) -> Result<HashMap<String, Link>> {
    let out = Command::new("ip")
        .args(["-n", ns, "-json", "link", "show"])
        .output()?;
    if !out.status.success() {
        bail!(
            "ip -json link show: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let links: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).context("ip -json output")?;
    let mut by_name = HashMap::new();
    for l in &links {
        let Some(name) = l["ifname"].as_str() else {
            continue;
        };
        let admin_up = l["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP"));
        let oper_up = matches!(l["operstate"].as_str(), Some("UP") | Some("UNKNOWN"));
        let mtu = l["mtu"]
            .as_u64()
            .and_then(|m| u32::try_from(m).ok())
            .unwrap_or(0);
        by_name.insert(
            name.to_string(),
            Link {
                admin_up,
                oper_up,
                mtu,
            },
        );
    }
    Ok(by_name)
}
