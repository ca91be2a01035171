//! Committing to the store the way the daemon's committer does, for the crash and power-cut tests.

use portsyncd::store::{PortRecord, Snapshot, Store, StoreError};

/// Commit `snap` as the daemon does: the first commit of a store a full set, then only the ports that
/// differ from the previous commit (`prev`), so the kills hit delta commits too.
pub fn commit_as_daemon(
    store: &mut Store,
    prev: &mut Option<Snapshot>,
    snap: Snapshot,
) -> Result<u64, StoreError> {
    let full = prev.is_none() || !store.takes_delta();
    let mut changes: Vec<(&str, Option<&PortRecord>)> = snap
        .ports
        .iter()
        .filter(|(n, r)| full || prev.as_ref().and_then(|p| p.ports.get(*n)) != Some(*r))
        .map(|(n, r)| (n.as_str(), Some(r)))
        .collect();
    if let Some(p) = prev.as_ref().filter(|_| !full) {
        changes.extend(
            p.ports
                .keys()
                .filter(|n| !snap.ports.contains_key(*n))
                .map(|n| (n.as_str(), None)),
        );
    }
    let gen = store.commit_changes(full, changes, &snap.counters)?;
    *prev = Some(snap);
    Ok(gen)
}
