//! What portsyncd publishes for one port in STATE_DB `PORT_TABLE`, and which links qualify.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::link::Link;

/// Name prefixes of the netdevs portsyncd publishes (front-panel ports and LAGs).
const PORT_PREFIXES: [&str; 2] = ["Ethernet", "PortChannel"];

/// True for names portsyncd may publish (`Ethernet*`, `PortChannel*`). A name holding white space
/// never does: the kernel refuses such names, and the netlink parser marks a name that is not UTF-8
/// with one (`Ethernet0\xff (not UTF-8)`), so a port renamed to such a name is a port renamed away.
pub fn qualifying_name(name: &str) -> bool {
    PORT_PREFIXES.iter().any(|p| name.starts_with(p)) && !name.contains(char::is_whitespace)
}

/// True for front-panel port names (`Ethernet*`), the ones SONiC's old-netdev handling touches.
pub fn front_panel_name(name: &str) -> bool {
    name.starts_with("Ethernet")
}

/// The four STATE_DB fields portsyncd owns for a port (`state` is always `ok`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortStatus {
    pub admin_up: bool,
    pub oper_up: bool,
    pub mtu: u32,
}

fn up_down(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
}

impl PortStatus {
    /// The status the kernel reports for `link`.
    pub fn of(link: &Link) -> Self {
        PortStatus {
            admin_up: link.admin_up(),
            oper_up: link.oper_up(),
            mtu: link.mtu,
        }
    }

    /// The STATE_DB fields, in the order SONiC's daemon writes them.
    pub fn fields(&self) -> Vec<(String, String)> {
        self.field_values()
            .into_iter()
            .map(|(f, v)| (f.to_string(), v.into_owned()))
            .collect()
    }

    /// [`PortStatus::fields`] without an allocation per field: the names and the up/down/ok values
    /// are constants, only the MTU is formatted.
    pub fn field_values(&self) -> Vec<(&'static str, Cow<'static, str>)> {
        vec![
            ("state", Cow::Borrowed("ok")),
            ("netdev_oper_status", Cow::Borrowed(up_down(self.oper_up))),
            ("admin_status", Cow::Borrowed(up_down(self.admin_up))),
            ("mtu", Cow::Owned(self.mtu.to_string())),
        ]
    }

    /// The four fields as text without any allocation: the MTU is formatted into `mtu_text`.
    /// Same names, values and order as [`PortStatus::field_values`].
    pub fn field_strs<'a>(&self, mtu_text: &'a mut [u8; 10]) -> [(&'static str, &'a str); 4] {
        // u32::MAX has 10 digits.
        let mut n = self.mtu;
        let mut i = mtu_text.len();
        loop {
            i -= 1;
            mtu_text[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let mtu = std::str::from_utf8(&mtu_text[i..]).unwrap_or("0");
        [
            ("state", "ok"),
            ("netdev_oper_status", up_down(self.oper_up)),
            ("admin_status", up_down(self.admin_up)),
            ("mtu", mtu),
        ]
    }

    /// Reads the status back from a saved record's published fields (text).
    /// `None` unless all four fields are present and well-formed: a partial entry is not trusted.
    pub fn from_fields(fields: &BTreeMap<String, String>) -> Option<Self> {
        Self::decode(|k| fields.get(k).map(String::as_bytes))
    }

    /// Reads the status back from a STATE_DB hash as Redis holds it (raw bytes). Only portsyncd's
    /// four fields are looked at, and only they must be text: any other field, of any bytes, is
    /// another writer's and ignored. `None` unless all four are present and well-formed (a value
    /// that is not UTF-8 is not well-formed): such an entry differs from anything portsyncd
    /// writes, so it gets rewritten.
    pub fn from_raw(fields: &RawFields) -> Option<Self> {
        Self::decode(|k| fields.get(k.as_bytes()).map(Vec::as_slice))
    }

    fn decode<'a>(get: impl Fn(&str) -> Option<&'a [u8]>) -> Option<Self> {
        if get("state") != Some(b"ok".as_slice()) {
            return None;
        }
        let updown = |k: &str| match get(k) {
            Some(b"up") => Some(true),
            Some(b"down") => Some(false),
            _ => None,
        };
        Some(PortStatus {
            admin_up: updown("admin_status")?,
            oper_up: updown("netdev_oper_status")?,
            mtu: parse_mtu(get("mtu")?)?,
        })
    }
}

/// True when a STATE_DB hash holds any of the four fields portsyncd writes (valid or not): an
/// entry of portsyncd's, possibly garbled, rather than fields other writers keep alone.
pub fn has_own_fields(fields: &RawFields) -> bool {
    ["state", "admin_status", "netdev_oper_status", "mtu"]
        .iter()
        .any(|f| fields.contains_key(f.as_bytes()))
}

