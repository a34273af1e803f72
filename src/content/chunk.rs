//! Chunk blocks: a chunk's plaintext, compressed when that pays, sealed under its convergent
//! key (`protocols/block-v2.md`).
//!
//! Inside the seal, a block holds one codec byte and a body: `00` and the plaintext, or `01`
//! and a zstd frame of it at a fixed level. Whether a chunk is compressed depends only on
//! its bytes (a quick trial on a sample, then the whole chunk must shrink by at least 1/32),
//! and the level is fixed, so the same plaintext under the same secret still seals to the
//! same block and deduplication keeps working. The key is derived from the body, codec byte
//! included, so a writer that decides otherwise (`--no-compress`, another zstd build) makes a
//! block under another key rather than a second message under the same one. The codec byte is sealed too: a storing peer
//! learns only what the block's length tells it (see DESIGN.md, "What compression reveals").
//!
//! This module must not do I/O; it owns no thread, only each thread's reusable zstd context.

use std::cell::RefCell;

use bytes::Bytes;

use super::crypto::{ConvergenceSecret, OpenError, TAG_LEN};
use super::{BlockAddress, ChunkRef, CHUNK_MAX};

/// The codec byte: the body is the plaintext.
pub const CODEC_RAW: u8 = 0x00;
/// The codec byte: the body is a zstd frame of the plaintext.
pub const CODEC_ZSTD: u8 = 0x01;
/// The zstd level every storgo node uses (changing it changes blocks, and so dedup).
pub const ZSTD_LEVEL: i32 = 3;
/// Bytes from the start of a chunk tried first, at zstd's fastest level: if they do not
/// shrink, neither will the chunk (media, archives, encrypted data), and the whole
/// compression is skipped — about 1% of the cost of sealing a 1 MiB chunk.
const SAMPLE: usize = 16 * 1024;
const SAMPLE_LEVEL: i32 = 1;

/// Largest sealed chunk block: the largest chunk, its codec byte and the tag.
pub const MAX_CHUNK_BLOCK: usize = CHUNK_MAX + 1 + TAG_LEN;

thread_local! {
    static TRIAL: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

type Context = RefCell<Option<zstd::bulk::Compressor<'static>>>;

/// Compresses with this thread's context for `level` (contexts are reused: making one costs
/// more than compressing a small chunk).
fn compress_with(
    ctx: &'static std::thread::LocalKey<Context>,
    level: i32,
    data: &[u8],
) -> Option<Vec<u8>> {
    ctx.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(level).ok();
        }
        c.as_mut()?.compress(data).ok()
    })
}

/// Whether it pays to store `compressed` instead of `len` plain bytes.
fn pays(compressed: usize, len: usize) -> bool {
    compressed < len - len / 32
}

/// The body to seal for `plaintext`: compressed when that pays.
fn encode(plaintext: &[u8], allowed: bool) -> Vec<u8> {
    let sample = &plaintext[..plaintext.len().min(SAMPLE)];
    let worth_trying = allowed
        && plaintext.len() >= 64
        && compress_with(&TRIAL, SAMPLE_LEVEL, sample).is_some_and(|z| pays(z.len(), sample.len()));
    if worth_trying {
        if let Some(z) = compress_with(&COMPRESSOR, ZSTD_LEVEL, plaintext) {
            if pays(z.len(), plaintext.len()) {
                let mut body = Vec::with_capacity(1 + z.len() + TAG_LEN);
                body.push(CODEC_ZSTD);
                body.extend_from_slice(&z);
                return body;
            }
        }
    }
    let mut body = Vec::with_capacity(1 + plaintext.len() + TAG_LEN);
    body.push(CODEC_RAW);
    body.extend_from_slice(plaintext);
    body
}

/// Seals one chunk, compressed when `compress` is set and it pays: its reference (address,
/// plaintext length, key) and its block.
pub fn seal_chunk(
    secret: &ConvergenceSecret,
    plaintext: &[u8],
    compress: bool,
) -> (ChunkRef, Vec<u8>) {
    let mut block = encode(plaintext, compress);
    // The key covers the body as sealed (codec byte and frame), not only the plaintext: the
    // same plaintext stored raw by one writer and compressed by another must not share a key.
    let key = secret.derive_key(&[], &block);
    key.seal_in_place(&mut block, &[]);
    let address = BlockAddress::of(&block);
    let r = ChunkRef {
        address,
        len: plaintext.len() as u32,
        key,
    };
    (r, block)
}

/// Why a chunk block did not open to its plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("failed to authenticate (wrong key, or altered or truncated bytes)")]
    Decrypt,
    #[error("unknown codec byte {0:#04x}")]
    Codec(u8),
    #[error("does not decompress to its {0} bytes")]
    Decompress(u32),
    #[error("holds {got} bytes, its manifest says {want}")]
    Length { got: usize, want: u32 },
}

impl From<OpenError> for ChunkError {
    fn from(_: OpenError) -> Self {
        ChunkError::Decrypt
    }
}

/// Opens a chunk block to exactly the `r.len` plaintext bytes its manifest names. Memory is
/// bounded by `r.len` (itself at most `CHUNK_MAX`), whatever the block claims. An
/// uncompressed chunk is returned in place, without a copy.
pub fn open_chunk(r: &ChunkRef, mut block: Vec<u8>) -> Result<Bytes, ChunkError> {
    r.key.open_in_place(&mut block, &[])?;
    decode_opened(r.len, block)
}

