//! Striped items in the store (`protocols/stripes-v1.md`): coding a pinned item into stripes
//! — its parity blocks and stripe map, kept with the pin — and the blocks each kind of holding
//! of a striped item needs: the coder every column, a column holder the item's manifests, the
//! map and its own column.
//!
//! Like the rest of the store it sees sealed blocks and public links only, never a key; it
//! must not reach the network (bringing a column in is `node::replicate`'s).

use std::collections::HashSet;

use crate::content::manifest::{self, LinkKind, MAX_MANIFEST_BLOCK};
use crate::content::stripe::{self, Shape, ShardOf, StripeMap, MAX_MAP_BLOCK};
use crate::content::{BlockAddress, MAX_BLOCK_SIZE};

use super::{Result, Session, SessionKind, Store, StoreError};

/// What a holding of a striped item keeps besides a whole item's blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StripesHeld {
    /// The pinner that coded it: every data block, the map and every parity block.
    Coded(BlockAddress),
    /// One column: the manifests, the map and that column's blocks (data or parity).
    Column(ShardOf),
}

impl StripesHeld {
    pub fn map(&self) -> BlockAddress {
        match self {
            StripesHeld::Coded(m) => *m,
            StripesHeld::Column(s) => s.map,
        }
    }
}

/// An item's blocks split by what they are.
#[derive(Debug, Default)]
pub(crate) struct ItemLinks {
    pub manifests: Vec<BlockAddress>,
    /// Chunk blocks, each once, in the order the walk met them.
    pub chunks: Vec<BlockAddress>,
}

/// A map that names another item, or does not list exactly the item's chunks in the
/// canonical stripes, is refused: a holder keeps only what belongs to the item it was asked
/// for.
fn map_error(map: &BlockAddress, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        address: *map,
        path: std::path::PathBuf::from("(stripe map)"),
        reason: reason.into(),
    }
}

/// Decodes stripe map bytes (already checked against `address`) and checks that it belongs
/// to `root`.
pub fn decode_map(address: &BlockAddress, root: &BlockAddress, bytes: &[u8]) -> Result<StripeMap> {
    let map = StripeMap::decode(bytes).map_err(|e| map_error(address, e.to_string()))?;
    if map.root != *root {
        return Err(map_error(
            address,
            format!("it is the stripe map of {}, not of {root}", map.root),
        ));
    }
    Ok(map)
}

/// Whether `map` stripes exactly `chunks` (address, sealed length), in the canonical order.
pub fn map_covers(map: &StripeMap, chunks: &[(BlockAddress, u32)]) -> bool {
    let Ok(planned) = stripe::plan(map.shape, chunks) else {
        return false;
    };
    planned.len() == map.stripes.len()
        && planned
            .iter()
            .zip(&map.stripes)
            .all(|(p, s)| *p == s.data && s.parity.len() == map.shape.m as usize)
}

impl Store {
    /// Walks `root`'s manifests (each checked against its address) and lists its manifest
    /// and chunk blocks.
    pub(crate) fn item_links(&self, root: &BlockAddress) -> Result<ItemLinks> {
        let mut out = ItemLinks::default();
        let mut stack = vec![(*root, LinkKind::Manifest)];
        let mut seen = HashSet::new();
        while let Some((a, kind)) = stack.pop() {
            if !seen.insert(a) {
                continue;
            }
            if kind != LinkKind::Manifest {
                out.chunks.push(a);
                continue;
            }
            let block = self.parts.read_verified(&a, MAX_MANIFEST_BLOCK)?;
            let links = manifest::parse_links(a, &block).map_err(|e| StoreError::Corrupt {
                address: a,
                path: self.parts.where_is(&a),
                reason: e.to_string(),
            })?;
            out.manifests.push(a);
            stack.extend(links.into_iter().map(|l| (l.address, l.kind)));
        }
        Ok(out)
    }

    /// Reads the stripe map block `address` of `root` (checked against its address and its
    /// item).
    pub fn stripe_map(&self, address: &BlockAddress, root: &BlockAddress) -> Result<StripeMap> {
        let bytes = self.parts.read_verified(address, MAX_MAP_BLOCK)?;
        decode_map(address, root, &bytes)
    }

