//! Generations: the key layout, the manifest, building one generation's write batch, and verifying a
//! stored generation record by record.
//!
//! Layout (schema 1; see `migrations/README.md`):
//! - `meta/schema`           -> schema version, u32 big endian (not framed: it must stay readable
//!   by any future binary that wants to refuse it)
//! - `m/<gen u64 BE>`        -> framed bincode [`Manifest`]
//! - `p/<gen u64 BE>/<name>` -> framed bincode [`PortRecord`]
//!
//! A generation is written in one atomic batch (records + manifest), so a crash leaves either all of it or
//! none. The manifest still counts and checksums the records, so damage after the fact is caught.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::backend::{Backend, BackendError, WriteBatch};
use super::record::{self, FrameError, PortRecord, Snapshot};

/// The schema this binary writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
/// Key of the schema version.
pub const SCHEMA_KEY: &[u8] = b"meta/schema";

const MANIFEST_PREFIX: &[u8] = b"m/";
const PORT_PREFIX: &[u8] = b"p/";

/// Describes one generation; written last in its batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub generation: u64,
    pub record_count: u32,
    /// Wall-clock time of the commit, unix seconds.
    pub saved_at: u64,
    /// FNV-1a 64 over every record's key and framed value, in key order (see `records_hash`).
    pub records_hash: u64,
    /// Lifetime counters as of this generation.
    pub counters: BTreeMap<String, u64>,
}

/// Key of generation `gen`'s manifest.
pub fn manifest_key(gen: u64) -> Vec<u8> {
    let mut k = MANIFEST_PREFIX.to_vec();
    k.extend_from_slice(&gen.to_be_bytes());
    k
}

/// Prefix of generation `gen`'s port records.
pub fn port_prefix(gen: u64) -> Vec<u8> {
    let mut k = PORT_PREFIX.to_vec();
    k.extend_from_slice(&gen.to_be_bytes());
    k.push(b'/');
    k
}

/// Key of `name`'s record in generation `gen`.
pub fn port_key(gen: u64, name: &str) -> Vec<u8> {
    let mut k = port_prefix(gen);
    k.extend_from_slice(name.as_bytes());
    k
}

/// Parse a manifest key back to its generation number.
fn manifest_key_gen(key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(MANIFEST_PREFIX)?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// Parse a port key back to its generation number.
fn port_key_gen(key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(PORT_PREFIX)?;
    Some(u64::from_be_bytes(rest.get(..8)?.try_into().ok()?))
}

/// FNV-1a (64 bit) over every record's length-prefixed key and framed value, in key order.
///
/// Deliberately not CRC32: each value already ends with a CRC32 of its own key and payload, and CRC is
/// linear, so a CRC over `payload || crc(payload)` does not change when a record is replaced by another
/// self-consistent one. FNV's multiply breaks that linearity.
fn records_hash<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for (k, v) in pairs {
        eat(&(k.len() as u32).to_le_bytes());
        eat(k);
        eat(&(v.len() as u32).to_le_bytes());
        eat(v);
    }
    h
}

/// The batch that writes generation `gen` holding `snap`, saved at `saved_at` (unix seconds).
pub fn build(gen: u64, snap: &Snapshot, saved_at: u64) -> (WriteBatch, Manifest) {
    let mut batch = WriteBatch::default();
    for rec in snap.ports.values() {
        let key = port_key(gen, &rec.name);
        let val = record::encode(&key, rec);
        batch.put(key, val);
    }
    // BTreeMap order of names equals key order of `p/<gen>/<name>` (same prefix, bytewise names).
    batch.ops.sort_by(|a, b| a.0.cmp(&b.0));
    let hash = records_hash(
        batch
            .ops
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_deref().unwrap_or(&[]))),
    );
    let manifest = Manifest {
        schema: SCHEMA_VERSION,
        generation: gen,
        record_count: batch.ops.len() as u32,
        saved_at,
        records_hash: hash,
        counters: snap.counters.clone(),
    };
    let mkey = manifest_key(gen);
    let mval = record::encode(&mkey, &manifest);
    batch.put(mkey, mval);
    (batch, manifest)
}

