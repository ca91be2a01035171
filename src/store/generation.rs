//! Generations: the key layout, the manifest, building one generation's write batch, and verifying a
//! stored generation record by record.
//!
//! Layout (schema 1; see `migrations/README.md`):
//! - `meta/schema`                 -> schema version, u32 big endian (not framed: it must stay
//!   readable by any future binary that wants to refuse it)
//! - `m/<gen u64 BE>`              -> framed bincode [`Manifest`]: every port name with the hash of its
//!   record
//! - `r/<name>/<hash, 16 hex>`     -> framed bincode [`PortRecord`]
//!
//! Records are content-addressed: a port whose record did not change since a kept generation is not
//! written again, so a commit costs what changed plus one manifest. [`build`] makes one atomic batch
//! (the legacy import); commits use `delta::build`, which writes records in batches with the manifest
//! last (a crash leaves the manifest with every record, or unreferenced records that the first commit after the next open prunes, unless it writes them again). Verification checks
//! the manifest frame, its number and schema, and for every port: the record exists, its frame (CRC32
//! over key and payload) is intact, it names the port, and its FNV-1a 64 hash equals the manifest's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::backend::{Backend, BackendError, WriteBatch};
use super::limits;
use super::record::{self, FrameError, PortRecord, Snapshot};

/// The schema this binary writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
/// Key of the schema version.
pub const SCHEMA_KEY: &[u8] = b"meta/schema";

const MANIFEST_PREFIX: &[u8] = b"m/";
/// Prefix of every port record.
pub const RECORD_PREFIX: &[u8] = b"r/";

/// Describes one generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub generation: u64,
    /// Number of port records (equals `ports.len()`).
    pub record_count: u32,
    /// Wall-clock time of the commit, unix seconds.
    pub saved_at: u64,
    /// Every port of the generation with the FNV-1a 64 hash of its record's payload.
    pub ports: BTreeMap<String, u64>,
    /// Lifetime counters as of this generation.
    pub counters: BTreeMap<String, u64>,
}

impl Manifest {
    /// The manifest of generation `gen` (this binary's schema) listing `ports`.
    pub fn new(
        gen: u64,
        saved_at: u64,
        ports: BTreeMap<String, u64>,
        counters: BTreeMap<String, u64>,
    ) -> Manifest {
        Manifest {
            schema: SCHEMA_VERSION,
            generation: gen,
            // A count beyond u32 fails the manifest's own count check when read.
            record_count: u32::try_from(ports.len()).unwrap_or(u32::MAX),
            saved_at,
            ports,
            counters,
        }
    }
}

/// Key of generation `gen`'s manifest.
pub fn manifest_key(gen: u64) -> Vec<u8> {
    let mut k = MANIFEST_PREFIX.to_vec();
    k.extend_from_slice(&gen.to_be_bytes());
    k
}

/// Key of the record of port `name` whose payload hashes to `hash`.
pub fn record_key(name: &str, hash: u64) -> Vec<u8> {
    format!("r/{name}/{hash:016x}").into_bytes()
}

/// The port name and hash a record key names (None: not a key [`record_key`] writes).
pub fn parse_record_key(key: &[u8]) -> Option<(&str, u64)> {
    let rest = std::str::from_utf8(key.strip_prefix(RECORD_PREFIX)?).ok()?;
    let (name, hex) = rest.rsplit_once('/')?;
    if hex.len() != 16 || !hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    Some((name, u64::from_str_radix(hex, 16).ok()?))
}

