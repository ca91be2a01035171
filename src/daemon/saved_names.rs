//! Which names of a saved state portsyncd trusts at start-up: only those it could have published (a
//! foreign or hand-edited state file must not make it delete arbitrary STATE_DB `PORT_TABLE` keys).

use crate::core::port::qualifying_name;
use crate::store::{PortRecord, Snapshot};

/// Longest kernel interface name (`IFNAMSIZ` 16, with its NUL).
const IFNAME_MAX: usize = 15;

/// True for a name the kernel accepts for an interface (Linux `dev_valid_name`): 1 to 15 bytes, not
/// `.` or `..`, no `/`, `:`, whitespace or NUL.
pub fn kernel_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
}

/// True for a saved name portsyncd could have published: a valid kernel interface name that qualifies
/// (`Ethernet*`, `PortChannel*`). Only such names may become STATE_DB deletions at a cold start; a
/// foreign or hand-edited state file must not make portsyncd delete arbitrary `PORT_TABLE` keys.
pub fn publishable_saved_name(name: &str) -> bool {
    kernel_ifname(name) && qualifying_name(name)
}

/// The saved ports whose names portsyncd could have published; the others are ignored, logged once
/// (their count and the first few names).
pub fn publishable_saved_ports(snap: &Snapshot) -> impl Iterator<Item = (&String, &PortRecord)> {
    let ignored: Vec<&String> = snap
        .ports
        .keys()
        .filter(|n| !publishable_saved_name(n))
        .collect();
    if !ignored.is_empty() {
        let first: Vec<&String> = ignored.iter().copied().take(5).collect();
        tracing::warn!(
            ignored = ignored.len(),
            first = ?first,
            "saved state names ports portsyncd would never publish: ignored (never deleted from STATE_DB)"
        );
    }
    snap.ports.iter().filter(|(n, _)| publishable_saved_name(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kernel_names_that_qualify_are_publishable() {
        for ok in [
            "Ethernet0",
            "Ethernet124",
            "PortChannel0001",
            "Ethernet1234567",
        ] {
            assert!(publishable_saved_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Loopback0",
            "eth0",
            "Ethernet0:1",
            "Ethernet0/1",
            "Ethernet 0",
            "Ethernet\t0",
            "Ethernet\u{0}",
            "Ethernet12345678",
            "PortChannel00001",
            "..",
        ] {
            assert!(!publishable_saved_name(bad), "{bad:?}");
        }
        let mut snap = Snapshot::default();
        for n in ["Ethernet0", "Loopback0", "Ethernet4:1"] {
            snap.ports.insert(n.into(), PortRecord::default());
        }
        let names: Vec<&String> = publishable_saved_ports(&snap).map(|(n, _)| n).collect();
        assert_eq!(names, ["Ethernet0"]);
    }
}
