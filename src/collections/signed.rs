//! Signatures on collection documents: who may speak for a collection, and the envelope that
//! carries a signed body.
//!
//! A collection's own key (its ID) signs, or a key it delegated to: a [`Delegation`] is the
//! collection key's signature naming the delegate's key, carried in the envelope so that any
//! reader (and any DHT node validating a record) can check the chain without asking anyone.
//! A delegate's key is an Ed25519 key — a node's own identity when delegated by PeerId. Every
//! signature is over a domain string and the exact body bytes, so a signature made for one
//! kind of document can never be replayed as another. This module must not decide whether a
//! document is *newer*: that is the record's and the version chain's job.

use libp2p::identity::ed25519;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::CollectionError;

/// What a signature is for, prefixed to the signed bytes.
#[derive(Debug, Clone, Copy)]
pub enum Domain {
    Version,
    Record,
    Delegate,
}

impl Domain {
    fn prefix(self) -> &'static [u8] {
        match self {
            Domain::Version => b"storgo/collection/version/1\0",
            Domain::Record => b"storgo/collection/record/1\0",
            Domain::Delegate => b"storgo/collection/delegate/1\0",
        }
    }

    fn message(self, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(self.prefix().len() + body.len());
        m.extend_from_slice(self.prefix());
        m.extend_from_slice(body);
        m
    }
}

/// The collection key's word that `delegate` may publish for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    pub delegate: ByteBuf,
    pub sig: ByteBuf,
}

impl Delegation {
    /// Signs a delegation of `collection` (whose secret `owner` is) to `delegate`.
    pub fn new(owner: &ed25519::Keypair, delegate: [u8; 32]) -> Self {
        let msg = Self::body(&owner.public().to_bytes(), &delegate);
        Self {
            delegate: ByteBuf::from(delegate.to_vec()),
            sig: ByteBuf::from(owner.sign(&Domain::Delegate.message(&msg))),
        }
    }

    fn body(collection: &[u8; 32], delegate: &[u8; 32]) -> Vec<u8> {
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(collection);
        b.extend_from_slice(delegate);
        b
    }

    pub fn delegate_key(&self) -> Result<[u8; 32], CollectionError> {
        key32(&self.delegate, "delegate key")
    }

    /// Whether the collection key signed this delegation.
    pub fn verify(&self, collection: &[u8; 32]) -> Result<(), CollectionError> {
        let delegate = self.delegate_key()?;
        let pk = public_key(collection)?;
        let msg = Domain::Delegate.message(&Self::body(collection, &delegate));
        if pk.verify(&msg, &self.sig) {
            Ok(())
        } else {
            Err(CollectionError::BadSignature("delegation"))
        }
    }
}

/// A body and the signature of whoever published it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Signed {
    pub body: ByteBuf,
    pub signer: ByteBuf,
    #[serde(default)]
    pub delegation: Option<Delegation>,
    pub sig: ByteBuf,
}

/// Who signed a document that verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    Owner,
    Delegate([u8; 32]),
}

impl Signed {
    /// Signs `body` with `key`; `delegation` is needed when `key` is not the collection's own.
    pub fn sign(
        domain: Domain,
        body: Vec<u8>,
        key: &ed25519::Keypair,
        delegation: Option<Delegation>,
    ) -> Self {
        let sig = key.sign(&domain.message(&body));
        Self {
            body: ByteBuf::from(body),
            signer: ByteBuf::from(key.public().to_bytes().to_vec()),
            delegation,
            sig: ByteBuf::from(sig),
        }
    }

    /// Checks that the collection's key, or a key it delegated to, signed the body.
    pub fn verify(&self, domain: Domain, collection: &[u8; 32]) -> Result<Signer, CollectionError> {
        let signer = key32(&self.signer, "signer key")?;
        let who = if &signer == collection {
            Signer::Owner
        } else {
            let d = self
                .delegation
                .as_ref()
                .ok_or(CollectionError::NotAuthorized)?;
            if d.delegate_key()? != signer {
                return Err(CollectionError::NotAuthorized);
            }
            d.verify(collection)?;
            Signer::Delegate(signer)
        };
        let pk = public_key(&signer)?;
        if pk.verify(&domain.message(&self.body), &self.sig) {
            Ok(who)
        } else {
            Err(CollectionError::BadSignature(match domain {
                Domain::Version => "version",
                Domain::Record => "record",
                Domain::Delegate => "delegation",
            }))
        }
    }
}

pub(crate) fn key32(b: &[u8], what: &'static str) -> Result<[u8; 32], CollectionError> {
    <[u8; 32]>::try_from(b).map_err(|_| CollectionError::Malformed(format!("{what}: not 32 bytes")))
}

fn public_key(b: &[u8; 32]) -> Result<ed25519::PublicKey, CollectionError> {
    ed25519::PublicKey::try_from_bytes(b)
        .map_err(|_| CollectionError::Malformed("not an Ed25519 public key".into()))
}

/// The Ed25519 public key inside a PeerId (a node identity), for delegating to a node.
pub fn key_of_peer(peer: &libp2p::PeerId) -> Result<[u8; 32], CollectionError> {
    let not = || CollectionError::Malformed(format!("{peer}: not an Ed25519 PeerId"));
    let mh = peer.as_ref();
    if mh.code() != 0x00 {
        return Err(not());
    }
    let pk = libp2p::identity::PublicKey::try_decode_protobuf(mh.digest()).map_err(|_| not())?;
    let ed = pk.try_into_ed25519().map_err(|_| not())?;
    Ok(ed.to_bytes())
}
