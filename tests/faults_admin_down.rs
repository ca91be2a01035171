//! Old netdevs at a cold start are set admin-down off the loop (issue 7): with every admin-down made
//! slow (`fault-injection`: `PORTSYNCD_FAULT_ADMIN_DOWN_DELAY_MS`), a port created meanwhile is
//! published before the old netdevs are down, and the old netdevs still end admin-down.

#![cfg(feature = "fault-injection")]

mod common;

use common::daemon::wait_until;
use common::rig::{Rig, T};

#[test]
fn slow_admin_downs_of_old_netdevs_do_not_hold_back_publishing() {
    let rig = Rig::new(&["Ethernet0", "Ethernet4", "Ethernet8"]);
    // Left over from an earlier run: they exist before the daemon starts.
    rig.add_port("Ethernet0");
    rig.add_port("Ethernet4");
    let admin = |p: &str| rig.kernel(p).map(|k| k.1);
    let mut d = rig.start_with_env(&[], &[("PORTSYNCD_FAULT_ADMIN_DOWN_DELAY_MS", "4000")]);
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    rig.add_port("Ethernet8");
    assert!(
        wait_until(T, || !rig.state("Ethernet8").is_empty()),
        "{}",
        d.log_text()
    );
    // Published while the second admin-down (done 8 s after the start at the earliest) is pending.
    assert_eq!(
        admin("Ethernet4").as_deref(),
        Some("up"),
        "publishing waited for the admin-downs\n{}",
        d.log_text()
    );
    // The old netdevs still end admin-down, and stay unpublished.
    assert!(
        wait_until(T, || admin("Ethernet0").as_deref() == Some("down")
            && admin("Ethernet4").as_deref() == Some("down")),
        "{}",
        d.log_text()
    );
    assert!(d.log_text().contains("old netdev set admin down"));
    assert!(rig.state("Ethernet0").is_empty() && rig.state("Ethernet4").is_empty());
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
}
