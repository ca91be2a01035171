//! A model of the kernel's links and of the daemon's `NETLINK_ROUTE` socket as the netlink reader
//! hands it to the loop: notifications queued in order, dump replies produced as the queue is read
//! (each reads the links as they are then), `NLM_F_DUMP_INTR` once the link list changed during a
//! dump, and losses (notifications dropped, then an overrun reported after the backlog was read, as
//! `daemon::reader::read_loop` does).

use std::collections::{BTreeMap, HashMap, VecDeque};

use portsyncd::core::link::{IFF_LOWER_UP, IFF_RUNNING, IFF_UP};
use portsyncd::core::{Link, LinkEvent, LinkOp};

/// One link of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KLink {
    pub name: String,
    pub admin_up: bool,
    pub carrier: bool,
    pub mtu: u32,
    pub kind: Option<String>,
    /// The bridge it is enslaved to (0: none).
    pub master: u32,
}

impl KLink {
    pub fn flags(&self) -> u32 {
        let mut f = 0x1002; // IFF_BROADCAST | IFF_MULTICAST
        if self.admin_up {
            f |= IFF_UP;
            if self.carrier {
                f |= IFF_RUNNING | IFF_LOWER_UP;
            }
        }
        f
    }
}

/// What the reader hands the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Link {
        seq: u32,
        dump_intr: bool,
        event: LinkEvent,
    },
    Done {
        seq: u32,
        dump_intr: bool,
    },
    Overrun,
}

#[derive(Debug, Clone)]
struct DumpCursor {
    seq: u32,
    /// The last ifindex a reply was produced for.
    passed: u32,
    /// The link list changed since the dump started (or the fault forces it).
    intr: bool,
}

#[derive(Debug, Default)]
pub struct Kernel {
    pub links: BTreeMap<u32, KLink>,
    /// Name → ifindex of `links`.
    names: HashMap<String, u32>,
    next_ifindex: u32,
    queue: VecDeque<Item>,
    dump: Option<DumpCursor>,
    next_seq: u32,
    /// A daemon has the socket open (notifications are queued only then).
    open: bool,
    /// The next dump requested ends interrupted (fault).
    pub force_intr: bool,
    /// Notifications were dropped since the queue was last read empty (the socket's congested
    /// state): the reader reports an overrun after reading the backlog.
    congested: bool,
}

/// Notifications the socket holds (the real one holds tens of thousands; the model's ports are few).
pub const QUEUE_CAP: usize = 256;

fn event(op: LinkOp, ifindex: u32, l: &KLink) -> LinkEvent {
    LinkEvent {
        op,
        link: Link {
            ifindex,
            name: l.name.clone(),
            flags: l.flags(),
            mtu: l.mtu,
            kind: l.kind.clone(),
            master: l.master,
        },
    }
}

impl Kernel {
    pub fn new() -> Self {
        Kernel {
            next_ifindex: 2,
            next_seq: 1,
            ..Kernel::default()
        }
    }

    pub fn by_name(&self, name: &str) -> Option<(u32, &KLink)> {
        let i = *self.names.get(name)?;
        self.links.get(&i).map(|l| (i, l))
    }

    fn notify(&mut self, op: LinkOp, ifindex: u32, l: &KLink) {
        if self.open && (self.congested || self.queue.len() >= QUEUE_CAP) {
            self.congested = true; // dropped
            return;
        }
        if self.open {
            self.queue.push_back(Item::Link {
                seq: 0,
                dump_intr: false,
                event: event(op, ifindex, l),
            });
        }
    }

    fn list_changed(&mut self) {
        if let Some(d) = self.dump.as_mut() {
            d.intr = true;
        }
    }

    /// A new link; returns its ifindex.
    pub fn add(&mut self, l: KLink) -> u32 {
        let i = self.next_ifindex;
        self.next_ifindex += 1;
        self.notify(LinkOp::New, i, &l);
        self.names.insert(l.name.clone(), i);
        self.links.insert(i, l);
        self.list_changed();
        i
    }

    pub fn delete(&mut self, ifindex: u32) -> Option<KLink> {
        let l = self.links.remove(&ifindex)?;
        self.names.remove(&l.name);
        self.notify(LinkOp::Del, ifindex, &l);
        self.list_changed();
        Some(l)
    }

    /// Changes a link in place (flags, MTU, name); one notification.
    pub fn modify(&mut self, ifindex: u32, f: impl FnOnce(&mut KLink)) -> bool {
        let Some(mut l) = self.links.get(&ifindex).cloned() else {
            return false;
        };
        let old_name = l.name.clone();
        f(&mut l);
        if l == self.links[&ifindex] {
            return true;
        }
        if l.name != old_name {
            self.list_changed();
            self.names.remove(&old_name);
            self.names.insert(l.name.clone(), ifindex);
        }
        self.notify(LinkOp::New, ifindex, &l);
        self.links.insert(ifindex, l);
        true
    }

    /// The link leaves its bridge: the bridge family's RTM_DELLINK (with the master), then the
    /// link's RTM_NEWLINK without one. The netdev stays.
    pub fn release_from_bridge(&mut self, ifindex: u32) {
        let Some(l) = self.links.get(&ifindex).cloned() else {
            return;
        };
        if l.master == 0 {
            return;
        }
        self.notify(LinkOp::Del, ifindex, &l);
        self.modify(ifindex, |l| l.master = 0);
    }

    /// A daemon opened its socket (empty queue).
    pub fn open_socket(&mut self) {
        self.open = true;
        self.congested = false;
        self.queue.clear();
        self.dump = None;
    }

    /// The daemon is gone: its socket with it.
    pub fn close_socket(&mut self) {
        self.open = false;
        self.queue.clear();
        self.dump = None;
    }

    /// The daemon asks for a dump (a dump in progress is abandoned, as a new request on the socket
    /// would be refused with EBUSY; the daemon only asks when none is running).
    pub fn request_dump(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.dump = Some(DumpCursor {
            seq,
            passed: 0,
            intr: std::mem::take(&mut self.force_intr),
        });
        seq
    }

    /// Loss: the notifications `drop(i)` picks are dropped; the reader reads the rest of the queue,
    /// then reports the overrun.
    pub fn overrun(&mut self, mut drop: impl FnMut(usize) -> bool) {
        if !self.open {
            return;
        }
        let mut i = 0;
        self.queue.retain(|it| {
            let keep = !matches!(it, Item::Link { seq: 0, .. }) || !drop(i);
            i += 1;
            keep
        });
        self.queue.push_back(Item::Overrun);
    }

    /// The reader reads the socket: everything queued, with up to `parts` dump replies produced
    /// as the queue is read (the DONE after the last link).
    pub fn read(&mut self, parts: usize) -> Vec<Item> {
        let mut out: Vec<Item> = self.queue.drain(..).collect();
        if std::mem::take(&mut self.congested) {
            out.push(Item::Overrun);
        }
        for _ in 0..parts {
            let Some(d) = self.dump.clone() else {
                break;
            };
            match self.links.range(d.passed + 1..).next() {
                Some((&i, l)) => {
                    out.push(Item::Link {
                        seq: d.seq,
                        dump_intr: d.intr,
                        event: event(LinkOp::New, i, l),
                    });
                    if let Some(c) = self.dump.as_mut() {
                        c.passed = i;
                    }
                }
                None => {
                    out.push(Item::Done {
                        seq: d.seq,
                        dump_intr: d.intr,
                    });
                    self.dump = None;
                }
            }
        }
        out
    }

    /// True while something is queued or a dump is under way.
    pub fn busy(&self) -> bool {
        !self.queue.is_empty() || self.dump.is_some()
    }
}
