//! Driving the sans-IO core in tests: hand out its Redis batches and confirm each as done.

use std::time::Instant;

use portsyncd::core::{Core, PortStatus, WorkResult};

/// Every batch the core hands out at `now`, each confirmed done (every APPL_DB check answered
/// "known"); the STATE_DB writes they carried, in order.
pub fn flush(core: &mut Core, now: Instant) -> Vec<(String, Option<PortStatus>)> {
    let mut out = Vec::new();
    while let Some(w) = core.take_work(now) {
        out.extend(w.writes.clone());
        let known = w.checks.iter().map(|n| (n.clone(), true)).collect();
        core.on_work_result(
            WorkResult::Done {
                known,
                read_back: None,
            },
            now,
        );
    }
    out
}
