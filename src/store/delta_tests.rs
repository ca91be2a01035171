//! Delta commits: only the changed records are written, removed ports leave the manifest, a delta is
//! refused without a base (after an open or a failure), large commits go in batches with the manifest
//! last, and the streamed export equals the full rendering.

use std::collections::BTreeMap;

use super::generation::tests::snap;
use super::mem_backend::{Faults, MemBackend};
use super::*;

fn mem_cfg() -> StoreConfig {
    StoreConfig {
        json_export: None,
        ..StoreConfig::new("/nonexistent")
    }
}

fn changed(s: &Snapshot, name: &str, salt: u32) -> PortRecord {
    let mut r = s.ports[name].clone();
    r.flags ^= salt;
    r.mtu += salt;
    r
}

#[test]
fn a_delta_writes_only_the_changed_records_and_drops_removed_ports() {
    let b = MemBackend::new();
    let (mut s, _) = Store::with_backend(Box::new(b.clone()), mem_cfg()).unwrap();
    let mut want = snap(200, 1);
    s.commit(&want).unwrap();
    let (puts_before, _) = b.put_counts();
    // Two changed, one removed, one added: three records and one manifest are written.
    let e4 = changed(&want, "Ethernet4", 7);
    let e8 = changed(&want, "Ethernet8", 9);
    let mut added = want.ports["Ethernet0"].clone();
    added.name = "PortChannel1".into();
    let delta: Vec<(&str, Option<PortRecord>)> = vec![
        ("Ethernet4", Some(e4.clone())),
        ("Ethernet8", Some(e8.clone())),
        ("Ethernet12", None),
        ("PortChannel1", Some(added.clone())),
    ];
    want.counters.insert("x".into(), 5);
    assert!(s.takes_delta());
    let gen = s.commit_changes(false, delta, &want.counters).unwrap();
    let (puts_after, batches) = b.put_counts();
    assert_eq!(puts_after - puts_before, 4, "3 records + the manifest");
    assert_eq!(batches.last(), Some(&4), "one batch");
    want.ports.insert("Ethernet4".into(), e4);
    want.ports.insert("Ethernet8".into(), e8);
    want.ports.remove("Ethernet12");
    want.ports.insert("PortChannel1".into(), added);
    let (m, got) = s.load(gen).unwrap();
    assert!(!m.ports.contains_key("Ethernet12"));
    assert_eq!(m.record_count, 200);
    assert_eq!(got, want);
    // A port flapping back to a stored record writes nothing but the manifest.
    let back = snap(200, 1).ports["Ethernet4"].clone();
    s.commit_changes(false, [("Ethernet4", Some(back))], &want.counters)
        .unwrap();
    assert_eq!(b.put_counts().0 - puts_after, 1);
    drop(s);
    let (_, r) = Store::with_backend(Box::new(b), mem_cfg()).unwrap();
    assert_eq!(r.generation, Some(gen + 1));
}

#[test]
fn a_delta_needs_a_base_committed_by_this_store() {
    let b = MemBackend::new();
    let (mut s, _) = Store::with_backend(Box::new(b.clone()), mem_cfg()).unwrap();
    let one = snap(3, 1);
    let none: [(&str, Option<PortRecord>); 0] = [];
    // Freshly opened: no base, nothing written.
    let (puts, _) = b.put_counts();
    assert!(!s.takes_delta());
    assert!(matches!(
        s.commit_changes(false, none.clone(), &one.counters),
        Err(StoreError::NoBase)
    ));
    assert_eq!(b.put_counts().0, puts);
    s.commit(&one).unwrap();
    assert!(s.takes_delta());
    // A failure: the store no longer takes deltas, and after a reopen (which may recover an older
    // generation) it takes a full set first.
    b.set_faults(Faults {
        fail_sync: true,
        ..Faults::default()
    });
    let e0 = changed(&one, "Ethernet0", 3);
    assert!(s
        .commit_changes(false, [("Ethernet0", Some(e0.clone()))], &one.counters)
        .is_err());
    assert!(!s.takes_delta());
    b.set_faults(Faults::default());
    drop(s);
    let (mut s, _) = Store::with_backend(Box::new(b.clone()), mem_cfg()).unwrap();
    assert!(!s.takes_delta());
    assert!(matches!(
        s.commit_changes(false, [("Ethernet0", Some(e0.clone()))], &one.counters),
        Err(StoreError::NoBase)
    ));
    let mut two = one.clone();
    two.ports.insert("Ethernet0".into(), e0);
    two.ports.remove("Ethernet8");
    let gen = s.commit(&two).unwrap();
    assert_eq!(s.load(gen).unwrap().1, two);
    assert!(s.takes_delta());
}

#[test]
fn a_large_commit_goes_in_record_batches_with_the_manifest_last() {
    let b = MemBackend::new();
    let (mut s, _) = Store::with_backend(Box::new(b.clone()), mem_cfg()).unwrap();
    let (_, before) = b.put_counts();
    let big = snap(600, 1);
    let gen = s.commit(&big).unwrap();
    let (_, after) = b.put_counts();
    let per = delta::RECORDS_PER_BATCH;
    assert_eq!(
        &after[before.len()..],
        &[per, per, 600 - 2 * per, 1],
        "records in batches, then the manifest alone"
    );
    assert_eq!(s.load(gen).unwrap().1, big);
}