/// Why a stored generation is not usable.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    #[error("manifest missing (orphan records)")]
    NoManifest,
    #[error("manifest: {0}")]
    Manifest(FrameError),
    #[error("manifest names generation {found}")]
    WrongNumber { found: u64 },
    #[error("schema {found} in manifest, expected {expected}")]
    Schema { found: u32, expected: u32 },
    #[error("record {key}: {err}")]
    Record { key: String, err: FrameError },
    #[error("record {key} holds port {name:?}")]
    NameMismatch { key: String, name: String },
    #[error("{found} records, manifest says {expected}")]
    Count { found: usize, expected: u32 },
    #[error("records checksum mismatch (manifest {expected:016x}, computed {found:016x})")]
    RecordsHash { found: u64, expected: u64 },
    #[error("read failed: {0}")]
    Read(BackendError),
}

fn show_key(key: &[u8]) -> String {
    match key.get(PORT_PREFIX.len() + 9..) {
        Some(name) if key.starts_with(PORT_PREFIX) => String::from_utf8_lossy(name).into_owned(),
        _ => format!("{key:02x?}"),
    }
}

/// Read the manifest of `gen` and check its frame, number and schema.
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
    Ok(m)
}

/// Read and verify every record of generation `gen`.
pub fn load(backend: &dyn Backend, gen: u64) -> Result<(Manifest, Snapshot), Invalid> {
    let m = read_manifest(backend, gen)?;
    let pairs = backend
        .scan_prefix(&port_prefix(gen))
        .map_err(Invalid::Read)?;
    let mut ports = BTreeMap::new();
    for (k, v) in &pairs {
        let rec: PortRecord = record::decode(k, v).map_err(|err| Invalid::Record {
            key: show_key(k),
            err,
        })?;
        if port_key(gen, &rec.name) != *k {
            return Err(Invalid::NameMismatch {
                key: show_key(k),
                name: rec.name,
            });
        }
        ports.insert(rec.name.clone(), rec);
    }
    if pairs.len() != m.record_count as usize {
        return Err(Invalid::Count {
            found: pairs.len(),
            expected: m.record_count,
        });
    }
    let hash = records_hash(pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
    if hash != m.records_hash {
        return Err(Invalid::RecordsHash {
            found: hash,
            expected: m.records_hash,
        });
    }
    let counters = m.counters.clone();
    Ok((m, Snapshot { ports, counters }))
}

/// Every generation number present (by manifest or by orphan records), ascending.
pub fn list(backend: &dyn Backend) -> Result<Vec<u64>, BackendError> {
    let mut gens: Vec<u64> = backend
        .keys_with_prefix(MANIFEST_PREFIX)?
        .iter()
        .filter_map(|k| manifest_key_gen(k))
        .collect();
    // Orphan records (no manifest) can only appear through damage; list them so inspect shows them and
    // pruning removes them. Skip from generation to generation instead of reading every key.
    let ports = backend.keys_with_prefix(PORT_PREFIX)?;
    let mut last = None;
    for k in &ports {
        if let Some(g) = port_key_gen(k) {
            if last != Some(g) {
                last = Some(g);
                gens.push(g);
            }
        }
    }
    gens.sort_unstable();
    gens.dedup();
    Ok(gens)
}

/// Add the removal of generation `gen` (manifest and records) to `batch`.
pub fn remove_into(
    backend: &dyn Backend,
    gen: u64,
    batch: &mut WriteBatch,
) -> Result<(), BackendError> {
    for k in backend.keys_with_prefix(&port_prefix(gen))? {
        batch.remove(k);
    }
    batch.remove(manifest_key(gen));
    Ok(())
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
    use crate::store::backend::MemBackend;

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

    fn store(b: &MemBackend, gen: u64, s: &Snapshot) {
        let (batch, _) = build(gen, s, 1000 + gen);
        b.apply(batch).unwrap();
    }

    #[test]
    fn build_then_load_round_trips() {
        let b = MemBackend::new();
        let s = snap(5, 1);
        store(&b, 3, &s);
        let (m, got) = load(&b, 3).unwrap();
        assert_eq!(got, s);
        assert_eq!((m.generation, m.record_count, m.saved_at), (3, 5, 1003));
        assert_eq!(list(&b).unwrap(), vec![3]);
    }

    #[test]
    fn a_missing_record_is_caught_by_the_count() {
        let b = MemBackend::new();
        store(&b, 1, &snap(4, 0));
        b.raw_set(&port_key(1, "Ethernet4"), None);
        assert!(matches!(
            load(&b, 1),
            Err(Invalid::Count {
                found: 3,
                expected: 4
            })
        ));
    }

    #[test]
    fn a_record_from_another_generation_is_caught() {
        let b = MemBackend::new();
        store(&b, 1, &snap(2, 0));
        store(&b, 2, &snap(2, 9));
        // Replace gen 2's Ethernet0 with gen 1's value re-framed for gen 2's key: a valid record, the
        // wrong content. Only the manifest's records checksum can notice.
        let old: PortRecord = record::decode(
            &port_key(1, "Ethernet0"),
            &b.get(&port_key(1, "Ethernet0")).unwrap().unwrap(),
        )
        .unwrap();
        let k = port_key(2, "Ethernet0");
        b.raw_set(&k, Some(record::encode(&k, &old)));
        let r = load(&b, 2);
        assert!(matches!(r, Err(Invalid::RecordsHash { .. })), "{r:?}");
        assert!(load(&b, 1).is_ok());
    }

    #[test]
    fn manifest_damage_wrong_number_and_schema_are_caught() {
        let b = MemBackend::new();
        store(&b, 1, &snap(2, 0));
        assert!(b.tamper(&manifest_key(1), |v| v[0] ^= 0x10));
        assert!(matches!(
            load(&b, 1),
            Err(Invalid::Manifest(FrameError::CrcMismatch { .. }))
        ));

        let (_, mut m) = build(5, &snap(2, 0), 1);
        m.generation = 4;
        b.raw_set(&manifest_key(5), Some(record::encode(&manifest_key(5), &m)));
        assert!(matches!(
            read_manifest(&b, 5),
            Err(Invalid::WrongNumber { found: 4 })
        ));

        m.generation = 5;
        m.schema = 2;
        b.raw_set(&manifest_key(5), Some(record::encode(&manifest_key(5), &m)));
        assert!(matches!(
            read_manifest(&b, 5),
            Err(Invalid::Schema { found: 2, .. })
        ));
    }

    #[test]
    fn record_crc_mismatch_names_the_port() {
        let b = MemBackend::new();
        store(&b, 1, &snap(3, 0));
        assert!(b.tamper(&port_key(1, "Ethernet8"), |v| v[2] ^= 1));
        let err = load(&b, 1).unwrap_err().to_string();
        assert!(
            err.contains("Ethernet8") && err.contains("checksum"),
            "{err}"
        );
    }

    #[test]
    fn orphans_are_listed_and_removed() {
        let b = MemBackend::new();
        store(&b, 1, &snap(3, 0));
        store(&b, 2, &snap(3, 0));
        b.raw_set(&manifest_key(2), None);
        assert_eq!(list(&b).unwrap(), vec![1, 2]);
        assert!(matches!(load(&b, 2), Err(Invalid::NoManifest)));
        let mut batch = WriteBatch::default();
        remove_into(&b, 2, &mut batch).unwrap();
        b.apply(batch).unwrap();
        assert_eq!(list(&b).unwrap(), vec![1]);
    }
}
