//! Building one generation from a set of changed ports: the previous generation's port map with the
//! changes applied, and only the changed records encoded and written.
//!
//! A commit hands the store either a **full set** (every port; the new manifest lists exactly these) or
//! a **delta** (changed ports with their new record, removed ports with `None`; every other port keeps
//! the record of the generation the delta is relative to). Records are content-addressed, so a changed
//! port whose new record is already stored (a flap back) costs no write either.
//!
//! Records go in batches of at most [`RECORDS_PER_BATCH`], each written as soon as it is full (a full
//! commit never holds every encoded record at once); when there are more, the manifest is written
//! alone in a last batch. sled replays its log in order, so a manifest never survives without the
//! records written before it, and unreferenced records (a crash between the batches) are pruned at the
//! next open's first commit, except those it writes again (a retry of the same content): the prune
//! never deletes a record a kept generation refers to. See docs/durability.md.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use super::backend::WriteBatch;
use super::export_cache::{ExportCache, PortFragments};
use super::generation::{self, Manifest};
use super::record::{self, PortRecord};

/// Most records written in one sled batch (sled copies a batch's values in memory while applying it:
/// smaller batches keep a full commit's transient memory down).
pub const RECORDS_PER_BATCH: usize = 256;

/// What one commit wrote.
pub struct Built {
    pub manifest: Manifest,
    /// Records written (not already stored).
    pub records_written: usize,
}

/// Where [`build`] hands each batch as soon as it is complete (records first, the manifest in the
/// last): `last` is true for the batch holding the manifest. An error stops the build.
pub type Sink<'a, E> = &'a mut dyn FnMut(WriteBatch, bool) -> Result<(), E>;

/// Build and write generation `gen`: `base` (None for a full set) with `changes` applied. `stored(name,
/// hash)` says a record is already stored in a verified generation. Each batch goes to `sink` when it
/// is full, so a full commit never holds more than one batch of encoded records (plus what sled keeps).
///
/// `export` (when the JSON export is on) is updated in place with the changed ports' fragments; for a
/// full set it is emptied first. It then describes the new generation, and is only to be written once
/// the commit is durable: after a failed commit it is stale, and the store that owns it refuses every
/// later commit (poisoned) and never writes it again.
// Eight inputs, each a different part of one commit (what changed, onto what, what is stored, where
// it goes); a struct holding them would only be built by its one caller (commit.rs) to be taken apart here.
#[allow(clippy::too_many_arguments)]
pub fn build<I, N, R, E>(
    gen: u64,
    base: Option<&BTreeMap<String, u64>>,
    changes: I,
    counters: &BTreeMap<String, u64>,
    saved_at: u64,
    stored: &dyn Fn(&str, u64) -> bool,
    mut export: Option<&mut ExportCache>,
    sink: Sink<'_, E>,
) -> Result<Built, E>
where
    I: IntoIterator<Item = (N, Option<R>)>,
    N: Into<String>,
    R: Borrow<PortRecord>,
{
    let mut ports = base.cloned().unwrap_or_default();
    if base.is_none() {
        if let Some(x) = export.as_deref_mut() {
            x.clear();
        }
    }
    let mut flushed = false;
    let mut batch = WriteBatch::default();
    let mut records_written = 0;
    let mut payload = Vec::new();
    for (name, rec) in changes {
        let name: String = name.into();
        let Some(rec) = rec else {
            ports.remove(&name);
            if let Some(x) = export.as_deref_mut() {
                x.remove(&name);
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
                // Never the last batch: the manifest always follows.
                sink(std::mem::take(&mut batch), false)?;
                flushed = true;
            }
        }
        if let Some(x) = export.as_deref_mut() {
            x.insert(&name, PortFragments::of(&name, rec));
        }
        ports.insert(name, hash);
    }
    let manifest = Manifest::new(gen, saved_at, ports, counters.clone());
    let mkey = generation::manifest_key(gen);
    let mval = record::encode(&mkey, &manifest);
    if flushed && !batch.is_empty() {
        sink(std::mem::take(&mut batch), false)?;
    }
    batch.put(mkey, mval);
    sink(batch, true)?;
    Ok(Built {
        manifest,
        records_written,
    })
}