#[test]
fn delta_commits_on_sled_export_what_a_full_rendering_gives() {
    let t = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        max_age: std::time::Duration::from_secs(100 * 365 * 86_400),
        ..StoreConfig::new(t.path().join("state"))
    };
    let export = cfg.json_export.clone().unwrap();
    let (mut s, _) = Store::open(cfg.clone()).unwrap();
    let mut want = snap(300, 1);
    s.commit_at(&want, 1_000).unwrap();
    for round in 1..6u32 {
        let mut delta: BTreeMap<String, Option<PortRecord>> = BTreeMap::new();
        for i in (round as usize..300).step_by(17) {
            let name = format!("Ethernet{}", i * 4);
            if let Some(r) = want.ports.get(&name) {
                let mut r = r.clone();
                r.oper_up ^= true;
                r.published
                    .insert("netdev_oper_status".into(), round.to_string());
                delta.insert(name, Some(r));
            }
        }
        delta.insert(format!("Ethernet{}", round * 40), None);
        delta.insert(
            format!("PortChannel{round}"),
            Some(PortRecord {
                name: format!("PortChannel{round}"),
                ifindex: 1000 + round,
                ..PortRecord::default()
            }),
        );
        for (n, r) in &delta {
            match r {
                Some(r) => want.ports.insert(n.clone(), r.clone()),
                None => want.ports.remove(n),
            };
        }
        want.counters.insert("round".into(), u64::from(round));
        let saved_at = 1_000 + u64::from(round);
        let gen = s
            .commit_changes_at(false, delta, &want.counters, saved_at)
            .unwrap();
        assert_eq!(
            std::fs::read(&export).unwrap(),
            json_export::render(&want, saved_at, gen),
            "round {round}"
        );
    }
    drop(s);
    let (_, r) = Store::open(cfg).unwrap();
    assert_eq!(r.snapshot, Some(want));
}

#[test]
fn a_full_commit_writes_each_record_batch_before_encoding_the_next() {
    let b = MemBackend::new();
    let (mut s, _) = Store::with_backend(Box::new(b.clone()), mem_cfg()).unwrap();
    let (_, before) = b.put_counts();
    let big = snap(600, 1);
    // For each record handed to the store: how many batches it had applied by then.
    let seen = std::cell::RefCell::new(Vec::new());
    let ports = big.ports.iter().map(|(n, r)| {
        seen.borrow_mut()
            .push(b.put_counts().1.len() - before.len());
        (n.as_str(), Some(r))
    });
    let gen = s.commit_changes(true, ports, &big.counters).unwrap();
    let per = delta::RECORDS_PER_BATCH;
    // Record i is encoded after the batches before its own went out: never all of them in memory.
    let want: Vec<usize> = (0..600).map(|i| i / per).collect();
    assert_eq!(*seen.borrow(), want);
    assert_eq!(s.load(gen).unwrap().1, big);
}

#[test]
fn a_failed_full_commit_leaves_the_export_of_the_last_good_one_and_a_full_set_after_deltas_matches_render(
) {
    let t = tempfile::tempdir().unwrap();
    let export = t.path().join("port_state.json");
    let cfg = StoreConfig {
        json_export: Some(export.clone()),
        ..StoreConfig::new("/nonexistent")
    };
    let b = MemBackend::new();
    let (mut s, _) = Store::with_backend(Box::new(b.clone()), cfg.clone()).unwrap();
    let first = snap(600, 1);
    let gen = s.commit_at(&first, 7).unwrap();
    assert_eq!(
        std::fs::read(&export).unwrap(),
        json_export::render(&first, 7, gen)
    );
    // A delta, then a full set that drops ports and changes others: the export is the full set's.
    let e4 = changed(&first, "Ethernet4", 3);
    s.commit_changes_at(false, [("Ethernet4", Some(e4))], &first.counters, 8)
        .unwrap();
    let mut second = snap(400, 2);
    second.ports.remove("Ethernet8");
    let gen = s.commit_at(&second, 9).unwrap();
    assert_eq!(
        std::fs::read(&export).unwrap(),
        json_export::render(&second, 9, gen)
    );
    // A full set whose second batch fails: the store is poisoned and the file stays the last good one.
    let good = std::fs::read(&export).unwrap();
    b.set_faults(Faults {
        fail_apply: true,
        ..Faults::default()
    });
    assert!(s.commit_at(&snap(600, 3), 10).is_err());
    b.set_faults(Faults::default());
    assert!(s.commit_at(&snap(600, 4), 11).is_err(), "poisoned");
    assert_eq!(std::fs::read(&export).unwrap(), good);
}

/// Every commit, full or delta, in one batch or several, begins once (sled's directory is fsynced
/// there) and before its first batch: when beginning fails, nothing of the commit is applied.
#[test]
fn each_commit_begins_once_before_its_first_batch() {
    let b = MemBackend::new();
    let (mut s, _) = Store::with_backend(Box::new(b.clone()), mem_cfg()).unwrap();
    let begins = b.begins();
    let full = snap(600, 1);
    s.commit(&full).unwrap();
    let (_, batches) = b.put_counts();
    assert!(
        batches.len() >= 3,
        "600 records go in several batches: {batches:?}"
    );
    assert_eq!(
        b.begins(),
        begins + 1,
        "a full commit of several batches begins once"
    );
    let e4 = changed(&full, "Ethernet4", 3);
    s.commit_changes(false, [("Ethernet4", Some(e4))], &full.counters)
        .unwrap();
    assert_eq!(b.begins(), begins + 2, "a delta commit begins once");

    b.set_faults(Faults {
        fail_begin: true,
        ..Faults::default()
    });
    let (applies, _) = b.op_counts();
    let e8 = changed(&full, "Ethernet8", 5);
    assert!(s
        .commit_changes(false, [("Ethernet8", Some(e8))], &full.counters)
        .is_err());
    assert_eq!(
        b.op_counts().0,
        applies,
        "nothing applied before the commit began"
    );
}
