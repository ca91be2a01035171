//! Reading back what Redis holds, instead of assuming it.
//!
//! After a reconnect Redis may have stalled with its data intact, or restarted empty; an
//! anti-entropy check wants to know whether someone changed STATE_DB behind portsyncd's back. In
//! all cases the Redis edge reads the STATE_DB `PORT_TABLE` rows and the APPL_DB `PORT_TABLE` keys
//! of every port the core knows (one pipelined round trip per DB), and `published` becomes what
//! Redis actually holds. The normal diff rule then writes only the differences: a stall writes
//! nothing for unchanged ports, an empty Redis gets everything again.
//!
//! Only the fields portsyncd owns are compared ([`PortStatus::from_raw`]): fields other writers
//! keep in the same hash (orchagent's `host_tx_ready`, ...), whatever bytes they hold, never make a
//! port look different. A row that cannot be read as a hash at all (the key holds a string, ...)
//! is "unknown": portsyncd tries to write its entry, and the Redis edge reports that write as
//! rejected until the key's owner fixes it.

use std::collections::BTreeSet;

use super::{Core, Notice, Work};
use crate::core::port::{has_own_fields, PortStatus, RawFields};

/// One STATE_DB `PORT_TABLE|<name>` row as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateRow {
    /// Every field of the hash, raw bytes; empty: no such key.
    Fields(RawFields),
    /// The key exists but is not a hash (another writer put a string, a list, ... there).
    Unreadable,
}

impl Default for StateRow {
    fn default() -> Self {
        StateRow::Fields(RawFields::new())
    }
}

impl<K: Into<Vec<u8>>, V: Into<Vec<u8>>> FromIterator<(K, V)> for StateRow {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        StateRow::Fields(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// What the Redis edge read for [`Work::read_back`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadBack {
    /// STATE_DB `PORT_TABLE|<name>`, per name asked.
    pub state: Vec<(String, StateRow)>,
    /// The names asked whose APPL_DB `PORT_TABLE:<name>` exists.
    pub app_known: BTreeSet<String>,
}

/// Whether a read-back is due and who asked for it.
#[derive(Debug, Default)]
pub(super) struct ReadBackState {
    /// A read-back is due (handed out by the next `take_work`, alone in its batch).
    pub(super) due: bool,
    /// A reconnect asked for it (its result is reported as [`Notice::ReadBack`]).
    reconnect: bool,
    /// The batch in flight is a read-back a reconnect asked for.
    reconnect_in_flight: bool,
}

/// How a read-back compares with what the core believed, per port.
struct Diff {
    /// Ports that get a write now (their STATE_DB entry differs from the kernel's view).
    rewrite: Vec<String>,
    /// Of those, the ones Redis did not hold as the core believed (drift behind its back).
    drift: Vec<String>,
    /// Ports orchagent knew that APPL_DB no longer has.
    app_missing: Vec<String>,
}

impl Core {
    /// Redis was reconnected: it may have stalled (data intact) or restarted empty. What it holds
    /// is read back before anything else is written; only the differences are written then.
    pub fn on_redis_reconnected(&mut self) {
        self.read_back.due = true;
        self.read_back.reconnect = true;
    }

    /// The read-back batch, if one is due (called by `take_work` with nothing in flight).
    pub(super) fn take_read_back(&mut self) -> Option<Work> {
        if !self.read_back.due {
            return None;
        }
        self.read_back.due = false;
        self.read_back.reconnect_in_flight = std::mem::take(&mut self.read_back.reconnect);
        let names: BTreeSet<&String> = self
            .kernel
            .keys()
            .chain(self.published.keys())
            .chain(self.must_delete.iter())
            .collect();
        Some(Work {
            read_back: Some(names.into_iter().cloned().collect()),
            ..Work::default()
        })
    }

    /// The read-back batch landed (`rb` None: the edge did not answer it; asked again).
    pub(super) fn on_read_back(&mut self, rb: Option<ReadBack>) {
        let Some(rb) = rb else {
            self.read_back.due = true;
            self.read_back.reconnect |= self.read_back.reconnect_in_flight;
            return;
        };
        let ports = rb.state.len();
        let diff = self.apply_read_back(rb);
        if std::mem::take(&mut self.read_back.reconnect_in_flight) {
            self.notices.push(Notice::ReadBack {
                ports,
                rewrite: diff.rewrite,
                app_missing: diff.app_missing,
            });
        }
        self.check_read_back_done(diff.drift);
    }