    /// Codes the pinned, whole item `root` into stripes of `shape`: computes every stripe's
    /// parity from the sealed chunk blocks, stores the parity and the stripe map, and records
    /// the map on the pin. Returns the map, or `None` when the item is kept as copies instead
    /// (one chunk, or a map over [`MAX_MAP_BLOCK`]) or was unpinned meanwhile. Coding the
    /// same item twice makes the same blocks (the stripes follow one rule), so a crash
    /// between the writes and the pin's update costs only the work.
    pub fn code_stripes(&self, root: &BlockAddress, shape: Shape) -> Result<Option<StripeMap>> {
        let session = self.session(SessionKind::Pin, &format!("stripes of {root}"))?;
        let missing = session.claim_item(root)?;
        if !missing.is_empty() {
            return Err(StoreError::Incomplete {
                root: *root,
                missing: missing.len() as u64,
            });
        }
        let links = self.item_links(root)?;
        if links.chunks.len() <= 1 {
            return Ok(None);
        }
        let sizes = self.parts.index.block_sizes(&links.chunks)?;
        let mut chunks = Vec::with_capacity(links.chunks.len());
        for (a, size) in links.chunks.iter().zip(sizes) {
            let size = size.ok_or(StoreError::Missing { address: *a })?;
            chunks.push((*a, size as u32));
        }
        let planned = stripe::plan(shape, &chunks).map_err(|e| map_error(root, e.to_string()))?;
        // The map's size is known before any parity is made: header, and per stripe its
        // count, length and K + M addresses.
        let map_len = 44 + planned.len() * (5 + shape.n() * 36);
        if map_len > MAX_MAP_BLOCK {
            return Ok(None);
        }
        let mut w = session.writer();
        let mut stripes = Vec::with_capacity(planned.len());
        for data in planned {
            let mut bytes = Vec::with_capacity(data.len());
            for d in &data {
                bytes.push(self.parts.read_block(&d.address, MAX_BLOCK_SIZE)?);
            }
            let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
            let parity =
                stripe::parity(shape, &data, &refs).map_err(|e| map_error(root, e.to_string()))?;
            let mut addresses = Vec::with_capacity(parity.len());
            for p in &parity {
                let a = BlockAddress::of(p);
                w.put(a, p)?;
                addresses.push(a);
            }
            stripes.push((data, addresses));
        }
        let map = stripe::map(shape, *root, stripes);
        let encoded = map.encode();
        let address = map.address();
        w.put(address, &encoded)?;
        w.finish()?;
        if !self.parts.index.set_stripe_map(root, address)? {
            return Ok(None);
        }
        tracing::info!(cid = %root, map = %address, stripes = map.stripes.len(), shape = %shape, "coded into stripes");
        Ok(Some(map))
    }

    /// Every block a holding of `root` keeps, or why they cannot be listed (a manifest or the
    /// map lacking or bad): the whole item's, plus the map and the parity for a coder; the
    /// manifests, the map and one column for a column holder.
    pub(crate) fn holding_blocks(
        &self,
        root: &BlockAddress,
        stripes: Option<StripesHeld>,
    ) -> Result<Vec<BlockAddress>> {
        let links = self.item_links(root)?;
        let Some(held) = stripes else {
            let mut all = links.manifests;
            all.extend(links.chunks);
            return Ok(all);
        };
        let map = self.stripe_map(&held.map(), root)?;
        let mut all = links.manifests;
        all.push(held.map());
        match held {
            StripesHeld::Coded(_) => {
                all.extend(links.chunks);
                all.extend(map.stripes.iter().flat_map(|s| s.parity.iter().copied()));
            }
            StripesHeld::Column(s) => all.extend(map.column(s.column as usize).map(|(_, a, _)| a)),
        }
        Ok(all)
    }
}

impl Session {
    /// Claims every block a column holder of `root` keeps (its manifests, the map, its
    /// column) and returns those not held: empty when the column is whole here.
    pub fn claim_column(&self, root: &BlockAddress, shard: &ShardOf) -> Result<Vec<BlockAddress>> {
        let mut missing = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![*root];
        while let Some(a) = stack.pop() {
            if !seen.insert(a) {
                continue;
            }
            match self.read_manifest(&a) {
                Ok(block) => {
                    let links =
                        manifest::parse_links(a, &block).map_err(|e| StoreError::Corrupt {
                            address: a,
                            path: self.parts().where_is(&a),
                            reason: e.to_string(),
                        })?;
                    stack.extend(
                        links
                            .into_iter()
                            .filter(|l| l.kind == LinkKind::Manifest)
                            .map(|l| l.address),
                    );
                }
                Err(StoreError::Missing { .. }) => missing.push(a),
                Err(e) => return Err(e),
            }
        }
        if !self.claim_present(&[shard.map])?[0] {
            missing.push(shard.map);
            return Ok(missing);
        }
        let bytes = self.parts().read_verified(&shard.map, MAX_MAP_BLOCK)?;
        let map = decode_map(&shard.map, root, &bytes)?;
        let column: Vec<BlockAddress> = map
            .column(shard.column as usize)
            .map(|(_, a, _)| a)
            .collect();
        let held = self.claim_present(&column)?;
        missing.extend(
            column
                .into_iter()
                .zip(held)
                .filter(|(_, h)| !h)
                .map(|(a, _)| a),
        );
        Ok(missing)
    }

    /// Claims the stripe map `map` and every parity block it names (a coder's pin keeps
    /// them): those held are kept from GC from now on.
    pub fn claim_parity(&self, root: &BlockAddress, map: &BlockAddress) -> Result<()> {
        if !self.claim_present(&[*map])?[0] {
            return Ok(());
        }
        let bytes = self.parts().read_verified(map, MAX_MAP_BLOCK)?;
        let m = decode_map(map, root, &bytes)?;
        self.claim(m.stripes.iter().flat_map(|s| s.parity.iter().copied()));
        Ok(())
    }
}
