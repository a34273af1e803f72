//! Keeping a data dir honest: garbage collection and verification.
//!
//! Both walk items through the public link lists of their manifest blocks
//! ([`manifest::parse_links`]), so they work without keys — the same walk will serve replicas
//! held for other people. This module must not open sealed bodies.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::content::manifest::{self, LinkKind, MAX_MANIFEST_BLOCK};
use crate::content::{BlockAddress, ContentId, MAX_BLOCK_SIZE};

use super::{Result, Store, StoreError};

/// What `gc` removed.
#[derive(Debug, Default, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GcReport {
    pub removed_blocks: u64,
    pub freed_bytes: u64,
    pub kept_blocks: u64,
    /// Blocks nothing pinned reaches that a session in progress holds (an add or a fetch
    /// that has not finished): kept this time.
    #[serde(default)]
    pub kept_for_sessions: u64,
    /// Pinned items whose manifests could not be walked (missing, or not matching their
    /// address): GC cannot tell which blocks they need, so it removed nothing at all.
    #[serde(default)]
    /// (As pairs of strings: `[who or what, why]`.)
    #[schema(value_type = Vec<Vec<String>>)]
    pub unwalkable_items: Vec<(String, String)>,
    /// Packs of small blocks rewritten without their dead records, or removed.
    #[serde(default)]
    pub packs_rewritten: u64,
    /// Bytes of dead records those packs held.
    #[serde(default)]
    pub pack_bytes_freed: u64,
}

/// What `verify` found.
#[derive(Debug, Default, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerifyReport {
    pub checked_blocks: u64,
    pub checked_bytes: u64,
    /// Blocks whose bytes did not match their address; moved to `corrupt/`.
    pub corrupt: Vec<String>,
    /// Blocks the index named but whose file was gone.
    pub missing: Vec<String>,
    /// Complete block files the index did not name yet (left by a kill); now indexed.
    pub adopted: u64,
    /// Held items (pins by content ID, replicas by root) that can no longer be read in full,
    /// and how many blocks they lack.
    pub damaged_items: Vec<ItemLacking>,
    /// Items still arriving (partial pins and replicas) and the blocks still to come. Not
    /// damage.
    #[serde(default)]
    pub incomplete_items: Vec<ItemLacking>,
}

/// An item held here that lacks blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemLacking {
    /// The item: a pin's content ID, or a replica's root block address.
    pub id: String,
    /// Blocks it lacks.
    pub blocks: u64,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.missing.is_empty() && self.damaged_items.is_empty()
    }
}

/// What checking one block found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockCheck {
    /// The block matches its address; its size.
    Good(u64),
    /// It did not: it has been moved to `corrupt/` and dropped from the index.
    SetAside,
    /// It is not held.
    Missing,
}

/// What [`Store::check_item`] found.
#[derive(Debug, Default, Clone)]
pub struct CheckedItem {
    pub checked_blocks: u64,
    pub checked_bytes: u64,
    /// Blocks corrupt (now set aside) or missing.
    pub lacking: Vec<BlockAddress>,
}

/// Blocks removed per sweep step: each step decides under the session registry's lock (so no
/// session can claim a block while GC decides on it), then makes one index commit and its
/// unlinks with the batch marked doomed.
const SWEEP_BATCH: usize = 1024;

/// A holding as GC and verify see it.
struct HoldingRef {
    name: String,
    root: Result<BlockAddress, crate::content::ContentError>,
    partial: bool,
    /// A striped item's map and what of it is held here.
    stripes: Option<super::StripesHeld>,
}

/// Why an item's manifests could not be walked.
struct Unwalkable(String);

/// Ends a GC's record of released claims however the GC ends.
struct GcRunning<'a>(&'a super::session::Registry);

impl Drop for GcRunning<'_> {
    fn drop(&mut self) {
        self.0.gc_ended();
    }
}

