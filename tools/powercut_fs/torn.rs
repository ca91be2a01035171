//! Torn write-back: which of a file's unsynced pages reached the platter before the power died.

/// Page size of the torn-write model.
pub const PAGE: usize = 4096;

/// Durable bytes with a random subset of the unsynced pages written back (see `Model::torn_tree`).
pub fn torn_bytes(durable: &[u8], volatile: &[u8], coin: &mut dyn FnMut() -> u64) -> Vec<u8> {
    if durable == volatile {
        return durable.to_vec();
    }
    let len = if coin() & 1 == 0 {
        durable.len()
    } else {
        volatile.len()
    };
    let mut out = vec![0u8; len];
    let keep = durable.len().min(len);
    out[..keep].copy_from_slice(&durable[..keep]);
    for (i, page) in out.chunks_mut(PAGE).enumerate() {
        let start = i * PAGE;
        let slice = |b: &'_ [u8]| -> Vec<u8> {
            let end = (start + PAGE).min(b.len());
            b.get(start..end).map(<[u8]>::to_vec).unwrap_or_default()
        };
        let (v, d) = (slice(volatile), slice(durable));
        if v != d && coin() & 1 == 1 {
            page.fill(0);
            let n = v.len().min(page.len());
            page[..n].copy_from_slice(&v[..n]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_bytes_mixes_whole_pages_only() {
        let durable = vec![1u8; 3 * PAGE];
        let mut volatile = durable.clone();
        volatile[PAGE..2 * PAGE].fill(2);
        volatile.extend(vec![3u8; PAGE]);
        let mut seen_sizes = std::collections::BTreeSet::new();
        let mut seen_mid = std::collections::BTreeSet::new();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut coin = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..64 {
            let t = torn_bytes(&durable, &volatile, &mut coin);
            seen_sizes.insert(t.len());
            assert!(t[..PAGE].iter().all(|&b| b == 1));
            let mid = t[PAGE];
            assert!(
                t[PAGE..2 * PAGE].iter().all(|&b| b == mid),
                "torn inside a page"
            );
            seen_mid.insert(mid);
            if t.len() > 3 * PAGE {
                let tail = t[3 * PAGE];
                assert!(tail == 0 || tail == 3);
                assert!(t[3 * PAGE..].iter().all(|&b| b == tail));
            }
        }
        assert_eq!(
            seen_sizes.into_iter().collect::<Vec<_>>(),
            vec![3 * PAGE, 4 * PAGE]
        );
        assert_eq!(seen_mid.into_iter().collect::<Vec<_>>(), vec![1, 2]);
    }
}
