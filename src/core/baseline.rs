//! The warm-start baseline: what STATE_DB is believed to hold before the first dump, decided from
//! the saved state (the store) and what STATE_DB `PORT_TABLE` holds now. Pure: start-up reads both
//! and hands them here.
//!
//! - Warm, with a saved state: the saved state, corrected by STATE_DB where they differ (the store
//!   may lag Redis after a crash between a write and its commit), entries only STATE_DB has added,
//!   entries STATE_DB no longer has dropped.
//! - Warm, no usable saved state (none, damaged beyond the ladder, or stale): STATE_DB itself.
//! - Cold: nothing is trusted; every entry either source knows is a candidate whose STATE_DB entry
//!   is deleted once the first dump shows its port gone.

use std::collections::{BTreeMap, BTreeSet};

use super::port::{has_own_fields, qualifying_name, PortStatus, RawFields};

/// Where the baseline came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaselineSource {
    /// A valid saved state from the store (newest or an older generation, or the JSON export).
    Store,
    /// No usable saved state: read back from STATE_DB `PORT_TABLE`.
    StateDb,
    /// Cold start: no baseline is trusted.
    None,
}

/// What the baseline is decided from.
#[derive(Debug, Clone, Default)]
pub struct BaselineInputs {
    /// Warm start (SONiC's rule); else cold.
    pub warm: bool,
    /// The saved state's ports; `None` when there is no usable one (none, unreadable or stale).
    pub saved: Option<BTreeMap<String, PortStatus>>,
    /// STATE_DB `PORT_TABLE` now (see [`state_db_statuses`]).
    pub state_db: BTreeMap<String, PortStatus>,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baseline {
    /// Warm: trusted as what Redis holds. Cold: candidates for deletion (see [`super::CoreConfig`]).
    pub ports: BTreeMap<String, PortStatus>,
    pub source: BaselineSource,
    /// Saved entries STATE_DB contradicted (a different status, or no entry): the store lagged.
    pub corrected: usize,
    /// Entries only STATE_DB had, added to the saved state.
    pub added: usize,
}

/// STATE_DB `PORT_TABLE` rows (raw, as Redis holds them) as statuses: qualifying names with a
/// complete, valid entry only (see [`PortStatus::from_raw`]).
pub fn state_db_statuses(rows: &BTreeMap<String, RawFields>) -> BTreeMap<String, PortStatus> {
    rows.iter()
        .filter(|(n, _)| qualifying_name(n))
        .filter_map(|(n, f)| PortStatus::from_raw(f).map(|s| (n.clone(), s)))
        .collect()
}

/// Qualifying names whose STATE_DB `PORT_TABLE` row holds portsyncd's fields but no valid entry (a
/// field missing or garbled by another writer): [`state_db_statuses`] leaves them out, yet the key
/// is there. Rows holding only other writers' fields are not portsyncd's and are left out. Start-up hands them to the core as stale candidates ([`crate::core::Core::with_stale_candidates`]):
/// the entry is deleted when the port is gone after the first dump, rewritten when it exists.
pub fn state_db_unreadable(rows: &BTreeMap<String, RawFields>) -> BTreeSet<String> {
    rows.iter()
        .filter(|(n, f)| {
            qualifying_name(n) && has_own_fields(f) && PortStatus::from_raw(f).is_none()
        })
        .map(|(n, _)| n.clone())
        .collect()
}

/// Decides the baseline (see the module documentation).
pub fn decide(inputs: BaselineInputs) -> Baseline {
    let BaselineInputs {
        warm,
        saved,
        state_db,
    } = inputs;
    match (warm, saved) {
        (true, Some(mut saved)) => {
            let mut corrected = 0;
            saved.retain(|n, s| match state_db.get(n) {
                Some(r) if r != s => {
                    corrected += 1;
                    *s = *r;
                    true
                }
                Some(_) => true,
                None => {
                    corrected += 1;
                    false
                }
            });
            let mut added = 0;
            for (n, s) in state_db {
                saved.entry(n).or_insert_with(|| {
                    added += 1;
                    s
                });
            }
            Baseline {
                ports: saved,
                source: BaselineSource::Store,
                corrected,
                added,
            }
        }
        (true, None) => Baseline {
            ports: state_db,
            source: BaselineSource::StateDb,
            corrected: 0,
            added: 0,
        },
        (false, saved) => {
            let mut candidates = state_db;
            for (n, s) in saved.into_iter().flatten() {
                candidates.entry(n).or_insert(s);
            }
            Baseline {
                ports: candidates,
                source: BaselineSource::None,
                corrected: 0,
                added: 0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(oper: bool, mtu: u32) -> PortStatus {
        PortStatus {
            admin_up: true,
            oper_up: oper,
            mtu,
        }
    }

    fn map(v: &[(&str, PortStatus)]) -> BTreeMap<String, PortStatus> {
        v.iter().map(|(n, s)| (n.to_string(), *s)).collect()
    }

    #[test]
    fn warm_with_a_saved_state_that_matches_state_db_takes_it_as_is() {
        let ports = map(&[
            ("Ethernet0", st(true, 9100)),
            ("Ethernet4", st(false, 9100)),
        ]);
        let b = decide(BaselineInputs {
            warm: true,
            saved: Some(ports.clone()),
            state_db: ports.clone(),
        });
        assert_eq!(
            b,
            Baseline {
                ports,
                source: BaselineSource::Store,
                corrected: 0,
                added: 0
            }
        );
    }

    #[test]
    fn warm_with_only_a_saved_state_trusts_what_state_db_confirms() {
        // Saved only: STATE_DB holds nothing (flushed): nothing saved is confirmed, so nothing is
        // trusted and every port is written again.
        let b = decide(BaselineInputs {
            warm: true,
            saved: Some(map(&[("Ethernet0", st(true, 9100))])),
            state_db: BTreeMap::new(),
        });
        assert_eq!(b.source, BaselineSource::Store);
        assert!(b.ports.is_empty());
        assert_eq!((b.corrected, b.added), (1, 0));
    }

    #[test]
    fn warm_with_only_state_db_reads_the_baseline_back_from_it() {
        let in_redis = map(&[
            ("Ethernet0", st(true, 9100)),
            ("Ethernet8", st(false, 1500)),
        ]);
        let b = decide(BaselineInputs {
            warm: true,
            saved: None,
            state_db: in_redis.clone(),
        });
        assert_eq!(b.source, BaselineSource::StateDb);
        assert_eq!(b.ports, in_redis);
    }

    #[test]
    fn warm_with_a_lagging_store_is_corrected_by_state_db() {
        // The store lags Redis: Ethernet0 changed after the last commit, Ethernet4 was deleted,
        // Ethernet8 was published, before the crash.
        let b = decide(BaselineInputs {
            warm: true,
            saved: Some(map(&[
                ("Ethernet0", st(true, 9100)),
                ("Ethernet4", st(true, 9100)),
                ("Ethernet12", st(true, 9100)),
            ])),
            state_db: map(&[
                ("Ethernet0", st(false, 9100)),
                ("Ethernet8", st(true, 1500)),
                ("Ethernet12", st(true, 9100)),
            ]),
        });
        assert_eq!(b.source, BaselineSource::Store);
        assert_eq!(
            b.ports,
            map(&[
                ("Ethernet0", st(false, 9100)),
                ("Ethernet8", st(true, 1500)),
                ("Ethernet12", st(true, 9100)),
            ])
        );
        assert_eq!((b.corrected, b.added), (2, 1));
    }

    #[test]
    fn warm_with_a_stale_saved_state_falls_back_to_state_db() {
        // The store offers no snapshot when it is older than the maximum age.
        let b = decide(BaselineInputs {
            warm: true,
            saved: None,
            state_db: map(&[("Ethernet0", st(true, 9100))]),
        });
        assert_eq!(b.source, BaselineSource::StateDb);
        assert_eq!(b.ports, map(&[("Ethernet0", st(true, 9100))]));
    }

    #[test]
    fn cold_trusts_nothing_and_makes_both_sources_candidates() {
        let b = decide(BaselineInputs {
            warm: false,
            saved: Some(map(&[
                ("Ethernet0", st(true, 9100)),
                ("Ethernet4", st(true, 9100)),
            ])),
            state_db: map(&[
                ("Ethernet4", st(false, 1500)),
                ("Ethernet8", st(true, 9100)),
            ]),
        });
        assert_eq!(b.source, BaselineSource::None);
        assert_eq!(
            b.ports.keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["Ethernet0", "Ethernet4", "Ethernet8"]
        );
        assert_eq!(
            b.ports["Ethernet4"],
            st(false, 1500),
            "STATE_DB's entry wins"
        );
        let none = decide(BaselineInputs::default());
        assert_eq!(none.source, BaselineSource::None);
        assert!(none.ports.is_empty());
    }

    #[test]
    fn rows_of_ports_without_a_valid_entry_are_unreadable() {
        let mut garbled: RawFields = st(true, 9100)
            .fields()
            .into_iter()
            .map(|(f, v)| (f.into_bytes(), v.into_bytes()))
            .collect();
        let full = garbled.clone();
        garbled.insert(b"mtu".to_vec(), b"\xff9100".to_vec());
        let rows: BTreeMap<String, RawFields> = [
            ("Ethernet0".to_string(), full),
            ("Ethernet4".to_string(), garbled.clone()),
            ("Ethernet8".to_string(), RawFields::new()),
            (
                "Ethernet12".to_string(),
                [(b"host_tx_ready".to_vec(), b"true".to_vec())].into(),
            ),
            ("eth0".to_string(), garbled),
        ]
        .into_iter()
        .collect();
        let names: Vec<String> = state_db_unreadable(&rows).into_iter().collect();
        assert_eq!(names, ["Ethernet4"], "only rows holding portsyncd's fields");
    }

    #[test]
    fn state_db_rows_of_non_ports_or_incomplete_entries_are_ignored() {
        let full: RawFields = st(true, 9100)
            .fields()
            .into_iter()
            .map(|(f, v)| (f.into_bytes(), v.into_bytes()))
            .collect();
        let rows: BTreeMap<String, RawFields> = [
            ("Ethernet0".to_string(), full.clone()),
            ("eth0".to_string(), full.clone()),
            ("Ethernet4".to_string(), BTreeMap::new()),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            state_db_statuses(&rows),
            map(&[("Ethernet0", st(true, 9100))])
        );
    }
}
