//! The data behind `--plot`: the kernel's link notifications as the netlink monitor decoded them, and the
//! number of ports where STATE_DB disagrees with the kernel at every STATE_DB poll, replayed exactly from
//! both change streams (the kernel's view of a port changes only with a notification, STATE_DB's only
//! between two polls).

use std::collections::HashMap;

use crate::observe::View;

const IFF_UP: u32 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_OPERSTATE: u16 = 16;
const IF_OPER_UNKNOWN: u8 = 0;
const IF_OPER_UP: u8 = 6;

/// One RTM_NEWLINK/RTM_DELLINK: when the monitor received it, the link and its new view.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkChange {
    pub t_ns: u64,
    pub name: String,
    pub view: View,
}

impl LinkChange {
    /// `t,name,admin,oper,mtu` (0/1 flags) or `t,name,-` for a deletion: no spaces, one word.
    pub fn encode(&self) -> String {
        match &self.view {
            View::Present {
                admin_up,
                oper_up,
                mtu,
                ..
            } => format!(
                "{},{},{},{},{mtu}",
                self.t_ns,
                self.name,
                u8::from(*admin_up),
                u8::from(*oper_up)
            ),
            View::Absent => format!("{},{},-", self.t_ns, self.name),
        }
    }

    pub fn decode(word: &str) -> Option<Self> {
        let f: Vec<&str> = word.split(',').collect();
        let (t_ns, name) = (f.first()?.parse().ok()?, f.get(1)?.to_string());
        let view = match f.get(2..)? {
            ["-"] => View::Absent,
            [a, o, m] => View::Present {
                admin_up: *a == "1",
                oper_up: *o == "1",
                mtu: m.parse().ok()?,
                state_ok: true,
            },
            _ => return None,
        };
        Some(LinkChange { t_ns, name, view })
    }
}

/// Decodes one link message (netlink header included) the way `observe::kernel_views` reads `ip -json`:
/// admin = IFF_UP, oper = operstate UP or UNKNOWN, the MTU. `None` for a message without a name.
pub fn decode_link(msg: &[u8], deleted: bool) -> Option<(String, View)> {
    let u16_at = |o: usize| Some(u16::from_ne_bytes([*msg.get(o)?, *msg.get(o + 1)?]));
    let u32_at = |o: usize| {
        Some(u32::from_ne_bytes([
            *msg.get(o)?,
            *msg.get(o + 1)?,
            *msg.get(o + 2)?,
            *msg.get(o + 3)?,
        ]))
    };
    // nlmsghdr (16 bytes), then ifinfomsg: family, pad, type (2), index (4), flags (4), change (4).
    let flags = u32_at(16 + 8)?;
    let (mut name, mut mtu, mut oper) = (None, 0u32, IF_OPER_UNKNOWN);
    let mut off = 32;
    while off + 4 <= msg.len() {
        let len = usize::from(u16_at(off)?);
        let ty = u16_at(off + 2)? & 0x3fff;
        if len < 4 || off + len > msg.len() {
            break;
        }
        let data = &msg[off + 4..off + len];
        match ty {
            IFLA_IFNAME => {
                let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                name = Some(String::from_utf8_lossy(&data[..end]).into_owned());
            }
            IFLA_MTU if data.len() >= 4 => {
                mtu = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]);
            }
            IFLA_OPERSTATE if !data.is_empty() => oper = data[0],
            _ => {}
        }
        off += (len + 3) & !3;
    }
    let view = if deleted {
        View::Absent
    } else {
        View::Present {
            admin_up: flags & IFF_UP != 0,
            oper_up: oper == IF_OPER_UP || oper == IF_OPER_UNKNOWN,
            mtu,
            state_ok: true,
        }
    };
    Some((name?, view))
}

