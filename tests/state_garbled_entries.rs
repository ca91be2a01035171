//! A STATE_DB `PORT_TABLE` entry whose own fields another writer garbled, of a port that went away
//! while portsyncd was down, is deleted at the next start, warm or cold (found by the deterministic
//! simulation, seed 432: start-up read such an entry as no entry at all and never deleted it).

mod common;

use common::daemon::{wait_until, STATE_DB};
use common::rig::{rig_with, T};

fn garbled_entry_of_a_port_gone_while_down_is_deleted(warm: bool) {
    let (rig, names) = rig_with(3); // Ethernet0, 4, 8
    rig.first_run(&names, &[], false);
    // While portsyncd is down: a foreign writer garbles Ethernet8's MTU, then the port goes.
    rig.cli(STATE_DB, &["HSET", "PORT_TABLE|Ethernet8", "mtu", "x9100"]);
    rig.ns.del_link("Ethernet8");
    if warm {
        rig.enable_warm();
    } else {
        // A cold start without a saved state (it would name Ethernet8 as a candidate itself).
        std::fs::remove_dir_all(&rig.state_dir).expect("remove the state dir");
    }
    let mut d = rig.start(&[]);
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    assert!(
        wait_until(T, || rig.state("Ethernet8").is_empty()),
        "warm={warm}: the garbled entry of a port that no longer exists is still there: {:?}\n{}",
        rig.state("Ethernet8"),
        d.log_text()
    );
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
}

#[test]
fn at_a_warm_start() {
    garbled_entry_of_a_port_gone_while_down_is_deleted(true);
}

#[test]
fn at_a_cold_start() {
    garbled_entry_of_a_port_gone_while_down_is_deleted(false);
}
