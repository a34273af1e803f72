//! Writing a fetch's output while its chunks arrive (`fetch -o`, and `cat`/`get` through a
//! node of an item not yet held).
//!
//! The pull stores every chunk as today and also hands it here ([`Arrivals`]); a reading
//! thread writes the item in order through [`files::read`](crate::files::read), taking each
//! chunk from memory when it is here, from the store when it was held already, and waiting
//! otherwise. Memory is bounded by a byte budget: a chunk that arrives while the budget is
//! spent (the output fell behind, or an earlier chunk is late) is not kept in memory, and is
//! read back from the store when its turn comes — so a slow disk or a stuck chunk never makes
//! memory grow with the item, and never stalls the transfer.
//!
//! This module must not decide what is fetched or from whom: it only consumes what the pull
//! delivers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::content::{BlockAddress, MAX_BLOCK_SIZE};
use crate::files::{ChunkSource, FilesError};
use crate::store::{Store, StoreError};

/// Sealed chunks kept in memory for the reader, at most (≈ 8 average chunks: enough to
/// absorb the reordering of a few providers' windows; a node's peak RSS stays under 64 MiB).
pub(crate) const OUTPUT_BUDGET: usize = 8 << 20;

/// Chunks delivered by a pull and not yet written out; see the module docs.
pub(crate) struct Arrivals {
    store: Arc<Store>,
    budget: usize,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Verified sealed chunks waiting for the reader.
    held: HashMap<BlockAddress, Vec<u8>>,
    held_bytes: usize,
    /// Chunks this pull put into the store without keeping them here (over budget, or
    /// already read once): the reader finds them in the store once their batch lands.
    stored: HashSet<BlockAddress>,
    /// The reader waits for a stored chunk whose batch has not landed yet.
    flush_wanted: bool,
    /// How the pull ended: every chunk is in the store (`Ok`), or it never will be.
    end: Option<Result<(), String>>,
}

impl Arrivals {
    pub(crate) fn new(store: Arc<Store>, budget: usize) -> Self {
        Self {
            store,
            budget,
            state: Mutex::default(),
            changed: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A verified chunk the pull has just put into the store.
    pub(crate) fn arrived(&self, address: BlockAddress, sealed: Vec<u8>) {
        let mut s = self.state();
        if s.held.contains_key(&address) || s.held_bytes + sealed.len() > self.budget {
            s.stored.insert(address);
        } else {
            s.held_bytes += sealed.len();
            s.held.insert(address, sealed);
        }
        drop(s);
        self.changed.notify_all();
    }

    /// Whether the reader waits for a chunk that is only in the writer's unflushed batch;
    /// clears the request.
    pub(crate) fn take_flush_request(&self) -> bool {
        std::mem::take(&mut self.state().flush_wanted)
    }

    /// The writer made every chunk put so far visible in the store.
    pub(crate) fn flushed(&self) {
        self.changed.notify_all();
    }

    /// The pull is over: `Ok` once every chunk is visible in the store.
    pub(crate) fn end(&self, outcome: Result<(), String>) {
        let mut s = self.state();
        if s.end.is_none() {
            s.end = Some(outcome);
        }
        drop(s);
        self.changed.notify_all();
    }

    fn ended_without(&self, address: &BlockAddress, why: &str) -> FilesError {
        FilesError::Corrupt {
            what: format!("chunk {address}"),
            reason: format!("the fetch ended without it: {why}"),
        }
    }
}

impl ChunkSource for Arrivals {
    fn sealed_chunk(&self, address: &BlockAddress) -> crate::files::Result<Vec<u8>> {
        loop {
            {
                let mut s = self.state();
                if let Some(b) = s.held.remove(address) {
                    s.held_bytes -= b.len();
                    // An item may use a chunk again: the next read finds it in the store.
                    s.stored.insert(*address);
                    return Ok(b);
                }
                if let Some(Err(why)) = &s.end {
                    return Err(self.ended_without(address, why));
                }
            }
            // Held before this fetch began, or stored by it and landed.
            match self.store.read_block(address, MAX_BLOCK_SIZE) {
                Ok(b) => return Ok(b),
                Err(StoreError::Missing { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let mut s = self.state();
            if s.held.contains_key(address) {
                continue;
            }
            match &s.end {
                // Every chunk landed before `end(Ok)`: a miss now is real.
                Some(Ok(())) => return Ok(self.store.read_block(address, MAX_BLOCK_SIZE)?),
                Some(Err(why)) => return Err(self.ended_without(address, why)),
                None => {}
            }
            if s.stored.contains(address) {
                s.flush_wanted = true;
            }
            // The timeout only guards against a wakeup lost between the store read and here.
            let _ = self
                .changed
                .wait_timeout(s, Duration::from_millis(200))
                .map_err(|e| e.into_inner());
        }
    }
}

/// Ends an [`Arrivals`] as failed if the pull is abandoned before it says how it ended, so
/// the reader never waits for chunks that will not come.
pub(crate) struct EndOnDrop(pub Arc<Arrivals>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end(Err("the fetch stopped".into()));
    }
}