fn manifest_key_gen(key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(MANIFEST_PREFIX)?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// FNV-1a 64 of a record payload (the `fnv` crate's [`fnv::FnvHasher`] is FNV-1a 64; the values are
/// pinned by `golden_tests`: they are in every record key on disk).
///
/// Deliberately not CRC32: values already end with a CRC32 of their key and payload, and CRC is linear,
/// so a CRC-based checksum over framed records cannot see one self-consistent record swapped for another.
pub fn payload_hash(payload: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(payload);
    h.finish()
}

fn encode_payload(rec: &PortRecord) -> Vec<u8> {
    // Encoding a struct of strings, integers and maps into a Vec cannot fail.
    bincode::serde::encode_to_vec(rec, bincode::config::standard()).unwrap_or_default()
}

/// What [`build`] may skip.
pub trait Known {
    /// The hash of `rec` if this exact record is known to be stored (saves encoding it).
    fn hash_of(&self, name: &str, rec: &PortRecord) -> Option<u64>;
    /// Whether the record of `name` with `hash` is stored in a verified, kept generation.
    fn stored(&self, name: &str, hash: u64) -> bool;
}

/// Nothing is known to be stored: every record is written.
pub struct NothingStored;

impl Known for NothingStored {
    fn hash_of(&self, _: &str, _: &PortRecord) -> Option<u64> {
        None
    }
    fn stored(&self, _: &str, _: u64) -> bool {
        false
    }
}

/// The batch that writes generation `gen` holding `snap`, saved at `saved_at` (unix seconds). Records
/// that `known` reports as stored are not written again. Also returns the names whose hash was
/// computed here (new or changed records).
pub fn build(
    gen: u64,
    snap: &Snapshot,
    saved_at: u64,
    known: &dyn Known,
) -> (WriteBatch, Manifest, Vec<String>) {
    let mut batch = WriteBatch::default();
    let mut ports = BTreeMap::new();
    let mut changed = Vec::new();
    for (name, rec) in &snap.ports {
        let hash = match known.hash_of(name, rec) {
            Some(h) => h,
            None => {
                let payload = encode_payload(rec);
                let hash = payload_hash(&payload);
                if !known.stored(name, hash) {
                    let key = record_key(name, hash);
                    let val = record::frame(&key, &payload);
                    batch.put(key, val);
                }
                changed.push(name.clone());
                hash
            }
        };
        ports.insert(name.clone(), hash);
    }
    let manifest = Manifest::new(gen, saved_at, ports, snap.counters.clone());
    let mkey = manifest_key(gen);
    let mval = record::encode(&mkey, &manifest);
    batch.put(mkey, mval);
    (batch, manifest, changed)
}

/// Why a stored generation is not usable.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    #[error("manifest missing")]
    NoManifest,
    #[error("manifest: {0}")]
    Manifest(FrameError),
    #[error("manifest names generation {found}")]
    WrongNumber { found: u64 },
    #[error("schema {found} in manifest, expected {expected}")]
    Schema { found: u32, expected: u32 },
    #[error("manifest field {field}: {why}")]
    Field { field: &'static str, why: String },
    #[error("manifest lists {found} ports but counts {expected}")]
    Count { found: usize, expected: u32 },
    #[error("record {name}: missing")]
    MissingRecord { name: String },
    #[error("record {name}: {err}")]
    Record { name: String, err: FrameError },
    #[error("record {name} holds port {found:?}")]
    NameMismatch { name: String, found: String },
    #[error(
        "record {name}: content hash mismatch (manifest {expected:016x}, computed {found:016x})"
    )]
    Hash {
        name: String,
        found: u64,
        expected: u64,
    },
    #[error("read failed: {0}")]
    Read(BackendError),
}

/// Read the manifest of `gen` and check its frame, number, schema and count.
pub fn read_manifest(backend: &dyn Backend, gen: u64) -> Result<Manifest, Invalid> {
    let key = manifest_key(gen);
    let raw = backend
        .get(&key)
        .map_err(Invalid::Read)?
        .ok_or(Invalid::NoManifest)?;
    let m: Manifest = record::decode(&key, &raw).map_err(Invalid::Manifest)?;
    if m.generation != gen {
        return Err(Invalid::WrongNumber {
            found: m.generation,
        });
    }
    if m.schema != SCHEMA_VERSION {
        return Err(Invalid::Schema {
            found: m.schema,
            expected: SCHEMA_VERSION,
        });
    }
    if usize::try_from(m.record_count).ok() != Some(m.ports.len()) {
        return Err(Invalid::Count {
            found: m.ports.len(),
            expected: m.record_count,
        });
    }
    check_manifest_numbers(&m)?;
    Ok(m)
}

/// The range checks of [`limits`] on a decoded manifest.
fn check_manifest_numbers(m: &Manifest) -> Result<(), Invalid> {
    let field = |field: &'static str| move |why| Invalid::Field { field, why };
    limits::check(m.generation, limits::MAX_GENERATION).map_err(field("generation"))?;
    limits::check(m.saved_at, limits::MAX_SAVED_AT).map_err(field("saved_at"))?;
    limits::check(m.ports.len() as u64, limits::MAX_PORTS as u64).map_err(field("ports"))?;
    limits::check(m.counters.len() as u64, limits::MAX_COUNTERS as u64)
        .map_err(field("counters"))?;
    for (name, &v) in &m.counters {
        limits::check(v, limits::MAX_COUNTER).map_err(|why| Invalid::Field {
            field: "counters",
            why: format!("{name}: {why}"),
        })?;
    }
    let long = |s: &String| s.len() > limits::MAX_TEXT;
    if m.ports.keys().any(long) || m.counters.keys().any(long) {
        return Err(Invalid::Field {
            field: "ports/counters",
            why: format!("a name longer than {} bytes", limits::MAX_TEXT),
        });
    }
    Ok(())
}

