//! Sealing blocks: convergent keys and XChaCha20-Poly1305.
//!
//! A block's key is BLAKE3 in keyed mode, keyed with the node's [`ConvergenceSecret`], over
//! everything the cipher takes: a domain string, the authenticated header and the exact
//! message sealed (for a chunk: its codec byte and its raw or compressed body, not just the
//! plaintext). The same message under the same secret always gives the same key and so the
//! same sealed block, which is what lets a store keep identical chunks once; two different
//! messages (the same plaintext once compressed and once not, or framed by two zstd builds)
//! get two different keys. Because a key is only ever used for the one (header, message) pair
//! it was derived from, the nonce is fixed at zero; see DESIGN.md for what this hides and
//! what it does not. This module must not read or write secrets to disk: the store owns the
//! secret file.

use std::fmt;

use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of the Poly1305 tag appended to every sealed block.
pub const TAG_LEN: usize = 16;
/// Length of keys and secrets.
pub const KEY_LEN: usize = 32;
/// Written first into every key derivation (16 bytes): keys of this rule never equal keys of
/// the rule before it, which hashed the chunk's plaintext alone.
const KEY_DOMAIN: &[u8; 16] = b"storgo key v2\0\0\0";

/// The per-node (or per-group) secret every convergent key is derived under. Nodes that
/// share one dedupe identical files between them; nodes that don't produce unrelated blocks
/// from the same file.
#[derive(Clone, PartialEq, Eq)]
pub struct ConvergenceSecret([u8; KEY_LEN]);

impl ConvergenceSecret {
    pub fn generate() -> Self {
        let mut b = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut b);
        Self(b)
    }

    pub fn from_bytes(b: [u8; KEY_LEN]) -> Self {
        Self(b)
    }

    /// Parses 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut b = [0u8; KEY_LEN];
        hex::decode_to_slice(s.trim(), &mut b).ok()?;
        Some(Self(b))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The convergent key that seals `message` with the authenticated header `aad`
    /// (`protocols/block-v2.md`, "Convergent key"). The header's length is written before it,
    /// so no two (header, message) pairs hash the same input: a (key, zero nonce) pair never
    /// seals two different messages, and never one message under two headers (which would
    /// give away Poly1305's one-time key).
    pub fn derive_key(&self, aad: &[u8], message: &[u8]) -> BlockKey {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(KEY_DOMAIN);
        h.update(&(aad.len() as u64).to_le_bytes());
        h.update(aad);
        h.update(message);
        BlockKey(*h.finalize().as_bytes())
    }
}

impl fmt::Debug for ConvergenceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConvergenceSecret(..)")
    }
}

/// The key that opens one sealed block.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockKey([u8; KEY_LEN]);

impl BlockKey {
    pub fn from_bytes(b: [u8; KEY_LEN]) -> Self {
        Self(b)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// XChaCha20-Poly1305 with the all-zero nonce, computed as its definition says: HChaCha20
    /// of the key and the nonce's first 16 bytes gives a subkey for ChaCha20-Poly1305 (IETF)
    /// with a 12-byte nonce of four zero bytes and the nonce's last 8 (zero too). The AEAD
    /// itself is ring's (assembly, about twice as fast as a portable implementation on the
    /// per-chunk path); the output is bit-for-bit XChaCha20-Poly1305, which the vectors check.
    fn cipher(&self) -> LessSafeKey {
        let subkey = chacha20::hchacha::<chacha20::cipher::consts::U10>(
            (&self.0).into(),
            &Default::default(),
        );
        // A 32-byte key is all ChaCha20-Poly1305 requires; ring refuses only other lengths.
        let key = UnboundKey::new(&CHACHA20_POLY1305, subkey.as_slice())
            .unwrap_or_else(|_| unreachable!("ChaCha20-Poly1305 takes 32-byte keys"));
        LessSafeKey::new(key)
    }

    fn zero_nonce() -> Nonce {
        // Safe only because a key seals exactly one plaintext (see the module docs).
        Nonce::assume_unique_for_key([0; 12])
    }

    /// Seals `block` in place: on return it holds ciphertext followed by the tag. `aad` is
    /// authenticated but not encrypted (manifests bind their public link list this way).
    pub fn seal_in_place(&self, block: &mut Vec<u8>, aad: &[u8]) {
        block.reserve_exact(TAG_LEN);
        // Encryption only fails for messages beyond the cipher's 256 GiB limit, far above any
        // block storgo makes (checked by MAX_BLOCK_SIZE); a failure would be a bug, so the
        // block is left unsealed-and-tagless and the caller's address check fails loudly.
        if let Ok(tag) =
            self.cipher()
                .seal_in_place_separate_tag(Self::zero_nonce(), Aad::from(aad), block)
        {
            block.extend_from_slice(tag.as_ref());
        }
    }

    /// Opens a sealed block in place, leaving the plaintext. Fails, leaving `block`
    /// unspecified, when the key is wrong or the bytes were altered.
    pub fn open_in_place(&self, block: &mut Vec<u8>, aad: &[u8]) -> Result<(), OpenError> {
        if block.len() < TAG_LEN {
            return Err(OpenError);
        }
        let plain = self
            .cipher()
            .open_in_place(Self::zero_nonce(), Aad::from(aad), block)
            .map_err(|_| OpenError)?
            .len();
        block.truncate(plain);
        Ok(())
    }
}

impl fmt::Debug for BlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlockKey(..)")
    }
}

/// A block did not authenticate under the key it was opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenError;

impl Serialize for BlockKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for BlockKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: serde_bytes::ByteBuf = Deserialize::deserialize(d)?;
        let arr: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| serde::de::Error::custom("key must be 32 bytes"))?;
        Ok(Self(arr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_is_deterministic_and_opens() {
        let secret = ConvergenceSecret::from_bytes([7; 32]);
        let key = secret.derive_key(b"", b"abc");
        let mut a = b"abc".to_vec();
        key.seal_in_place(&mut a, b"");
        let mut b = b"abc".to_vec();
        key.seal_in_place(&mut b, b"");
        assert_eq!(a, b);
        assert_eq!(a.len(), 3 + TAG_LEN);
        key.open_in_place(&mut a, b"").unwrap();
        assert_eq!(a, b"abc");
    }

    #[test]
    fn wrong_key_and_tampering_fail() {
        let secret = ConvergenceSecret::from_bytes([7; 32]);
        let key = secret.derive_key(b"", b"abc");
        let mut sealed = b"abc".to_vec();
        key.seal_in_place(&mut sealed, b"");
        let other = secret.derive_key(b"", b"abd");
        assert_eq!(
            other.open_in_place(&mut sealed.clone(), b""),
            Err(OpenError)
        );
        let mut t = sealed.clone();
        t[0] ^= 1;
        assert_eq!(key.open_in_place(&mut t, b""), Err(OpenError));
        assert_eq!(key.open_in_place(&mut vec![1, 2], b""), Err(OpenError));
    }

    #[test]
    fn a_key_covers_its_header_and_its_exact_message() {
        let secret = ConvergenceSecret::from_bytes([7; 32]);
        let k = secret.derive_key(b"", b"\x00abc");
        assert_ne!(k, secret.derive_key(b"", b"\x01abc"));
        assert_ne!(
            k,
            secret.derive_key(b"\x00", b"abc"),
            "header and message are apart"
        );
        assert_ne!(k, secret.derive_key(b"", b"\x00ab"));
        assert_ne!(
            k,
            ConvergenceSecret::from_bytes([8; 32]).derive_key(b"", b"\x00abc")
        );
        assert_eq!(k, secret.derive_key(b"", b"\x00abc"));
    }
}
