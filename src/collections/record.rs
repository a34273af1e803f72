//! The latest-version pointer: a small signed record kept in the DHT and sent over gossipsub.
//!
//! Its DHT key is derived from the collection's public key; its value is a [`Signed`] body
//! naming the sequence number and the content ID of the newest version. Any node can check it
//! without fetching anything, so DHT nodes validate it before storing and keep only a higher
//! sequence number than the one they hold (a replayed older record is refused), and anyone
//! may put it again — the publisher, and every follower — so it outlives the publisher.

use libp2p::kad::RecordKey;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::signed::{Delegation, Domain, Signed, Signer};
use super::CollectionError;
use crate::content::ContentId;

/// The highest sequence number a record or version may carry (2^53 - 1, exact in every JSON
/// reader): far above any real history, far below where `+ 1` wraps.
pub const MAX_SEQ: u64 = (1 << 53) - 1;
/// How far past the record a node holds a new record's sequence may jump. A publisher numbers
/// one past the highest valid record it finds, so honest jumps are small; a bound keeps one
/// signer from freezing a collection by putting the ceiling in the DHT.
pub const MAX_SEQ_STEP: u64 = 1 << 20;

/// Longest record value accepted.
pub const MAX_RECORD_BYTES: usize = 2048;
/// First bytes of a collection record's DHT key ("sc"), then the 32-byte public key.
pub const KEY_PREFIX: [u8; 2] = [0x73, 0x63];

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Body {
    collection: ByteBuf,
    seq: u64,
    version: ByteBuf,
}

/// A checked pointer to a collection's newest version.
#[derive(Debug, Clone)]
pub struct Latest {
    pub collection: [u8; 32],
    pub seq: u64,
    pub version: ContentId,
    pub signer: Signer,
    /// The record's bytes as signed, to store, put and forward unchanged.
    pub bytes: Vec<u8>,
}

/// The DHT key of `collection`'s latest-version record.
pub fn dht_key(collection: &[u8; 32]) -> RecordKey {
    let mut k = KEY_PREFIX.to_vec();
    k.extend_from_slice(collection);
    RecordKey::from(k)
}

/// The collection a DHT key belongs to, if it is a collection record's key.
pub fn collection_of(key: &RecordKey) -> Option<[u8; 32]> {
    let k = key.as_ref();
    if k.len() != 34 || k[..2] != KEY_PREFIX {
        return None;
    }
    <[u8; 32]>::try_from(&k[2..]).ok()
}

impl Latest {
    /// Signs a record saying version `seq` of `collection` is `version`.
    pub fn sign(
        collection: [u8; 32],
        seq: u64,
        version: &ContentId,
        key: &libp2p::identity::ed25519::Keypair,
        delegation: Option<Delegation>,
    ) -> Self {
        let body = Body {
            collection: ByteBuf::from(collection.to_vec()),
            seq,
            version: ByteBuf::from(version.to_bytes().to_vec()),
        };
        let mut b = Vec::new();
        let _ = ciborium::into_writer(&body, &mut b);
        let signed = Signed::sign(Domain::Record, b, key, delegation);
        let mut bytes = Vec::new();
        let _ = ciborium::into_writer(&signed, &mut bytes);
        Self {
            collection,
            seq,
            version: *version,
            signer: if key.public().to_bytes() == collection {
                Signer::Owner
            } else {
                Signer::Delegate(key.public().to_bytes())
            },
            bytes,
        }
    }

    /// Decodes and checks a record of `collection`.
    pub fn open(bytes: &[u8], collection: &[u8; 32]) -> Result<Self, CollectionError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(CollectionError::Malformed(format!(
                "record of {} bytes; at most {MAX_RECORD_BYTES}",
                bytes.len()
            )));
        }
        let signed: Signed = ciborium::from_reader(bytes)
            .map_err(|e| CollectionError::Malformed(format!("record: {e}")))?;
        let signer = signed.verify(Domain::Record, collection)?;
        let body: Body = ciborium::from_reader(&signed.body[..])
            .map_err(|e| CollectionError::Malformed(format!("record body: {e}")))?;
        if body.collection.as_slice() != collection {
            return Err(CollectionError::WrongCollection);
        }
        if body.seq == 0 || body.seq > MAX_SEQ {
            return Err(CollectionError::Malformed(format!(
                "sequence number {} (from 1 to {MAX_SEQ})",
                body.seq
            )));
        }
        let version = ContentId::from_bytes(&body.version)
            .map_err(|e| CollectionError::Malformed(format!("record's version: {e}")))?;
        Ok(Self {
            collection: *collection,
            seq: body.seq,
            version,
            signer,
            bytes: bytes.to_vec(),
        })
    }

    /// Checks a record that arrived under DHT key `key`.
    pub fn open_at(key: &RecordKey, bytes: &[u8]) -> Result<Self, CollectionError> {
        let collection = collection_of(key).ok_or(CollectionError::Malformed(
            "not a collection record's key".into(),
        ))?;
        Self::open(bytes, &collection)
    }

    /// Whether `incoming` may replace `held`: a higher sequence number only (the same record
    /// again is a refresh).
    pub fn may_replace(held: &Latest, incoming: &Latest) -> Result<(), CollectionError> {
        if incoming.seq > held.seq.saturating_add(MAX_SEQ_STEP) {
            // A signer (a delegate, perhaps one removed since) may not push the number so far
            // ahead that nobody can publish above it.
            return Err(CollectionError::SeqJump {
                held: held.seq,
                got: incoming.seq,
            });
        }
        if incoming.seq > held.seq || incoming.bytes == held.bytes {
            Ok(())
        } else {
            Err(CollectionError::Stale {
                held: held.seq,
                got: incoming.seq,
            })
        }
    }
}
