//! Port records and their on-disk framing.
//!
//! Every value the store writes is `payload || crc32(key || payload)` (CRC32/IEEE, little endian). The
//! CRC covers the key too, so a value that is intact but sits under the wrong key is caught. Payloads are
//! bincode 2 (`config::standard()`, serde) encodings; decoding is pure and never panics on bad bytes.

use std::collections::BTreeMap;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// What portsyncd last knew and published for one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PortRecord {
    /// Kernel interface name, e.g. `Ethernet0`.
    pub name: String,
    /// Kernel `ifindex` (0 when unknown, e.g. imported from the legacy JSON).
    pub ifindex: u32,
    /// `IFF_UP`.
    pub admin_up: bool,
    /// `IFF_RUNNING`.
    pub oper_up: bool,
    /// The kernel's `ifi_flags`.
    pub flags: u32,
    /// MTU.
    pub mtu: u32,
    /// STATE_DB fields last published for this port.
    pub published: BTreeMap<String, String>,
}

/// A complete state: every port plus the lifetime counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    /// Ports by name.
    pub ports: BTreeMap<String, PortRecord>,
    /// Lifetime metrics, e.g. `starts_total{mode="warm"}` -> 3.
    pub counters: BTreeMap<String, u64>,
}

/// Bytes of CRC appended to every framed value.
pub const CRC_LEN: usize = 4;

/// Largest payload the decoder accepts (a port record is a few hundred bytes).
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Why a framed value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than a CRC.
    #[error("value truncated ({len} bytes)")]
    Truncated { len: usize },
    /// The stored CRC does not match key and payload.
    #[error("checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    CrcMismatch { stored: u32, computed: u32 },
    /// The CRC matched but the payload is not a valid encoding.
    #[error("undecodable payload: {0}")]
    Decode(String),
    /// The payload decoded but left bytes over.
    #[error("{0} trailing bytes after payload")]
    Trailing(usize),
}

fn crc(key: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(key);
    h.update(payload);
    h.finalize()
}

/// Frame `payload` for storage under `key`.
pub fn frame(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + CRC_LEN);
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc(key, payload).to_le_bytes());
    out
}

/// Check the CRC of a framed value stored under `key` and return its payload.
pub fn unframe<'a>(key: &[u8], value: &'a [u8]) -> Result<&'a [u8], FrameError> {
    if value.len() < CRC_LEN {
        return Err(FrameError::Truncated { len: value.len() });
    }
    let (payload, tail) = value.split_at(value.len() - CRC_LEN);
    let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let computed = crc(key, payload);
    if stored != computed {
        return Err(FrameError::CrcMismatch { stored, computed });
    }
    Ok(payload)
}

/// Encode `value` with bincode and frame it for `key`.
pub fn encode<T: Serialize>(key: &[u8], value: &T) -> Vec<u8> {
    // Encoding plain structs of strings, integers and maps into a Vec cannot fail.
    let payload =
        bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap_or_default();
    frame(key, &payload)
}

/// Check the frame of a value stored under `key` and decode it.
pub fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, FrameError> {
    let payload = unframe(key, value)?;
    // The limit stops a corrupted length prefix from asking for a huge allocation.
    let config = bincode::config::standard().with_limit::<MAX_PAYLOAD>();
    let (v, used) = bincode::serde::decode_from_slice(payload, config)
        .map_err(|e| FrameError::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(FrameError::Trailing(payload.len() - used));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port() -> PortRecord {
        PortRecord {
            name: "Ethernet4".into(),
            ifindex: 7,
            admin_up: true,
            oper_up: false,
            flags: 0x1003,
            mtu: 9100,
            published: [("oper_status".to_string(), "down".to_string())].into(),
        }
    }

    #[test]
    fn round_trip() {
        let v = encode(b"k", &port());
        assert_eq!(decode::<PortRecord>(b"k", &v).unwrap(), port());
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let v = encode(b"key", &port());
        for i in 0..v.len() * 8 {
            let mut bad = v.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(
                decode::<PortRecord>(b"key", &bad).is_err(),
                "bit {i} not caught"
            );
        }
    }

    #[test]
    fn crc_covers_the_key() {
        let v = encode(b"p/Ethernet0", &port());
        assert!(matches!(
            decode::<PortRecord>(b"p/Ethernet4", &v),
            Err(FrameError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn truncation_and_garbage_are_errors_not_panics() {
        let v = encode(b"k", &port());
        for n in 0..v.len() {
            assert!(
                decode::<PortRecord>(b"k", &v[..n]).is_err(),
                "prefix {n} accepted"
            );
        }
        // A correct CRC over garbage: the decoder must reject it, not panic.
        let garbage = frame(b"k", &[0xff; 40]);
        assert!(matches!(
            decode::<PortRecord>(b"k", &garbage),
            Err(FrameError::Decode(_))
        ));
    }

    #[test]
    fn trailing_bytes_rejected() {
        let mut payload =
            bincode::serde::encode_to_vec(port(), bincode::config::standard()).unwrap();
        payload.push(0);
        let v = frame(b"k", &payload);
        assert_eq!(decode::<PortRecord>(b"k", &v), Err(FrameError::Trailing(1)));
    }
}
