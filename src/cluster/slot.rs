//! Hash slots: which of the 16384 slots of a Redis Cluster a key belongs to.
//!
//! A key's slot is CRC16 (the XMODEM variant: polynomial `0x1021`, initial value 0, no
//! reflection) of the key modulo 16384. When the key holds a hash tag, a `{...}` with at least
//! one byte between the first `{` and the first `}` after it, only the tag is hashed, so that
//! `{user1000}.following` and `{user1000}.followers` share a slot and can go in one multi-key
//! command or transaction.
//!
//! ```
//! use redis_handoff::cluster::key_slot;
//!
//! assert_eq!(key_slot(b"foo"), 12182);
//! assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"{user1000}.followers"));
//! // An empty tag is no tag: the whole key is hashed.
//! assert_ne!(key_slot(b"{}a"), key_slot(b"{}b"));
//! ```

/// How many hash slots a Redis Cluster has.
pub const SLOT_COUNT: u16 = crate::maintenance::SLOTS;

/// The hash slot of `key`, hashing only its `{hash tag}` when it has one.
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOT_COUNT
}

/// The part of `key` that is hashed: the bytes between the first `{` and the first `}` after
/// it when there is at least one, otherwise the whole key.
pub(crate) fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    let rest = &key[open + 1..];
    match rest.iter().position(|&b| b == b'}') {
        Some(len) if len > 0 => &rest[..len],
        _ => key,
    }
}

/// CRC16-XMODEM, one table lookup a byte.
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16_TABLE[usize::from(((crc >> 8) as u8) ^ b)]
    })
}

/// The CRC of every byte value, computed at compile time from the polynomial.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_value_of_crc16_xmodem() {
        // The standard check input of every CRC catalogue.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn known_slots() {
        // Values Redis itself gives for `CLUSTER KEYSLOT`.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"hello"), 866);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn hash_tags() {
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{bar"), b"foo{bar");
        assert_eq!(hash_tag(b"}foo{x}"), b"x");
        assert_eq!(hash_tag(b"{}"), b"{}");
    }
}
