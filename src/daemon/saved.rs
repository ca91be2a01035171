//! What the loop hands the committer: the ports whose saved record changed, in a compact form, and the
//! committer's copy of the whole table they apply to.
//!
//! A record's `published` map is always `status.fields()`, so an entry carries only the status (and the
//! kernel's ifindex and flags); the [`PortRecord`] is built when the store encodes it, one at a time.

use std::collections::BTreeMap;

use crate::core::{KernelPort, PortStatus};
use crate::store::PortRecord;

/// One port as the store records it, compactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedPort {
    /// Kernel ifindex (0 while the kernel has no such link).
    pub ifindex: u32,
    /// Kernel `ifi_flags` (0 while the kernel has no such link).
    pub flags: u32,
    /// What STATE_DB holds for the port.
    pub status: PortStatus,
}

impl SavedPort {
    /// The saved form of a published port (`kernel`: the kernel's view, if it has the link).
    pub fn new(status: PortStatus, kernel: Option<KernelPort>) -> SavedPort {
        let (ifindex, flags) = kernel.map_or((0, 0), |k| (k.ifindex, k.flags));
        SavedPort {
            ifindex,
            flags,
            status,
        }
    }

    /// The record the store writes for this port.
    pub fn record(&self, name: &str) -> PortRecord {
        PortRecord {
            name: name.to_string(),
            ifindex: self.ifindex,
            admin_up: self.status.admin_up,
            oper_up: self.status.oper_up,
            flags: self.flags,
            mtu: self.status.mtu,
            published: self.status.fields().into_iter().collect(),
        }
    }
}

/// A hand-over: the whole table (`full`) or the ports changed since the previous hand-over (`None`:
/// no longer published), plus the lifetime counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortDelta {
    pub full: bool,
    pub ports: BTreeMap<String, Option<SavedPort>>,
    pub counters: BTreeMap<String, u64>,
}

impl PortDelta {
    /// Fold `newer` (handed over after `self`) into `self`: the newest entry wins per port, a full
    /// set replaces everything, and a delta on top of a full set keeps it full (removals applied).
    pub fn merge(&mut self, newer: PortDelta) {
        self.counters = newer.counters;
        if newer.full {
            self.full = true;
            self.ports = newer.ports;
            return;
        }
        for (name, port) in newer.ports {
            if self.full && port.is_none() {
                self.ports.remove(&name);
            } else {
                self.ports.insert(name, port);
            }
        }
    }
}

/// The committer's view: the whole table as handed over, and what the store has not got yet.
#[derive(Debug, Default)]
pub struct SavedTable {
    /// Every published port (valid once a full set came).
    table: BTreeMap<String, SavedPort>,
    have_full: bool,
    counters: BTreeMap<String, u64>,
    /// Changes since the last successful commit.
    unsaved: BTreeMap<String, Option<SavedPort>>,
    /// A full set came since the last successful commit: ports it lacks must go.
    unsaved_full: bool,
}

impl SavedTable {
    /// Take a hand-over in.
    pub fn absorb(&mut self, d: PortDelta) {
        self.counters = d.counters;
        if d.full {
            // Drop the old table before building the new one: never two whole tables at once.
            self.table = BTreeMap::new();
            self.table = d
                .ports
                .into_iter()
                .filter_map(|(n, p)| Some((n, p?)))
                .collect();
            self.have_full = true;
            self.unsaved_full = true;
            self.unsaved.clear();
            return;
        }
        for (name, port) in d.ports {
            match port {
                Some(p) => {
                    self.table.insert(name.clone(), p);
                }
                None => {
                    self.table.remove(&name);
                }
            }
            if !self.unsaved_full {
                self.unsaved.insert(name, port);
            }
        }
    }

    /// True once a full set came (before that, nothing can be committed).
    pub fn have_full(&self) -> bool {
        self.have_full
    }

    /// Number of ports in the table.
    pub fn port_count(&self) -> usize {
        self.table.len()
    }

    /// The lifetime counters last handed over.
    pub fn counters(&self) -> &BTreeMap<String, u64> {
        &self.counters
    }

    /// Whether the next commit must be a full set even where the store takes a delta.
    pub fn needs_full(&self) -> bool {
        self.unsaved_full
    }

