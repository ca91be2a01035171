//! The compatibility JSON (`port_state.json`): rendering, strict parsing, and its checksum. (Its atomic
//! write is `durable.rs`.)
//!
//! The legacy fields keep their meaning exactly:
//! `{"ports": {"Ethernet0": {"name", "admin_state": 0|1, "oper_state": 0|1, "flags", "mtu"}}, "saved_at", "version": 1}`.
//! Extra top-level fields: `generation`, `ifindex` (name -> ifindex), `published` (name -> STATE_DB
//! fields), `counters` (lifetime metrics) and `checksum`.
//!
//! **Checksum**: CRC32 (IEEE) of the canonical serialisation of the document without its `checksum`
//! field — compact JSON, object keys sorted bytewise, no whitespace — as 8 lowercase hex digits. Any
//! change to any field, including the extras, breaks it.

use std::fs::File;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::limits;
use super::record::{PortRecord, Snapshot};

/// The legacy format's `version`.
pub const FORMAT_VERSION: u64 = 1;

/// A parsed state file.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonState {
    pub snapshot: Snapshot,
    pub saved_at: u64,
    /// The store generation it was exported from (absent in legacy files).
    pub generation: Option<u64>,
    /// Whether a checksum was present (and then it verified).
    pub checksummed: bool,
}

/// Why a state file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("cannot read {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("{path} is larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("not valid JSON: {0}")]
    Syntax(String),
    #[error("field {field}: {why}")]
    Field { field: String, why: String },
    #[error("checksum mismatch (file says {stored}, content gives {computed})")]
    Checksum { stored: String, computed: String },
    #[error("no checksum field")]
    NoChecksum,
    #[error("unsupported version {0}")]
    Version(u64),
}

/// The checksum of a document (its `checksum` field, if any, excluded): CRC32 of its canonical form,
/// which is serde_json's compact serialisation with every object's keys sorted (`sort_all_objects`;
/// a no-op unless serde_json's `preserve_order` is on, when maps keep the input's order).
pub fn checksum(doc: &Map<String, Value>) -> String {
    let mut m = doc.clone();
    m.remove("checksum");
    let mut v = Value::Object(m);
    v.sort_all_objects();
    // Serialising a `Value` (string keys, finite numbers) cannot fail.
    let canonical = serde_json::to_vec(&v).unwrap_or_default();
    format!("{:08x}", crc32fast::hash(&canonical))
}

/// One port, legacy fields only, in canonical (sorted) field order (also the streamed export's).
#[derive(serde::Serialize)]
pub(super) struct PortOut<'a> {
    pub(super) admin_state: u8,
    pub(super) flags: u32,
    pub(super) mtu: u32,
    pub(super) name: &'a str,
    pub(super) oper_state: u8,
}

/// The document without its checksum, fields in canonical (sorted) order, so its compact serialisation
/// *is* the canonical form the checksum is defined over.
#[derive(serde::Serialize)]
struct DocOut<'a> {
    counters: &'a BTreeMap<String, u64>,
    generation: u64,
    ifindex: BTreeMap<&'a str, u32>,
    ports: BTreeMap<&'a str, PortOut<'a>>,
    published: BTreeMap<&'a str, &'a BTreeMap<String, String>>,
    saved_at: u64,
    version: u64,
}

/// Render `snap` as the compatibility JSON (compact, one line), checksum included.
pub fn render(snap: &Snapshot, saved_at: u64, generation: u64) -> Vec<u8> {
    let doc = DocOut {
        counters: &snap.counters,
        generation,
        ifindex: snap
            .ports
            .iter()
            .map(|(n, p)| (n.as_str(), p.ifindex))
            .collect(),
        ports: snap
            .ports
            .iter()
            .map(|(n, p)| {
                let out = PortOut {
                    admin_state: u8::from(p.admin_up),
                    flags: p.flags,
                    mtu: p.mtu,
                    name: &p.name,
                    oper_state: u8::from(p.oper_up),
                };
                (n.as_str(), out)
            })
            .collect(),
        published: snap
            .ports
            .iter()
            .map(|(n, p)| (n.as_str(), &p.published))
            .collect(),
        saved_at,
        version: FORMAT_VERSION,
    };
    // Serialising plain structs and string maps cannot fail.
    let mut out = serde_json::to_vec(&doc).unwrap_or_default();
    let sum = format!("{:08x}", crc32fast::hash(&out));
    out.pop(); // the closing brace
    out.extend_from_slice(format!(",\"checksum\":\"{sum}\"}}\n").as_bytes());
    out
}

