//! Sessions: the one thing that protects blocks in flight from garbage collection.
//!
//! The rule (DESIGN.md, "What keeps a block"): GC keeps a block if it is reachable from a
//! *holding* (a pin today; a replica held for someone else later) or if a live [`Session`]
//! has *claimed* it. Every operation that writes blocks, relies on blocks it found already
//! held (dedup, resume), or reads an item that no holding protects, does so inside a session:
//!
//! 1. [`Store::session`] records the session in the index (`sessions` table, durably) before
//!    the first block is touched, so a crash always leaves a trace that the next open cleans.
//! 2. Each block is claimed *before* the session looks at the index for it ([`Session::claim`],
//!    [`Session::claim_present`], and every [`BlockWriter::put`]).
//!    GC decides what to delete under the same registry lock, so a block is either claimed
//!    before GC's decision (and kept) or already gone from the index when the session looks
//!    (and written again): a claim of a block GC has decided on but not yet deleted waits
//!    for that delete, which GC does outside the lock.
//! 3. The session ends by committing a holding ([`Session::commit_pin`]): it walks the item
//!    from its root, claiming every block and checking every manifest against its address,
//!    refuses an incomplete item, and writes the pin and deletes its own row in one
//!    transaction. Dropping a session releases its claims; claims released while a GC runs are
//!    handed to that GC, whose snapshot of the holdings may predate the commit.
//!
//! Claims live in memory: one process owns a data dir (the dir lock), so when the process
//! dies every session dies with it, and its row is removed at the next open. A session's
//! batched block writes are its [`BlockWriter`] ([`writer`]); its row type is
//! [`SessionRecord`] in `rows`. This module must not decide what is reachable from holdings
//! (that is `maintenance`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::content::manifest::{self, LinkKind, MAX_MANIFEST_BLOCK};
use crate::content::BlockAddress;

use super::blocks::BlockFiles;
use super::index::Index;
use super::lock::DirLock;
use super::packs::Packs;
use super::rows::{Holding, PackedAt, PinRecord, ReplicaRecord, SessionKind, SessionRecord};
use super::{Result, StoreError};

pub mod writer;

pub use writer::BlockWriter;

/// Claims of every live session, and GC's view of them.
#[derive(Default)]
pub(crate) struct Registry {
    state: Mutex<RegistryState>,
    /// Signalled when a GC batch's blocks are gone (see [`RegistryState::doomed`]).
    swept: Condvar,
}

#[derive(Default)]
pub(crate) struct RegistryState {
    next_id: u64,
    /// How many live sessions claim each block.
    claimed: HashMap<BlockAddress, u32>,
    /// While a GC runs: blocks whose claims ended during it. Their session may have committed
    /// a holding after GC took its snapshot of the holdings, so this GC keeps them.
    released_during_gc: Option<HashSet<BlockAddress>>,
    /// Blocks GC has decided to delete and is deleting now (index rows, then files), outside
    /// the lock: a claim of one waits until it is gone, so the claimer then finds it absent
    /// and writes it again, as if it had looked after the delete. Nothing else waits for a
    /// sweep, so a session's end or a claim of other blocks never stalls behind GC's disk work.
    doomed: HashSet<BlockAddress>,
    live_sessions: usize,
    /// Sessions ended whose rows are still in the index: removed by the next session's
    /// begin or commit, in its own transaction, so that dropping a session never waits for
    /// the index (it may be dropped on the node's single async thread).
    ended: Vec<u64>,
}

impl RegistryState {
    /// Whether GC must keep `a` whatever its mark phase found.
    pub(crate) fn protects(&self, a: &BlockAddress) -> bool {
        self.claimed.contains_key(a)
            || self
                .released_during_gc
                .as_ref()
                .is_some_and(|s| s.contains(a))
    }
}

impl Registry {
    pub(crate) fn lock(&self) -> MutexGuard<'_, RegistryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts recording released claims for a GC; see [`RegistryState::released_during_gc`].
    /// Marks `dead` (chosen under this same lock, none claimed) as being deleted; see
    /// [`RegistryState::doomed`]. The returned guard ends the mark and wakes waiting claims.
    pub(crate) fn doom<'a>(
        &'a self,
        mut reg: MutexGuard<'_, RegistryState>,
        dead: &'a [BlockAddress],
    ) -> Doomed<'a> {
        reg.doomed.extend(dead.iter().copied());
        Doomed {
            registry: self,
            dead,
        }
    }

    pub(crate) fn gc_started(&self) {
        self.lock().released_during_gc = Some(HashSet::new());
    }

    pub(crate) fn gc_ended(&self) {
        self.lock().released_during_gc = None;
    }

    pub(crate) fn live_sessions(&self) -> usize {
        self.lock().live_sessions
    }

    /// Takes the ended sessions whose rows are still to be removed.
    pub(crate) fn take_ended(&self) -> Vec<u64> {
        std::mem::take(&mut self.lock().ended)
    }

    /// Gives back ended sessions a failed transaction did not remove.
    pub(crate) fn return_ended(&self, ids: Vec<u64>) {
        self.lock().ended.extend(ids);
    }
}