impl Store {
    /// Adds every block reachable from `root` through public links to `live`, checking each
    /// manifest against its address. Chunks not held are fine (a partial item); a manifest
    /// that is not held or does not match makes the item unwalkable.
    fn mark(
        &self,
        root: &BlockAddress,
        live: &mut HashSet<BlockAddress>,
    ) -> Result<(), Unwalkable> {
        let mut stack = vec![(*root, LinkKind::Manifest)];
        let mut seen = HashSet::new();
        while let Some((a, kind)) = stack.pop() {
            if !seen.insert(a) {
                continue;
            }
            if kind != LinkKind::Manifest {
                live.insert(a);
                continue;
            }
            let block = self
                .parts
                .read_verified(&a, MAX_MANIFEST_BLOCK)
                .map_err(|e| Unwalkable(format!("manifest {a}: {e}")))?;
            let links = manifest::parse_links(a, &block)
                .map_err(|e| Unwalkable(format!("manifest {a}: {e}")))?;
            live.insert(a);
            stack.extend(links.into_iter().map(|l| (l.address, l.kind)));
        }
        Ok(())
    }

    /// Adds what holding `h` keeps to `live`: everything reachable from its root, and for a
    /// striped item its map and parity (the blocks of other columns a column holder does not
    /// keep are marked too: harmless, as GC only removes what is held).
    fn mark_holding(
        &self,
        h: &HoldingRef,
        live: &mut HashSet<BlockAddress>,
    ) -> Result<(), Unwalkable> {
        let root = h
            .root
            .as_ref()
            .map_err(|e| Unwalkable(format!("holding record: {e}")))?;
        self.mark(root, live)?;
        if let Some(held) = h.stripes {
            let blocks = self
                .holding_blocks(root, Some(held))
                .map_err(|e| Unwalkable(format!("stripe map {}: {e}", held.map())))?;
            live.extend(blocks);
        }
        Ok(())
    }

    /// Every holding (pins, then replicas), named as a person knows it: a pin by its content
    /// ID, a replica by its root address.
    fn holdings(&self) -> Result<Vec<HoldingRef>> {
        let mut out: Vec<HoldingRef> = self
            .parts
            .index
            .pins()?
            .into_iter()
            .map(|p| HoldingRef {
                root: p.id.parse::<ContentId>().map(|id| id.root),
                partial: p.partial,
                stripes: p.stripe_map.map(super::StripesHeld::Coded),
                name: p.id,
            })
            .collect();
        out.extend(
            self.parts
                .index
                .replicas()?
                .into_iter()
                .map(|r| HoldingRef {
                    name: r.root.to_string(),
                    root: Ok(r.root),
                    partial: !r.complete,
                    stripes: r.shard.map(super::StripesHeld::Column),
                }),
        );
        Ok(out)
    }

    /// Every held block reachable from `root` (what GC keeps for it), or why it cannot be
    /// walked.
    pub fn item_blocks(&self, root: &BlockAddress) -> Result<HashSet<BlockAddress>> {
        let mut live = HashSet::new();
        self.mark(root, &mut live)
            .map_err(|Unwalkable(why)| StoreError::Corrupt {
                address: *root,
                path: self.parts.where_is(root),
                reason: why,
            })?;
        let all: Vec<BlockAddress> = live.iter().copied().collect();
        let held = self.parts.index.have_blocks(&all)?;
        Ok(all
            .into_iter()
            .zip(held)
            .filter_map(|(a, h)| h.then_some(a))
            .collect())
    }

    /// Every held block reachable from `root` with its stored size, in address order (what a
    /// proof of holding draws from: weighted by size, a peer that kept only the small blocks
    /// passes no more often than the share of the bytes it kept).
    pub fn item_blocks_sized(&self, root: &BlockAddress) -> Result<Vec<(BlockAddress, u64)>> {
        let mut blocks: Vec<BlockAddress> = self.item_blocks(root)?.into_iter().collect();
        blocks.sort();
        let sizes = self.parts.index.block_sizes(&blocks)?;
        Ok(blocks
            .into_iter()
            .zip(sizes)
            .filter_map(|(a, s)| s.map(|s| (a, s)))
            .collect())
    }