/// Ports where STATE_DB differs from the kernel, at every poll: the kernel starts at `kernel0` and takes
/// each notification at its time; STATE_DB takes the changes `state` recorded at each poll (`poll_ns`).
pub fn disagreement(
    ports: &[String],
    kernel0: &[View],
    kernel: &[LinkChange],
    state: &[(u64, u32, View)],
    poll_ns: &[u64],
) -> Vec<(u64, u32)> {
    let index: HashMap<&str, usize> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect();
    let mut k = kernel0.to_vec();
    let mut s = vec![View::Absent; ports.len()];
    let (mut ki, mut si) = (0, 0);
    let mut out = Vec::with_capacity(poll_ns.len());
    for &t in poll_ns {
        while let Some(c) = kernel.get(ki).filter(|c| c.t_ns <= t) {
            if let Some(&i) = index.get(c.name.as_str()) {
                k[i] = c.view.clone();
            }
            ki += 1;
        }
        while let Some((_, i, v)) = state.get(si).filter(|c| c.0 <= t) {
            if let Some(slot) = s.get_mut(*i as usize) {
                *slot = v.clone();
            }
            si += 1;
        }
        let differ = k.iter().zip(&s).filter(|(a, b)| a != b).count();
        out.push((t, differ as u32));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(mtu: u32) -> View {
        View::Present {
            admin_up: true,
            oper_up: true,
            mtu,
            state_ok: true,
        }
    }

    fn attr(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut a = ((4 + data.len()) as u16).to_ne_bytes().to_vec();
        a.extend(ty.to_ne_bytes());
        a.extend(data);
        while !a.len().is_multiple_of(4) {
            a.push(0);
        }
        a
    }

    /// An RTM_NEWLINK as the kernel sends it: header, ifinfomsg (flags UP|RUNNING), attributes.
    fn newlink(name: &str, flags: u32, mtu: u32, oper: u8) -> Vec<u8> {
        let mut body = vec![0u8, 0, 1, 0];
        body.extend(7u32.to_ne_bytes()); // ifindex
        body.extend(flags.to_ne_bytes());
        body.extend(0u32.to_ne_bytes()); // change mask
        body.extend(attr(IFLA_IFNAME, format!("{name}\0").as_bytes()));
        body.extend(attr(IFLA_MTU, &mtu.to_ne_bytes()));
        body.extend(attr(IFLA_OPERSTATE, &[oper]));
        let mut msg = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        msg.extend(16u16.to_ne_bytes());
        msg.extend([0u8; 10]);
        msg.extend(body);
        msg
    }

    #[test]
    fn link_messages_decode_like_ip_json() {
        let (name, view) =
            decode_link(&newlink("Ethernet8", 0x41 | IFF_UP, 9100, 6), false).unwrap();
        assert_eq!(name, "Ethernet8");
        assert_eq!(view, up(9100));
        let (_, down) = decode_link(&newlink("Ethernet8", 0, 1500, 2), false).unwrap();
        assert_eq!(
            down,
            View::Present {
                admin_up: false,
                oper_up: false,
                mtu: 1500,
                state_ok: true
            }
        );
        let (_, gone) = decode_link(&newlink("Ethernet8", 1, 1500, 2), true).unwrap();
        assert_eq!(gone, View::Absent);
        assert!(decode_link(&[0u8; 20], false).is_none());
    }

    #[test]
    fn changes_survive_the_pipe() {
        for view in [up(9100), View::Absent] {
            let c = LinkChange {
                t_ns: 42,
                name: "Ethernet4".into(),
                view,
            };
            assert_eq!(LinkChange::decode(&c.encode()), Some(c));
        }
        assert_eq!(LinkChange::decode("1,x,1"), None);
    }

    #[test]
    fn disagreement_replays_both_streams() {
        let ports = vec!["Ethernet0".to_string(), "Ethernet4".to_string()];
        let kernel0 = vec![up(1500), up(1500)];
        let kernel = vec![
            LinkChange {
                t_ns: 15,
                name: "Ethernet0".into(),
                view: up(9100),
            },
            LinkChange {
                t_ns: 16,
                name: "lo".into(),
                view: up(65536),
            },
        ];
        // STATE_DB: both ports at the first poll (t 10), Ethernet0's new MTU at t 30.
        let state = vec![(10, 0, up(1500)), (10, 1, up(1500)), (30, 0, up(9100))];
        assert_eq!(
            disagreement(&ports, &kernel0, &kernel, &state, &[10, 20, 30, 40]),
            vec![(10, 0), (20, 1), (30, 0), (40, 0)]
        );
    }
}