fn bad(field: impl Into<String>, why: impl Into<String>) -> JsonError {
    JsonError::Field {
        field: field.into(),
        why: why.into(),
    }
}

fn get_u64(m: &Map<String, Value>, key: &str, ctx: &str) -> Result<u64, JsonError> {
    match m.get(key) {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| bad(format!("{ctx}{key}"), "expected an unsigned integer")),
        None => Err(bad(format!("{ctx}{key}"), "missing")),
    }
}

/// [`get_u64`] with an upper bound (see [`limits`]).
fn get_bounded(m: &Map<String, Value>, key: &str, ctx: &str, max: u64) -> Result<u64, JsonError> {
    let v = get_u64(m, key, ctx)?;
    limits::check(v, max).map_err(|why| bad(format!("{ctx}{key}"), why))
}

fn check_text(field: impl FnOnce() -> String, text: &str) -> Result<(), JsonError> {
    if text.len() > limits::MAX_TEXT {
        return Err(bad(
            field(),
            format!("{} bytes long (at most {})", text.len(), limits::MAX_TEXT),
        ));
    }
    Ok(())
}

fn get_u32(m: &Map<String, Value>, key: &str, ctx: &str) -> Result<u32, JsonError> {
    let v = get_u64(m, key, ctx)?;
    u32::try_from(v).map_err(|_| bad(format!("{ctx}{key}"), format!("{v} out of range")))
}

fn get_bool01(m: &Map<String, Value>, key: &str, ctx: &str) -> Result<bool, JsonError> {
    match get_u64(m, key, ctx)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(bad(
            format!("{ctx}{key}"),
            format!("expected 0 or 1, found {v}"),
        )),
    }
}

fn opt_obj<'a>(
    m: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, JsonError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(bad(key, "expected an object")),
    }
}

/// Parse a state file (legacy or exported). A present checksum must verify; `require_checksum` also
/// rejects a file without one (the recovery ladder only trusts checksummed exports).
pub fn parse(bytes: &[u8], require_checksum: bool) -> Result<JsonState, JsonError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| JsonError::Syntax(e.to_string()))?;
    let doc = v
        .as_object()
        .ok_or_else(|| bad("(top level)", "expected an object"))?;
    let checksummed = verify_checksum(doc, require_checksum)?;
    let version = get_u64(doc, "version", "")?;
    if version != FORMAT_VERSION {
        return Err(JsonError::Version(version));
    }
    let saved_at = get_bounded(doc, "saved_at", "", limits::MAX_SAVED_AT)?;
    let generation = match doc.get("generation") {
        None | Some(Value::Null) => None,
        Some(_) => Some(get_bounded(
            doc,
            "generation",
            "",
            limits::MAX_FILE_GENERATION,
        )?),
    };
    let ports = match doc.get("ports") {
        Some(Value::Object(o)) => o,
        Some(_) => return Err(bad("ports", "expected an object")),
        None => return Err(bad("ports", "missing")),
    };
    if ports.len() > limits::MAX_PORTS {
        return Err(bad(
            "ports",
            format!("{} ports (at most {})", ports.len(), limits::MAX_PORTS),
        ));
    }
    let ifindex = opt_obj(doc, "ifindex")?;
    let published = opt_obj(doc, "published")?;
    let mut snapshot = Snapshot::default();
    for (key, p) in ports {
        let rec = parse_port(key, p, ifindex, published)?;
        snapshot.ports.insert(key.clone(), rec);
    }
    if let Some(c) = opt_obj(doc, "counters")? {
        snapshot.counters = parse_counters(c)?;
    }
    Ok(JsonState {
        snapshot,
        saved_at,
        generation,
        checksummed,
    })
}