/// Blocks a GC batch is deleting; dropping it (after the delete, or on its error) lets claims
/// of them go on.
pub(crate) struct Doomed<'a> {
    registry: &'a Registry,
    dead: &'a [BlockAddress],
}

impl Drop for Doomed<'_> {
    fn drop(&mut self) {
        let mut reg = self.registry.lock();
        for a in self.dead {
            reg.doomed.remove(a);
        }
        drop(reg);
        self.registry.swept.notify_all();
    }
}

/// The store's parts a session works with; cheap to clone, so a session can outlive the
/// borrow it was made from (a fetch runs as its own task).
#[derive(Clone)]
pub(crate) struct Parts {
    pub dir: PathBuf,
    pub blocks: Arc<BlockFiles>,
    pub packs: Arc<Packs>,
    pub index: Arc<Index>,
    pub registry: Arc<Registry>,
    pub max_storage: Option<u64>,
    /// Keeps the data dir locked while a session lives, even if the `Store` is dropped first.
    pub _lock: Arc<DirLock>,
}

impl Parts {
    /// A block's stored bytes (at most `limit`), from its own file or from its pack.
    pub fn read_block(&self, a: &BlockAddress, limit: usize) -> Result<Vec<u8>> {
        match self.blocks.read(a, limit) {
            Err(StoreError::Missing { .. }) => {}
            other => return other,
        }
        // A pack rewritten between the lookup and the read is gone: look again, once.
        for _ in 0..2 {
            let Some(at) = self.index.packed_at(a)? else {
                break;
            };
            match self.packs.read(a, at, limit) {
                Err(StoreError::Missing { .. }) => continue,
                other => return other,
            }
        }
        Err(StoreError::Missing { address: *a })
    }

    /// [`read_block`](Self::read_block), checked against the address.
    pub fn read_verified(&self, a: &BlockAddress, limit: usize) -> Result<Vec<u8>> {
        let bytes = self.read_block(a, limit)?;
        if !a.matches(&bytes) {
            return Err(StoreError::Corrupt {
                address: *a,
                path: self.where_is(a),
                reason: "bytes do not hash to the block's address".into(),
            });
        }
        Ok(bytes)
    }

    /// Keeps a bad block's bytes out of the way for inspection: its file is moved to
    /// `corrupt/`, a packed one is copied there (`at`: where the index said it lay, read
    /// before its row was removed). The caller unindexes it.
    pub fn quarantine(&self, a: &BlockAddress, at: Option<PackedAt>) -> Result<PathBuf> {
        let Some(at) = at else {
            return self.blocks.quarantine(a);
        };
        let dir = self.dir.join("corrupt");
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("creating", &dir, e))?;
        let to = dir.join(a.to_hex());
        let bytes = self.packs.read(a, at, crate::content::MAX_BLOCK_SIZE)?;
        std::fs::write(&to, bytes).map_err(|e| StoreError::io("writing", &to, e))?;
        Ok(to)
    }

    /// Where a block is kept, for messages: its file, or the packs folder.
    pub fn where_is(&self, a: &BlockAddress) -> PathBuf {
        match self.index.packed_at(a) {
            Ok(Some(_)) => self.dir.join("packs"),
            _ => self.blocks.path_of(a),
        }
    }
}

/// A lease on blocks in flight; see the module docs. Ends (releasing its claims) when dropped.
pub struct Session {
    id: u64,
    parts: Parts,
    mine: Mutex<HashSet<BlockAddress>>,
}

impl Session {
    pub(crate) fn begin(parts: Parts, kind: SessionKind, label: &str) -> Result<Session> {
        let id = {
            let mut reg = parts.registry.lock();
            reg.next_id += 1;
            reg.live_sessions += 1;
            reg.next_id
        };
        let record = SessionRecord {
            kind,
            label: label.to_owned(),
            started: now_secs(),
        };
        let session = Session {
            id,
            parts,
            mine: Mutex::new(HashSet::new()),
        };
        // On failure the drop undoes the registry count.
        let ended = session.parts.registry.take_ended();
        if let Err(e) = session.parts.index.put_session(id, &record, &ended) {
            session.parts.registry.return_ended(ended);
            return Err(e);
        }
        tracing::debug!(session = id, kind = ?kind, label, "session started");
        Ok(session)
    }

    pub(crate) fn parts(&self) -> &Parts {
        &self.parts
    }

