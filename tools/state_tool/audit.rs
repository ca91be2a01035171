//! `portsyncd-state audit`: is STATE_DB telling the truth about the kernel?
//!
//! Run in the switch's network namespace (the swss container's). For every port configured in
//! CONFIG_DB `PORT`, three views are compared: the kernel (one `RTM_GETLINK` dump on a netlink socket
//! of the tool's own), STATE_DB `PORT_TABLE|<port>`, and the saved state (the JSON export the daemon
//! rewrites atomically after each commit; read as a plain file, so the daemon's lock and its sled
//! store are never touched). Only reads: a running daemon is not disturbed.
//!
//! Exit 0 when STATE_DB matches the kernel for every configured port, 1 naming each port where it
//! does not, 2 on bad input (options, unreachable Redis, no netlink).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use portsyncd::core::{PortStatus, RawFields};
use portsyncd::netlink::{LinkSocket, NetlinkItem, RecvOutcome};
use portsyncd::sonic::{DbLayout, SonicDb};
use portsyncd::store::layout::LEGACY_FILE;
use portsyncd::store::{json_export, PortRecord};

use super::Fail;

#[derive(Args)]
pub struct AuditArgs {
    /// SONiC database layout (database_config.json).
    #[arg(
        long,
        env = "PORTSYNCD_DB_CONFIG",
        value_name = "PATH",
        default_value = "/var/run/redis/sonic-db/database_config.json"
    )]
    db_config: PathBuf,
    /// Multi-ASIC namespace, resolved through database_global.json beside --db-config.
    #[arg(long, env = "PORTSYNCD_NAMESPACE", value_name = "NAME")]
    namespace: Option<String>,
    /// One Redis for every DB with SONiC's default ids; overrides --db-config.
    #[arg(long, env = "PORTSYNCD_REDIS_URL", value_name = "URL")]
    redis_url: Option<String>,
    /// The saved state to compare (default: <state-dir>/port_state.json; `off` to skip).
    #[arg(long, env = "PORTSYNCD_JSON_EXPORT", value_name = "PATH|off")]
    json_export: Option<String>,
    /// Print every configured port, not only those where a view differs.
    #[arg(long)]
    all: bool,
}

/// One port's view: admin, oper, mtu (None: absent).
type View = Option<PortStatus>;

fn show(v: &View) -> String {
    match v {
        None => "absent".into(),
        Some(s) => format!(
            "{}/{}/{}",
            if s.admin_up { "up" } else { "down" },
            if s.oper_up { "up" } else { "down" },
            s.mtu
        ),
    }
}

/// The fields of `a` that differ from `b` (admin, oper, mtu; or presence).
fn diff(a: &View, b: &View) -> Vec<&'static str> {
    match (a, b) {
        (None, None) => vec![],
        (Some(_), None) | (None, Some(_)) => vec!["presence"],
        (Some(x), Some(y)) => {
            let mut d = vec![];
            if x.admin_up != y.admin_up {
                d.push("admin_status");
            }
            if x.oper_up != y.oper_up {
                d.push("netdev_oper_status");
            }
            if x.mtu != y.mtu {
                d.push("mtu");
            }
            d
        }
    }
}

/// STATE_DB's view of a port: absent without `state ok`; present but unreadable is reported as
/// a difference of its own.
fn state_view(fields: Option<&RawFields>) -> Result<View, String> {
    match fields {
        None => Ok(None),
        Some(f) if f.get(b"state".as_slice()).map(Vec::as_slice) != Some(b"ok") => Ok(None),
        Some(f) => PortStatus::from_raw(f).map(Some).ok_or_else(|| {
            let shown: Vec<String> = f
                .iter()
                .map(|(k, v)| format!("{}={}", k.escape_ascii(), v.escape_ascii()))
                .collect();
            format!("malformed entry {{{}}}", shown.join(", "))
        }),
    }
}

