//! The daemon with its store under faults: newest generation corrupted, the whole sled store
//! corrupted, a stale store; rotation and the lifetime metrics. Real daemon, redis-server and veths.

mod common;

use std::path::Path;
use std::time::Duration;

use common::daemon::{assert_metrics, parse_metric};
use common::monitor::Monitor;
use common::rig::{rig_with, T};
use portsyncd::store::StoreReader;

fn generations(state_dir: &Path) -> Vec<portsyncd::store::GenerationInfo> {
    StoreReader::open(state_dir, 1 << 20)
        .expect("open store")
        .generations()
        .expect("generations")
}

/// Flips one byte in the newest generation's manifest, through sled itself (daemon stopped).
fn corrupt_newest_manifest(state_dir: &Path) -> u64 {
    let db = sled::Config::new()
        .path(state_dir.join("sled"))
        .open()
        .expect("open sled");
    let (key, mut value) = db
        .scan_prefix(b"m/")
        .filter_map(Result::ok)
        .last()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .expect("a manifest");
    let gen = u64::from_be_bytes(key[2..10].try_into().expect("8 bytes"));
    let mid = value.len() / 2;
    value[mid] ^= 0x5a;
    db.insert(key, value).expect("insert");
    db.flush().expect("flush");
    gen
}

#[test]
fn newest_generation_corrupted_falls_back_to_the_previous_one() {
    let (rig, names) = rig_with(4);
    // Without the JSON export (which would hold the newer generation and win), the ladder's next
    // rung is the previous generation.
    rig.first_run(&names, &["--json-export", "off"], true);
    let newest = corrupt_newest_manifest(&rig.state_dir);
    let gens = generations(&rig.state_dir);
    assert!(!gens[0].is_valid() && gens[0].number == newest, "{gens:?}");
    assert!(gens[1].is_valid(), "{gens:?}");
    rig.ns.set_down("Ethernet4"); // and a change while down
    let mut d = rig.warm_restart(&names, &["--json-export", "off"]);
    let m = d.metrics();
    assert_eq!(
        parse_metric(
            &m,
            "portsyncd_state_recoveries_total{source=\"previous_generation\"}"
        ),
        1.0,
        "{m}\n{}",
        d.log_text()
    );
    assert!(
        parse_metric(&m, "portsyncd_state_load_failures_total") >= 1.0,
        "{m}"
    );
    assert!(d.log_text().contains("stepping down"), "{}", d.log_text());
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn whole_sled_store_corrupted_uses_the_json_export() {
    let (rig, names) = rig_with(3);
    rig.first_run(&names, &[], true);
    let sled_dir = rig.state_dir.join("sled");
    for entry in std::fs::read_dir(&sled_dir).expect("sled dir") {
        let p = entry.expect("entry").path();
        if p.is_file() {
            std::fs::write(&p, vec![0xA5u8; 4096]).expect("overwrite");
        }
    }
    let mon = Monitor::start(&rig.redis.socket, rig.state_dir.with_extension("monitor"));
    let mut d = rig.warm_restart(&names, &[]);
    let m = d.metrics();
    assert_eq!(
        parse_metric(
            &m,
            "portsyncd_state_recoveries_total{source=\"json_export\"}"
        ),
        1.0,
        "{m}\n{}",
        d.log_text()
    );
    // The export held the whole state: the warm restart still writes nothing to STATE_DB.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(mon.state_port_writes(), Vec::<String>::new());
    // The damaged store was moved aside, not deleted, and a fresh one took its place.
    let quarantined = std::fs::read_dir(&rig.state_dir)
        .expect("state dir")
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains("quarantine"));
    assert!(quarantined, "no quarantined copy in {:?}", rig.state_dir);
    assert_eq!(d.terminate().code(), Some(0));
    assert!(generations(&rig.state_dir)[0].is_valid());
}

#[test]
fn stale_store_is_not_used_and_state_db_is_the_baseline() {
    let (rig, names) = rig_with(3);
    rig.first_run(&names, &[], true);
    std::thread::sleep(Duration::from_millis(1100)); // older than a max age of 0 days
    let mon = Monitor::start(&rig.redis.socket, rig.state_dir.with_extension("monitor"));
    let mut d = rig.warm_restart(&names, &["--state-max-age-days", "0"]);
    let log = d.log_text();
    assert!(log.contains("older than the maximum age"), "{log}");
    assert!(log.contains("baseline read from STATE_DB"), "{log}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        mon.state_port_writes(),
        Vec::<String>::new(),
        "STATE_DB baseline: no churn"
    );
    let m = d.metrics();
    assert_metrics(
        &m,
        &[
            (
                "portsyncd_state_recoveries_total{source=\"cold_start\"}",
                1.0,
            ),
            (
                "portsyncd_warm_restarts_total{result=\"reconciled_degraded\"}",
                1.0,
            ),
        ],
    );
    assert_eq!(d.terminate().code(), Some(0));
    // Stale cleanup: the next (recent) state is used again.
    let mut d = rig.warm_restart(&names, &[]);
    let log = d.log_text();
    assert!(
        log.contains("warm-start baseline from the saved state"),
        "{log}"
    );
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn rotation_keeps_the_configured_number_of_generations() {
    let (rig, names) = rig_with(5);
    rig.first_run(&names, &["--state-generations", "2"], true);
    let gens = generations(&rig.state_dir);
    assert_eq!(gens.len(), 2, "{gens:?}");
    assert!(gens.iter().all(|g| g.is_valid()));
    assert!(gens[0].number > gens[1].number);
    assert_eq!(gens[0].port_count, Some(5));
    // Rotation off: one generation (a warm start: a cold one would set the old netdevs down).
    rig.enable_warm();
    let mut d = rig.start(&["--state-rotation", "false"]);
    assert!(d.wait_log("initial sync complete", T));
    rig.ns.set_mtu("Ethernet0", 9000);
    assert!(rig.wait_converged(&names, T));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.terminate().code(), Some(0));
    assert_eq!(generations(&rig.state_dir).len(), 1);
    // The saved state is the legacy JSON too.
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(rig.state_dir.join("port_state.json")).expect("export"),
    )
    .expect("json");
    assert_eq!(json["version"], 1);
    assert_eq!(json["ports"]["Ethernet0"]["mtu"], 9000);
    assert_eq!(json["ports"]["Ethernet0"]["admin_state"], 1);
}

