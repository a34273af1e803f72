//! Degraded reads: pulling the blocks of a striped item when some of them have no live
//! holder, by fetching other shards of their stripe and rebuilding them (`stripes-v1.md`).
//!
//! A pull learns from each provider what it holds of the item ([`Serves`]): everything (the
//! pinner that coded it), the data blocks (a whole copy), or one column. A block that no live
//! provider serves — its column's holder gone, or dropped for lying — is *orphaned*: its
//! stripe enters the [`Decoder`], which gathers any K of the stripe's shards in memory (the
//! blocks the pull brings anyway, those already stored, and helper shards fetched only for
//! this), rebuilds the missing ones and checks each against its address. At most
//! [`MAX_DECODING`] stripes are gathered at once, so memory stays bounded whatever the
//! item's size.
//!
//! This module decides what to rebuild from what; it must not talk to peers itself (the
//! pull's workers fetch) nor decide placement.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::content::stripe::{self, StripeError, StripeMap};
use crate::content::BlockAddress;

/// Stripes gathered for a rebuild at once: a stripe is at most K + M blocks of at most 4 MiB
/// (64 MiB at 10+6 with 1 MiB chunks). Two kept the workers idle while each stripe waited for
/// its slowest helper (a degraded fetch at 0.2 of a healthy one); four keep them busy.
pub(crate) const MAX_DECODING: usize = 4;

/// A striped item's map, indexed by block.
pub(crate) struct StripeCtx {
    pub map: StripeMap,
    /// The map's own block address.
    pub address: BlockAddress,
    /// Each shard's stripe and column.
    at: HashMap<BlockAddress, (usize, usize)>,
}

impl StripeCtx {
    pub fn new(map: StripeMap, address: BlockAddress) -> Self {
        let mut at = HashMap::new();
        for (i, s) in map.stripes.iter().enumerate() {
            for (c, d) in s.data.iter().enumerate() {
                at.insert(d.address, (i, c));
            }
            for (j, p) in s.parity.iter().enumerate() {
                at.insert(*p, (i, s.data.len() + j));
            }
        }
        Self { map, address, at }
    }

    /// The stripe and stripe-local column (data first, then parity: what `stripe::rebuild`
    /// takes; a short last stripe's parity starts at its own data count) of a shard.
    pub fn locate(&self, a: &BlockAddress) -> Option<(usize, usize)> {
        self.at.get(a).copied()
    }

    /// Every shard of stripe `s`: stripe-local column, address and length.
    pub fn shards(&self, s: usize) -> Vec<(usize, BlockAddress, u32)> {
        let Some(stripe) = self.map.stripes.get(s) else {
            return Vec::new();
        };
        let k = stripe.data.len();
        let data = stripe
            .data
            .iter()
            .enumerate()
            .map(|(c, d)| (c, d.address, d.len));
        let parity = stripe
            .parity
            .iter()
            .enumerate()
            .map(|(j, p)| (k + j, *p, stripe.shard_len));
        data.chain(parity).collect()
    }

    /// Whether the map lists exactly `chunks` as its data blocks.
    pub fn covers(&self, chunks: &HashSet<BlockAddress>) -> bool {
        let data: HashSet<BlockAddress> = self
            .map
            .stripes
            .iter()
            .flat_map(|s| s.data.iter().map(|d| d.address))
            .collect();
        data == *chunks
    }
}

/// What a provider serves of a striped item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Serves {
    /// Every data and parity block (the pinner that coded it).
    All,
    /// The data blocks (a whole copy, or a peer that did not say).
    Data,
    /// One column.
    Column(u8),
}

impl Serves {
    /// Whether this provider should hold `a`; without a map every block counts as data.
    pub fn covers(&self, ctx: Option<&StripeCtx>, a: &BlockAddress) -> bool {
        let Some(ctx) = ctx else {
            return true;
        };
        match (self, ctx.locate(a)) {
            (Serves::All, _) => true,
            (Serves::Data, Some((i, c))) => c < ctx.map.stripes[i].data.len(),
            (Serves::Data, None) => true,
            (Serves::Column(x), Some((i, c))) => global_column(ctx, i, c) == *x as usize,
            (Serves::Column(_), None) => false,
        }
    }
}

