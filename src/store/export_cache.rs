//! The compatibility JSON written incrementally: every port's pieces of the document are rendered once,
//! when the port changes, and the file is streamed from them.
//!
//! The document [`render`](super::json_export::render) writes is its own canonical form (compact, keys sorted) plus the
//! checksum field, so one fragment per port and section serves both the file and the CRC. A commit
//! re-renders only the changed ports; writing streams the fragments through a `BufWriter` into the
//! temporary file and feeds the same bytes to an incremental CRC32, without building the document.
//! The output is byte-identical to `render` for the same state (tested below).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use super::durable::write_atomic_with;
use super::json_export::{PortOut, FORMAT_VERSION};
use super::record::PortRecord;

/// One port's entries in the three per-port sections, each `"<name>":<value>` exactly as written, kept
/// end to end in one allocation (a port costs one heap block here, not three).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortFragments {
    /// The `ifindex`, `ports` and `published` entries, one after the other.
    text: Box<str>,
    /// Where the `ports` entry starts, then where the `published` entry starts.
    split: [u32; 2],
}

fn entry<T: serde::Serialize + ?Sized>(out: &mut String, key: &str, value: &T) {
    // Serialising strings, integers and string maps cannot fail.
    out.push_str(&serde_json::to_string(key).unwrap_or_default());
    out.push(':');
    out.push_str(&serde_json::to_string(value).unwrap_or_default());
}

/// A byte offset into one port's fragments as stored; beyond `u32` (a record of 4 GiB, which no
/// store limit allows) it saturates, and the section boundaries are then merely wrong, never unsafe.
fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl PortFragments {
    /// The fragments of `rec`, stored under `key` (the port's name).
    pub fn of(key: &str, rec: &PortRecord) -> PortFragments {
        let out = PortOut {
            admin_state: u8::from(rec.admin_up),
            flags: rec.flags,
            mtu: rec.mtu,
            name: &rec.name,
            oper_state: u8::from(rec.oper_up),
        };
        let mut text = String::new();
        entry(&mut text, key, &rec.ifindex);
        let port = offset(text.len());
        entry(&mut text, key, &out);
        let published = offset(text.len());
        entry(&mut text, key, &rec.published);
        PortFragments {
            text: text.into_boxed_str(),
            split: [port, published],
        }
    }

    /// The entry of section `i` (0: `ifindex`, 1: `ports`, 2: `published`).
    fn section(&self, i: usize) -> &str {
        let len = self.text.len();
        let at = |k: usize| self.split.get(k).map_or(len, |&o| (o as usize).min(len));
        let from = if i == 0 { 0 } else { at(i - 1) };
        self.text.get(from..at(i).max(from)).unwrap_or_default()
    }
}

/// The rendered fragments of every port of the newest committed state.
#[derive(Debug, Default)]
pub struct ExportCache {
    ports: BTreeMap<String, PortFragments>,
}

/// Writes everything through to `out` and into the running CRC.
struct Crc<W> {
    out: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Crc<W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.out.write_all(bytes)
    }
}

impl ExportCache {
    /// Replace everything with `ports` (a full set).
    pub fn replace(&mut self, ports: BTreeMap<String, PortFragments>) {
        self.ports = ports;
    }

    /// Forget every port (a full set is about to be inserted).
    pub fn clear(&mut self) {
        self.ports.clear();
    }

    /// Set one port's fragments; its name is allocated only when the port is new.
    pub fn insert(&mut self, name: &str, f: PortFragments) {
        match self.ports.get_mut(name) {
            Some(slot) => *slot = f,
            None => {
                self.ports.insert(name.to_string(), f);
            }
        }
    }

    /// Forget one port.
    pub fn remove(&mut self, name: &str) {
        self.ports.remove(name);
    }

    /// Apply one commit's changes (`None`: the port is gone).
    pub fn apply(&mut self, changes: Vec<(String, Option<PortFragments>)>) {
        for (name, f) in changes {
            match f {
                Some(f) => {
                    self.ports.insert(name, f);
                }
                None => {
                    self.ports.remove(&name);
                }
            }
        }
    }

    /// Number of ports held.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// True when no port is held.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// Stream the document to `out`: byte for byte what [`render`](super::json_export::render) gives for this state.
    pub fn write_to(
        &self,
        out: &mut dyn Write,
        counters: &BTreeMap<String, u64>,
        saved_at: u64,
        generation: u64,
    ) -> io::Result<()> {
        let mut w = Crc {
            out,
            crc: crc32fast::Hasher::new(),
        };
        w.put(b"{\"counters\":")?;
        w.put(&serde_json::to_vec(counters).map_err(io::Error::other)?)?;
        w.put(format!(",\"generation\":{generation},\"ifindex\":{{").as_bytes())?;
        self.section(&mut w, 0)?;
        w.put(b"},\"ports\":{")?;
        self.section(&mut w, 1)?;
        w.put(b"},\"published\":{")?;
        self.section(&mut w, 2)?;
        w.put(format!("}},\"saved_at\":{saved_at},\"version\":{FORMAT_VERSION}").as_bytes())?;
        // The checksum covers the document with its closing brace, which the checksum field replaces.
        w.crc.update(b"}");
        let sum = w.crc.finalize();
        w.out
            .write_all(format!(",\"checksum\":\"{sum:08x}\"}}\n").as_bytes())
    }

