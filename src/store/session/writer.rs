//! The session's [`BlockWriter`]: batched, crash-safe writes of sealed blocks, each claimed
//! by the [`Session`] it runs in so that GC keeps it until the session ends.
//!
//! Syncing is batched: `fsync` per 1 MiB block would cost more than hashing it, so a batch of
//! temp files (and of records appended to the writer's own packs, for small blocks) is made
//! durable with one `syncfs`, renamed into place, made durable again, and only then indexed,
//! on a syncing thread while the next batch is sealed. This module must not decide what is
//! reachable (that is GC's job in `maintenance`) and never sees keys.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::content::BlockAddress;
use crate::store::blocks::BlockFiles;
use crate::store::index::Index;
use crate::store::packs::{PackAppender, PACK_THRESHOLD};
use crate::store::rows::PackedAt;
use crate::store::{Result, StoreError};

use super::Session;

/// Bytes written before a batch is flushed on its own.
const BATCH_BYTES: u64 = 64 * 1024 * 1024;

/// Where a block waiting for its batch's sync was written.
enum Place {
    /// A temp file, renamed into `blocks/` once synced.
    File(PathBuf),
    /// A record in one of the writer's packs (`packs`).
    Packed(PackedAt),
}

struct Pending {
    place: Place,
    address: BlockAddress,
    size: u64,
}