/// A stripe-local column as the holders number them: parity columns count from K even in a
/// short last stripe.
fn global_column(ctx: &StripeCtx, stripe: usize, local: usize) -> usize {
    let k_here = ctx.map.stripes[stripe].data.len();
    if local < k_here {
        local
    } else {
        ctx.map.shape.k as usize + (local - k_here)
    }
}

/// One stripe being gathered for a rebuild.
struct Gathering {
    /// Columns to rebuild (the orphans this pull wants).
    targets: HashSet<usize>,
    /// Shards in hand, by stripe-local column.
    have: HashMap<usize, Vec<u8>>,
}

/// Stripes gathered for a rebuild (at most [`MAX_DECODING`]).
pub(crate) struct Decoder {
    ctx: Arc<StripeCtx>,
    gathering: HashMap<usize, Gathering>,
}

impl Decoder {
    pub fn new(ctx: Arc<StripeCtx>) -> Self {
        Self {
            ctx,
            gathering: HashMap::new(),
        }
    }

    /// Starts gathering stripe `s` to rebuild `targets` (stripe-local columns); `stored` gives
    /// the shards already in the store. Returns the rebuilt blocks at once when those are
    /// enough.
    pub fn start(
        &mut self,
        s: usize,
        targets: HashSet<usize>,
        stored: impl Fn(&BlockAddress) -> Option<Vec<u8>>,
    ) -> Result<Vec<(BlockAddress, Vec<u8>)>, StripeError> {
        // A stripe gathered already gains targets (a provider of one of its blocks left).
        let mut g = self.gathering.remove(&s).unwrap_or(Gathering {
            targets: HashSet::new(),
            have: HashMap::new(),
        });
        g.targets.extend(targets);
        g.have.retain(|c, _| !g.targets.contains(c));
        for (c, a, _) in self.ctx.shards(s) {
            if !g.targets.contains(&c) && !g.have.contains_key(&c) {
                if let Some(b) = stored(&a) {
                    g.have.insert(c, b);
                }
            }
        }
        self.gathering.insert(s, g);
        self.try_rebuild(s)
    }

    /// Whether stripe `s` is being gathered.
    #[cfg(test)]
    pub fn gathering(&self, s: usize) -> bool {
        self.gathering.contains_key(&s)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.gathering.len()
    }

    /// A verified block arrived: kept when its stripe is being gathered. Returns the rebuilt
    /// blocks once the stripe has K shards.
    pub fn offer(
        &mut self,
        a: &BlockAddress,
        bytes: &[u8],
    ) -> Result<Vec<(BlockAddress, Vec<u8>)>, StripeError> {
        let Some((s, c)) = self.ctx.locate(a) else {
            return Ok(Vec::new());
        };
        let Some(g) = self.gathering.get_mut(&s) else {
            return Ok(Vec::new());
        };
        if g.targets.contains(&c) {
            return Ok(Vec::new());
        }
        g.have.entry(c).or_insert_with(|| bytes.to_vec());
        self.try_rebuild(s)
    }