/// The kernel's links by name: one dump, retried when the kernel marks it interrupted.
fn kernel_links() -> Result<BTreeMap<String, PortStatus>, Fail> {
    let sock =
        LinkSocket::open().map_err(|e| Fail(2, format!("cannot open a netlink socket: {e}")))?;
    'dump: for _ in 0..5 {
        let seq = sock
            .request_dump()
            .map_err(|e| Fail(2, format!("link dump request failed: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut links = BTreeMap::new();
        let mut buf = Vec::new();
        while Instant::now() < deadline {
            let items = match sock.recv(&mut buf) {
                Ok(RecvOutcome::Items(items)) => items,
                Ok(RecvOutcome::Timeout) => continue,
                Ok(RecvOutcome::Overrun) => continue 'dump,
                Err(e) => return Err(Fail(2, format!("netlink receive failed: {e}"))),
            };
            for item in items {
                match item {
                    NetlinkItem::Link {
                        seq: s,
                        dump_intr,
                        event,
                    } if s == seq => {
                        if dump_intr {
                            continue 'dump;
                        }
                        let l = event.link;
                        links.insert(
                            l.name.clone(),
                            PortStatus {
                                admin_up: l.admin_up(),
                                oper_up: l.oper_up(),
                                mtu: l.mtu,
                            },
                        );
                    }
                    NetlinkItem::Done { seq: s, dump_intr } if s == seq => {
                        if dump_intr {
                            continue 'dump;
                        }
                        return Ok(links);
                    }
                    NetlinkItem::Error { seq: s, code } if s == seq => {
                        return Err(Fail(
                            2,
                            format!("link dump refused: errno {}", code.saturating_neg()),
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
    Err(Fail(2, "no consistent link dump after 5 attempts".into()))
}

/// `Ethernet4` before `Ethernet12`.
fn natural(name: &str) -> (String, u64, String) {
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let num = name[stem.len()..].parse().unwrap_or(0);
    (stem.to_string(), num, name.to_string())
}

pub fn run(state_dir: &Path, a: &AuditArgs) -> Result<(), Fail> {
    let layout = match &a.redis_url {
        Some(url) => DbLayout::from_redis_url(url),
        None => DbLayout::from_config_file(&a.db_config, a.namespace.as_deref()),
    }
    .map_err(|e| Fail(2, format!("database layout: {e}")))?;
    let mut db = SonicDb::new(layout);
    let config = db
        .read_config_ports()
        .map_err(|e| Fail(2, format!("cannot read CONFIG_DB PORT: {e}")))?;
    let state = db
        .read_state_ports()
        .map_err(|e| Fail(2, format!("cannot read STATE_DB PORT_TABLE: {e}")))?;
    let kernel = kernel_links()?;

    let saved_path = match a.json_export.as_deref() {
        Some("off") => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(state_dir.join(LEGACY_FILE)),
    };
    let (saved, saved_note) = read_saved(saved_path.as_deref());

    let mut names: Vec<&String> = config.keys().collect();
    names.sort_by_key(|n| natural(n));
    let mut lying = Vec::new();
    let mut rows = Vec::new();
    for name in names {
        let (row, state_lies) = compare(name, &kernel, &state, saved.as_ref());
        if state_lies {
            lying.push(name.clone());
        }
        if a.all || row[4] != "ok" {
            rows.push(row);
        }
    }

    println!("kernel: this network namespace; views are admin/oper/mtu");
    println!("saved state: {saved_note}");
    print_rows(&rows, config.len());
    if lying.is_empty() {
        println!(
            "ok: STATE_DB matches the kernel for all {} configured ports",
            config.len()
        );
        Ok(())
    } else {
        Err(Fail(
            1,
            format!(
                "STATE_DB does not match the kernel for {} of {} configured ports: {}",
                lying.len(),
                config.len(),
                lying.join(", ")
            ),
        ))
    }
}

/// The saved state's ports (None: not compared) and the line saying where they come from.
fn read_saved(path: Option<&Path>) -> (Option<BTreeMap<String, PortRecord>>, String) {
    match path {
        None => (None, "not compared (--json-export off)".to_string()),
        Some(p) if !p.exists() => (None, format!("{}: absent", p.display())),
        Some(p) => match json_export::read(p, false) {
            Ok(st) => (
                Some(st.snapshot.ports),
                format!(
                    "{} (generation {}, saved at {})",
                    p.display(),
                    st.generation.map_or("?".into(), |g| g.to_string()),
                    portsyncd::store::format_utc(st.saved_at)
                ),
            ),
            Err(e) => (None, format!("{}: unusable: {e}", p.display())),
        },
    }
}

/// One port's row (port, kernel, STATE_DB, saved, differences or `ok`), and whether STATE_DB
/// differs from the kernel (or is unreadable) for it.
fn compare(
    name: &String,
    kernel: &BTreeMap<String, PortStatus>,
    state: &BTreeMap<String, RawFields>,
    saved: Option<&BTreeMap<String, PortRecord>>,
) -> ([String; 5], bool) {
    let k: View = kernel.get(name).copied();
    let (s, s_problem) = match state_view(state.get(name)) {
        Ok(v) => (v, None),
        Err(p) => (None, Some(p)),
    };
    let sv: Option<View> = saved.map(|ports| {
        ports.get(name).map(|r| PortStatus {
            admin_up: r.admin_up,
            oper_up: r.oper_up,
            mtu: r.mtu,
        })
    });
    let mut notes = Vec::new();
    let mut lies = false;
    let state_diff = diff(&k, &s);
    if let Some(p) = s_problem {
        notes.push(format!("STATE_DB {p}"));
        lies = true;
    } else if !state_diff.is_empty() {
        notes.push(format!("STATE_DB differs: {}", state_diff.join(",")));
        lies = true;
    }
    if let Some(sv) = &sv {
        let d = diff(&k, sv);
        if !d.is_empty() {
            notes.push(format!("saved state differs: {}", d.join(",")));
        }
    }
    let row = [
        name.clone(),
        show(&k),
        show(&s),
        sv.as_ref().map_or("-".into(), show),
        if notes.is_empty() {
            "ok".into()
        } else {
            notes.join("; ")
        },
    ];
    (row, lies)
}

/// The table of rows, or the line saying every configured port agrees.
fn print_rows(rows: &[[String; 5]], configured: usize) {
    if rows.is_empty() {
        println!("all {configured} configured ports agree: kernel, STATE_DB and saved state");
        return;
    }
    let head = ["PORT", "KERNEL", "STATE_DB", "SAVED", "DIFFERENCE"];
    let mut w = head.map(str::len);
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |r: [&str; 5]| {
        println!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        )
    };
    line(head);
    for r in rows {
        line([&r[0], &r[1], &r[2], &r[3], &r[4]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(admin_up: bool, oper_up: bool, mtu: u32) -> View {
        Some(PortStatus {
            admin_up,
            oper_up,
            mtu,
        })
    }

    #[test]
    fn differences_are_named() {
        assert!(diff(&st(true, true, 9100), &st(true, true, 9100)).is_empty());
        assert_eq!(
            diff(&st(true, true, 9100), &st(true, false, 1500)),
            ["netdev_oper_status", "mtu"]
        );
        assert_eq!(diff(&None, &st(true, true, 1)), ["presence"]);
        assert!(diff(&None, &None).is_empty());
    }

    #[test]
    fn an_entry_without_state_ok_counts_as_absent() {
        let mut f = RawFields::new();
        f.insert(b"speed".to_vec(), b"100000".to_vec());
        assert_eq!(state_view(Some(&f)), Ok(None));
        f.insert(b"state".to_vec(), b"ok".to_vec());
        assert!(
            state_view(Some(&f)).is_err(),
            "state ok without the rest is malformed"
        );
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["Ethernet12", "Ethernet4", "Ethernet0"];
        v.sort_by_key(|n| natural(n));
        assert_eq!(v, ["Ethernet0", "Ethernet4", "Ethernet12"]);
    }
}
