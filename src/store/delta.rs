//! Building one generation from a set of changed ports: the previous generation's port map with the
//! changes applied, and only the changed records encoded and written.
//!
//! A commit hands the store either a **full set** (every port; the new manifest lists exactly these) or
//! a **delta** (changed ports with their new record, removed ports with `None`; every other port keeps
//! the record of the generation the delta is relative to). Records are content-addressed, so a changed
//! port whose new record is already stored (a flap back) costs no write either.
//!
//! Records go in batches of at most [`RECORDS_PER_BATCH`]; when there are more, the manifest is written
//! alone in a last batch. sled replays its log in order, so a manifest never survives without the
//! records written before it, and unreferenced records (a crash between the batches) are pruned at the
//! next open's first commit, except those it writes again (a retry of the same content): the prune
//! never deletes a record a kept generation refers to. See docs/durability.md.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use super::backend::WriteBatch;
use super::export_cache::PortFragments;
use super::generation::{self, Manifest};
use super::record::{self, PortRecord};

/// Most records written in one sled batch (sled copies a batch's values in memory while applying it:
/// smaller batches keep a full commit's transient memory down).
pub const RECORDS_PER_BATCH: usize = 256;

/// What one commit writes.
pub struct Built {
    /// The record batches in order, the manifest in the last.
    pub batches: Vec<WriteBatch>,
    pub manifest: Manifest,
    /// The export fragments of the changed ports (`None`: removed), when the export is on.
    pub fragments: Option<Vec<(String, Option<PortFragments>)>>,
    /// Records written (not already stored).
    pub records_written: usize,
}

/// Build generation `gen`: `base` (None for a full set) with `changes` applied. `stored(name, hash)`
/// says a record is already stored in a verified generation; `export` asks for the changed ports' JSON
/// fragments.
pub fn build<I, N, R>(
    gen: u64,
    base: Option<&BTreeMap<String, u64>>,
    changes: I,
    counters: &BTreeMap<String, u64>,
    saved_at: u64,
    stored: &dyn Fn(&str, u64) -> bool,
    export: bool,
) -> Built
where
    I: IntoIterator<Item = (N, Option<R>)>,
    N: Into<String>,
    R: Borrow<PortRecord>,
{
    let mut ports = base.cloned().unwrap_or_default();
    let mut fragments = export.then(Vec::new);
    let mut batches = Vec::new();
    let mut batch = WriteBatch::default();
    let mut records_written = 0;
    let mut payload = Vec::new();
    for (name, rec) in changes {
        let name: String = name.into();
        let Some(rec) = rec else {
            ports.remove(&name);
            if let Some(f) = fragments.as_mut() {
                f.push((name, None));
            }
            continue;
        };
        let rec = rec.borrow();
        payload.clear();
        // Encoding a struct of strings, integers and maps into a Vec cannot fail.
        let _ =
            bincode::serde::encode_into_std_write(rec, &mut payload, bincode::config::standard());
        let hash = generation::payload_hash(&payload);
        if !stored(&name, hash) {
            let key = generation::record_key(&name, hash);
            let val = record::frame(&key, &payload);
            batch.put(key, val);
            records_written += 1;
            if batch.ops.len() >= RECORDS_PER_BATCH {
                batches.push(std::mem::take(&mut batch));
            }
        }
        if let Some(f) = fragments.as_mut() {
            f.push((name.clone(), Some(PortFragments::of(&name, rec))));
        }
        ports.insert(name, hash);
    }
    let manifest = Manifest::new(gen, saved_at, ports, counters.clone());
    let mkey = generation::manifest_key(gen);
    let mval = record::encode(&mkey, &manifest);
    if !batches.is_empty() && !batch.is_empty() {
        batches.push(std::mem::take(&mut batch));
    }
    batch.put(mkey, mval);
    batches.push(batch);
    Built {
        batches,
        manifest,
        fragments,
        records_written,
    }
}