    /// Every port with its record (a full set).
    pub fn all(&self) -> impl Iterator<Item = (&str, Option<PortRecord>)> {
        self.table
            .iter()
            .map(|(n, p)| (n.as_str(), Some(p.record(n))))
    }

    /// The changes since the last successful commit (a delta).
    pub fn changes(&self) -> impl Iterator<Item = (&str, Option<PortRecord>)> {
        self.unsaved
            .iter()
            .map(|(n, p)| (n.as_str(), p.map(|p| p.record(n))))
    }

    /// A commit succeeded: the store holds the table.
    pub fn saved(&mut self) {
        self.unsaved.clear();
        self.unsaved_full = false;
    }
}

/// A delta for the hand-over tests: counter `n` = `n`, full only for `n == 7`.
#[cfg(test)]
pub(crate) fn numbered_delta(n: u64) -> PortDelta {
    let mut s = PortDelta {
        full: n == 7,
        ..PortDelta::default()
    };
    s.counters.insert("n".into(), n);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(mtu: u32) -> Option<SavedPort> {
        Some(SavedPort {
            ifindex: 3,
            flags: 0x1043,
            status: PortStatus {
                admin_up: true,
                oper_up: false,
                mtu,
            },
        })
    }

    fn delta(full: bool, ports: &[(&str, Option<SavedPort>)], n: u64) -> PortDelta {
        PortDelta {
            full,
            ports: ports.iter().map(|(k, p)| (k.to_string(), *p)).collect(),
            counters: [("n".to_string(), n)].into(),
        }
    }

    #[test]
    fn newer_entries_win_per_port_and_the_counters_are_the_newest() {
        let mut d = delta(false, &[("E0", port(1)), ("E4", port(1))], 1);
        d.merge(delta(false, &[("E4", port(2)), ("E8", None)], 2));
        d.merge(delta(false, &[("E0", None)], 3));
        assert_eq!(
            d,
            delta(false, &[("E0", None), ("E4", port(2)), ("E8", None)], 3)
        );
    }

    #[test]
    fn a_full_set_replaces_and_stays_full_under_later_deltas() {
        let mut d = delta(false, &[("E0", port(1)), ("E8", None)], 1);
        d.merge(delta(true, &[("E4", port(1)), ("E12", port(1))], 2));
        assert_eq!(d, delta(true, &[("E4", port(1)), ("E12", port(1))], 2));
        d.merge(delta(false, &[("E12", None), ("E16", port(5))], 3));
        assert_eq!(d, delta(true, &[("E4", port(1)), ("E16", port(5))], 3));
    }

    #[test]
    fn merging_many_deltas_stays_bounded_by_the_ports() {
        let mut d = PortDelta::default();
        for round in 0..1000u32 {
            let name = format!("E{}", round % 8);
            d.merge(delta(false, &[(&name, port(round))], u64::from(round)));
        }
        assert_eq!(d.ports.len(), 8);
        assert_eq!(d.ports["E7"], port(999));
    }

    #[test]
    fn the_table_keeps_unsaved_changes_until_a_commit_succeeds() {
        let mut t = SavedTable::default();
        assert!(!t.have_full());
        t.absorb(delta(true, &[("E0", port(1)), ("E4", port(1))], 1));
        assert!(t.have_full() && t.needs_full());
        assert_eq!(t.all().count(), 2);
        t.saved();
        assert!(!t.needs_full() && t.changes().count() == 0);
        t.absorb(delta(false, &[("E0", None), ("E8", port(2))], 2));
        // A failed commit: nothing is forgotten, later changes add to it.
        t.absorb(delta(false, &[("E8", port(3))], 3));
        let changes: Vec<_> = t
            .changes()
            .map(|(n, r)| (n.to_string(), r.map(|r| r.mtu)))
            .collect();
        assert_eq!(changes, vec![("E0".into(), None), ("E8".into(), Some(3))]);
        let all: Vec<_> = t.all().map(|(n, _)| n.to_string()).collect();
        assert_eq!(all, vec!["E4", "E8"]);
        assert_eq!(t.counters()["n"], 3);
        // The record's published map is the status's fields.
        let rec = port(9).unwrap().record("E8");
        assert_eq!(rec.published["mtu"], "9");
        assert_eq!(rec.published["state"], "ok");
    }
}
