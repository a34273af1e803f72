//! Collection IDs: the one string a publisher shares for a collection.
//!
//! Like a content ID, a collection ID is a capability: it names the collection's public key
//! (whose signatures readers check, and under which its latest version is found in the DHT)
//! and, for a private collection, the read key that opens its listings. It never changes while
//! the collection's content does.
//!
//! Text form: `sc1` followed by unpadded lowercase base32 of the binary form:
//!
//! ```text
//! 0x01 | flags (1: bit 0 = private) | public key (32) | read key (32, private only) | checksum (4)
//! ```
//!
//! The checksum is the first 4 bytes of SHA-256 of what precedes it. Spec and vectors:
//! `protocols/collection-v1.md`.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::CollectionError;

pub const PREFIX: &str = "sc1";
const VERSION: u8 = 1;
const PRIVATE: u8 = 1;
const MAX_TEXT_LEN: usize = 256;

/// A collection's public key, and for a private collection the key that reads it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CollectionId {
    pub key: [u8; 32],
    pub read: Option<[u8; 32]>,
}

impl CollectionId {
    /// The ID without its read key: what may be shown in logs and on a public page.
    pub fn public(&self) -> Self {
        Self {
            key: self.key,
            read: None,
        }
    }

    /// The public key in hex, the collection's name in logs and in the node's index.
    pub fn key_hex(&self) -> String {
        hex::encode(self.key)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![VERSION, if self.read.is_some() { PRIVATE } else { 0 }];
        out.extend_from_slice(&self.key);
        if let Some(r) = &self.read {
            out.extend_from_slice(r);
        }
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum[..4]);
        out
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, CollectionError> {
        let bad = |why: &'static str| CollectionError::MalformedId(why);
        if b.len() < 2 {
            return Err(bad("too short"));
        }
        if b[0] != VERSION {
            return Err(bad("unknown version"));
        }
        let private = match b[1] {
            0 => false,
            PRIVATE => true,
            _ => return Err(bad("unknown flags")),
        };
        let len = 2 + 32 + if private { 32 } else { 0 } + 4;
        if b.len() != len {
            return Err(bad("wrong length"));
        }
        let body = &b[..len - 4];
        if Sha256::digest(body)[..4] != b[len - 4..] {
            return Err(bad("checksum mismatch (a character was changed or lost)"));
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&b[2..34]);
        let read = private.then(|| {
            let mut r = [0u8; 32];
            r.copy_from_slice(&b[34..66]);
            r
        });
        Ok(Self { key, read })
    }
}

impl fmt::Display for CollectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = multibase::Base::Base32Lower.encode(self.to_bytes());
        write!(f, "{PREFIX}{body}")
    }
}

impl fmt::Debug for CollectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the read key: logs must not leak it.
        write!(
            f,
            "CollectionId({}{})",
            &self.key_hex()[..16],
            if self.read.is_some() { ", private" } else { "" }
        )
    }
}

impl FromStr for CollectionId {
    type Err = CollectionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() > MAX_TEXT_LEN {
            return Err(CollectionError::MalformedId("too long"));
        }
        let lower = s.to_ascii_lowercase();
        let body = lower
            .strip_prefix(PREFIX)
            .ok_or(CollectionError::MalformedId("does not start with sc1"))?;
        let bytes = multibase::Base::Base32Lower
            .decode(body)
            .map_err(|_| CollectionError::MalformedId("not base32"))?;
        Self::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_private_ids_round_trip_and_typos_are_caught() {
        for read in [None, Some([9u8; 32])] {
            let id = CollectionId { key: [7; 32], read };
            let s = id.to_string();
            assert!(s.starts_with("sc1"));
            assert_eq!(s.parse::<CollectionId>().unwrap(), id);
            let mut chars: Vec<char> = s.chars().collect();
            chars[12] = if chars[12] == 'a' { 'b' } else { 'a' };
            let typo: String = chars.into_iter().collect();
            assert!(typo.parse::<CollectionId>().is_err());
        }
        assert!("sg1abc".parse::<CollectionId>().is_err());
    }
}
