//! Pruning: generations beyond the configured count, and orphan records, removed after a new
//! generation is durable, never a record a kept generation refers to.

use std::collections::{BTreeMap, BTreeSet};

use super::backend::WriteBatch;
use super::error::StoreError;
use super::generation;
use super::handle::Store;

impl Store {
    /// Remove generations older than the newest `cfg.generations` (the new one is already durable). The
    /// removal is not fsynced on its own: the next commit's fsync or sled's background flush covers it,
    /// and sled replays its log in order, so it can never land without the generation that replaced it.
    pub(super) fn prune(&mut self, newest: u64) -> Result<(), StoreError> {
        let keep = self.cfg.generations.max(1) as u64;
        let (old, kept): (Vec<u64>, Vec<u64>) = self
            .gens
            .iter()
            .partition(|&&g| g.saturating_add(keep) <= newest);
        if old.is_empty() && self.orphans.is_empty() {
            return Ok(());
        }
        let orphans = std::mem::take(&mut self.orphans);
        let b = self.backend.as_ref();
        // Port maps of the kept generations (unverified ones read from their manifest, if readable).
        let unverified: BTreeMap<u64, BTreeMap<String, u64>> = kept
            .iter()
            .chain(&old)
            .filter(|g| !self.refs.contains_key(g))
            .filter_map(|&g| generation::read_manifest(b, g).ok().map(|m| (g, m.ports)))
            .collect();
        let ports_of = |g: &u64| self.refs.get(g).or_else(|| unverified.get(g));
        let still_used = |name: &str, hash: u64| {
            kept.iter()
                .any(|g| ports_of(g).is_some_and(|p| p.get(name) == Some(&hash)))
        };
        let mut batch = WriteBatch::default();
        let mut dropped = BTreeSet::new();
        for g in &old {
            batch.remove(generation::manifest_key(*g));
            for (n, &h) in ports_of(g).into_iter().flatten() {
                if !still_used(n, h) && dropped.insert((n.clone(), h)) {
                    batch.remove(generation::record_key(n, h));
                }
            }
        }
        for k in orphans {
            // Never delete a record a kept generation (the new one included) refers to.
            if generation::parse_record_key(&k).is_some_and(|(n, h)| still_used(n, h)) {
                continue;
            }
            batch.remove(k);
        }
        if let Err(source) = self.backend.apply(batch) {
            return Err(self.poison("prune", source));
        }
        for g in old {
            self.gens.remove(&g);
            self.refs.remove(&g);
        }
        Ok(())
    }
}