/// Whether the document carries a checksum; one that does not verify is an error, and so is none
/// when `required`.
fn verify_checksum(doc: &Map<String, Value>, required: bool) -> Result<bool, JsonError> {
    match doc.get("checksum") {
        Some(Value::String(stored)) => {
            let computed = checksum(doc);
            if *stored != computed {
                return Err(JsonError::Checksum {
                    stored: stored.clone(),
                    computed,
                });
            }
            Ok(true)
        }
        Some(_) => Err(bad("checksum", "expected a string")),
        None if required => Err(JsonError::NoChecksum),
        None => Ok(false),
    }
}

/// The port under `key` in `ports`, with its `ifindex` and `published` entries (if any).
fn parse_port(
    key: &String,
    p: &Value,
    ifindex: Option<&Map<String, Value>>,
    published: Option<&Map<String, Value>>,
) -> Result<PortRecord, JsonError> {
    check_text(|| "ports".to_string(), key)?;
    let ctx = format!("ports.{key}.");
    let p = p
        .as_object()
        .ok_or_else(|| bad(format!("ports.{key}"), "expected an object"))?;
    let name = match p.get("name") {
        Some(Value::String(n)) if n == key => n.clone(),
        Some(Value::String(n)) => {
            return Err(bad(
                format!("{ctx}name"),
                format!("{n:?} differs from its key"),
            ))
        }
        Some(_) => return Err(bad(format!("{ctx}name"), "expected a string")),
        None => key.clone(),
    };
    let mut rec = PortRecord {
        name,
        admin_up: get_bool01(p, "admin_state", &ctx)?,
        oper_up: get_bool01(p, "oper_state", &ctx)?,
        flags: get_u32(p, "flags", &ctx)?,
        mtu: get_u32(p, "mtu", &ctx)?,
        ..PortRecord::default()
    };
    if let Some(ix) = ifindex {
        if ix.contains_key(key) {
            rec.ifindex = get_u32(ix, key, "ifindex.")?;
        }
    }
    if let Some(Some(fields)) = published.map(|m| m.get(key)) {
        let fields = fields
            .as_object()
            .ok_or_else(|| bad(format!("published.{key}"), "expected an object"))?;
        if fields.len() > limits::MAX_COUNTERS {
            return Err(bad(format!("published.{key}"), "too many fields"));
        }
        for (f, val) in fields {
            let s = val
                .as_str()
                .ok_or_else(|| bad(format!("published.{key}.{f}"), "expected a string"))?;
            check_text(|| format!("published.{key}"), f)?;
            check_text(|| format!("published.{key}.{f}"), s)?;
            rec.published.insert(f.clone(), s.to_string());
        }
    }
    Ok(rec)
}

/// The lifetime counters (`counters`), each bounded.
fn parse_counters(c: &Map<String, Value>) -> Result<BTreeMap<String, u64>, JsonError> {
    if c.len() > limits::MAX_COUNTERS {
        return Err(bad(
            "counters",
            format!("{} counters (at most {})", c.len(), limits::MAX_COUNTERS),
        ));
    }
    let mut counters = BTreeMap::new();
    for (k, _) in c {
        check_text(|| "counters".to_string(), k)?;
        let v = get_bounded(c, k, "counters.", limits::MAX_COUNTER)?;
        counters.insert(k.clone(), v);
    }
    Ok(counters)
}

