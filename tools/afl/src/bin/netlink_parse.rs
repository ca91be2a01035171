//! AFL++ target: one netlink datagram in, every invariant of `tests/hostile_netlink.rs` checked.
//! A panic (a failed invariant included) is what AFL++ records as a crash.

use portsyncd::netlink::parser::find_ack;
use portsyncd::netlink::{parse_datagram, NetlinkItem};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let items = parse_datagram(data);
        assert!(items.len() <= data.len() / 16 + 1);
        for item in &items {
            if let NetlinkItem::Link { event, .. } = item {
                assert_ne!(event.link.ifindex, 0);
                assert!(!event.link.name.contains('\0'));
            }
        }
        let _ = find_ack(data, 1);
    });
}
