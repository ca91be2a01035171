//! The invariants, judged from the kernel (`ip -json link show`), from what Redis holds and from what
//! MONITOR saw Redis receive; never from the daemon's own counters.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};

use crate::switch::kernel_links;
use crate::watch::PortWrite;
use crate::world::{World, APPL_DB, STATE_DB};

/// A port as the kernel has it.
pub use crate::switch::Link;

impl Link {
    /// The STATE_DB `PORT_TABLE|<port>` fields portsyncd must publish for it.
    pub fn state_fields(&self) -> [(&'static str, Vec<u8>); 4] {
        let ud = |b: bool| if b { b"up".to_vec() } else { b"down".to_vec() };
        [
            ("admin_status", ud(self.admin_up)),
            ("netdev_oper_status", ud(self.oper_up)),
            ("mtu", self.mtu.to_string().into_bytes()),
            ("state", b"ok".to_vec()),
        ]
    }
}

/// The kernel's truth for the soak's ports (absent ones are missing from the map).
pub fn kernel(w: &World) -> Result<BTreeMap<String, Link>> {
    let wanted: BTreeSet<&str> = w.ports.iter().map(String::as_str).collect();
    Ok(kernel_links(w.ns())?
        .into_iter()
        .filter(|(name, _)| wanted.contains(name.as_str()))
        .collect())
}

/// Every STATE_DB `PORT_TABLE|<port>` of the soak's ports, as raw field maps; a key of another type
/// reads as `Err(reply)`.
pub type StateView = BTreeMap<String, Result<BTreeMap<String, Vec<u8>>, String>>;

pub fn state_db(w: &World) -> Result<StateView> {
    let mut con = w.con(STATE_DB)?;
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for p in &w.ports {
        pipe.cmd("HGETALL").arg(format!("PORT_TABLE|{p}"));
    }
    let replies: Vec<redis::Value> = pipe.query(&mut con).context("STATE_DB HGETALL")?;
    let mut view = BTreeMap::new();
    for (p, v) in w.ports.iter().zip(replies) {
        view.insert(p.clone(), fields(v));
    }
    Ok(view)
}

fn bytes(v: &redis::Value) -> Option<Vec<u8>> {
    match v {
        redis::Value::BulkString(b) => Some(b.clone()),
        redis::Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    }
}

fn fields(v: redis::Value) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let pairs: Vec<(redis::Value, redis::Value)> = match v {
        redis::Value::Map(m) => m,
        redis::Value::Array(a) => {
            let mut it = a.into_iter();
            let mut out = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            out
        }
        other => return Err(format!("{other:?}")),
    };
    Ok(pairs
        .iter()
        .filter_map(|(k, v)| Some((String::from_utf8_lossy(&bytes(k)?).into_owned(), bytes(v)?)))
        .collect())
}

/// The ports where STATE_DB differs from the kernel: a present link needs its four fields, an absent
/// one no key.
pub fn mismatches(kernel: &BTreeMap<String, Link>, state: &StateView) -> Vec<String> {
    let mut out = Vec::new();
    for (p, st) in state {
        let ok = match (kernel.get(p), st) {
            (None, Ok(f)) => f.is_empty(),
            (Some(l), Ok(f)) => l
                .state_fields()
                .iter()
                .all(|(k, v)| f.get(*k).map(Vec::as_slice) == Some(v.as_slice())),
            (_, Err(_)) => false,
        };
        if !ok {
            out.push(p.clone());
        }
    }
    out
}

/// Ports with no APPL_DB `PORT_TABLE:<port>` (CONFIG_DB lists every port: all must be there).
pub fn appl_missing(w: &World) -> Result<Vec<String>> {
    let mut con = w.con(APPL_DB)?;
    let mut pipe = redis::pipe();
    for p in &w.ports {
        pipe.cmd("EXISTS").arg(format!("PORT_TABLE:{p}"));
    }
    let e: Vec<i64> = pipe.query(&mut con).context("APPL_DB EXISTS")?;
    Ok(w.ports
        .iter()
        .zip(e)
        .filter(|(_, e)| *e == 0)
        .map(|(p, _)| p.clone())
        .collect())
}

/// The daemon's JSON export (rewritten after each acknowledged commit): its generation and the
/// ports whose saved admin state or MTU differ from the kernel (present/absent included).
pub fn export_lag(w: &World, kernel: &BTreeMap<String, Link>) -> Result<(u64, Vec<String>)> {
    let text = std::fs::read(w.state_dir().join("port_state.json")).context("reading export")?;
    let doc: serde_json::Value = serde_json::from_slice(&text).context("parsing export")?;
    let generation = doc["generation"]
        .as_u64()
        .context("export without generation")?;
    let saved = doc["ports"].as_object().context("export without ports")?;
    let mut lag = Vec::new();
    for p in &w.ports {
        let same = match (kernel.get(p), saved.get(p)) {
            (None, None) => true,
            (Some(l), Some(s)) => {
                s["admin_state"].as_u64() == Some(u64::from(l.admin_up))
                    && s["mtu"].as_u64() == Some(u64::from(l.mtu))
            }
            _ => false,
        };
        if !same {
            lag.push(p.clone());
        }
    }
    Ok((generation, lag))
}