    /// Sets `published` to what Redis holds and marks every port read for the diff rule.
    fn apply_read_back(&mut self, rb: ReadBack) -> Diff {
        let mut drift = BTreeSet::new();
        let mut read = Vec::with_capacity(rb.state.len());
        for (name, row) in rb.state {
            if let Some(drifted) = self.adopt_row(&name, &row) {
                if drifted {
                    drift.insert(name.clone());
                }
                read.push(name);
            }
        }
        let app_missing = self.app_missing(&rb.app_known);
        // Ports orchagent learned about meanwhile are published now, as after a check.
        self.learn_app_known(&rb.app_known);
        let rewrite = self.rewrites(read);
        let drift = rewrite
            .iter()
            .filter(|n| drift.contains(*n))
            .cloned()
            .collect();
        Diff {
            rewrite,
            drift,
            app_missing,
        }
    }

    /// Makes `published` hold what Redis holds for `name`. None: the row is none of portsyncd's
    /// business or holds what was believed; Some(drifted): the port was read and is dirty, and
    /// `drifted` when portsyncd believed it had published something else.
    fn adopt_row(&mut self, name: &str, row: &StateRow) -> Option<bool> {
        // Rows of ports portsyncd neither publishes nor owes a DEL are none of its business.
        let tracked = self.app_known.contains(name)
            || self.published.contains_key(name)
            || self.must_delete.contains(name);
        if !tracked {
            return None;
        }
        // Some(None): no entry; Some(Some(s)): portsyncd's four fields; None: a partial or
        // malformed entry, or a key of another type, treated as unknown (it gets rewritten, or
        // deleted if a DEL is owed).
        let actual = match row {
            StateRow::Fields(f) if f.is_empty() => Some(None),
            StateRow::Fields(f) => PortStatus::from_raw(f).map(Some),
            StateRow::Unreadable => None,
        };
        if actual == Some(None) {
            // A DEL owed for this name has nothing left to delete.
            self.must_delete.remove(name);
        }
        let believed = self.published.get(name).copied();
        if believed == actual {
            return None; // what is due for this port does not change
        }
        self.snapshot_due = true;
        self.saved_dirty.insert(name.to_string());
        match actual {
            Some(v) => {
                self.published.insert(name.to_string(), v);
            }
            None => {
                self.published.remove(name);
                // portsyncd's entry is there but garbled: without a netdev of its name it must
                // still go, once the first dump shows there is none (it stayed for good when the
                // port went during a warm start's initial dump). Other writers' fields alone, or
                // a key of another type, are not portsyncd's to delete.
                let own = matches!(row, StateRow::Fields(f) if has_own_fields(f));
                if own && !self.kernel.contains_key(name) {
                    if self.first_dump_complete {
                        self.must_delete.insert(name.to_string());
                    } else {
                        self.stale_candidates.insert(name.to_string());
                    }
                }
            }
        }
        self.dirty.insert(name.to_string());
        Some(believed.is_some())
    }

    /// The ports in the kernel orchagent knew and APPL_DB no longer holds, in name order.
    fn app_missing(&self, app_known: &BTreeSet<String>) -> Vec<String> {
        let mut app_missing = Vec::new();
        for name in self.kernel.keys() {
            if app_known.contains(name) {
                continue;
            }
            if self.app_known.contains(name) {
                app_missing.push(name.clone());
            }
        }
        app_missing.sort_unstable(); // the port table is a hash map: report in name order
        app_missing
    }

    /// Ports waiting for APPL_DB that it now holds become known (and due).
    fn learn_app_known(&mut self, app_known: &BTreeSet<String>) {
        let learned: Vec<String> = self
            .unknown
            .iter()
            .filter(|n| app_known.contains(*n) && self.kernel.contains_key(*n))
            .cloned()
            .collect();
        for name in learned {
            self.unknown.remove(&name);
            self.init_pending.remove(&name);
            self.app_known.insert(name.clone());
            self.dirty.insert(name);
        }
    }

    /// The ports of `read` that the diff rule must write again.
    fn rewrites(&self, read: Vec<String>) -> Vec<String> {
        let mut rewrite = Vec::new();
        let mut due = Vec::new();
        for name in read {
            due.clear();
            self.due_changes(&name, &mut due);
            if !due.is_empty() {
                rewrite.push(name);
            }
        }
        rewrite
    }
}

#[cfg(test)]
#[path = "readback_tests.rs"]
mod tests;
