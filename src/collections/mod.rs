//! Shared collections: a named, mutable list of items published under an Ed25519 key and
//! followed by anyone who has its ID.
//!
//! - [`id`]: the collection ID (public key, and for a private collection its read key).
//! - [`signed`]: who may publish (the collection key, or keys it delegates to) and the signed
//!   envelope every document travels in.
//! - [`version`]: the immutable, hash-linked versions, stored as ordinary items.
//! - [`record`]: the signed latest-version pointer kept in the DHT and sent over gossipsub.
//! - [`book`]: this node's own collections (keys, drafts) and the ones it follows.
//! - [`search`]: the local full-text index over every followed collection.
//!
//! These are formats and local state: pure functions over bytes and the node's index. They
//! must not talk to the network; publishing, resolving and following are the node's work
//! (`node::collections`). Spec and vectors: `protocols/collection-v1.md`.

pub mod book;
pub mod id;
pub mod record;
pub mod search;
pub mod signed;
pub mod version;

pub use book::{Book, Followed, Owned};
pub use id::CollectionId;
pub use record::Latest;
pub use signed::{Delegation, Signer};
pub use version::{Entry, Listing, Version};

/// Errors about collections: a document that does not check out, or a local name or ID that
/// is not known here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectionError {
    #[error("malformed collection ID: {0}")]
    MalformedId(&'static str),
    #[error("malformed collection document: {0}")]
    Malformed(String),
    #[error("bad signature on the {0}")]
    BadSignature(&'static str),
    #[error("signed by a key that may not publish this collection (neither its own key nor a delegate's)")]
    NotAuthorized,
    #[error("the document is for another collection")]
    WrongCollection,
    #[error("stale version: sequence {got} is not newer than the {held} held")]
    Stale { held: u64, got: u64 },
    #[error(
        "sequence {got} jumps more than {} past the {held} held",
        record::MAX_SEQ_STEP
    )]
    SeqJump { held: u64, got: u64 },
    #[error("{0} is published from this node: its publisher always follows it")]
    OwnCollection(String),
    #[error("broken history at version {seq}: {why}")]
    BrokenChain { seq: u64, why: String },
    #[error("no collection named {0:?} on this node (storgo collection new {0})")]
    UnknownName(String),
    #[error("a collection named {0:?} already exists on this node")]
    NameTaken(String),
    #[error("collection names are 1 to 64 letters, digits, '-', '_' or '.'")]
    BadName,
    #[error("this node does not follow {0} (storgo follow ID)")]
    NotFollowed(String),
    #[error("{0} is not in the collection's draft or latest version")]
    NotListed(String),
    #[error("no version of the collection found (searched the DHT and connected peers)")]
    NotFound,
    #[error("search: {0}")]
    Search(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

#[cfg(test)]
mod tests {
    use super::signed::{Delegation, Domain, Signed};
    use super::version::NewVersion;
    use super::*;
    use crate::content::{BlockAddress, BlockKey, ContentId};
    use libp2p::identity::ed25519::Keypair;

    fn cid(n: u8) -> ContentId {
        ContentId::new(BlockAddress::of(&[n]), BlockKey::from_bytes([n; 32]))
    }

    fn listing() -> Listing {
        Listing {
            name: "Algorithms 101".into(),
            entries: vec![Entry {
                id: cid(1).to_string(),
                title: "Lecture 1 notes".into(),
                tags: vec!["lecture".into()],
                note: String::new(),
                added: 1_700_000_000,
            }],
        }
    }

    fn version(
        id: &CollectionId,
        key: &Keypair,
        d: Option<Delegation>,
        seq: u64,
        prev: Option<ContentId>,
        delegates: Vec<Delegation>,
    ) -> Vec<u8> {
        NewVersion {
            collection: id,
            seq,
            prev,
            published: 1_700_000_000 + seq,
            delegates,
            listing: &listing(),
        }
        .sign(key, d, [seq as u8; 32])
    }

    #[test]
    fn versions_verify_and_tampering_is_caught() {
        let owner = Keypair::generate();
        let id = CollectionId {
            key: owner.public().to_bytes(),
            read: None,
        };
        let v1 = version(&id, &owner, None, 1, None, vec![]);
        let opened = Version::open(&v1, &id).unwrap();
        assert_eq!(opened.signer, Signer::Owner);
        assert_eq!(opened.listing.unwrap(), listing());

        // A changed byte anywhere in the body: the signature no longer holds.
        let mut signed: Signed = ciborium::from_reader(&v1[..]).unwrap();
        let last = signed.body.len() - 1;
        signed.body[last] ^= 1;
        let mut bad = Vec::new();
        ciborium::into_writer(&signed, &mut bad).unwrap();
        assert!(matches!(
            Version::open(&bad, &id),
            Err(CollectionError::BadSignature(_)) | Err(CollectionError::Malformed(_))
        ));

        // A stranger's key, with or without a made-up delegation.
        let stranger = Keypair::generate();
        let forged = version(&id, &stranger, None, 2, Some(cid(9)), vec![]);
        assert!(matches!(
            Version::open(&forged, &id),
            Err(CollectionError::NotAuthorized)
        ));
        let self_made = Delegation::new(&stranger, stranger.public().to_bytes());
        let forged = version(&id, &stranger, Some(self_made), 2, Some(cid(9)), vec![]);
        assert!(matches!(
            Version::open(&forged, &id),
            Err(CollectionError::BadSignature("delegation"))
        ));

        // The same version under another collection's ID.
        let other = CollectionId {
            key: stranger.public().to_bytes(),
            read: None,
        };
        assert!(Version::open(&v1, &other).is_err());
    }

    #[test]
    fn a_delegate_publishes_only_after_a_version_names_it() {
        let owner = Keypair::generate();
        let ta = Keypair::generate();
        let id = CollectionId {
            key: owner.public().to_bytes(),
            read: None,
        };
        let d = Delegation::new(&owner, ta.public().to_bytes());
        let v1 = Version::open(&version(&id, &owner, None, 1, None, vec![]), &id).unwrap();
        let v1_named =
            Version::open(&version(&id, &owner, None, 1, None, vec![d.clone()]), &id).unwrap();
        let v2 = Version::open(&version(&id, &ta, Some(d), 2, Some(cid(1)), vec![]), &id).unwrap();
        assert_eq!(v2.signer, Signer::Delegate(ta.public().to_bytes()));
        assert!(v2.follows(&v1_named).is_ok());
        assert!(matches!(
            v2.follows(&v1),
            Err(CollectionError::BrokenChain { .. })
        ));
        // A repeated or lower sequence number breaks the chain; a skipped one does not (a
        // publisher jumps over a number a fork took).
        let v3 = Version::open(&version(&id, &owner, None, 3, Some(cid(2)), vec![]), &id).unwrap();
        assert!(v3.follows(&v1).is_ok());
        assert!(v1.follows(&v1).is_err());
        assert!(v1.follows(&v3).is_err());
    }

    #[test]
    fn a_private_listing_opens_only_with_the_read_key() {
        let owner = Keypair::generate();
        let id = CollectionId {
            key: owner.public().to_bytes(),
            read: Some([5; 32]),
        };
        let v = version(&id, &owner, None, 1, None, vec![]);
        assert_eq!(Version::open(&v, &id).unwrap().listing.unwrap(), listing());
        let public = id.public();
        let seen = Version::open(&v, &public).unwrap();
        assert!(
            seen.listing.is_none(),
            "no read key: nothing but ciphertext"
        );
        assert!(!String::from_utf8_lossy(&v).contains("Lecture"));
        // Another read key (one rotated away): still signed, still sealed.
        let rotated = CollectionId {
            read: Some([6; 32]),
            ..id
        };
        assert!(Version::open(&v, &rotated).unwrap().listing.is_none());
    }

    /// A delegate signing `u64::MAX` froze a collection: every publisher's `max + 1` wrapped.
    #[test]
    fn a_record_cannot_jump_to_the_end_of_the_sequence() {
        let owner = Keypair::generate();
        let c = owner.public().to_bytes();
        let key = record::dht_key(&c);
        let held = Latest::open_at(&key, &Latest::sign(c, 5, &cid(1), &owner, None).bytes).unwrap();
        for seq in [u64::MAX, record::MAX_SEQ + 1] {
            let r = Latest::sign(c, seq, &cid(2), &owner, None);
            assert!(matches!(
                Latest::open_at(&key, &r.bytes),
                Err(CollectionError::Malformed(_))
            ));
        }
        let far = Latest::sign(c, 5 + record::MAX_SEQ_STEP + 1, &cid(2), &owner, None);
        let far = Latest::open_at(&key, &far.bytes).unwrap();
        assert!(matches!(
            Latest::may_replace(&held, &far),
            Err(CollectionError::SeqJump { held: 5, .. })
        ));
        let near = Latest::sign(c, 5 + record::MAX_SEQ_STEP, &cid(2), &owner, None);
        let near = Latest::open_at(&key, &near.bytes).unwrap();
        assert!(Latest::may_replace(&held, &near).is_ok());
    }

    #[test]
    fn records_verify_and_only_a_higher_sequence_replaces() {
        let owner = Keypair::generate();
        let c = owner.public().to_bytes();
        let r1 = Latest::sign(c, 1, &cid(1), &owner, None);
        let r2 = Latest::sign(c, 2, &cid(2), &owner, None);
        let key = record::dht_key(&c);
        let o1 = Latest::open_at(&key, &r1.bytes).unwrap();
        let o2 = Latest::open_at(&key, &r2.bytes).unwrap();
        assert_eq!(o2.version, cid(2));
        assert!(Latest::may_replace(&o1, &o2).is_ok());
        assert!(
            Latest::may_replace(&o1, &o1).is_ok(),
            "the same record refreshes"
        );
        assert!(matches!(
            Latest::may_replace(&o2, &o1),
            Err(CollectionError::Stale { held: 2, got: 1 })
        ));
        let stranger = Keypair::generate();
        let forged = Latest::sign(c, 9, &cid(9), &stranger, None);
        assert!(Latest::open_at(&key, &forged.bytes).is_err());
        // A record signed for one collection, stored under another's key.
        let other = record::dht_key(&stranger.public().to_bytes());
        assert!(Latest::open_at(&other, &r1.bytes).is_err());
        // A version signature is not a record signature.
        let mut body = Vec::new();
        ciborium::into_writer(&1u8, &mut body).unwrap();
        let s = Signed::sign(Domain::Version, body, &owner, None);
        let mut bytes = Vec::new();
        ciborium::into_writer(&s, &mut bytes).unwrap();
        assert!(Latest::open_at(&key, &bytes).is_err());
    }
}