/// A STATE_DB hash as Redis holds it: field to value, raw bytes (other writers' fields included).
pub type RawFields = BTreeMap<Vec<u8>, Vec<u8>>;

/// An MTU as portsyncd writes it: plain decimal digits, no sign, no spaces, within `u32`.
fn parse_mtu(v: &[u8]) -> Option<u32> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(qualifying_name("Ethernet0"));
        assert!(qualifying_name("PortChannel0001"));
        assert!(!qualifying_name("eth0"));
        assert!(!qualifying_name("Bridge"));
        assert!(!qualifying_name("ethernet0"));
        assert!(!qualifying_name("Ethernet0\\xff (not UTF-8)"));
        assert!(front_panel_name("Ethernet8"));
        assert!(!front_panel_name("PortChannel1"));
    }

    #[test]
    fn fields_round_trip() {
        let s = PortStatus {
            admin_up: true,
            oper_up: false,
            mtu: 9100,
        };
        let f: BTreeMap<String, String> = s.fields().into_iter().collect();
        assert_eq!(f["state"], "ok");
        assert_eq!(f["admin_status"], "up");
        assert_eq!(f["netdev_oper_status"], "down");
        assert_eq!(f["mtu"], "9100");
        assert_eq!(PortStatus::from_fields(&f), Some(s));
    }

    #[test]
    fn partial_or_bad_fields_are_not_trusted() {
        let mut f: BTreeMap<String, String> = PortStatus {
            admin_up: true,
            oper_up: true,
            mtu: 1500,
        }
        .fields()
        .into_iter()
        .collect();
        f.insert("mtu".into(), "x".into());
        assert_eq!(PortStatus::from_fields(&f), None);
        f.insert("mtu".into(), "1500".into());
        f.remove("state");
        assert_eq!(PortStatus::from_fields(&f), None);
        f.insert("state".into(), "ok".into());
        f.insert("mtu".into(), "+1500".into());
        assert_eq!(
            PortStatus::from_fields(&f),
            None,
            "not what portsyncd writes"
        );
    }

    fn raw(s: PortStatus) -> RawFields {
        s.fields()
            .into_iter()
            .map(|(f, v)| (f.into_bytes(), v.into_bytes()))
            .collect()
    }

    #[test]
    fn raw_fields_ignore_foreign_bytes_and_reject_undecodable_own_ones() {
        let s = PortStatus {
            admin_up: false,
            oper_up: true,
            mtu: 9100,
        };
        let mut f = raw(s);
        f.insert(b"description".to_vec(), b"caf\xe9".to_vec());
        f.insert(b"\xff".to_vec(), vec![0, 0xff]);
        assert_eq!(PortStatus::from_raw(&f), Some(s), "foreign fields ignored");
        for own in ["state", "admin_status", "netdev_oper_status", "mtu"] {
            let mut g = f.clone();
            g.insert(own.as_bytes().to_vec(), b"\xe9\xff".to_vec());
            assert_eq!(PortStatus::from_raw(&g), None, "{own}");
        }
    }

    proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        // Regression files live under tests/ (not beside src/).
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/proptest-regressions/core_port.txt"
            )
        )),
        ..proptest::prelude::ProptestConfig::default()
    })]
        /// Any bytes in any field: an answer, never a panic; portsyncd's own entry always reads back.
        #[test]
        fn raw_decoding_is_total(
            extra in proptest::collection::btree_map(
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..16),
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
                0..8,
            ),
            admin_up: bool, oper_up: bool, mtu: u32,
        ) {
            let _ = PortStatus::from_raw(&extra);
            let s = PortStatus { admin_up, oper_up, mtu };
            let mut f = extra.clone();
            f.extend(raw(s));
            proptest::prop_assert_eq!(PortStatus::from_raw(&f), Some(s));
        }
    }

    #[test]
    fn field_strs_are_the_field_values() {
        for mtu in [0, 7, 9, 10, 68, 1500, 9100, 65535, 1_000_000_000, u32::MAX] {
            for (admin_up, oper_up) in [(true, true), (true, false), (false, false)] {
                let s = PortStatus {
                    admin_up,
                    oper_up,
                    mtu,
                };
                let mut t = [0u8; 10];
                let strs: Vec<(&str, String)> = s
                    .field_strs(&mut t)
                    .iter()
                    .map(|(f, v)| (*f, v.to_string()))
                    .collect();
                let values: Vec<(&str, String)> = s
                    .field_values()
                    .into_iter()
                    .map(|(f, v)| (f, v.into_owned()))
                    .collect();
                assert_eq!(strs, values);
            }
        }
    }
}