    /// Checks one block against its address (what scrub does, block by block); a corrupt one
    /// is moved aside and unindexed, so that it counts as missing and is fetched again.
    pub fn check_block(&self, a: &BlockAddress) -> Result<BlockCheck> {
        if !self.parts.index.has_block(a)? {
            return Ok(BlockCheck::Missing);
        }
        let at = self.parts.index.packed_at(a)?;
        match self.parts.read_verified(a, MAX_BLOCK_SIZE) {
            Ok(b) => Ok(BlockCheck::Good(b.len() as u64)),
            Err(StoreError::Missing { .. }) => {
                self.parts.index.remove_blocks(&[*a])?;
                Ok(BlockCheck::Missing)
            }
            Err(StoreError::Corrupt { .. }) => {
                // Unindex first: a reader must not be sent to a block being moved away.
                self.parts.index.remove_blocks(&[*a])?;
                match self.parts.quarantine(a, at) {
                    Ok(to) => {
                        tracing::warn!(block = %a, moved = %to.display(), "corrupt block moved aside")
                    }
                    Err(e) => {
                        tracing::warn!(block = %a, error = %e, "corrupt block could not be moved aside")
                    }
                }
                Ok(BlockCheck::SetAside)
            }
            Err(e) => Err(e),
        }
    }

    /// Checks every block of the item rooted at `root` against its address inside `session`
    /// (which claims them), setting corrupt ones aside. `pace` is told each block's size, to
    /// bound the rate. Returns what it checked and the blocks now lacking (corrupt or
    /// missing); the blocks under a lacking manifest are not reached until it is fetched again.
    ///
    /// A column holder (`shard`) checks the item's manifests, the stripe map and its own
    /// column's blocks only.
    pub fn check_item(
        &self,
        session: &super::Session,
        root: &BlockAddress,
        shard: Option<&crate::content::stripe::ShardOf>,
        pace: &mut dyn FnMut(u64),
    ) -> Result<CheckedItem> {
        let mut out = CheckedItem::default();
        let mut seen = HashSet::new();
        let mut stack = vec![(*root, LinkKind::Manifest)];
        // A column holder's own blocks, once its map is checked.
        let mut column: Option<HashSet<BlockAddress>> = None;
        if let Some(s) = shard {
            session.claim([s.map]);
            match self.check_block(&s.map)? {
                BlockCheck::Good(n) => {
                    out.checked_blocks += 1;
                    out.checked_bytes += n;
                    pace(n);
                    let map = self.stripe_map(&s.map, root)?;
                    column = Some(map.column(s.column as usize).map(|(_, a, _)| a).collect());
                }
                BlockCheck::SetAside | BlockCheck::Missing => {
                    out.lacking.push(s.map);
                    return Ok(out);
                }
            }
        }
        while let Some((a, kind)) = stack.pop() {
            if !seen.insert(a) {
                continue;
            }
            if kind != LinkKind::Manifest && column.as_ref().is_some_and(|c| !c.contains(&a)) {
                continue;
            }
            session.claim([a]);
            match self.check_block(&a)? {
                BlockCheck::Good(n) => {
                    out.checked_blocks += 1;
                    out.checked_bytes += n;
                    pace(n);
                }
                BlockCheck::SetAside | BlockCheck::Missing => {
                    out.lacking.push(a);
                    continue;
                }
            }
            if kind == LinkKind::Manifest {
                let block = self.parts.read_block(&a, MAX_MANIFEST_BLOCK)?;
                let links = manifest::parse_links(a, &block).map_err(|e| StoreError::Corrupt {
                    address: a,
                    path: self.parts.where_is(&a),
                    reason: e.to_string(),
                })?;
                stack.extend(links.into_iter().map(|l| (l.address, l.kind)));
            }
        }
        // A parity column's blocks are in no manifest.
        for a in column.into_iter().flatten().filter(|a| !seen.contains(a)) {
            session.claim([a]);
            match self.check_block(&a)? {
                BlockCheck::Good(n) => {
                    out.checked_blocks += 1;
                    out.checked_bytes += n;
                    pace(n);
                }
                BlockCheck::SetAside | BlockCheck::Missing => out.lacking.push(a),
            }
        }
        Ok(out)
    }

    /// Stored bytes of every held block reachable from `root` (what a replica of it costs).
    pub fn item_bytes(&self, root: &BlockAddress) -> Result<u64> {
        let blocks: Vec<BlockAddress> = self.item_blocks(root)?.into_iter().collect();
        Ok(self
            .parts
            .index
            .block_sizes(&blocks)?
            .into_iter()
            .flatten()
            .sum())
    }

