//! The recovery ladder: which saved state a start may trust. The rungs are tried in the order of
//! [`RUNGS`], top to bottom, and the first that yields a state ends the climb:
//!
//! 1. [`newest`]: the newest generation in sled, if it verifies;
//! 2. [`previous_generation`]: older generations, newest first;
//! 3. [`json_export`]: the JSON export, if its checksum verifies;
//! 4. [`cold_start`]: nothing usable.
//!
//! A generation a rung finds is then [`offer`]ed: a stale one is withheld, and an export holding a
//! newer generation wins over it ([`export_newer_than`]). Every rejection is one [`LadderStep`].
//! `docs/durability.md` ("The recovery ladder") states the same contract, rung by rung, in the same
//! order and with the same names (a unit test compares them).
//!
//! Pure over a [`Backend`] and a path: every rung is unit-tested on [`MemBackend`](super::mem_backend::MemBackend).
//! What happens before the ladder (the pid lock, the schema, sled's open and quarantine) is `open.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::backend::Backend;
use super::clock::to_system_time;
use super::generation::{self, Manifest};
use super::json_export::{self as export_file, JsonError};
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
    /// A cold start: no saved state, no counters, the steps that led here.
    pub fn cold(steps: Vec<LadderStep>) -> Recovered {
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

    /// A state found (generation, time, counters), not offered yet: still a cold start.
    fn found(generation: Option<u64>, saved_at: u64, counters: BTreeMap<String, u64>) -> Recovered {
        Recovered {
            generation,
            saved_at: Some(to_system_time(saved_at)),
            counters,
            ..Recovered::cold(Vec::new())
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

/// One rung of the ladder: looks for a state to start from; `Some` ends the climb.
pub struct Rung {
    /// What a state from this rung is reported as (its name in `docs/durability.md`).
    pub source: RecoverySource,
    /// Tries the rung. Each rejection on the way is a step ([`Climb::step_down`]).
    pub attempt: fn(&mut Climb<'_>) -> Option<Recovered>,
}

/// The ladder, top to bottom: tried in this order until a rung answers. The last always does.
pub const RUNGS: [Rung; 4] = [
    Rung {
        source: RecoverySource::Newest,
        attempt: newest,
    },
    Rung {
        source: RecoverySource::PreviousGeneration,
        attempt: previous_generation,
    },
    Rung {
        source: RecoverySource::JsonExport,
        attempt: json_export,
    },
    Rung {
        source: RecoverySource::ColdStart,
        attempt: cold_start,
    },
];

/// Run the ladder: every rung of [`RUNGS`] in turn until one answers.
pub fn run(input: LadderInput<'_>) -> LadderOutcome {
    let mut climb = Climb::new(input);
    let found = RUNGS.iter().find_map(|rung| (rung.attempt)(&mut climb));
    let mut recovered = found.unwrap_or_else(|| Recovered::cold(Vec::new()));
    recovered.steps = climb.steps;
    LadderOutcome {
        recovered,
        max_generation: climb.max_generation,
        unreadable: climb.unreadable,
    }
}

/// The ladder's state while it is climbed down: what the rungs read and what they found so far.
pub struct Climb<'a> {
    backend: Option<&'a dyn Backend>,
    /// Every generation with a manifest, newest first.
    gens: Vec<u64>,
    json_export: Option<&'a Path>,
    recovery: bool,
    max_age: Duration,
    now: u64,
    steps: Vec<LadderStep>,
    max_generation: u64,
    unreadable: bool,
}

impl<'a> Climb<'a> {
    /// Lists the generations. A store whose generations cannot even be listed is a step
    /// (`sled store`) and flagged [`LadderOutcome::unreadable`]: `Store::open` quarantines it.
    pub fn new(input: LadderInput<'a>) -> Climb<'a> {
        let mut climb = Climb {
            backend: input.backend,
            gens: Vec::new(),
            json_export: input.json_export,
            recovery: input.recovery,
            max_age: input.max_age,
            now: input.now,
            steps: input.steps,
            max_generation: 0,
            unreadable: false,
        };
        match input.backend.map(generation::list) {
            None => {}
            Some(Ok(gens)) => climb.gens = gens.into_iter().rev().collect(),
            Some(Err(e)) => {
                climb.unreadable = true;
                climb.step_down("sled store".into(), format!("cannot list generations: {e}"));
            }
        }
        // Numbers never repeat: the next generation goes above every one seen, valid or not.
        climb.max_generation = climb.gens.first().copied().unwrap_or(0);
        climb
    }

    /// One step down: logged once at `warn` and kept for [`Recovered::steps`].
    pub fn step_down(&mut self, from: String, reason: String) {
        tracing::warn!(from = %from, reason = %reason, "state recovery: stepping down");
        self.steps.push(LadderStep { from, reason });
    }

    /// Generation `g` read and verified record by record; a failure is a step.
    fn load(&mut self, g: u64) -> Option<(Manifest, Snapshot)> {
        match generation::load(self.backend?, g) {
            Ok(found) => Some(found),
            Err(e) => {
                self.step_down(format!("generation {g}"), e.to_string());
                None
            }
        }
    }

    /// Saved (by its stored time) longer ago than the maximum age.
    fn too_old(&self, saved_at: u64) -> bool {
        self.now.saturating_sub(saved_at) > self.max_age.as_secs()
    }

    /// The step of a state withheld as stale.
    fn step_stale(&mut self, from: String, saved_at: u64) {
        let reason = format!(
            "saved {} s ago, older than the maximum age {} s",
            self.now.saturating_sub(saved_at),
            self.max_age.as_secs()
        );
        self.step_down(from, reason);
    }
}

/// Rung 1, `newest`: the newest generation, if its manifest and every record verify (frame, number,
/// schema, count, each record's CRC, content hash and name: `generation::load`). Guarantees: what
/// the last acknowledged commit wrote, or a newer generation, comes back as `Newest` (a commit is
/// acknowledged only once its manifest is durable after its records).
pub fn newest(c: &mut Climb<'_>) -> Option<Recovered> {
    let g = *c.gens.first()?;
    let (m, snap) = c.load(g)?;
    Some(offer(c, g, m, snap, RecoverySource::Newest))
}

/// Rung 2, `previous_generation`: the older generations, newest first; the first that verifies.
/// Each rejected one is a step. Guarantees: a damaged newest generation never hides a valid older one
/// (up to `--state-generations` are kept). With recovery off, the first valid one only lends its
/// lifetime counters: the start is cold.
pub fn previous_generation(c: &mut Climb<'_>) -> Option<Recovered> {
    for i in 1..c.gens.len() {
        let g = c.gens[i];
        let Some((m, snap)) = c.load(g) else {
            continue;
        };
        if !c.recovery {
            let mut lent = Recovered::cold(Vec::new());
            lent.counters = m.counters;
            return Some(lent);
        }
        return Some(offer(c, g, m, snap, RecoverySource::PreviousGeneration));
    }
    None
}

/// Rung 3, `json_export`: the compatibility JSON export, only if its checksum verifies (a legacy file
/// without one is not trusted here). Skipped with recovery off. A missing export is a step only when
/// something above already stepped down (a fresh store has none). Guarantees: the export is written only
/// after its generation is durable in sled, so it never holds a state that was not committed.
pub fn json_export(c: &mut Climb<'_>) -> Option<Recovered> {
    if !c.recovery {
        return None;
    }
    let path = c.json_export?;
    let from = || format!("json export {}", path.display());
    match export_file::read(path, true) {
        Ok(st) => {
            c.max_generation = c.max_generation.max(st.generation.unwrap_or(0));
            let mut r = Recovered::found(st.generation, st.saved_at, st.snapshot.counters.clone());
            if c.too_old(st.saved_at) {
                c.step_stale(from(), st.saved_at);
                r.stale = true;
            } else {
                r.snapshot = Some(st.snapshot);
                r.source = RecoverySource::JsonExport;
            }
            Some(r)
        }
        Err(JsonError::Read { err, .. })
            if err.kind() == std::io::ErrorKind::NotFound && c.steps.is_empty() =>
        {
            None
        }
        Err(e) => {
            c.step_down(from(), e.to_string());
            None
        }
    }
}

/// Rung 4, `cold_start`: nothing usable (or nothing at all). Always answers. Guarantees: a state
/// that did not verify is never applied; the baseline is then STATE_DB's alone.
pub fn cold_start(_: &mut Climb<'_>) -> Option<Recovered> {
    Some(Recovered::cold(Vec::new()))
}

/// What a generation found by rung 1 or 2 must pass before it is offered:
/// - stale: saved longer ago than the maximum age (by its **stored** time) → withheld (`stale`, no
///   snapshot) with its counters and number, and a step;
/// - [`export_newer_than`]: the export holds a newer generation → the export is offered instead.
fn offer(
    c: &mut Climb<'_>,
    g: u64,
    m: Manifest,
    snap: Snapshot,
    source: RecoverySource,
) -> Recovered {
    let mut r = Recovered::found(Some(g), m.saved_at, m.counters);
    if c.too_old(m.saved_at) {
        c.step_stale(format!("generation {g}"), m.saved_at);
        r.stale = true;
        return r;
    }
    if let Some(newer) = export_newer_than(c, g) {
        return newer;
    }
    r.snapshot = Some(snap);
    r.source = source;
    r
}

/// The JSON export, when recovery is on and it verifies, is fresh, and holds a generation newer than
/// `g` (the generation rung 1 or 2 found): it is offered as `JsonExport`, and `g` is a step.
/// Guarantees: the export is written only after its generation is durable in sled, so an export
/// newer than sled's newest valid generation means sled lost its tail, and the export is the best
/// state there is.
pub fn export_newer_than(c: &mut Climb<'_>, g: u64) -> Option<Recovered> {
    let path = c.json_export.filter(|_| c.recovery)?;
    let bytes = export_file::read_bytes(path).ok()?;
    // The common case (the export holds the same generation as sled) needs no full parse.
    if export_file::peek_generation(&bytes).is_some_and(|eg| eg <= g) {
        return None;
    }
    let st = export_file::parse(&bytes, true).ok()?;
    let eg = st
        .generation
        .filter(|&eg| eg > g && !c.too_old(st.saved_at))?;
    c.step_down(
        format!("generation {g}"),
        format!(
            "the JSON export {} holds the newer generation {eg}; sled lost it",
            path.display()
        ),
    );
    c.max_generation = c.max_generation.max(eg);
    let mut r = Recovered::found(Some(eg), st.saved_at, st.snapshot.counters.clone());
    r.snapshot = Some(st.snapshot);
    r.source = RecoverySource::JsonExport;
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::generation::{
        manifest_key,
        tests::{key_of, put_gen, snap},
    };
    use crate::store::mem_backend::MemBackend;

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
        crate::store::durable::write_atomic(&path, &export_file::render(&s, NOW - 5, 9)).unwrap();
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
        crate::store::durable::write_atomic(&path, &export_file::render(&s, NOW - 5, 5)).unwrap();
        let r = run(input(Some(&b), Some(&path))).recovered;
        assert_eq!(
            (r.source, r.generation),
            (RecoverySource::JsonExport, Some(5))
        );
        assert_eq!(r.snapshot, Some(s));
        assert_eq!(r.steps.len(), 1);
        // An export of the same (or an older) generation changes nothing.
        crate::store::durable::write_atomic(&path, &export_file::render(&snap(3, 8), NOW - 5, 4))
            .unwrap();
        let r = run(input(Some(&b), Some(&path))).recovered;
        assert_eq!((r.source, r.generation), (RecoverySource::Newest, Some(4)));
    }

    #[test]
    fn damaged_json_export_steps_to_cold_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("port_state.json");
        let mut bytes = export_file::render(&snap(3, 7), NOW - 5, 9);
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
        b.set_faults(crate::store::mem_backend::Faults {
            fail_read: true,
            ..Default::default()
        });
        let o = run(input(Some(&b), None));
        assert!(o.unreadable);
        assert_eq!(o.recovered.source, RecoverySource::ColdStart);
        assert_eq!(o.recovered.steps[0].from, "sled store");
    }

    // One test per rung, calling the rung alone (each fails when its rung is broken), then the order.

    fn climb<'a>(b: Option<&'a dyn Backend>, json: Option<&'a Path>) -> Climb<'a> {
        Climb::new(input(b, json))
    }

    fn export_at(dir: &Path, s: &Snapshot, saved_at: u64, gen: u64) -> std::path::PathBuf {
        let path = dir.join("port_state.json");
        crate::store::durable::write_atomic(&path, &export_file::render(s, saved_at, gen)).unwrap();
        path
    }

    #[test]
    fn rung_newest_takes_the_newest_generation_only() {
        let b = MemBackend::new();
        put(&b, 1, 1, NOW - 30);
        let s2 = put(&b, 2, 2, NOW - 20);
        let mut c = climb(Some(&b), None);
        let r = newest(&mut c).expect("generation 2 verifies");
        assert_eq!((r.source, r.generation), (RecoverySource::Newest, Some(2)));
        assert_eq!((r.snapshot, r.counters), (Some(s2.clone()), s2.counters));
        assert!(c.steps.is_empty());
        // Damaged: no answer, one step naming it, and never an older generation from this rung.
        b.tamper(&key_of(&b, 2, "Ethernet0"), |v| v[0] ^= 1);
        let mut c = climb(Some(&b), None);
        assert_eq!(newest(&mut c), None);
        assert_eq!(c.steps.len(), 1);
        assert_eq!(c.steps[0].from, "generation 2");
        // Nothing stored: no answer, no step.
        let empty = MemBackend::new();
        let mut c = climb(Some(&empty), None);
        assert_eq!(newest(&mut c), None);
        assert!(c.steps.is_empty());
    }

    #[test]
    fn rung_previous_generation_takes_the_newest_older_one_that_verifies() {
        let b = MemBackend::new();
        put(&b, 1, 1, NOW - 40);
        let s2 = put(&b, 2, 2, NOW - 30);
        put(&b, 3, 3, NOW - 20);
        put(&b, 4, 4, NOW - 10);
        b.tamper(&manifest_key(3), |v| v.truncate(2));
        let mut c = climb(Some(&b), None);
        let r = previous_generation(&mut c).expect("generation 2 verifies");
        assert_eq!(
            (r.source, r.generation, r.snapshot),
            (
                RecoverySource::PreviousGeneration,
                Some(2),
                Some(s2.clone())
            )
        );
        // Generation 4 is rung 1's; generation 3 is rejected here.
        let from: Vec<&str> = c.steps.iter().map(|s| s.from.as_str()).collect();
        assert_eq!(from, ["generation 3"]);
        // With recovery off the older generation only lends its counters.
        let mut c = Climb::new(LadderInput {
            recovery: false,
            ..input(Some(&b), None)
        });
        let r = previous_generation(&mut c).expect("counters lent");
        assert_eq!(
            (r.source, r.generation, r.saved_at, r.snapshot, r.stale),
            (RecoverySource::ColdStart, None, None, None, false)
        );
        assert_eq!(r.counters, s2.counters);
        // Every older one damaged: no answer, a step each.
        b.tamper(&manifest_key(2), |v| v.truncate(2));
        b.tamper(&manifest_key(1), |v| v.truncate(2));
        let mut c = climb(Some(&b), None);
        assert_eq!(previous_generation(&mut c), None);
        assert_eq!(c.steps.len(), 3);
    }

    #[test]
    fn rung_json_export_takes_only_a_checksummed_export() {
        let dir = tempfile::tempdir().unwrap();
        let s = snap(3, 7);
        let path = export_at(dir.path(), &s, NOW - 5, 9);
        let mut c = climb(None, Some(&path));
        let r = json_export(&mut c).expect("the export verifies");
        assert_eq!(
            (r.source, r.generation, r.snapshot),
            (RecoverySource::JsonExport, Some(9), Some(s.clone()))
        );
        assert_eq!(c.max_generation, 9);
        // Recovery off: skipped.
        let mut c = Climb::new(LadderInput {
            recovery: false,
            ..input(None, Some(&path))
        });
        assert_eq!(json_export(&mut c), None);
        // A file without a checksum (a legacy file) is not trusted: a step.
        let legacy = br#"{"ports": {}, "saved_at": 1799999990, "version": 1}"#;
        std::fs::write(&path, legacy).unwrap();
        let mut c = climb(None, Some(&path));
        assert_eq!(json_export(&mut c), None);
        assert_eq!(c.steps.len(), 1);
        assert!(c.steps[0].reason.contains("checksum"), "{:?}", c.steps);
        // Missing: silent on a fresh store, a step once something above stepped down.
        std::fs::remove_file(&path).unwrap();
        let mut c = climb(None, Some(&path));
        assert_eq!(json_export(&mut c), None);
        assert!(c.steps.is_empty());
        c.step_down("generation 1".into(), "damaged".into());
        assert_eq!(json_export(&mut c), None);
        assert_eq!(c.steps.len(), 2);
    }

    #[test]
    fn rung_cold_start_always_answers_cold() {
        let b = MemBackend::new();
        put(&b, 1, 1, NOW);
        let mut c = climb(Some(&b), None);
        let r = cold_start(&mut c).expect("the last rung always answers");
        assert_eq!(r.source, RecoverySource::ColdStart);
        assert!(r.snapshot.is_none() && r.generation.is_none() && r.saved_at.is_none());
        assert!(
            !r.stale && r.counters.is_empty() && r.steps.is_empty(),
            "{r:?}"
        );
    }

    #[test]
    fn offer_withholds_a_stale_generation_but_keeps_its_number_and_counters() {
        let b = MemBackend::new();
        let s = put(&b, 1, 3, NOW - 7 * DAY - 1);
        let mut c = climb(Some(&b), None);
        let r = newest(&mut c).unwrap();
        assert!(r.stale);
        assert_eq!(
            (r.source, r.generation, r.snapshot),
            (RecoverySource::ColdStart, Some(1), None)
        );
        assert_eq!(r.counters, s.counters);
        assert_eq!(c.steps.len(), 1);
        assert!(c.steps[0].reason.contains("older than the maximum age"));
        // Exactly at the maximum age it is still offered.
        let b = MemBackend::new();
        put(&b, 1, 3, NOW - 7 * DAY);
        let r = newest(&mut climb(Some(&b), None)).unwrap();
        assert!(!r.stale && r.snapshot.is_some());
    }

    #[test]
    fn an_export_newer_than_the_found_generation_is_offered_instead() {
        let dir = tempfile::tempdir().unwrap();
        let s = snap(2, 5);
        let path = export_at(dir.path(), &s, NOW - 5, 7);
        let b = MemBackend::new();
        let mut c = climb(Some(&b), Some(&path));
        let r = export_newer_than(&mut c, 6).expect("7 > 6");
        assert_eq!(
            (r.source, r.generation, r.snapshot),
            (RecoverySource::JsonExport, Some(7), Some(s.clone()))
        );
        assert_eq!(c.steps[0].from, "generation 6");
        assert_eq!(c.max_generation, 7);
        // The same or an older generation: not newer, also when the shortcut cannot read the number
        // (the export reformatted: its checksum is over the canonical form, so it still verifies).
        assert_eq!(
            export_newer_than(&mut climb(Some(&b), Some(&path)), 7),
            None
        );
        assert_eq!(
            export_newer_than(&mut climb(Some(&b), Some(&path)), 8),
            None
        );
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let pretty = dir.path().join("pretty.json");
        std::fs::write(&pretty, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        assert_eq!(
            export_file::peek_generation(&std::fs::read(&pretty).unwrap()),
            None
        );
        assert!(export_newer_than(&mut climb(Some(&b), Some(&pretty)), 6).is_some());
        assert_eq!(
            export_newer_than(&mut climb(Some(&b), Some(&pretty)), 7),
            None
        );
        // Newer but stale, or recovery off: not offered.
        let stale = export_at(dir.path(), &s, NOW - 8 * DAY, 7);
        assert_eq!(
            export_newer_than(&mut climb(Some(&b), Some(&stale)), 6),
            None
        );
        let path = export_at(dir.path(), &s, NOW - 5, 7);
        let mut off = Climb::new(LadderInput {
            recovery: false,
            ..input(Some(&b), Some(&path))
        });
        assert_eq!(export_newer_than(&mut off, 6), None);
    }

    #[test]
    fn the_rungs_are_the_docs_rungs_in_the_docs_order() {
        let sources: Vec<RecoverySource> = RUNGS.iter().map(|r| r.source).collect();
        assert_eq!(
            sources,
            [
                RecoverySource::Newest,
                RecoverySource::PreviousGeneration,
                RecoverySource::JsonExport,
                RecoverySource::ColdStart,
            ]
        );
        // docs/durability.md names each rung (`newest`, ...) in a numbered list, in this order.
        let docs = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/durability.md"),
        )
        .unwrap();
        let ladder = docs
            .split("## The recovery ladder")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("a ladder section");
        let named: Vec<&str> = ladder
            .lines()
            .filter_map(|l| l.split_once(". **Rung `")?.1.split_once('`').map(|p| p.0))
            .collect();
        assert_eq!(
            named,
            ["newest", "previous_generation", "json_export", "cold_start"]
        );
        for (rung, name) in RUNGS.iter().zip(named) {
            let label = rung.source.metric_label().unwrap_or("newest");
            assert_eq!(label, name, "rung {name} reports {:?}", rung.source);
        }
        // Where every rung could answer, each one answers as the source it is listed with.
        let dir = tempfile::tempdir().unwrap();
        let b = MemBackend::new();
        put(&b, 1, 1, NOW - 20);
        let s2 = put(&b, 2, 2, NOW - 10);
        let path = export_at(dir.path(), &s2, NOW - 10, 1);
        for rung in &RUNGS {
            let r = (rung.attempt)(&mut climb(Some(&b), Some(&path))).expect("answers");
            assert_eq!(r.source, rung.source);
        }
    }
}