/// Read and verify every record of generation `gen`.
pub fn load(backend: &dyn Backend, gen: u64) -> Result<(Manifest, Snapshot), Invalid> {
    let m = read_manifest(backend, gen)?;
    let mut ports = BTreeMap::new();
    for (name, &hash) in &m.ports {
        let key = record_key(name, hash);
        let raw = backend
            .get(&key)
            .map_err(Invalid::Read)?
            .ok_or_else(|| Invalid::MissingRecord { name: name.clone() })?;
        let payload = record::unframe(&key, &raw).map_err(|err| Invalid::Record {
            name: name.clone(),
            err,
        })?;
        let found = payload_hash(payload);
        if found != hash {
            return Err(Invalid::Hash {
                name: name.clone(),
                found,
                expected: hash,
            });
        }
        let rec: PortRecord = record::decode(&key, &raw).map_err(|err| Invalid::Record {
            name: name.clone(),
            err,
        })?;
        if rec.name != *name {
            return Err(Invalid::NameMismatch {
                name: name.clone(),
                found: rec.name,
            });
        }
        ports.insert(name.clone(), rec);
    }
    let counters = m.counters.clone();
    Ok((m, Snapshot { ports, counters }))
}

/// Every generation number with a manifest, ascending. A manifest key beyond
/// [`limits::MAX_GENERATION`] (damage: portsyncd never numbers that high) is ignored, so a damaged key
/// cannot push the next generation number to overflow.
pub fn list(backend: &dyn Backend) -> Result<Vec<u64>, BackendError> {
    let mut gens: Vec<u64> = backend
        .keys_with_prefix(MANIFEST_PREFIX)?
        .iter()
        .filter_map(|k| manifest_key_gen(k))
        .filter(|&g| g <= limits::MAX_GENERATION)
        .collect();
    gens.sort_unstable();
    Ok(gens)
}

/// Every record key in the store.
pub fn record_keys(backend: &dyn Backend) -> Result<Vec<Vec<u8>>, BackendError> {
    backend.keys_with_prefix(RECORD_PREFIX)
}

