//! The recovery ladder: newest valid generation → older generations → the JSON export → cold start.
//!
//! Pure over a [`Backend`] and a path: every rung is a unit test on [`MemBackend`](super::backend::MemBackend).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::backend::Backend;
use super::clock::to_system_time;
use super::generation;
use super::json_export::{self, JsonError};
use super::record::Snapshot;

/// Which rung the state came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoverySource {
    /// The newest generation in the store.
    Newest,
    /// An older generation (the newer ones failed verification).
    PreviousGeneration,
    /// The JSON export outside sled.
    JsonExport,
    /// Nothing usable (or nothing at all): start cold.
    ColdStart,
}

impl RecoverySource {
    /// Label for `portsyncd_state_recoveries_total{source=..}` (None for `Newest`, which is no recovery).
    pub fn metric_label(self) -> Option<&'static str> {
        match self {
            RecoverySource::Newest => None,
            RecoverySource::PreviousGeneration => Some("previous_generation"),
            RecoverySource::JsonExport => Some("json_export"),
            RecoverySource::ColdStart => Some("cold_start"),
        }
    }
}

/// One step down the ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LadderStep {
    /// What was rejected, e.g. `generation 12`, `json export /var/lib/sonic/portsyncd/port_state.json`.
    pub from: String,
    /// Why.
    pub reason: String,
}

/// The outcome of opening the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    /// The state usable for a warm start (None => cold start).
    pub snapshot: Option<Snapshot>,
    pub source: RecoverySource,
    /// Generation of the state found (also set when it was stale).
    pub generation: Option<u64>,
    pub saved_at: Option<SystemTime>,
    /// A valid state existed but was older than `max_age` (then `snapshot` is None).
    pub stale: bool,
    /// Lifetime counters from the newest readable state, even if stale.
    pub counters: BTreeMap<String, u64>,
    /// Each step down, with its reason (already logged once at warn).
    pub steps: Vec<LadderStep>,
}

impl Recovered {
    fn cold(steps: Vec<LadderStep>) -> Recovered {
        Recovered {
            snapshot: None,
            source: RecoverySource::ColdStart,
            generation: None,
            saved_at: None,
            stale: false,
            counters: BTreeMap::new(),
            steps,
        }
    }
}

/// What the ladder needs to know.
pub struct LadderInput<'a> {
    /// None when the sled store could not be opened (it was quarantined; the reason is in `steps`).
    pub backend: Option<&'a dyn Backend>,
    pub json_export: Option<&'a Path>,
    pub recovery: bool,
    pub max_age: Duration,
    /// Now, unix seconds.
    pub now: u64,
    /// Steps already taken (e.g. the sled store would not open).
    pub steps: Vec<LadderStep>,
}

/// The ladder's result plus what `Store::open` needs to continue.
pub struct LadderOutcome {
    pub recovered: Recovered,
    /// Highest generation number seen anywhere (valid or not), so numbers never repeat.
    pub max_generation: u64,
    /// The store's generations could not even be listed: it must be quarantined.
    pub unreadable: bool,
}

fn step(steps: &mut Vec<LadderStep>, from: String, reason: String) {
    tracing::warn!(from = %from, reason = %reason, "state recovery: stepping down");
    steps.push(LadderStep { from, reason });
}

/// The JSON export, when it verifies, is fresh, and holds a generation newer than `gen`.
fn newer_export<'a>(
    path: Option<&'a Path>,
    gen: u64,
    too_old: &dyn Fn(u64) -> bool,
    recovery: bool,
) -> Option<(&'a Path, json_export::JsonState)> {
    let path = path.filter(|_| recovery)?;
    let bytes = json_export::read_bytes(path).ok()?;
    // The common case (the export holds the same generation as sled) needs no full parse.
    if json_export::peek_generation(&bytes).is_some_and(|g| g <= gen) {
        return None;
    }
    let st = json_export::parse(&bytes, true).ok()?;
    (st.generation? > gen && !too_old(st.saved_at)).then_some((path, st))
}