/// The top-level `generation` of an export, found without parsing the document (None when not found
/// in the form [`render`] writes). Only a shortcut: the document is not verified.
pub fn peek_generation(bytes: &[u8]) -> Option<u64> {
    // `render` writes `{"counters":{...},"generation":N,` and counter names cannot contain `"generation":`
    // unescaped, so the first occurrence is the top-level field.
    const NEEDLE: &[u8] = b"\"generation\":";
    let at = bytes.windows(NEEDLE.len()).position(|w| w == NEEDLE)? + NEEDLE.len();
    let digits: Vec<u8> = bytes[at..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// The bytes of a state file, refusing one larger than [`limits::MAX_FILE_BYTES`].
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, JsonError> {
    use std::io::Read;
    let err = |err| JsonError::Read {
        path: path.to_path_buf(),
        err,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .map_err(err)?
        .take(limits::MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    if bytes.len() as u64 > limits::MAX_FILE_BYTES {
        return Err(JsonError::TooLarge {
            path: path.to_path_buf(),
            max: limits::MAX_FILE_BYTES,
        });
    }
    Ok(bytes)
}

/// Read and parse a state file.
pub fn read(path: &Path, require_checksum: bool) -> Result<JsonState, JsonError> {
    parse(&read_bytes(path)?, require_checksum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snap() -> Snapshot {
        let mut s = Snapshot::default();
        s.ports.insert(
            "Ethernet0".into(),
            PortRecord {
                name: "Ethernet0".into(),
                ifindex: 5,
                admin_up: true,
                oper_up: true,
                flags: 69699,
                mtu: 9100,
                published: [("oper_status".to_string(), "up".to_string())].into(),
            },
        );
        s.counters.insert("starts_total{mode=\"cold\"}".into(), 2);
        s
    }

    #[test]
    fn render_parse_round_trip_and_legacy_fields() {
        let bytes = render(&snap(), 1700000000, 12);
        let st = parse(&bytes, true).unwrap();
        assert_eq!(st.snapshot, snap());
        assert_eq!(
            (st.saved_at, st.generation, st.checksummed),
            (1700000000, Some(12), true)
        );
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v["ports"]["Ethernet0"],
            json!({"name": "Ethernet0", "admin_state": 1, "oper_state": 1, "flags": 69699, "mtu": 9100})
        );
        assert_eq!(v["version"], json!(1));
    }

    #[test]
    fn checksum_catches_any_value_change() {
        let bytes = render(&snap(), 1, 1);
        let text = String::from_utf8(bytes).unwrap();
        for (from, to) in [
            ("9100", "9101"),
            ("69699", "69698"),
            ("\"up\"", "\"dn\""),
            ("}\":2", "}\":3"),
        ] {
            let bad = text.replacen(from, to, 1);
            assert_ne!(bad, text);
            assert!(
                matches!(parse(bad.as_bytes(), true), Err(JsonError::Checksum { .. })),
                "{from}"
            );
        }
        // Reformatting does not change the checksum (it is over the canonical form).
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(parse(serde_json::to_string(&v).unwrap().as_bytes(), true).is_ok());
    }

    #[test]
    fn peek_finds_the_generation_of_a_rendered_export() {
        let mut s = snap();
        s.counters.insert("x\"generation\":9".into(), 1);
        assert_eq!(peek_generation(&render(&s, 1, 12)), Some(12));
        assert_eq!(peek_generation(b"{\"ports\": {}}"), None);
    }

    #[test]
    fn legacy_without_checksum() {
        let legacy = br#"{"ports": {"Ethernet0": {"name": "Ethernet0", "admin_state": 1, "oper_state": 0, "flags": 4099, "mtu": 9100}}, "saved_at": 1600000000, "version": 1}"#;
        assert!(matches!(parse(legacy, true), Err(JsonError::NoChecksum)));
        let st = parse(legacy, false).unwrap();
        let p = &st.snapshot.ports["Ethernet0"];
        assert!(p.admin_up && !p.oper_up && p.flags == 4099 && p.ifindex == 0);
        assert!(!st.checksummed && st.generation.is_none());
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "JSON"),
            (b"{\"ports\": {", "JSON"),
            (b"[1,2]", "top level"),
            (br#"{"ports": [], "saved_at": 1, "version": 1}"#, "ports"),
            (br#"{"ports": {}, "saved_at": "x", "version": 1}"#, "saved_at"),
            (br#"{"ports": {}, "saved_at": 1, "version": 2}"#, "version"),
            (br#"{"ports": {"E": {"admin_state": 2, "oper_state": 0, "flags": 1, "mtu": 1}}, "saved_at": 1, "version": 1}"#, "admin_state"),
            (br#"{"ports": {"E": {"admin_state": 1, "oper_state": 0, "flags": -1, "mtu": 1}}, "saved_at": 1, "version": 1}"#, "flags"),
            (br#"{"ports": {"E": {"name": "F", "admin_state": 1, "oper_state": 0, "flags": 1, "mtu": 1}}, "saved_at": 1, "version": 1}"#, "name"),
        ];
        for (input, needle) in cases {
            let e = parse(input, false).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} lacks {needle}");
        }
    }
}
