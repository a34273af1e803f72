//! Content-defined chunking with FastCDC (the `fastcdc` crate's 2020 cut function).
//!
//! Cut points depend only on the bytes around them, so an edit in the middle of a large file
//! changes only the chunks around the edit. [`Chunker`] streams any reader through a buffer of
//! a few maximum-size chunks, so memory stays bounded by the chunk size, not the file size;
//! it copies each chunk out once (the copy that travels to the sealing threads) and moves the
//! unconsumed tail only when the buffer runs low, unlike `fastcdc::v2020::StreamCDC`, which
//! shifts the whole buffer after every chunk.

use std::io::{self, Read};

use fastcdc::v2020::{cut, select_masks, Normalization};
use sha2::{Digest, Sha256};

/// Smallest chunk, except the last chunk of a stream.
pub const CHUNK_MIN: usize = 256 * 1024;
/// Target average chunk size.
pub const CHUNK_AVG: usize = 1024 * 1024;
/// Largest chunk.
pub const CHUNK_MAX: usize = 4 * 1024 * 1024;

const BUFFER: usize = 4 * CHUNK_MAX;

/// Cuts a byte stream into content-defined chunks and hashes the whole stream with
/// SHA-256 as it goes (the manifest records that digest).
pub struct Chunker<R> {
    source: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    masks: (u64, u64),
    whole: Option<Sha256>,
    total: u64,
}

impl<R: Read> Chunker<R> {
    /// A chunker that also hashes the whole stream (see [`Chunker::finish`]).
    pub fn new(source: R) -> Self {
        Self::build(source, true)
    }

    /// A chunker that leaves hashing the whole stream to the caller, so that a pipeline can
    /// run that sequential pass on another core.
    pub fn without_whole_hash(source: R) -> Self {
        Self::build(source, false)
    }

    fn build(source: R, hash: bool) -> Self {
        Self {
            source,
            buf: vec![0u8; BUFFER],
            start: 0,
            end: 0,
            eof: false,
            masks: select_masks(CHUNK_AVG, Normalization::Level1),
            whole: hash.then(Sha256::new),
            total: 0,
        }
    }

    /// Bytes read from the source so far.
    pub fn bytes_read(&self) -> u64 {
        self.total
    }

    /// SHA-256 of everything read (all zeros from [`Chunker::without_whole_hash`]), and its
    /// length. Call after `next_chunk` returned `None`.
    pub fn finish(self) -> ([u8; 32], u64) {
        let digest = self.whole.map(|h| h.finalize().into()).unwrap_or([0; 32]);
        (digest, self.total)
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 && self.buf.len() - self.start < CHUNK_MAX {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while !self.eof && self.end - self.start < CHUNK_MAX && self.end < self.buf.len() {
            match self.source.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    if let Some(h) = &mut self.whole {
                        h.update(&self.buf[self.end..self.end + n]);
                    }
                    self.total += n as u64;
                    self.end += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next chunk, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.end - self.start < CHUNK_MAX {
            self.fill()?;
        }
        let avail = self.end - self.start;
        if avail == 0 {
            return Ok(None);
        }
        let (ms, ml) = self.masks;
        let (_, len) = cut(
            &self.buf[self.start..self.end],
            CHUNK_MIN,
            CHUNK_AVG,
            CHUNK_MAX,
            ms,
            ml,
            ms << 1,
            ml << 1,
        );
        let len = len.clamp(1, avail);
        // Room for the AEAD tag, so sealing in place never reallocates (and copies) the chunk.
        let mut chunk = Vec::with_capacity(len + crate::content::crypto::TAG_LEN);
        chunk.extend_from_slice(&self.buf[self.start..self.start + len]);
        self.start += len;
        Ok(Some(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// A reader that returns at most 1000 bytes per call, to exercise refills.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(out.len()).min(1000);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn chunks_of<R: Read>(r: R) -> Vec<Vec<u8>> {
        let mut c = Chunker::new(r);
        let mut out = vec![];
        while let Some(ch) = c.next_chunk().unwrap() {
            out.push(ch);
        }
        out
    }

    #[test]
    fn matches_fastcdc_whole_buffer_cuts_and_bounds() {
        let data = pseudo_random(20 * 1024 * 1024 + 123, 42);
        let ours = chunks_of(&data[..]);
        let theirs: Vec<usize> =
            fastcdc::v2020::FastCDC::new(&data, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX)
                .map(|c| c.length)
                .collect();
        assert_eq!(ours.iter().map(Vec::len).collect::<Vec<_>>(), theirs);
        assert_eq!(ours.concat(), data);
        for c in &ours[..ours.len() - 1] {
            assert!(c.len() >= CHUNK_MIN && c.len() <= CHUNK_MAX);
        }
        assert_eq!(chunks_of(Trickle(&data)), ours);
    }

    #[test]
    fn empty_stream_has_no_chunks_and_hashes() {
        let mut c = Chunker::new(&b""[..]);
        assert!(c.next_chunk().unwrap().is_none());
        let (h, n) = c.finish();
        assert_eq!(n, 0);
        assert_eq!(h, <[u8; 32]>::from(Sha256::digest(b"")));
    }
}