/// What a restart would load, as `portsyncd-state inspect --json` and `verify` see the state dir.
pub struct OnDisk {
    /// The newest generation of sled that verifies.
    pub sled: Option<u64>,
    /// The JSON export's generation, if its checksum verifies (the ladder's last rung before a cold
    /// start; preferred when newer than sled's).
    pub export: Option<u64>,
    /// `verify`'s exit status and output.
    pub verify: (i32, String),
}

impl OnDisk {
    /// The generation the recovery ladder would start from.
    pub fn loads(&self) -> Option<u64> {
        self.sled.max(self.export)
    }
}

pub fn store_on_disk(w: &World) -> Result<OnDisk> {
    let (code, out) = w.state_tool(&["inspect", "--json"])?;
    if code != 0 {
        bail!("portsyncd-state inspect exited {code}: {out}");
    }
    let doc: serde_json::Value = serde_json::from_str(&out).context("inspect --json")?;
    let sled = doc["generations"].as_array().and_then(|g| {
        g.iter()
            .filter(|x| x["valid"].as_bool() == Some(true))
            .filter_map(|x| x["generation"].as_u64())
            .max()
    });
    let exp = &doc["json_export"];
    let export = if exp["valid"].as_bool() == Some(true) {
        exp["generation"].as_u64()
    } else {
        None
    };
    Ok(OnDisk {
        sled,
        export,
        verify: w.state_tool(&["verify"])?,
    })
}

/// Violations of "no DEL for a port that exists" among `writes`: a STATE_DB DEL of a port that was
/// never deleted from the kernel in the window, or any APPL_DB delete (CONFIG_DB never drops a port).
pub fn bad_deletes(writes: &[PortWrite], deleted: &BTreeSet<String>) -> Vec<String> {
    writes
        .iter()
        .filter_map(|w| match w {
            PortWrite::State { port, del: true } if !deleted.contains(port) => {
                Some(format!("STATE_DB DEL PORT_TABLE|{port}"))
            }
            PortWrite::ApplDel { port } => Some(format!("APPL_DB delete of {port}")),
            _ => None,
        })
        .collect()
}

/// Violations of "a warm restart writes nothing for unchanged ports": STATE_DB port writes outside
/// `allowed` (the ports whose kernel state differs from the saved or published one).
pub fn warm_churn(writes: &[PortWrite], allowed: &BTreeSet<String>) -> BTreeSet<String> {
    writes
        .iter()
        .filter_map(|w| match w {
            PortWrite::State { port, .. } if !allowed.contains(port) => Some(port.clone()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(mtu: u32) -> Link {
        Link {
            admin_up: true,
            oper_up: true,
            mtu,
        }
    }

    fn published(l: &Link) -> BTreeMap<String, Vec<u8>> {
        l.state_fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    #[test]
    fn mismatches_compare_bytes_presence_and_key_type() {
        let kernel: BTreeMap<String, Link> =
            [("E0".to_string(), up(9100)), ("E4".to_string(), up(1500))].into();
        let mut state: StateView = BTreeMap::new();
        state.insert("E0".into(), Ok(published(&up(9100))));
        let mut stale = published(&up(9100));
        stale.insert("mtu".into(), vec![0xff]);
        state.insert("E4".into(), Ok(stale));
        state.insert("E8".into(), Ok(BTreeMap::new()));
        assert_eq!(mismatches(&kernel, &state), vec!["E4".to_string()]);
        // A foreign field does not matter; a key of another type does; a leftover key does.
        let mut extra = published(&up(1500));
        extra.insert("foreign".into(), b"x".to_vec());
        state.insert("E4".into(), Ok(extra));
        state.insert("E8".into(), Err("WRONGTYPE".into()));
        assert_eq!(mismatches(&kernel, &state), vec!["E8".to_string()]);
        state.insert("E8".into(), Ok(published(&up(1500))));
        assert_eq!(mismatches(&kernel, &state), vec!["E8".to_string()]);
    }

    #[test]
    fn deletes_and_churn_are_told_apart() {
        let w = vec![
            PortWrite::State {
                port: "E0".into(),
                del: true,
            },
            PortWrite::State {
                port: "E4".into(),
                del: false,
            },
            PortWrite::ApplDel { port: "E8".into() },
        ];
        let deleted: BTreeSet<String> = ["E0".to_string()].into();
        assert_eq!(bad_deletes(&w, &deleted), vec!["APPL_DB delete of E8"]);
        assert_eq!(bad_deletes(&w, &BTreeSet::new()).len(), 2);
        assert_eq!(
            warm_churn(&w, &deleted),
            ["E4".to_string()].into_iter().collect()
        );
    }
}
