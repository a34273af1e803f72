//! Content IDs: the one string a user copies to fetch an item.
//!
//! A content ID is a read capability in the Tahoe-LAFS sense: it carries the root manifest's
//! address (where to find the item) and the key that opens it (how to read it). Whoever has
//! it can fetch and decrypt; a node that merely stores the blocks sees ciphertext only.
//!
//! Text form: `sg1` followed by unpadded lowercase base32 (RFC 4648) of the binary form. The
//! alphabet is letters and digits only, so the ID survives chat apps, line wrapping, URLs and
//! double-click selection; the `1` cannot occur in base32 and separates the prefix the way it
//! does in bech32. Binary form, 69 bytes:
//!
//! ```text
//! 0x01 | root digest (32) | root key (32) | checksum (4) = first 4 bytes of SHA-256 of the rest
//! ```
//!
//! The checksum turns a mistyped ID into an instant "malformed ID" instead of a network
//! search for content that does not exist. Spec and vectors: `protocols/content-id-v1.md`.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::address::BlockAddress;
use super::crypto::BlockKey;
use super::ContentError;

/// Text prefix of every content ID.
pub const PREFIX: &str = "sg1";
/// Version byte of the binary form.
pub const VERSION: u8 = 1;
/// Length of the binary form.
pub const BINARY_LEN: usize = 1 + 32 + 32 + 4;
/// Longest text accepted before decoding anything (the real length is 113).
const MAX_TEXT_LEN: usize = 256;
/// Letters after the prefix: the binary form in base32 without padding (111).
const BODY_LEN: usize = (BINARY_LEN * 8).div_ceil(5);

/// The address of an item's root manifest and the key that opens it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentId {
    pub root: BlockAddress,
    pub key: BlockKey,
}

impl ContentId {
    pub fn new(root: BlockAddress, key: BlockKey) -> Self {
        Self { root, key }
    }

    pub fn to_bytes(&self) -> [u8; BINARY_LEN] {
        let mut out = [0u8; BINARY_LEN];
        out[0] = VERSION;
        out[1..33].copy_from_slice(self.root.digest());
        out[33..65].copy_from_slice(self.key.as_bytes());
        let sum = Sha256::digest(&out[..65]);
        out[65..].copy_from_slice(&sum[..4]);
        out
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, ContentError> {
        if b.len() != BINARY_LEN {
            return Err(ContentError::MalformedContentId("wrong length"));
        }
        if b[0] != VERSION {
            return Err(ContentError::MalformedContentId("unknown version"));
        }
        if Sha256::digest(&b[..65])[..4] != b[65..] {
            return Err(ContentError::MalformedContentId(
                "checksum mismatch (a character was changed or lost)",
            ));
        }
        let mut root = [0u8; 32];
        root.copy_from_slice(&b[1..33]);
        let mut key = [0u8; 32];
        key.copy_from_slice(&b[33..65]);
        Ok(Self {
            root: BlockAddress::from_digest(root),
            key: BlockKey::from_bytes(key),
        })
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = multibase::Base::Base32Lower.encode(self.to_bytes());
        write!(f, "{PREFIX}{body}")
    }
}

impl ContentId {
    /// The ID as logs show it: its first letters, which a user recognises as the start of
    /// the ID they hold. They encode only the version and the root's address (the key starts
    /// at letter 53 after `sg1`), so a log never carries a read capability.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(PREFIX.len() + SHORT_LETTERS);
        s.push('…');
        s
    }
}

/// Letters of the ID after `sg1` in [`ContentId::short`]: 65 bits of the root's address.
const SHORT_LETTERS: usize = 14;
// The short form's letters (5 bits each) end before the key, which starts at bit 264 of the
// binary form (after the version byte and the 32-byte root).
const _: () = assert!(SHORT_LETTERS * 5 < 264);

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key in debug output: logs must not leak read capabilities.
        write!(f, "ContentId(root={})", self.root)
    }
}

impl FromStr for ContentId {
    type Err = ContentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() > MAX_TEXT_LEN {
            return Err(ContentError::MalformedContentId("too long"));
        }
        let lower = s.to_ascii_lowercase();
        let body = lower
            .strip_prefix(PREFIX)
            .ok_or(ContentError::MalformedContentId("does not start with sg1"))?;
        if !body
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        {
            return Err(ContentError::MalformedContentId(
                "not base32: it holds a character other than a-z and 2-7",
            ));
        }
        match body.len().cmp(&BODY_LEN) {
            std::cmp::Ordering::Less => {
                return Err(ContentError::MalformedContentId(
                    "too short: an ID is sg1 and 111 letters; part of it was lost in copying",
                ))
            }
            std::cmp::Ordering::Greater => {
                return Err(ContentError::MalformedContentId(
                    "too long: an ID is sg1 and 111 letters; something was added in copying",
                ))
            }
            std::cmp::Ordering::Equal => {}
        }
        let bytes = multibase::Base::Base32Lower
            .decode(body)
            .map_err(|_| ContentError::MalformedContentId("not base32"))?;
        Self::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_shape() {
        let id = ContentId::new(BlockAddress::of(b"r"), BlockKey::from_bytes([3; 32]));
        let s = id.to_string();
        assert!(s.starts_with("sg1"));
        assert!(s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_eq!(s.parse::<ContentId>().unwrap(), id);
        assert_eq!(s.to_uppercase().parse::<ContentId>().unwrap(), id);
    }

    #[test]
    fn the_short_form_is_the_start_of_the_id_and_holds_no_key() {
        let a = ContentId::new(BlockAddress::of(b"r"), BlockKey::from_bytes([3; 32]));
        let b = ContentId::new(BlockAddress::of(b"r"), BlockKey::from_bytes([4; 32]));
        let short = a.short();
        assert!(a.to_string().starts_with(short.trim_end_matches('…')));
        assert_eq!(short, b.short(), "the key changes nothing in it");
    }

    #[test]
    fn a_cut_or_padded_id_says_which() {
        let id = ContentId::new(BlockAddress::of(b"r"), BlockKey::from_bytes([3; 32]));
        let s = id.to_string();
        assert_eq!(s.len(), 3 + BODY_LEN);
        let err = |t: &str| t.parse::<ContentId>().unwrap_err().to_string();
        assert!(err(&s[..60]).contains("too short"), "{}", err(&s[..60]));
        assert!(err(&format!("{s}a")).contains("too long"));
        assert!(err(&s.replace('a', "1")).contains("not base32"));
    }

    #[test]
    fn typos_are_caught_by_the_checksum() {
        let id = ContentId::new(BlockAddress::of(b"r"), BlockKey::from_bytes([3; 32]));
        let s = id.to_string();
        let mut chars: Vec<char> = s.chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert!(typo.parse::<ContentId>().is_err());
        assert!(s[..s.len() - 1].parse::<ContentId>().is_err());
        assert!("hello".parse::<ContentId>().is_err());
        assert!("".parse::<ContentId>().is_err());
    }
}
