//! Golden bytes: what the store writes, pinned byte for byte (generated from the code before the
//! issue-17 restructuring). A change here is a change of the on-disk format or of the tool's output.

use std::collections::BTreeMap;

use super::export_cache::{ExportCache, PortFragments};
use super::generation::{self, NothingStored};
use super::json_export;
use super::record::{self, PortRecord, Snapshot};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Ports with escapes, non-ASCII text and every field set.
fn state() -> Snapshot {
    let mut s = Snapshot::default();
    let mut add = |name: &str, ifindex, admin_up, oper_up, flags, mtu, fields: &[(&str, &str)]| {
        s.ports.insert(
            name.to_string(),
            PortRecord {
                name: name.to_string(),
                ifindex,
                admin_up,
                oper_up,
                flags,
                mtu,
                published: fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
        );
    };
    add(
        "Ethernet0",
        3,
        true,
        true,
        0x11043,
        9100,
        &[
            ("mtu", "9100"),
            ("netdev_oper_status", "up"),
            ("state", "ok"),
        ],
    );
    add(
        "Ethernet4",
        4,
        true,
        false,
        0x1003,
        1500,
        &[
            ("admin_status", "up"),
            ("odd \"key\"\n\t", "v\u{e9}\\/\u{1}"),
        ],
    );
    add("PortChannel0001", 70_000, false, false, 0x1002, 9216, &[]);
    s.counters.insert("starts_total{mode=\"cold\"}".into(), 2);
    s.counters
        .insert("portsyncd_state_commits_total".into(), 1 << 53);
    s
}

/// The JSON export of [`state`] at generation 42, as `render` writes it and as the streamed export
/// writes it.
const EXPORT: &str = r#"{"counters":{"portsyncd_state_commits_total":9007199254740992,"starts_total{mode=\"cold\"}":2},"generation":42,"ifindex":{"Ethernet0":3,"Ethernet4":4,"PortChannel0001":70000},"ports":{"Ethernet0":{"admin_state":1,"flags":69699,"mtu":9100,"name":"Ethernet0","oper_state":1},"Ethernet4":{"admin_state":1,"flags":4099,"mtu":1500,"name":"Ethernet4","oper_state":0},"PortChannel0001":{"admin_state":0,"flags":4098,"mtu":9216,"name":"PortChannel0001","oper_state":0}},"published":{"Ethernet0":{"mtu":"9100","netdev_oper_status":"up","state":"ok"},"Ethernet4":{"admin_status":"up","odd \"key\"\n\t":"vé\\/\u0001"},"PortChannel0001":{}},"saved_at":1700000000,"version":1,"checksum":"e79bb7a1"}"#;

/// `Ethernet4`'s record framed under `r/Ethernet4/0000000000000007`: bincode payload || CRC32 LE.
const RECORD: &str = "0945746865726e657434040100fb0310fbdc05020c61646d696e5f7374617475730275700b6f646420226b6579220a090676c3a95c2f019332022b";

/// The batch `generation::build` makes for [`state`] as generation 42: every record, then the manifest.
const BATCH: [(&str, &str); 4] = [
    (
        "722f45746865726e6574302f37646134393435313965633062343866",
        "0945746865726e657430030101fc43100100fb8c2303036d74750439313030126e65746465765f6f7065725f737461747573027570057374617465026f6bfe6db2a9",
    ),
    (
        "722f45746865726e6574342f65343666653433633430616237613939",
        "0945746865726e657434040100fb0310fbdc05020c61646d696e5f7374617475730275700b6f646420226b6579220a090676c3a95c2f01a78d83c6",
    ),
    (
        "722f506f72744368616e6e656c303030312f38323766363935633961396536646635",
        "0f506f72744368616e6e656c30303031fc701101000000fb0210fb0024004e148d1c",
    ),
    (
        "6d2f000000000000002a",
        "012a03fc00f15365030945746865726e657430fd8fb4c09e5194a47d0945746865726e657434fd997aab403ce46fe40f506f72744368616e6e656c30303031fdf56d9e9a5c697f82021d706f727473796e63645f73746174655f636f6d6d6974735f746f74616cfd0000000000002000197374617274735f746f74616c7b6d6f64653d22636f6c64227d0256374747",
    ),
];

#[test]
fn the_json_export_is_byte_identical() {
    let s = state();
    let rendered = json_export::render(&s, 1_700_000_000, 42);
    assert_eq!(String::from_utf8(rendered).unwrap(), format!("{EXPORT}\n"));
    let mut cache = ExportCache::default();
    cache.replace(
        s.ports
            .iter()
            .map(|(n, r)| (n.clone(), PortFragments::of(n, r)))
            .collect(),
    );
    let mut streamed = Vec::new();
    cache
        .write_to(&mut streamed, &s.counters, 1_700_000_000, 42)
        .unwrap();
    assert_eq!(String::from_utf8(streamed).unwrap(), format!("{EXPORT}\n"));
}

#[test]
fn a_records_bytes_are_identical() {
    let key = generation::record_key("Ethernet4", 7);
    assert_eq!(key, b"r/Ethernet4/0000000000000007");
    assert_eq!(
        hex(&record::encode(&key, &state().ports["Ethernet4"])),
        RECORD
    );
}

#[test]
fn a_manifests_bytes_and_record_keys_are_identical() {
    let (batch, m, _) = generation::build(42, &state(), 1_700_000_000, &NothingStored);
    let got: Vec<(String, String)> = batch
        .ops
        .iter()
        .map(|(k, v)| (hex(k), v.as_deref().map(hex).unwrap_or_default()))
        .collect();
    let want: Vec<(String, String)> = BATCH
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(got, want);
    let hashes: BTreeMap<&str, u64> = m.ports.iter().map(|(n, &h)| (n.as_str(), h)).collect();
    assert_eq!(
        hashes,
        BTreeMap::from([
            ("Ethernet0", 0x7da4_9451_9ec0_b48f),
            ("Ethernet4", 0xe46f_e43c_40ab_7a99),
            ("PortChannel0001", 0x827f_695c_9a9e_6df5),
        ])
    );
}

#[test]
fn the_fnv_1a_64_values_are_identical() {
    // The FNV-1a 64 reference vectors, and a record's payload (its value is in every record key).
    assert_eq!(generation::payload_hash(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(generation::payload_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(generation::payload_hash(b"foobar"), 0x8594_4171_f739_67e8);
    let rec = &state().ports["Ethernet4"];
    let payload = bincode::serde::encode_to_vec(rec, bincode::config::standard()).unwrap();
    assert_eq!(generation::payload_hash(&payload), 0xe46f_e43c_40ab_7a99);
}

#[test]
fn utc_times_are_formatted_identically() {
    for (secs, text) in [
        (0, "1970-01-01T00:00:00Z"),
        (59, "1970-01-01T00:00:59Z"),
        (86399, "1970-01-01T23:59:59Z"),
        (86400, "1970-01-02T00:00:00Z"),
        (951782400, "2000-02-29T00:00:00Z"),
        (951868799, "2000-02-29T23:59:59Z"),
        (1700000000, "2023-11-14T22:13:20Z"),
        (4107542400, "2100-03-01T00:00:00Z"),
        (253402300799, "9999-12-31T23:59:59Z"),
    ] {
        assert_eq!(super::format_utc(secs), text, "{secs}");
    }
}

#[test]
fn the_checksum_of_any_document_is_identical() {
    // Keys out of order, nested arrays and objects, escapes, floats, extreme integers: the canonical
    // form (compact, keys sorted bytewise) and so its CRC32 must not move.
    let doc: serde_json::Value = serde_json::from_str(
        r#"{"z":1,"a":{"y":[3,{"b":1.5e3,"a":-0.0}],"x":"\u00e9\u0001\"/"},"checksum":"x","m":-9223372036854775808,"n":18446744073709551615,"f":0.1,"e":1e300,"t":true,"nul":null,"A":[]}"#,
    )
    .unwrap();
    assert_eq!(json_export::checksum(doc.as_object().unwrap()), "7bbcdf13");
}