    fn section<W: Write>(&self, w: &mut Crc<W>, which: usize) -> io::Result<()> {
        for (i, f) in self.ports.values().enumerate() {
            if i > 0 {
                w.put(b",")?;
            }
            w.put(f.section(which).as_bytes())?;
        }
        Ok(())
    }

    /// Write the export to `path` atomically (see [`write_atomic_with`](super::durable::write_atomic_with)).
    pub fn write_atomic(
        &self,
        path: &Path,
        counters: &BTreeMap<String, u64>,
        saved_at: u64,
        generation: u64,
    ) -> io::Result<()> {
        write_atomic_with(path, |out| {
            self.write_to(out, counters, saved_at, generation)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::json_export;
    use crate::store::record::Snapshot;

    fn rec(name: &str, i: u32, salt: u32) -> PortRecord {
        PortRecord {
            name: name.to_string(),
            ifindex: i + 2,
            admin_up: (i + salt).is_multiple_of(2),
            oper_up: (i + salt).is_multiple_of(3),
            flags: 0x1043 ^ salt,
            mtu: 9000 + (i * salt) % 200,
            published: [
                ("state".to_string(), "ok".to_string()),
                ("mtu".to_string(), format!("{}", 9000 + i)),
                ("odd \"key\"\n".to_string(), "v\u{e9}\\".to_string()),
            ]
            .into(),
        }
    }

    fn streamed(c: &ExportCache, s: &Snapshot, saved_at: u64, gen: u64) -> Vec<u8> {
        let mut out = Vec::new();
        c.write_to(&mut out, &s.counters, saved_at, gen).unwrap();
        out
    }

    #[test]
    fn an_empty_state_matches_render() {
        let s = Snapshot::default();
        let c = ExportCache::default();
        assert_eq!(streamed(&c, &s, 5, 1), json_export::render(&s, 5, 1));
    }

    #[test]
    fn incremental_output_is_byte_identical_to_render_across_commits() {
        // Several hundred ports; every commit changes some, adds some and removes some.
        let mut s = Snapshot::default();
        let mut c = ExportCache::default();
        let mut full = BTreeMap::new();
        for i in 0..400u32 {
            let name = format!("Ethernet{}", i * 4);
            let r = rec(&name, i, 1);
            full.insert(name.clone(), PortFragments::of(&name, &r));
            s.ports.insert(name, r);
        }
        s.counters.insert("starts_total{mode=\"cold\"}".into(), 3);
        c.replace(full);
        assert_eq!(
            streamed(&c, &s, 1_700_000_000, 1),
            json_export::render(&s, 1_700_000_000, 1)
        );
        for gen in 2..8u32 {
            let mut changes = Vec::new();
            for i in (gen..400).step_by(7 + gen as usize) {
                let name = format!("Ethernet{}", i * 4);
                let r = rec(&name, i, gen);
                changes.push((name.clone(), Some(PortFragments::of(&name, &r))));
                s.ports.insert(name, r);
            }
            for i in (0..400).step_by(31 + gen as usize) {
                let name = format!("Ethernet{}", i * 4);
                changes.push((name.clone(), None));
                s.ports.remove(&name);
            }
            let name = format!("PortChannel{gen}");
            let r = rec(&name, gen, gen);
            changes.push((name.clone(), Some(PortFragments::of(&name, &r))));
            s.ports.insert(name, r);
            s.counters.insert(format!("c{gen}"), u64::from(gen));
            c.apply(changes);
            assert_eq!(c.len(), s.ports.len());
            let got = streamed(&c, &s, 1_700_000_000 + u64::from(gen), u64::from(gen));
            assert_eq!(
                String::from_utf8(got.clone()).unwrap(),
                String::from_utf8(json_export::render(
                    &s,
                    1_700_000_000 + u64::from(gen),
                    u64::from(gen)
                ))
                .unwrap(),
                "generation {gen}"
            );
            // The strict parser accepts it and reads the same state back.
            let st = json_export::parse(&got, true).unwrap();
            assert_eq!(st.snapshot, s);
            assert_eq!(st.generation, Some(u64::from(gen)));
        }
    }

    #[test]
    fn write_atomic_streams_the_same_bytes_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("port_state.json");
        let mut s = Snapshot::default();
        let mut c = ExportCache::default();
        let mut full = BTreeMap::new();
        for i in 0..300u32 {
            let name = format!("Ethernet{i}");
            let r = rec(&name, i, 2);
            full.insert(name.clone(), PortFragments::of(&name, &r));
            s.ports.insert(name, r);
        }
        c.replace(full);
        c.write_atomic(&p, &s.counters, 9, 4).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), json_export::render(&s, 9, 4));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