    /// Removes every block that no holding reaches and no session claims; see
    /// DESIGN.md, "What keeps a block".
    pub fn gc(&self) -> Result<GcReport> {
        let _one = self.maintenance.lock().unwrap_or_else(|e| e.into_inner());
        let registry = &self.parts.registry;
        registry.gc_started();
        let _running = GcRunning(registry);
        let (index, files) = (&self.parts.index, &self.parts.blocks);
        let mut report = GcReport::default();

        // Mark: everything the holdings reach, from a snapshot of them. A holding committed
        // after this snapshot belongs to a session whose claims protect its blocks until the
        // sweep ends (released claims are kept too: `released_during_gc`).
        let mut live = HashSet::new();
        for h in self.holdings()? {
            if let Err(Unwalkable(why)) = self.mark_holding(&h, &mut live) {
                report.unwalkable_items.push((h.name, why));
            }
        }
        if !report.unwalkable_items.is_empty() {
            for (id, why) in &report.unwalkable_items {
                tracing::warn!(cid = %id, reason = %why, "gc removed nothing: a pinned item cannot be walked (run `storgo verify`, then fetch it again or unpin it)");
            }
            return Ok(report);
        }

        // Candidates: indexed blocks and stray files (left by a kill) that nothing reaches.
        let mut candidates = Vec::new();
        let mut indexed = HashSet::new();
        for (a, _) in index.blocks()? {
            indexed.insert(a);
            if live.contains(&a) {
                report.kept_blocks += 1;
            } else {
                candidates.push(a);
            }
        }
        for (a, _) in files.list()? {
            if !indexed.contains(&a) && !live.contains(&a) {
                candidates.push(a);
            }
        }

        // Sweep: decide under the registry lock, then delete outside it with the batch marked
        // doomed (a claim of a doomed block waits for the delete; nothing else does), index
        // entry first (a crash between the two leaves an unindexed file, collected next time).
        for batch in candidates.chunks(SWEEP_BATCH) {
            let reg = registry.lock();
            let dead: Vec<BlockAddress> =
                batch.iter().filter(|a| !reg.protects(a)).copied().collect();
            report.kept_for_sessions += (batch.len() - dead.len()) as u64;
            let _doomed = registry.doom(reg, &dead);
            report.freed_bytes += index.remove_blocks(&dead)?;
            for a in &dead {
                files.remove(a)?;
            }
            report.removed_blocks += dead.len() as u64;
        }
        report.kept_blocks += report.kept_for_sessions;
        let (rewritten, freed) = self.compact_packs()?;
        report.packs_rewritten = rewritten;
        report.pack_bytes_freed = freed;
        tracing::info!(
            removed = report.removed_blocks,
            bytes = report.freed_bytes,
            kept_for_sessions = report.kept_for_sessions,
            "gc finished"
        );
        Ok(report)
    }

    /// Reclaims the space of packed blocks GC dropped: a pack no live record is in goes, and
    /// one whose live records fill less than three quarters of it is rewritten with only those
    /// (durably, then the index points at the new places, then the old pack goes). Packs a
    /// writer has open are left alone: their records are not indexed yet. Returns the packs
    /// rewritten or removed and the bytes freed.
    fn compact_packs(&self) -> Result<(u64, u64)> {
        let packs = &self.parts.packs;
        // In this order: a pack listed and not open at the snapshot was released by its
        // writer, which indexes every record before it releases the pack, so the rows read
        // next include all of that pack's records.
        let on_disk = packs.list()?;
        let open = packs.open_now();
        let mut live: HashMap<u64, Vec<(BlockAddress, super::rows::PackedAt)>> = HashMap::new();
        for (a, at) in self.parts.index.packed()? {
            live.entry(at.pack).or_default().push((a, at));
        }
        let (mut rewritten, mut freed) = (0u64, 0u64);
        for (pack, size) in on_disk {
            if open.contains(&pack) {
                continue;
            }
            let records = live.remove(&pack).unwrap_or_default();
            let live_bytes: u64 = records.iter().map(|(_, at)| at.record_len()).sum();
            if !records.is_empty() && live_bytes * 4 >= size * 3 {
                continue;
            }
            if !records.is_empty() {
                let mut out = packs.create()?;
                let mut moves = Vec::with_capacity(records.len());
                for (a, at) in records {
                    match packs.read(&a, at, MAX_BLOCK_SIZE) {
                        Ok(bytes) => moves.push((a, at, out.append(&a, &bytes)?)),
                        // Left for verify to report; the old pack stays.
                        Err(StoreError::Corrupt { .. }) => return Ok((rewritten, freed)),
                        Err(e) => return Err(e),
                    }
                }
                self.parts.blocks.sync_fs()?;
                self.parts.index.move_packed(&moves)?;
                drop(out);
            }
            packs.remove(pack)?;
            rewritten += 1;
            freed += size - live_bytes;
        }
        Ok((rewritten, freed))
    }