    /// Claims blocks: from now until this session ends, GC keeps them if they are held.
    /// A block GC is deleting at this moment is claimed once it is gone (so the caller, which
    /// looks at the index next, finds it absent and writes it again).
    pub fn claim(&self, addresses: impl IntoIterator<Item = BlockAddress>) {
        let addresses: Vec<BlockAddress> = addresses.into_iter().collect();
        let mut mine = self.mine.lock().unwrap_or_else(|e| e.into_inner());
        let registry = &self.parts.registry;
        let mut reg = registry.lock();
        while !reg.doomed.is_empty() && addresses.iter().any(|a| reg.doomed.contains(a)) {
            reg = registry.swept.wait(reg).unwrap_or_else(|e| e.into_inner());
        }
        for a in addresses {
            if mine.insert(a) {
                *reg.claimed.entry(a).or_default() += 1;
            }
        }
    }

    /// Claims `addresses` and says which of them are held: the safe form of "which of these
    /// do I already have" for a session that will rely on the answer.
    pub fn claim_present(&self, addresses: &[BlockAddress]) -> Result<Vec<bool>> {
        self.claim(addresses.iter().copied());
        self.parts.index.have_blocks(addresses)
    }

    /// Reads a manifest block under a claim, checked against its address.
    pub fn read_manifest(&self, address: &BlockAddress) -> Result<Vec<u8>> {
        self.claim([*address]);
        if !self.parts.index.has_block(address)? {
            return Err(StoreError::Missing { address: *address });
        }
        self.parts.read_verified(address, MAX_MANIFEST_BLOCK)
    }

    /// Starts a batch of block writes whose blocks this session claims.
    pub fn writer(&self) -> BlockWriter<'_> {
        BlockWriter::new(self)
    }

    /// Claims every block reachable from `root` through public links, checking each manifest
    /// against its address. Returns the blocks not held (empty: the item is whole here).
    pub fn claim_item(&self, root: &BlockAddress) -> Result<Vec<BlockAddress>> {
        let mut seen = HashSet::new();
        let mut missing = Vec::new();
        let mut stack = vec![(*root, LinkKind::Manifest)];
        while let Some((a, kind)) = stack.pop() {
            if !seen.insert(a) {
                continue;
            }
            if kind == LinkKind::Manifest {
                match self.read_manifest(&a) {
                    Ok(block) => {
                        let links =
                            manifest::parse_links(a, &block).map_err(|e| StoreError::Corrupt {
                                address: a,
                                path: self.parts.where_is(&a),
                                reason: e.to_string(),
                            })?;
                        stack.extend(links.into_iter().map(|l| (l.address, l.kind)));
                    }
                    Err(StoreError::Missing { .. }) => missing.push(a),
                    Err(e) => return Err(e),
                }
            } else if !self.claim_present(&[a])?[0] {
                missing.push(a);
            }
        }
        Ok(missing)
    }

    /// Commits a holding (a pin, or a replica held for the network). A whole one ends the
    /// session: every block it reaches is claimed and must be held (an incomplete item is
    /// refused, never reported as held), then the holding is written and this session's row
    /// removed in one transaction. A partial one (an item still arriving) is written as it is,
    /// so that what has arrived survives a restart and the transfer resumes.
    pub fn commit(&self, holding: &Holding) -> Result<()> {
        let root = holding.root().map_err(|e| StoreError::Index {
            path: self.parts.dir.join("index.redb"),
            message: format!("holding: {e}"),
        })?;
        let ending = if holding.is_partial() {
            None
        } else {
            let missing = match holding {
                Holding::Replica(ReplicaRecord {
                    shard: Some(shard), ..
                }) => self.claim_column(&root, shard)?,
                Holding::Pin(PinRecord {
                    stripe_map: Some(map),
                    ..
                }) => {
                    self.claim_parity(&root, map)?;
                    self.claim_item(&root)?
                }
                _ => self.claim_item(&root)?,
            };
            if !missing.is_empty() {
                return Err(StoreError::Incomplete {
                    root,
                    missing: missing.len() as u64,
                });
            }
            Some(self.id)
        };
        let mut ended = self.parts.registry.take_ended();
        ended.extend(ending);
        self.parts
            .index
            .put_holding(holding, &ended)
            .inspect_err(|_| {
                ended.retain(|id| Some(*id) != ending);
                self.parts.registry.return_ended(ended);
            })
    }

    /// Ends the session by pinning the item: [`commit`](Self::commit) of a pin.
    pub fn commit_pin(&self, record: &PinRecord) -> Result<()> {
        self.commit(&Holding::Pin(record.clone()))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let mine = std::mem::take(self.mine.get_mut().unwrap_or_else(|e| e.into_inner()));
        {
            let mut reg = self.parts.registry.lock();
            reg.live_sessions = reg.live_sessions.saturating_sub(1);
            for a in mine {
                if let Some(n) = reg.claimed.get_mut(&a) {
                    *n -= 1;
                    if *n == 0 {
                        reg.claimed.remove(&a);
                    }
                }
                if let Some(late) = reg.released_during_gc.as_mut() {
                    late.insert(a);
                }
            }
            // A row left by a crash before this is removed is removed at the next open.
            reg.ended.push(self.id);
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
