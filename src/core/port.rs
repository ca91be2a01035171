//! What portsyncd publishes for one port in STATE_DB `PORT_TABLE`, and which links qualify.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::link::Link;

/// Name prefixes of the netdevs portsyncd publishes (front-panel ports and LAGs).
const PORT_PREFIXES: [&str; 2] = ["Ethernet", "PortChannel"];

/// True for names portsyncd may publish (`Ethernet*`, `PortChannel*`).
pub fn qualifying_name(name: &str) -> bool {
    PORT_PREFIXES.iter().any(|p| name.starts_with(p))
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

    /// Reads the status back from a STATE_DB hash (or a saved record's published fields).
    /// `None` unless all four fields are present and well-formed: a partial entry is not trusted.
    pub fn from_fields(fields: &BTreeMap<String, String>) -> Option<Self> {
        if fields.get("state").map(String::as_str) != Some("ok") {
            return None;
        }
        let updown = |k: &str| match fields.get(k).map(String::as_str) {
            Some("up") => Some(true),
            Some("down") => Some(false),
            _ => None,
        };
        Some(PortStatus {
            admin_up: updown("admin_status")?,
            oper_up: updown("netdev_oper_status")?,
            mtu: fields.get("mtu")?.parse().ok()?,
        })
    }
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
    }
}