    /// Re-hashes every block file, moves corrupt ones aside, and checks that every pinned item
    /// is still complete.
    pub fn verify(&self) -> Result<VerifyReport> {
        // Writers go on meanwhile: a block file appears in `blocks/` only whole (renamed from
        // `tmp/`), and the index is read before the files are listed, so a block written
        // during the check is at worst adopted early, never reported missing.
        let _one = self.maintenance.lock().unwrap_or_else(|e| e.into_inner());
        let mut report = VerifyReport::default();
        let indexed: HashMap<BlockAddress, u64> = self.parts.index.blocks()?.into_iter().collect();
        let on_disk = self.parts.blocks.list()?;
        let mut seen = HashSet::new();
        let mut bad = Vec::new();
        let mut adopt = Vec::new();
        for (a, path) in on_disk {
            seen.insert(a);
            let ok = match self.parts.blocks.read(&a, MAX_BLOCK_SIZE) {
                Ok(bytes) => {
                    report.checked_blocks += 1;
                    report.checked_bytes += bytes.len() as u64;
                    if a.matches(&bytes) {
                        if !indexed.contains_key(&a) {
                            adopt.push((a, bytes.len() as u64));
                        }
                        true
                    } else {
                        false
                    }
                }
                Err(StoreError::Corrupt { .. }) => false,
                Err(e) => return Err(e),
            };
            if !ok {
                let moved = self.parts.blocks.quarantine(&a)?;
                tracing::warn!(block = %a, path = %path.display(), moved = %moved.display(), "corrupt block moved aside");
                report.corrupt.push(a.to_string());
                bad.push(a);
            }
        }
        for (a, at) in self.parts.index.packed()? {
            if seen.contains(&a) {
                continue;
            }
            seen.insert(a);
            let ok = match self.parts.packs.read(&a, at, MAX_BLOCK_SIZE) {
                Ok(bytes) => {
                    report.checked_blocks += 1;
                    report.checked_bytes += bytes.len() as u64;
                    a.matches(&bytes)
                }
                Err(StoreError::Corrupt { .. }) => false,
                // Rewritten by a GC meanwhile (verify and gc do not overlap, so only if gone).
                Err(StoreError::Missing { .. }) => {
                    seen.remove(&a);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !ok {
                let moved = self.parts.quarantine(&a, Some(at));
                tracing::warn!(block = %a, pack = at.pack, "corrupt packed block set aside");
                if let Err(e) = moved {
                    tracing::warn!(block = %a, error = %e, "corrupt packed block could not be copied aside");
                }
                report.corrupt.push(a.to_string());
                bad.push(a);
            }
        }
        for a in indexed.keys() {
            if !seen.contains(a) {
                report.missing.push(a.to_string());
                bad.push(*a);
            }
        }
        self.parts.index.remove_blocks(&bad)?;
        report.adopted = adopt.len() as u64;
        self.parts.index.add_blocks(&adopt)?;
        for h in self.holdings()? {
            let walked = match (&h.root, h.stripes) {
                (Ok(root), stripes) => self
                    .holding_blocks(root, stripes)
                    .map_err(|e| Unwalkable(e.to_string())),
                (Err(e), _) => Err(Unwalkable(e.to_string())),
            };
            let lacking = match walked {
                Ok(reached) => {
                    let held = self.parts.index.have_blocks(&reached)?;
                    held.iter().filter(|h| !**h).count() as u64
                }
                // A manifest is gone or bad: at least that block is lacking.
                Err(_) => 1,
            };
            if lacking > 0 {
                if h.partial {
                    report.incomplete_items.push(ItemLacking {
                        id: h.name,
                        blocks: lacking,
                    });
                } else {
                    report.damaged_items.push(ItemLacking {
                        id: h.name,
                        blocks: lacking,
                    });
                }
            }
        }
        Ok(report)
    }
}