/// Run the ladder.
pub fn run(input: LadderInput<'_>) -> LadderOutcome {
    let LadderInput {
        backend,
        json_export,
        recovery,
        max_age,
        now,
        mut steps,
    } = input;
    let too_old = |saved_at: u64| now.saturating_sub(saved_at) > max_age.as_secs();
    let mut max_generation = 0;
    let mut unreadable = false;
    let mut first = true;

    let gens = match backend.map(generation::list) {
        None => Vec::new(),
        Some(Ok(g)) => g,
        Some(Err(e)) => {
            unreadable = true;
            step(
                &mut steps,
                "sled store".into(),
                format!("cannot list generations: {e}"),
            );
            Vec::new()
        }
    };
    max_generation = max_generation.max(gens.last().copied().unwrap_or(0));

    if let Some(b) = backend {
        for &g in gens.iter().rev() {
            match generation::load(b, g) {
                Ok((m, snap)) => {
                    let mut r = Recovered::cold(Vec::new());
                    r.generation = Some(g);
                    r.saved_at = Some(to_system_time(m.saved_at));
                    r.counters = m.counters.clone();
                    if !first && !recovery {
                        // Recovery off: an older generation only lends its counters.
                        r.generation = None;
                        r.saved_at = None;
                        r.steps = steps;
                        return LadderOutcome {
                            recovered: r,
                            max_generation,
                            unreadable,
                        };
                    }
                    if too_old(m.saved_at) {
                        step(
                            &mut steps,
                            format!("generation {g}"),
                            format!(
                                "saved {} s ago, older than the maximum age {} s",
                                now.saturating_sub(m.saved_at),
                                max_age.as_secs()
                            ),
                        );
                        r.stale = true;
                    } else if let Some((path, st)) =
                        newer_export(json_export, g, &too_old, recovery)
                    {
                        // The export is only written after a generation is durable in sled, so an export
                        // newer than sled's newest means sled lost its tail: the export is the best state.
                        let eg = st.generation.unwrap_or(0);
                        step(
                            &mut steps,
                            format!("generation {g}"),
                            format!(
                                "the JSON export {} holds the newer generation {eg}; sled lost it",
                                path.display()
                            ),
                        );
                        max_generation = max_generation.max(eg);
                        r.generation = Some(eg);
                        r.saved_at = Some(to_system_time(st.saved_at));
                        r.counters = st.snapshot.counters.clone();
                        r.snapshot = Some(st.snapshot);
                        r.source = RecoverySource::JsonExport;
                    } else {
                        r.snapshot = Some(snap);
                        r.source = if first {
                            RecoverySource::Newest
                        } else {
                            RecoverySource::PreviousGeneration
                        };
                    }
                    r.steps = steps;
                    return LadderOutcome {
                        recovered: r,
                        max_generation,
                        unreadable,
                    };
                }
                Err(e) => step(&mut steps, format!("generation {g}"), e.to_string()),
            }
            first = false;
        }
    }

    let stepped_down = !steps.is_empty();
    if !recovery {
        return LadderOutcome {
            recovered: Recovered::cold(steps),
            max_generation,
            unreadable,
        };
    }

    if let Some(path) = json_export {
        match json_export::read(path, true) {
            Ok(st) => {
                max_generation = max_generation.max(st.generation.unwrap_or(0));
                let mut r = Recovered::cold(Vec::new());
                r.generation = st.generation;
                r.saved_at = Some(to_system_time(st.saved_at));
                r.counters = st.snapshot.counters.clone();
                if too_old(st.saved_at) {
                    step(
                        &mut steps,
                        format!("json export {}", path.display()),
                        format!(
                            "saved {} s ago, older than the maximum age {} s",
                            now.saturating_sub(st.saved_at),
                            max_age.as_secs()
                        ),
                    );
                    r.stale = true;
                } else {
                    r.snapshot = Some(st.snapshot);
                    r.source = RecoverySource::JsonExport;
                }
                r.steps = steps;
                return LadderOutcome {
                    recovered: r,
                    max_generation,
                    unreadable,
                };
            }
            // A missing export is only worth a step when something above it already failed.
            Err(JsonError::Read { err, .. })
                if err.kind() == std::io::ErrorKind::NotFound && !stepped_down => {}
            Err(e) => step(
                &mut steps,
                format!("json export {}", path.display()),
                e.to_string(),
            ),
        }
    }
    LadderOutcome {
        recovered: Recovered::cold(steps),
        max_generation,
        unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::MemBackend;
    use crate::store::generation::{
        manifest_key,
        tests::{key_of, put_gen, snap},
    };

    const NOW: u64 = 1_800_000_000;
    const DAY: u64 = 86_400;

    fn put(b: &MemBackend, gen: u64, salt: u32, saved_at: u64) -> Snapshot {
        let s = snap(4, salt);
        put_gen(b, gen, &s, saved_at);
        s
    }

    fn input<'a>(b: Option<&'a dyn Backend>, json: Option<&'a Path>) -> LadderInput<'a> {
        LadderInput {
            backend: b,
            json_export: json,
            recovery: true,
            max_age: Duration::from_secs(7 * DAY),
            now: NOW,
            steps: vec![],
        }
    }

    #[test]
    fn newest_valid_generation_wins() {
        let b = MemBackend::new();
        put(&b, 1, 1, NOW - 20);
        let s2 = put(&b, 2, 2, NOW - 10);
        let o = run(input(Some(&b), None));
        let r = o.recovered;
        assert_eq!(
            (r.source, r.generation, r.stale),
            (RecoverySource::Newest, Some(2), false)
        );
        assert_eq!(r.snapshot, Some(s2.clone()));
        assert_eq!(r.counters, s2.counters);
        assert!(r.steps.is_empty());
        assert_eq!(o.max_generation, 2);
    }

    #[test]
    fn damaged_newest_steps_to_previous_generation() {
        let b = MemBackend::new();
        let s1 = put(&b, 1, 1, NOW - 20);
        put(&b, 2, 2, NOW - 10);
        b.tamper(&key_of(&b, 2, "Ethernet4"), |v| v[1] ^= 0x40);
        let o = run(input(Some(&b), None));
        let r = o.recovered;
        assert_eq!(
            (r.source, r.generation),
            (RecoverySource::PreviousGeneration, Some(1))
        );
        assert_eq!(r.snapshot, Some(s1));
        assert_eq!(r.steps.len(), 1);
        assert_eq!(r.steps[0].from, "generation 2");
        assert!(r.steps[0].reason.contains("Ethernet4"), "{:?}", r.steps);
        assert_eq!(
            o.max_generation, 2,
            "a damaged generation's number is never reused"
        );
    }

    #[test]
    fn all_generations_bad_steps_to_json_export() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("port_state.json");
        let b = MemBackend::new();
        put(&b, 1, 1, NOW - 20);
        b.tamper(&manifest_key(1), |v| v.truncate(3));
        let s = snap(3, 7);
        json_export::write_atomic(&path, &json_export::render(&s, NOW - 5, 9)).unwrap();
        let o = run(input(Some(&b), Some(&path)));
        let r = o.recovered;
        assert_eq!(
            (r.source, r.generation),
            (RecoverySource::JsonExport, Some(9))
        );
        assert_eq!(r.snapshot, Some(s));
        assert_eq!(r.steps.len(), 1);
        assert_eq!(o.max_generation, 9);
    }

    #[test]
    fn an_export_newer_than_sled_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("port_state.json");
        let b = MemBackend::new();
        put(&b, 4, 1, NOW - 20);
        let s = snap(3, 7);
        json_export::write_atomic(&path, &json_export::render(&s, NOW - 5, 5)).unwrap();
        let r = run(input(Some(&b), Some(&path))).recovered;
        assert_eq!(
            (r.source, r.generation),
            (RecoverySource::JsonExport, Some(5))
        );
        assert_eq!(r.snapshot, Some(s));
        assert_eq!(r.steps.len(), 1);
        // An export of the same (or an older) generation changes nothing.
        json_export::write_atomic(&path, &json_export::render(&snap(3, 8), NOW - 5, 4)).unwrap();
        let r = run(input(Some(&b), Some(&path))).recovered;
        assert_eq!((r.source, r.generation), (RecoverySource::Newest, Some(4)));
    }

    #[test]
    fn damaged_json_export_steps_to_cold_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("port_state.json");
        let mut bytes = json_export::render(&snap(3, 7), NOW - 5, 9);
        let at = bytes.len() / 2;
        bytes[at] = b'7';
        std::fs::write(&path, &bytes).unwrap();
        let pre = vec![LadderStep {
            from: "sled store".into(),
            reason: "would not open".into(),
        }];
        let o = run(LadderInput {
            steps: pre,
            ..input(None, Some(&path))
        });
        let r = o.recovered;
        assert_eq!(r.source, RecoverySource::ColdStart);
        assert!(r.snapshot.is_none());
        assert_eq!(r.steps.len(), 2, "{:?}", r.steps);
        assert!(r.steps[1].from.starts_with("json export"));
    }

    #[test]
    fn fresh_store_is_a_silent_cold_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("port_state.json");
        let b = MemBackend::new();
        let r = run(input(Some(&b), Some(&path))).recovered;
        assert_eq!(r, Recovered::cold(vec![]));
    }

    #[test]
    fn recovery_off_cold_starts_on_any_failure_but_keeps_counters() {
        let b = MemBackend::new();
        let s1 = put(&b, 1, 5, NOW - 20);
        put(&b, 2, 6, NOW - 10);
        b.tamper(&manifest_key(2), |v| v[0] ^= 1);
        let r = run(LadderInput {
            recovery: false,
            ..input(Some(&b), None)
        })
        .recovered;
        assert_eq!(r.source, RecoverySource::ColdStart);
        assert!(r.snapshot.is_none());
        assert_eq!(r.counters, s1.counters);
        assert_eq!(r.steps.len(), 1);
    }

    #[test]
    fn stale_state_is_not_offered_but_counters_are() {
        let b = MemBackend::new();
        let s = put(&b, 1, 3, NOW - 8 * DAY);
        let r = run(input(Some(&b), None)).recovered;
        assert!(r.stale);
        assert!(r.snapshot.is_none());
        assert_eq!(
            (r.source, r.generation),
            (RecoverySource::ColdStart, Some(1))
        );
        assert_eq!(r.counters, s.counters);
        // Just inside the limit it is offered.
        let b = MemBackend::new();
        put(&b, 1, 3, NOW - 7 * DAY);
        assert!(run(input(Some(&b), None)).recovered.snapshot.is_some());
    }

    #[test]
    fn unlistable_store_is_flagged_and_falls_to_json() {
        let b = MemBackend::new();
        put(&b, 1, 1, NOW);
        b.set_faults(crate::store::backend::Faults {
            fail_read: true,
            ..Default::default()
        });
        let o = run(input(Some(&b), None));
        assert!(o.unreadable);
        assert_eq!(o.recovered.source, RecoverySource::ColdStart);
        assert_eq!(o.recovered.steps[0].from, "sled store");
    }
}