/// The stored schema version, if any.
pub fn read_schema(backend: &dyn Backend) -> Result<Option<u32>, BackendError> {
    Ok(backend
        .get(SCHEMA_KEY)?
        .and_then(|v| v.as_slice().try_into().ok().map(u32::from_be_bytes)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::mem_backend::MemBackend;

    pub(crate) fn snap(n: usize, salt: u32) -> Snapshot {
        let mut s = Snapshot::default();
        for i in 0..n {
            let name = format!("Ethernet{}", i * 4);
            s.ports.insert(
                name.clone(),
                PortRecord {
                    name,
                    ifindex: i as u32 + 2,
                    admin_up: i % 2 == 0,
                    oper_up: i % 3 == 0,
                    flags: 0x1043 ^ salt,
                    mtu: 9100,
                    published: [("mtu".to_string(), "9100".to_string())].into(),
                },
            );
        }
        s.counters
            .insert("starts_total{mode=\"warm\"}".into(), u64::from(salt));
        s
    }

    /// Write generation `gen` with every record (nothing assumed stored).
    pub(crate) fn put_gen(b: &dyn Backend, gen: u64, s: &Snapshot, saved_at: u64) {
        b.apply(build(gen, s, saved_at, &NothingStored).0).unwrap();
    }

    /// Key of `name`'s record in generation `gen` (from its manifest).
    pub(crate) fn key_of(b: &dyn Backend, gen: u64, name: &str) -> Vec<u8> {
        let m = read_manifest(b, gen).unwrap();
        record_key(name, m.ports[name])
    }

    #[test]
    fn build_then_load_round_trips() {
        let b = MemBackend::new();
        let s = snap(5, 1);
        put_gen(&b, 3, &s, 1003);
        let (m, got) = load(&b, 3).unwrap();
        assert_eq!(got, s);
        assert_eq!((m.generation, m.record_count, m.saved_at), (3, 5, 1003));
        assert_eq!(list(&b).unwrap(), vec![3]);
    }

    #[test]
    fn unchanged_records_are_shared_not_rewritten() {
        let b = MemBackend::new();
        let mut s = snap(4, 1);
        put_gen(&b, 1, &s, 1);
        let m1 = read_manifest(&b, 1).unwrap();
        s.ports.get_mut("Ethernet4").unwrap().oper_up ^= true;
        struct InM1(BTreeMap<String, u64>);
        impl Known for InM1 {
            fn hash_of(&self, _: &str, _: &PortRecord) -> Option<u64> {
                None
            }
            fn stored(&self, n: &str, h: u64) -> bool {
                self.0.get(n) == Some(&h)
            }
        }
        let (batch, _, changed) = build(2, &s, 2, &InM1(m1.ports.clone()));
        assert_eq!(changed.len(), 4, "every hash computed");
        assert_eq!(batch.ops.len(), 2, "one changed record plus the manifest");
        b.apply(batch).unwrap();
        assert_eq!(load(&b, 2).unwrap().1, s);
        assert_eq!(record_keys(&b).unwrap().len(), 5);
    }

    #[test]
    fn a_missing_record_is_caught() {
        let b = MemBackend::new();
        put_gen(&b, 1, &snap(4, 0), 1);
        b.raw_set(&key_of(&b, 1, "Ethernet4"), None);
        assert!(matches!(load(&b, 1), Err(Invalid::MissingRecord { name }) if name == "Ethernet4"));
    }

    #[test]
    fn a_record_swapped_for_another_valid_one_is_caught() {
        let b = MemBackend::new();
        put_gen(&b, 1, &snap(2, 0), 1);
        put_gen(&b, 2, &snap(2, 9), 2);
        // Put gen 1's Ethernet0 content under gen 2's key, correctly framed for that key: only the
        // content hash can notice (a CRC-based checksum could not, CRC being linear).
        let old = b.get(&key_of(&b, 1, "Ethernet0")).unwrap().unwrap();
        let payload = record::unframe(&key_of(&b, 1, "Ethernet0"), &old)
            .unwrap()
            .to_vec();
        let k = key_of(&b, 2, "Ethernet0");
        b.raw_set(&k, Some(record::frame(&k, &payload)));
        let r = load(&b, 2);
        assert!(matches!(r, Err(Invalid::Hash { .. })), "{r:?}");
        assert!(load(&b, 1).is_ok());
    }

    #[test]
    fn a_record_naming_another_port_is_caught() {
        let b = MemBackend::new();
        let mut rec = snap(1, 0).ports["Ethernet0"].clone();
        rec.name = "Ethernet4".into();
        let payload = encode_payload(&rec);
        let h = payload_hash(&payload);
        let k = record_key("Ethernet0", h);
        b.raw_set(&k, Some(record::frame(&k, &payload)));
        let m = Manifest {
            schema: SCHEMA_VERSION,
            generation: 1,
            record_count: 1,
            saved_at: 1,
            ports: [("Ethernet0".to_string(), h)].into(),
            counters: BTreeMap::new(),
        };
        b.raw_set(&manifest_key(1), Some(record::encode(&manifest_key(1), &m)));
        assert!(matches!(load(&b, 1), Err(Invalid::NameMismatch { .. })));
    }

    #[test]
    fn manifest_damage_wrong_number_schema_and_count_are_caught() {
        let b = MemBackend::new();
        put_gen(&b, 1, &snap(2, 0), 1);
        assert!(b.tamper(&manifest_key(1), |v| v[0] ^= 0x10));
        assert!(matches!(
            load(&b, 1),
            Err(Invalid::Manifest(FrameError::CrcMismatch { .. }))
        ));

        let (_, mut m, _) = build(5, &snap(2, 0), 1, &NothingStored);
        let put =
            |m: &Manifest| b.raw_set(&manifest_key(5), Some(record::encode(&manifest_key(5), m)));
        m.generation = 4;
        put(&m);
        assert!(matches!(
            read_manifest(&b, 5),
            Err(Invalid::WrongNumber { found: 4 })
        ));
        m.generation = 5;
        m.schema = 2;
        put(&m);
        assert!(matches!(
            read_manifest(&b, 5),
            Err(Invalid::Schema { found: 2, .. })
        ));
        m.schema = SCHEMA_VERSION;
        m.record_count = 3;
        put(&m);
        assert!(matches!(
            read_manifest(&b, 5),
            Err(Invalid::Count {
                found: 2,
                expected: 3
            })
        ));
    }

    #[test]
    fn record_crc_mismatch_names_the_port() {
        let b = MemBackend::new();
        put_gen(&b, 1, &snap(3, 0), 1);
        assert!(b.tamper(&key_of(&b, 1, "Ethernet8"), |v| v[2] ^= 1));
        let err = load(&b, 1).unwrap_err().to_string();
        assert!(
            err.contains("Ethernet8") && err.contains("checksum"),
            "{err}"
        );
    }
}