impl Pending {
    /// Drops a block that will not be indexed: its temp file goes; a packed record stays
    /// as dead bytes until the pack is rewritten.
    fn discard(self) {
        if let Place::File(tmp) = self.place {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// What a finished batch of writes did.
#[derive(Debug, Default, Clone, Copy)]
pub struct WriteStats {
    /// Blocks written that the store did not already hold.
    pub new_blocks: u64,
    pub new_bytes: u64,
    /// Blocks skipped because the store already held them.
    pub known_blocks: u64,
}

/// State shared between a writer and its syncing thread.
#[derive(Default)]
struct InFlight {
    /// Blocks handed to the syncing thread and not yet indexed.
    addresses: HashSet<BlockAddress>,
    bytes: u64,
}

/// The thread that makes batches durable and indexes them, so that waiting for the disk
/// overlaps with sealing the next batch instead of stalling the pipeline.
struct Syncer {
    tx: SyncSender<Vec<Pending>>,
    handle: JoinHandle<Result<WriteStats>>,
}

/// A batch of block writes inside a [`Session`], which claims every block put here (written
/// or found already held) so that GC keeps it until the session ends.
///
/// Blocks become visible in batches, each synced before it is indexed; drop without
/// [`finish`](Self::finish) and the unflushed part is discarded.
pub struct BlockWriter<'a> {
    session: &'a Session,
    pending: Vec<Pending>,
    pending_set: HashSet<BlockAddress>,
    pending_bytes: u64,
    known_blocks: u64,
    in_flight: Arc<Mutex<InFlight>>,
    syncer: Option<Syncer>,
    /// This writer's packs for small blocks: the last is being appended to. All stay open
    /// (untouchable by GC) until the writer is done and every record is indexed.
    packs: Vec<PackAppender>,
}

impl<'a> BlockWriter<'a> {
    pub(super) fn new(session: &'a Session) -> Self {
        Self {
            session,
            pending: Vec::new(),
            pending_set: HashSet::new(),
            pending_bytes: 0,
            known_blocks: 0,
            in_flight: Arc::default(),
            syncer: None,
            packs: Vec::new(),
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a sealed block. The caller vouches that `address` is the hash of `sealed`.
    /// Returns whether the block was new.
    pub fn put(&mut self, address: BlockAddress, sealed: &[u8]) -> Result<bool> {
        let parts = self.session.parts();
        // Claim before looking: a GC that has not yet decided will keep it; one that already
        // removed it has removed it from the index too, and it is written again below.
        self.session.claim([address]);
        if self.pending_set.contains(&address)
            || self.in_flight().addresses.contains(&address)
            || parts.index.has_block(&address)?
        {
            self.known_blocks += 1;
            return Ok(false);
        }
        let size = sealed.len() as u64;
        if let Some(limit) = parts.max_storage {
            let used = parts.index.stats()?.bytes;
            let needed = self.pending_bytes + self.in_flight().bytes + size;
            if used + needed > limit {
                return Err(StoreError::QuotaExceeded {
                    needed,
                    used,
                    limit,
                });
            }
        }
        let place = if sealed.len() < PACK_THRESHOLD {
            if self.packs.last().is_none_or(|p| p.full()) {
                self.packs.push(parts.packs.create()?);
            }
            let pack = self.packs.last_mut().ok_or_else(|| {
                StoreError::io("opening a pack in", &parts.dir, io::Error::other("no pack"))
            })?;
            Place::Packed(pack.append(&address, sealed)?)
        } else {
            let tmp = parts.blocks.tmp_path(&address);
            let mut f = File::create(&tmp).map_err(|e| StoreError::io("creating", &tmp, e))?;
            if let Err(e) = f.write_all(sealed) {
                let _ = fs::remove_file(&tmp);
                return Err(StoreError::io("writing", &tmp, e));
            }
            Place::File(tmp)
        };
        self.pending.push(Pending {
            place,
            address,
            size,
        });
        self.pending_set.insert(address);
        self.pending_bytes += size;
        if self.pending_bytes >= BATCH_BYTES {
            self.send_batch()?;
        }
        Ok(true)
    }

    /// Hands the queued blocks to the syncing thread.
    fn send_batch(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        {
            let mut f = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            f.addresses.extend(self.pending_set.drain());
            f.bytes += self.pending_bytes;
        }
        self.pending_bytes = 0;
        let batch = std::mem::take(&mut self.pending);
        if self.syncer.is_none() {
            let (tx, rx) = sync_channel::<Vec<Pending>>(1);
            let parts = self.session.parts();
            let files = Arc::clone(&parts.blocks);
            let index = Arc::clone(&parts.index);
            let in_flight = Arc::clone(&self.in_flight);
            let handle = std::thread::Builder::new()
                .name("storgo-sync".into())
                .spawn(move || sync_batches(rx, &files, &index, &in_flight))
                .map_err(|e| StoreError::io("starting sync thread for", &parts.dir, e))?;
            self.syncer = Some(Syncer { tx, handle });
        }
        let Some(syncer) = &self.syncer else {
            return Ok(());
        };
        if let Err(returned) = syncer.tx.send(batch) {
            // The syncing thread stopped on an error: drop this batch and report that error.
            for p in returned.0 {
                p.discard();
            }
            return self.join_syncer().map(|_| ());
        }
        Ok(())
    }

    fn join_syncer(&mut self) -> Result<WriteStats> {
        match self.syncer.take() {
            None => Ok(WriteStats::default()),
            Some(Syncer { tx, handle }) => {
                drop(tx);
                handle.join().unwrap_or_else(|payload| {
                    // The panic's own words, so a failure seen once (in CI, under load) can be
                    // traced to its cause instead of to "panicked".
                    let why = payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "no message".to_string());
                    Err(StoreError::io(
                        "syncing blocks in",
                        &self.session.parts().dir,
                        io::Error::other(format!("sync thread panicked: {why}")),
                    ))
                })
            }
        }
    }

    /// Starts making the queued blocks durable and visible without waiting for it: a writer
    /// fed from the network calls this every second or so, so that a kill loses at most the
    /// last moments of a transfer, not a whole 64 MiB batch.
    pub fn land(&mut self) -> Result<()> {
        self.send_batch()
    }

    /// Makes every queued block durable and visible, and waits for it.
    pub fn flush(&mut self) -> Result<WriteStats> {
        self.send_batch()?;
        let mut stats = self.join_syncer()?;
        stats.known_blocks = self.known_blocks;
        Ok(stats)
    }

    /// Flushes and returns what the writer did.
    pub fn finish(mut self) -> Result<WriteStats> {
        self.flush()
    }
}

fn sync_batches(
    rx: Receiver<Vec<Pending>>,
    files: &BlockFiles,
    index: &Index,
    in_flight: &Mutex<InFlight>,
) -> Result<WriteStats> {
    let mut stats = WriteStats::default();
    let mut failed = None;
    for batch in rx.iter() {
        if failed.is_some() {
            for p in batch {
                p.discard();
            }
            continue;
        }
        match sync_one(files, index, &batch) {
            Ok(()) => {
                let bytes: u64 = batch.iter().map(|p| p.size).sum();
                stats.new_blocks += batch.len() as u64;
                stats.new_bytes += bytes;
                let mut f = in_flight.lock().unwrap_or_else(|e| e.into_inner());
                for p in &batch {
                    f.addresses.remove(&p.address);
                }
                f.bytes = f.bytes.saturating_sub(bytes);
            }
            Err(e) => {
                for p in batch {
                    p.discard();
                }
                failed = Some(e);
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(stats),
    }
}

/// Sync, rename into place, sync again, then index: the order that makes a kill harmless.
fn sync_one(files: &BlockFiles, index: &Index, batch: &[Pending]) -> Result<()> {
    files.sync_fs()?;
    let mut shards = HashSet::new();
    let mut added = Vec::with_capacity(batch.len());
    for p in batch {
        let at = match &p.place {
            Place::Packed(at) => Some(*at),
            Place::File(tmp) => {
                let dest = files.path_of(&p.address);
                if let Some(shard) = dest.parent() {
                    if shards.insert(shard.to_owned()) {
                        fs::create_dir_all(shard)
                            .map_err(|e| StoreError::io("creating", shard, e))?;
                    }
                }
                fs::rename(tmp, &dest).map_err(|e| StoreError::io("renaming", &dest, e))?;
                None
            }
        };
        added.push((p.address, p.size, at));
    }
    if !shards.is_empty() {
        files.sync_fs()?;
    }
    index.add_placed_blocks(&added)
}

impl Drop for BlockWriter<'_> {
    fn drop(&mut self) {
        for p in self.pending.drain(..) {
            p.discard();
        }
        // Batches already handed over are complete blocks: let them land rather than leave
        // temp files behind. Only then are this writer's packs released (`self.packs` drops
        // after this): GC may rewrite them once every record in them is indexed.
        let _ = self.join_syncer();
    }
}
