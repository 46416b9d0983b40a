//! Stable 64-bit record keys: the same record gets the same primary key on every machine and
//! every run, so every write is an idempotent upsert and shards need no coordinator.
//!
//! - a prompt: the first 8 bytes (little-endian) of its de-duplication key
//!   ([`crate::ingest::dedup_key`]: blake3 of the normalised prompt);
//! - an image: the first 8 bytes of blake3 of its content hash (hex), so two files with the
//!   same bytes are one record (see [`super`] for how their paths are kept);
//! - an image path (the `paths` collection): the first 8 bytes of blake3 of the path's bytes.
//!
//! Milvus keys are `i64`; the seam's record ids are `u64`: the same 64 bits.

/// The primary key of the prompt whose de-duplication key is `dedup`.
pub fn prompt_key(dedup: &[u8; 32]) -> i64 {
    first_eight(dedup)
}

/// The primary key of the image whose content hash (blake3 of the file, hex) is `hash`.
pub fn image_key(content_hash: &str) -> i64 {
    first_eight(blake3::hash(content_hash.as_bytes()).as_bytes())
}

/// The primary key of an image path's row in the `paths` collection.
pub fn path_row_key(path_key: &[u8]) -> i64 {
    first_eight(blake3::hash(path_key).as_bytes())
}

/// The seam's id of a Milvus key.
pub fn to_id(key: i64) -> u64 {
    key as u64
}

/// The Milvus key of a seam id.
pub fn to_key(id: u64) -> i64 {
    id as i64
}

/// `id in [..]` over keys, for a Milvus filter.
pub fn in_filter(field: &str, keys: &[i64]) -> String {
    let list: Vec<String> = keys.iter().map(i64::to_string).collect();
    format!("{field} in [{}]", list.join(", "))
}

fn first_eight(bytes: &[u8; 32]) -> i64 {
    let mut head = [0u8; 8];
    head.copy_from_slice(&bytes[..8]);
    i64::from_le_bytes(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::dedup_key;

    #[test]
    fn prompt_keys_follow_the_normalised_text() {
        let a = prompt_key(&dedup_key("A  Red cat"));
        assert_eq!(a, prompt_key(&dedup_key("a red CAT")));
        assert_ne!(a, prompt_key(&dedup_key("a red dog")));
        // Pinned: another build must compute the same key for the same prompt.
        let bytes = dedup_key("a red cat");
        assert_eq!(a.to_le_bytes(), bytes[..8]);
    }

    #[test]
    fn ids_and_keys_round_trip() {
        for key in [0, 1, -1, i64::MIN, i64::MAX] {
            assert_eq!(to_key(to_id(key)), key);
        }
        assert_ne!(image_key("ab"), image_key("ac"));
        assert_ne!(path_row_key(b"/a.png"), path_row_key(b"/b.png"));
        assert_eq!(in_filter("id", &[1, -2]), "id in [1, -2]");
    }
}