/// The plaintext of an authenticated chunk block (codec byte, then the raw or zstd-compressed
/// bytes), which must come to exactly `len` bytes. Separate from [`open_chunk`] so that the
/// decoder can be fuzzed without a key: only the key's holder can make a block that decrypts,
/// but that holder may be the attacker (a crafted item handed to a victim).
pub fn decode_opened(len: u32, block: Vec<u8>) -> Result<Bytes, ChunkError> {
    let want = len as usize;
    match block.first().copied() {
        Some(CODEC_RAW) => {
            if block.len() - 1 != want {
                return Err(ChunkError::Length {
                    got: block.len() - 1,
                    want: len,
                });
            }
            Ok(Bytes::from(block).slice(1..))
        }
        Some(CODEC_ZSTD) => {
            if want > CHUNK_MAX {
                return Err(ChunkError::Decompress(len));
            }
            let plain = DECOMPRESSOR.with(|d| {
                let mut d = d.borrow_mut();
                if d.is_none() {
                    *d = zstd::bulk::Decompressor::new().ok();
                }
                let d = d.as_mut().ok_or(ChunkError::Decompress(len))?;
                // The capacity is the manifest's length: a frame that would grow past it fails.
                d.decompress(&block[1..], want)
                    .map_err(|_| ChunkError::Decompress(len))
            })?;
            if plain.len() != want {
                return Err(ChunkError::Length {
                    got: plain.len(),
                    want: len,
                });
            }
            Ok(Bytes::from(plain))
        }
        Some(other) => Err(ChunkError::Codec(other)),
        None => Err(ChunkError::Codec(0xff)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> ConvergenceSecret {
        ConvergenceSecret::from_bytes([9; 32])
    }

    #[test]
    fn text_is_compressed_random_is_not_and_both_open() {
        let text: Vec<u8> = b"Lecture 3: the Fourier transform, again. "
            .iter()
            .copied()
            .cycle()
            .take(300_000)
            .collect();
        let mut random = vec![0u8; 300_000];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut random);
        for (data, compressed) in [(&text, true), (&random, false)] {
            let (r, block) = seal_chunk(&secret(), data, true);
            assert_eq!(block.len() < data.len(), compressed);
            assert_eq!(block.len() == data.len() + 1 + TAG_LEN, !compressed);
            assert_eq!(&open_chunk(&r, block.clone()).unwrap()[..], &data[..]);
            // Deterministic: the same plaintext seals to the same block.
            assert_eq!(seal_chunk(&secret(), data, true).1, block);
        }
    }

    #[test]
    fn a_wrong_length_or_altered_block_fails() {
        let (mut r, block) = seal_chunk(&secret(), &[7u8; 5000], true);
        let mut bad = block.clone();
        bad[3] ^= 1;
        assert_eq!(open_chunk(&r, bad), Err(ChunkError::Decrypt));
        r.len = 4999;
        assert!(open_chunk(&r, block.clone()).is_err());
        r.len = 5001;
        assert!(open_chunk(&r, block).is_err());
        let (r, empty) = seal_chunk(&secret(), &[], true);
        assert!(open_chunk(&r, empty).unwrap().is_empty());
    }

    fn body_of(r: &ChunkRef, sealed: &[u8]) -> Vec<u8> {
        let mut b = sealed.to_vec();
        r.key.open_in_place(&mut b, &[]).expect("opens");
        b
    }

    /// The keystream-reuse defect: one plaintext added compressed and with `--no-compress`
    /// made two different bodies under one key and the zero nonce, so the XOR of the two
    /// ciphertexts was the XOR of the two bodies. Now each body has its own key.
    #[test]
    fn one_plaintext_compressed_and_raw_gets_two_keys() {
        let text = b"week 4: linear maps and their matrices. ".repeat(2_000);
        let (z, zb) = seal_chunk(&secret(), &text, true);
        let (raw, rb) = seal_chunk(&secret(), &text, false);
        let (zbody, rbody) = (body_of(&z, &zb), body_of(&raw, &rb));
        assert_eq!((zbody[0], rbody[0]), (CODEC_ZSTD, CODEC_RAW));
        assert_ne!(z.key, raw.key);
        let n = zb.len().min(rb.len()) - TAG_LEN;
        let xor = |a: &[u8], b: &[u8]| a.iter().zip(b).map(|(x, y)| x ^ y).collect::<Vec<u8>>();
        assert_ne!(xor(&zb[..n], &rb[..n]), xor(&zbody[..n], &rbody[..n]));
        assert_eq!(&open_chunk(&z, zb).unwrap()[..], &text[..]);
        assert_eq!(&open_chunk(&raw, rb).unwrap()[..], &text[..]);
    }

    proptest::proptest! {
        /// Over plaintexts that do and do not compress, and both codec choices: a key seals
        /// one body only (equal keys mean equal sealed blocks), sealing is deterministic, and
        /// every block opens to its plaintext.
        #[test]
        fn a_key_never_seals_two_bodies(
            seed in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            repeat in 1usize..400,
        ) {
            let plain = seed.repeat(repeat);
            let sealed: Vec<(ChunkRef, Vec<u8>)> =
                [true, false].iter().map(|&c| seal_chunk(&secret(), &plain, c)).collect();
            for (r, block) in &sealed {
                proptest::prop_assert_eq!(&seal_chunk(&secret(), &plain, block.len() < plain.len() + 1 + TAG_LEN).1, block);
                proptest::prop_assert_eq!(&open_chunk(r, block.clone()).unwrap()[..], &plain[..]);
            }
            let ((a, ab), (b, bb)) = (&sealed[0], &sealed[1]);
            proptest::prop_assert_eq!(a.key == b.key, ab == bb);
            proptest::prop_assert_eq!(body_of(a, ab) == body_of(b, bb), ab == bb);
        }
    }
}
