//! A collection's versions: immutable, signed manifests that each name the one before.
//!
//! A version is stored as an ordinary storgo item (its bytes are a [`Signed`] envelope), so it
//! is chunked, encrypted, replicated and fetched like any file, and its content ID is its
//! address. Its body names the previous version's content ID and carries a sequence number one
//! higher, so the history is a hash-linked chain anyone can walk and check: nobody can rewrite
//! the past without the chain breaking. A private collection's listing (name and items) is
//! sealed with a key derived from the collection's read key and a random salt, so a reader
//! without the read key sees who published and when, but not what.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

use super::signed::{Delegation, Domain, Signed, Signer};
use super::{CollectionError, CollectionId};
use crate::content::{BlockKey, ContentId};

/// Longest version accepted, read before decoding.
pub const MAX_VERSION_BYTES: usize = 16 << 20;
pub const MAX_ITEMS: usize = 100_000;
pub const MAX_DELEGATES: usize = 32;
pub const MAX_NAME: usize = 200;
pub const MAX_TITLE: usize = 500;
pub const MAX_NOTE: usize = 4000;
pub const MAX_TAGS: usize = 16;
pub const MAX_TAG: usize = 64;

/// One entry of a collection: an item and what the publisher says about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = CollectionEntry)]
pub struct Entry {
    /// The item's content ID.
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub note: String,
    /// Unix seconds when it was added.
    pub added: u64,
}

impl Entry {
    /// Checks the limits and that `id` is a content ID; tags are trimmed and lowercased.
    pub fn checked(mut self) -> Result<Self, CollectionError> {
        let bad = |what: String| Err(CollectionError::Malformed(what));
        self.id = self
            .id
            .trim()
            .parse::<ContentId>()
            .map_err(|e| CollectionError::Malformed(format!("entry id: {e}")))?
            .to_string();
        if self.title.len() > MAX_TITLE {
            return bad(format!("title longer than {MAX_TITLE} bytes"));
        }
        if self.note.len() > MAX_NOTE {
            return bad(format!("note longer than {MAX_NOTE} bytes"));
        }
        if self.tags.len() > MAX_TAGS {
            return bad(format!("more than {MAX_TAGS} tags"));
        }
        for t in &mut self.tags {
            *t = t.trim().to_lowercase();
            if t.is_empty() || t.len() > MAX_TAG {
                return bad(format!("a tag must be 1 to {MAX_TAG} bytes"));
            }
        }
        Ok(self)
    }
}

/// What a version lists: the collection's name and its entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub name: String,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SealedListing {
    salt: ByteBuf,
    sealed: ByteBuf,
}

/// The signed body of a version (`collection-v1.md`, "Version").
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Body {
    collection: ByteBuf,
    seq: u64,
    #[serde(default)]
    prev: Option<ByteBuf>,
    published: u64,
    #[serde(default)]
    delegates: Vec<Delegation>,
    #[serde(default)]
    listing: Option<Listing>,
    #[serde(default)]
    sealed: Option<SealedListing>,
}

/// A version, checked: signed by the collection or a delegate, its fields within limits.
#[derive(Debug, Clone)]
pub struct Version {
    pub collection: [u8; 32],
    pub seq: u64,
    pub prev: Option<ContentId>,
    pub published: u64,
    pub signer: Signer,
    /// Keys the owner lets publish the next version.
    pub delegates: Vec<Delegation>,
    /// `None` for a private collection read without the read key it was sealed with.
    pub listing: Option<Listing>,
}

/// What a new version says.
pub struct NewVersion<'a> {
    pub collection: &'a CollectionId,
    pub seq: u64,
    pub prev: Option<ContentId>,
    pub published: u64,
    pub delegates: Vec<Delegation>,
    pub listing: &'a Listing,
}

fn body_key(read: &[u8; 32], salt: &[u8]) -> BlockKey {
    let mut h = Sha256::new();
    h.update(b"storgo/collection/seal/1\0");
    h.update(read);
    h.update(salt);
    BlockKey::from_bytes(h.finalize().into())
}

fn seal_aad(collection: &[u8; 32], seq: u64) -> Vec<u8> {
    let mut aad = collection.to_vec();
    aad.extend_from_slice(&seq.to_be_bytes());
    aad
}

fn cbor<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Plain structs into a Vec: cannot fail.
    let _ = ciborium::into_writer(v, &mut out);
    out
}

impl NewVersion<'_> {
    /// The version's bytes, signed by `key` (with `delegation` when `key` is a delegate's).
    /// `salt` makes a private listing's key unique to this version.
    pub fn sign(
        self,
        key: &libp2p::identity::ed25519::Keypair,
        delegation: Option<Delegation>,
        salt: [u8; 32],
    ) -> Vec<u8> {
        let (listing, sealed) = match &self.collection.read {
            None => (Some(self.listing.clone()), None),
            Some(read) => {
                let mut plain = cbor(self.listing);
                body_key(read, &salt)
                    .seal_in_place(&mut plain, &seal_aad(&self.collection.key, self.seq));
                (
                    None,
                    Some(SealedListing {
                        salt: ByteBuf::from(salt.to_vec()),
                        sealed: ByteBuf::from(plain),
                    }),
                )
            }
        };
        let body = Body {
            collection: ByteBuf::from(self.collection.key.to_vec()),
            seq: self.seq,
            prev: self.prev.map(|p| ByteBuf::from(p.to_bytes().to_vec())),
            published: self.published,
            delegates: self.delegates,
            listing,
            sealed,
        };
        cbor(&Signed::sign(Domain::Version, cbor(&body), key, delegation))
    }
}

