//! Block addresses: the SHA-256 of a sealed block, written as a CIDv1 (raw codec,
//! sha2-256 multihash) so that anyone holding the bytes can check them.
//!
//! Only this one CID shape is accepted; any other version, codec or hash is rejected rather
//! than carried along, so an address always means "SHA-256 of these exact bytes".

use std::fmt;
use std::str::FromStr;

use cid::Cid;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::ContentError;

/// Multicodec code of `raw`: the block is opaque bytes.
pub const RAW_CODEC: u64 = 0x55;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;
/// The binary CID prefix every block address carries: version 1, raw, sha2-256, 32 bytes.
pub const CID_PREFIX: [u8; 4] = [0x01, 0x55, 0x12, 0x20];
/// Length of a block address in binary CID form.
pub const CID_LEN: usize = CID_PREFIX.len() + 32;

/// Address of a sealed block: the SHA-256 digest of its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockAddress([u8; 32]);

impl BlockAddress {
    /// The address of `sealed`, the bytes exactly as stored and sent.
    pub fn of(sealed: &[u8]) -> Self {
        Self(Sha256::digest(sealed).into())
    }

    pub fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    pub fn digest(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex of the digest; the block's file name in the store, so that
    /// `sha256sum` on a block file prints its own name.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether `sealed` is the block this address names.
    pub fn matches(&self, sealed: &[u8]) -> bool {
        Self::of(sealed) == *self
    }

    /// Binary CID form (36 bytes).
    pub fn to_cid_bytes(&self) -> [u8; CID_LEN] {
        let mut out = [0u8; CID_LEN];
        out[..4].copy_from_slice(&CID_PREFIX);
        out[4..].copy_from_slice(&self.0);
        out
    }

    pub fn from_cid_bytes(bytes: &[u8]) -> Result<Self, ContentError> {
        if bytes.len() != CID_LEN || bytes[..4] != CID_PREFIX {
            return Err(ContentError::MalformedAddress(format!(
                "expected a {CID_LEN}-byte CIDv1 raw sha2-256, got {} bytes starting {}",
                bytes.len(),
                hex::encode(&bytes[..bytes.len().min(4)])
            )));
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&bytes[4..]);
        Ok(Self(digest))
    }

    pub fn to_cid(&self) -> Cid {
        // The prefix is a constant valid CID header, so this cannot fail; fall back to
        // building it through the multihash API rather than panicking.
        Cid::try_from(&self.to_cid_bytes()[..]).unwrap_or_else(|_| {
            let mh = multihash::Multihash::<64>::wrap(SHA2_256, &self.0).unwrap_or_default();
            Cid::new_v1(RAW_CODEC, mh)
        })
    }

    pub fn from_cid(cid: &Cid) -> Result<Self, ContentError> {
        if cid.version() != cid::Version::V1 || cid.codec() != RAW_CODEC {
            return Err(ContentError::MalformedAddress(format!(
                "{cid} is not a CIDv1 with the raw codec"
            )));
        }
        let mh = cid.hash();
        if mh.code() != SHA2_256 || mh.size() != 32 {
            return Err(ContentError::MalformedAddress(format!(
                "{cid} is not a sha2-256 address"
            )));
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(mh.digest());
        Ok(Self(digest))
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut digest = [0u8; 32];
        hex::decode_to_slice(s, &mut digest).ok()?;
        Some(Self(digest))
    }
}

impl fmt::Display for BlockAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_cid())
    }
}

impl fmt::Debug for BlockAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockAddress({self})")
    }
}

impl FromStr for BlockAddress {
    type Err = ContentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let cid = Cid::from_str(s)
            .map_err(|e| ContentError::MalformedAddress(format!("{s:?} is not a CID: {e}")))?;
        Self::from_cid(&cid)
    }
}

/// Bytes (the binary CID) in the wire and index formats; the CID string in JSON, where a
/// byte array would be unreadable and a client would have to rebuild the CID itself.
impl Serialize for BlockAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_bytes(&self.to_cid_bytes())
        }
    }
}

impl<'de> Deserialize<'de> for BlockAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s: String = Deserialize::deserialize(d)?;
            return s.parse().map_err(serde::de::Error::custom);
        }
        let bytes: serde_bytes::ByteBuf = Deserialize::deserialize(d)?;
        Self::from_cid_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cid_form_matches_the_cid_crate() {
        let a = BlockAddress::of(b"hello");
        let cid = a.to_cid();
        assert_eq!(cid.to_bytes(), a.to_cid_bytes().to_vec());
        assert_eq!(BlockAddress::from_cid(&cid).unwrap(), a);
        assert!(a.to_string().starts_with("bafkrei"));
        assert_eq!(a.to_string().parse::<BlockAddress>().unwrap(), a);
    }

    #[test]
    fn other_cid_shapes_are_rejected() {
        let mh = multihash::Multihash::<64>::wrap(SHA2_256, &[0u8; 32]).unwrap();
        let dag = Cid::new_v1(0x71, mh);
        assert!(BlockAddress::from_cid(&dag).is_err());
        assert!(BlockAddress::from_cid_bytes(&[1, 2, 3]).is_err());
    }
}
