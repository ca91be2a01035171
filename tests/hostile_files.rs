//! A state directory holding only legacy files with absurd numbers (`saved_at` and `generation`
//! near 2^64: a restored backup, a hand edit), as the real daemon meets it at start, against a real
//! redis-server and veth pairs in a private netns. Before, `Store::open` panicked on every start (the
//! time overflowed), a crash loop in which no port was ever published. Now the file is rejected, the
//! log names it and the field, the daemon starts cold and publishes.

mod common;

use std::time::Duration;

use common::rig::Rig;

const T: Duration = Duration::from_secs(20);

#[test]
fn absurd_numbers_in_a_legacy_state_file_neither_crash_nor_stop_publishing() {
    let rig = Rig::new(&["Ethernet0", "Ethernet4"]);
    std::fs::create_dir_all(&rig.state_dir).unwrap();
    let absurd = r#"{"ports": {"Ethernet0": {"name": "Ethernet0", "admin_state": 1, "oper_state": 1, "flags": 69699, "mtu": 9100}}, "saved_at": 18446744073709551615, "generation": 18446744073709551615, "version": 1}"#;
    std::fs::write(rig.state_dir.join("port_state.json"), absurd).unwrap();
    std::fs::write(rig.state_dir.join("port_state.json.backup"), absurd).unwrap();

    let mut d = rig.start(&[]);
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    rig.add_port("Ethernet0");
    rig.add_port("Ethernet4");
    let ports = ["Ethernet0".to_string(), "Ethernet4".to_string()];
    assert!(
        rig.wait_converged(&ports, T),
        "{:?}\n{}",
        rig.mismatches(&ports),
        d.log_text()
    );
    let log = d.log_text();
    assert!(
        log.contains("port_state.json") && log.contains("saved_at"),
        "the rejected file and field are not named:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
}