    fn try_rebuild(&mut self, s: usize) -> Result<Vec<(BlockAddress, Vec<u8>)>, StripeError> {
        let k = self.ctx.map.stripes[s].data.len();
        let enough = self.gathering.get(&s).is_some_and(|g| g.have.len() >= k);
        if !enough {
            return Ok(Vec::new());
        }
        let Some(g) = self.gathering.remove(&s) else {
            return Ok(Vec::new());
        };
        let have: Vec<(usize, &[u8])> = g
            .have
            .iter()
            .take(k)
            .map(|(c, b)| (*c, b.as_slice()))
            .collect();
        let rebuilt = stripe::rebuild(&self.ctx.map, s, &have)?;
        let shards = self.ctx.shards(s);
        Ok(rebuilt
            .into_iter()
            .filter(|(c, _)| g.targets.contains(c))
            .filter_map(|(c, b)| {
                shards
                    .iter()
                    .find(|(x, _, _)| *x == c)
                    .map(|(_, a, _)| (*a, b))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::stripe::{map, parity, plan, Shape};

    fn item(n: usize, shape: Shape) -> (StripeMap, HashMap<BlockAddress, Vec<u8>>) {
        let blocks: Vec<Vec<u8>> = (0..n)
            .map(|i| (0..(100 + i * 7)).map(|j| (i * 31 + j) as u8).collect())
            .collect();
        let listed: Vec<(BlockAddress, u32)> = blocks
            .iter()
            .map(|b| (BlockAddress::of(b), b.len() as u32))
            .collect();
        let mut all: HashMap<BlockAddress, Vec<u8>> = blocks
            .iter()
            .map(|b| (BlockAddress::of(b), b.clone()))
            .collect();
        let mut stripes = Vec::new();
        for data in plan(shape, &listed).unwrap() {
            let refs: Vec<&[u8]> = data.iter().map(|d| all[&d.address].as_slice()).collect();
            let p = parity(shape, &data, &refs).unwrap();
            let addrs: Vec<BlockAddress> = p.iter().map(|b| BlockAddress::of(b)).collect();
            for (a, b) in addrs.iter().zip(p) {
                all.insert(*a, b);
            }
            stripes.push((data, addrs));
        }
        (map(shape, BlockAddress::of(b"root"), stripes), all)
    }

    #[test]
    fn an_orphaned_block_is_rebuilt_from_any_k_shards_in_hand_or_stored() {
        let shape = Shape::new(4, 2).unwrap();
        let (m, all) = item(10, shape);
        let ctx = Arc::new(StripeCtx::new(m, BlockAddress::of(b"map")));
        let mut d = Decoder::new(Arc::clone(&ctx));
        let shards = ctx.shards(0);
        // Columns 0 and 1 are lost; column 2 is stored already.
        let stored = shards[2].1;
        let out = d
            .start(0, [0, 1].into_iter().collect(), |a| {
                (*a == stored).then(|| all[a].clone())
            })
            .unwrap();
        assert!(out.is_empty() && d.gathering(0));
        assert!(d
            .offer(&shards[3].1, &all[&shards[3].1])
            .unwrap()
            .is_empty());
        assert!(d
            .offer(&shards[5].1, &all[&shards[5].1])
            .unwrap()
            .is_empty());
        let rebuilt = d.offer(&shards[4].1, &all[&shards[4].1]).unwrap();
        assert_eq!(rebuilt.len(), 2);
        for (a, b) in rebuilt {
            assert_eq!(all[&a], b);
        }
        assert!(!d.gathering(0), "a rebuilt stripe lets its shards go");
        // Blocks of stripes not being gathered are not kept.
        assert!(d
            .offer(&shards[3].1, &all[&shards[3].1])
            .unwrap()
            .is_empty());
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn each_provider_is_asked_only_for_what_it_serves() {
        let shape = Shape::new(4, 2).unwrap();
        let (m, _) = item(6, shape);
        let ctx = StripeCtx::new(m, BlockAddress::of(b"map"));
        // The short last stripe (2 data blocks): its first parity block is column 4.
        let last = ctx.shards(1);
        assert_eq!(last.len(), 4);
        let parity0 = last[2].1;
        assert!(Serves::Column(4).covers(Some(&ctx), &parity0));
        assert!(!Serves::Column(2).covers(Some(&ctx), &parity0));
        assert!(!Serves::Data.covers(Some(&ctx), &parity0));
        assert!(Serves::All.covers(Some(&ctx), &parity0));
        assert!(Serves::Data.covers(Some(&ctx), &last[0].1));
        assert!(Serves::Column(0).covers(Some(&ctx), &last[0].1));
    }
}
