//! The kernel's view of one link, as the netlink edge hands it to the core.
//!
//! These types are shared by the netlink parser (which produces them) and the sans-IO core (which
//! consumes them). They hold only what portsyncd acts on; the parser keeps nothing else.

/// `IFF_UP`: administratively up.
pub const IFF_UP: u32 = 0x1;
/// `IFF_RUNNING`: operationally up (carrier and the kernel's RFC 2863 state).
pub const IFF_RUNNING: u32 = 0x40;
/// `IFF_LOWER_UP`: the driver reports carrier.
pub const IFF_LOWER_UP: u32 = 0x1_0000;

/// One link as described by an `RTM_NEWLINK` / `RTM_DELLINK` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// `ifi_index`.
    pub ifindex: u32,
    /// `IFLA_IFNAME`.
    pub name: String,
    /// `ifi_flags` (IFF_*), as the kernel sent them.
    pub flags: u32,
    /// `IFLA_MTU`, 0 when the message carried none.
    pub mtu: u32,
    /// `IFLA_LINKINFO` / `IFLA_INFO_KIND` (e.g. "veth", "team", "bridge"), when present.
    pub kind: Option<String>,
    /// `IFLA_MASTER`, 0 when absent.
    pub master: u32,
}

impl Link {
    /// admin_status: `IFF_UP`.
    pub fn admin_up(&self) -> bool {
        self.flags & IFF_UP != 0
    }

    /// netdev_oper_status: `IFF_RUNNING`.
    pub fn oper_up(&self) -> bool {
        self.flags & IFF_RUNNING != 0
    }
}

/// Which message carried the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkOp {
    /// `RTM_NEWLINK` (a dump reply or a notification).
    New,
    /// `RTM_DELLINK`.
    Del,
}

/// A link message, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEvent {
    pub op: LinkOp,
    pub link: Link,
}