impl Version {
    /// Decodes and checks a version of `collection`: the signature, the limits, and with the
    /// read key the sealed listing.
    pub fn open(bytes: &[u8], collection: &CollectionId) -> Result<Self, CollectionError> {
        if bytes.len() > MAX_VERSION_BYTES {
            return Err(CollectionError::Malformed(format!(
                "version of {} bytes; at most {MAX_VERSION_BYTES}",
                bytes.len()
            )));
        }
        let signed: Signed = ciborium::from_reader(bytes)
            .map_err(|e| CollectionError::Malformed(format!("version: {e}")))?;
        let signer = signed.verify(Domain::Version, &collection.key)?;
        let body: Body = ciborium::from_reader(&signed.body[..])
            .map_err(|e| CollectionError::Malformed(format!("version body: {e}")))?;
        if body.collection.as_slice() != collection.key {
            return Err(CollectionError::WrongCollection);
        }
        if body.delegates.len() > MAX_DELEGATES {
            return Err(CollectionError::Malformed(format!(
                "more than {MAX_DELEGATES} delegates"
            )));
        }
        for d in &body.delegates {
            d.verify(&collection.key)?;
        }
        let prev = match &body.prev {
            None => None,
            Some(p) => Some(
                ContentId::from_bytes(p)
                    .map_err(|e| CollectionError::Malformed(format!("previous version: {e}")))?,
            ),
        };
        if body.seq == 0 || body.seq > super::record::MAX_SEQ {
            return Err(CollectionError::Malformed(format!(
                "sequence number {} (from 1 to {})",
                body.seq,
                super::record::MAX_SEQ
            )));
        }
        if (body.seq == 1) != prev.is_none() {
            return Err(CollectionError::BrokenChain {
                seq: body.seq,
                why: "only the first version has no previous one".into(),
            });
        }
        let listing = match (body.listing, body.sealed, &collection.read) {
            (Some(l), None, None) => Some(l),
            (None, Some(s), Some(read)) => {
                let mut plain = s.sealed.into_vec();
                // The signature covers the sealed bytes, so a key that does not open them is
                // another read key (one rotated away), not tampering: the listing stays sealed.
                match body_key(read, &s.salt)
                    .open_in_place(&mut plain, &seal_aad(&collection.key, body.seq))
                {
                    Ok(()) => Some(
                        ciborium::from_reader(&plain[..])
                            .map_err(|e| CollectionError::Malformed(format!("listing: {e}")))?,
                    ),
                    Err(_) => None,
                }
            }
            (None, Some(_), None) => None,
            (Some(_), None, Some(_)) => {
                return Err(CollectionError::Malformed(
                    "a private collection's version has an open listing".into(),
                ))
            }
            _ => {
                return Err(CollectionError::Malformed(
                    "a version has exactly one of listing and sealed".into(),
                ))
            }
        };
        if let Some(l) = &listing {
            check_listing(l)?;
        }
        Ok(Self {
            collection: collection.key,
            seq: body.seq,
            prev,
            published: body.published,
            signer,
            delegates: body.delegates,
            listing,
        })
    }

    /// Checks that this version follows `prev` (the version its `prev` names): a higher
    /// sequence number (usually one higher; a publisher skips over a sequence number a fork
    /// took), and a delegate signing it was among the keys `prev` let publish.
    pub fn follows(&self, prev: &Version) -> Result<(), CollectionError> {
        let broken = |why: String| CollectionError::BrokenChain { seq: self.seq, why };
        if self.seq <= prev.seq {
            return Err(broken(format!(
                "sequence {} follows {}",
                self.seq, prev.seq
            )));
        }
        if let Signer::Delegate(k) = self.signer {
            let allowed = prev.delegates.iter().any(|d| d.delegate.as_slice() == k);
            if !allowed {
                return Err(broken(
                    "signed by a delegate the previous version did not name".into(),
                ));
            }
        }
        Ok(())
    }
}

fn check_listing(l: &Listing) -> Result<(), CollectionError> {
    if l.name.len() > MAX_NAME {
        return Err(CollectionError::Malformed(format!(
            "name longer than {MAX_NAME} bytes"
        )));
    }
    if l.entries.len() > MAX_ITEMS {
        return Err(CollectionError::Malformed(format!(
            "more than {MAX_ITEMS} entries"
        )));
    }
    for e in &l.entries {
        e.clone().checked()?;
    }
    Ok(())
}