#[test]
fn lifetime_counters_survive_restarts() {
    let (rig, names) = rig_with(2);
    rig.first_run(&names, &[], true);
    let mut d = rig.warm_restart(&names, &[]);
    assert_eq!(d.terminate().code(), Some(0));
    let mut d = rig.warm_restart(&names, &["--eoiu-timeout-secs", "0"]);
    std::thread::sleep(Duration::from_millis(200));
    let m = d.metrics();
    assert_metrics(
        &m,
        &[
            ("portsyncd_starts_total{mode=\"cold\"}", 1.0),
            ("portsyncd_starts_total{mode=\"warm\"}", 2.0),
            ("portsyncd_initial_sync_total{outcome=\"eoiu\"}", 2.0),
            ("portsyncd_initial_sync_total{outcome=\"timeout\"}", 1.0),
            ("portsyncd_initial_sync_seconds_count", 3.0),
        ],
    );
    assert!(
        parse_metric(&m, "portsyncd_state_commits_total") >= 3.0,
        "{m}"
    );
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn sled_log_destroyed_alone_is_counted_as_a_json_export_recovery() {
    // sled reopens a garbage `db` as an empty database without an error; the store must see that
    // it lost its data (not start afresh silently) and say so.
    let (rig, names) = rig_with(2);
    rig.first_run(&names, &[], false);
    std::fs::write(rig.state_dir.join("sled/db"), vec![0u8; 8192]).expect("overwrite db");
    let mut d = rig.warm_restart(&names, &[]);
    let m = d.metrics();
    assert_eq!(
        parse_metric(
            &m,
            "portsyncd_state_recoveries_total{source=\"json_export\"}"
        ),
        1.0,
        "{m}\n{}",
        d.log_text()
    );
    assert!(
        d.log_text().contains("sled opened empty"),
        "{}",
        d.log_text()
    );
    assert_eq!(d.terminate().code(), Some(0));
}

/// Commits after the first are deltas (only the changed ports handed over and written): after changes,
/// a removal and a re-creation over several commits, the newest generation and the JSON export must
/// still equal what STATE_DB and the kernel hold for every port.
#[test]
fn delta_commits_keep_the_store_equal_to_state_db_and_the_kernel() {
    let (rig, names) = rig_with(12);
    rig.first_run(&names, &[], false);
    let mut d = rig.warm_restart(&names, &[]);
    let gone = names[11].clone();
    let rounds: Vec<Box<dyn Fn()>> = vec![
        Box::new(|| {
            for p in &names[0..4] {
                rig.ns.set_mtu(p, 9000);
            }
        }),
        Box::new(|| {
            for p in &names[3..6] {
                rig.ns.set_down(p);
            }
        }),
        Box::new(|| rig.ns.del_link(&gone)),
        Box::new(|| {
            rig.ns.set_down(&common::rig::peer_of(&names[7]));
            rig.ns.set_mtu(&names[0], 1500);
        }),
        Box::new(|| rig.add_port(&gone)),
    ];
    for (i, change) in rounds.iter().enumerate() {
        let commits = d.metric("portsyncd_state_commits_total");
        change();
        assert!(
            rig.wait_converged(&names, T),
            "round {i}: {:?}",
            rig.mismatches(&names)
        );
        assert!(
            common::daemon::wait_until(T, || d.metric("portsyncd_state_commits_total") > commits),
            "round {i}: no commit\n{}",
            d.log_text()
        );
        // The removal round is checked on disk before the port comes back.
        if i == 2 {
            std::thread::sleep(Duration::from_millis(300));
            let r = StoreReader::open(&rig.state_dir, 1 << 20).expect("open a copy");
            let newest = r.generations().expect("generations")[0].number;
            let (_, snap) = r.load(newest).expect("newest valid");
            assert!(!snap.ports.contains_key(&gone), "{gone} still saved");
            assert_eq!(snap.ports.len(), names.len() - 1);
        }
    }
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
    let r = StoreReader::open(&rig.state_dir, 1 << 20).expect("open a copy");
    let newest = r.generations().expect("generations")[0].number;
    let (_, snap) = r.load(newest).expect("newest valid");
    assert_eq!(snap.ports.len(), names.len());
    for p in &names {
        let rec = &snap.ports[p];
        assert_eq!(rec.published, rig.state(p), "{p}: saved vs STATE_DB");
        assert_eq!(rec.ifindex, rig.ns.ifindex(p), "{p}: ifindex");
        assert_eq!(rec.flags & 1, rig.ns.flags(p) & 1, "{p}: IFF_UP");
        assert_eq!(rec.admin_up, rec.flags & 1 != 0, "{p}");
    }
    assert_eq!(snap.ports[&names[0]].mtu, 1500);
    assert!(!snap.ports[&names[4]].admin_up);
    assert!(!snap.ports[&names[7]].oper_up);
    let export = portsyncd::store::json_export::read(&rig.state_dir.join("port_state.json"), true)
        .expect("export verifies");
    assert_eq!(export.generation, Some(newest));
    assert_eq!(export.snapshot, snap);
}
