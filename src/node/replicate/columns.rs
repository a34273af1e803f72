//! Columns: where a striped item's K + M columns go, and who hands them out.
//!
//! Column c is shard c of every stripe (`stripes-v1.md`); each goes to its own peer, so a peer
//! never holds two shards of one stripe (one replica row per root). At first placement the
//! missing columns go to the closest peers that hold nothing of the item, in column order.
//! After that a column stays with its holder — *sticky* — because re-ranking on every round
//! would move every column each time a closer peer joined. A column whose holder is gone is
//! missing at the next round and goes to the closest free peer, which brings its blocks in
//! from the pinner, or rebuilds them from any K other columns when the pinner is gone too
//! (`fetch::stripes`). The repair threshold is K + M: every missing column is placed again at
//! the next round (DESIGN.md, "Erasure coding").
//!
//! One peer pushes: the closest that holds the item's map whole (the pinner that coded it, or
//! a column holder). The pure [`ColumnPlan`] decides from a survey, so its rules are tested
//! here. It must not take columns in (that is `intake`'s) nor drop one.

use std::sync::Arc;

use libp2p::PeerId;

use crate::content::stripe::{Durability, ShardOf};
use crate::content::BlockAddress;
use crate::network::{distance_order, ReplicateRequest, ReplicateResponse};
use crate::node::{blocking, now_secs, NodeError};
use crate::store::StripesHeld;

use super::{held_here, stripes_here, ItemRepair, Replicator};

/// Who holds which column of one striped item, and who should act, from a survey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ColumnPlan {
    /// Each column's holder (the closest that claims it) and whether it holds it whole.
    pub holders: Vec<Option<(PeerId, bool)>>,
    /// The one peer that pushes missing columns and renews nothing: the closest holding the
    /// map whole (coder or column holder).
    pub pusher: Option<PeerId>,
    /// Peers holding nothing of the item, closest first: where missing columns go.
    pub free: Vec<PeerId>,
}

impl ColumnPlan {
    pub fn of(
        root: &BlockAddress,
        map: BlockAddress,
        n: usize,
        known: &[(PeerId, ReplicateResponse)],
    ) -> ColumnPlan {
        let mut peers: Vec<PeerId> = known.iter().map(|(p, _)| *p).collect();
        distance_order(root, &mut peers);
        peers.dedup();
        let mut plan = ColumnPlan {
            holders: vec![None; n],
            pusher: None,
            free: Vec::new(),
        };
        for p in peers {
            let Some((_, answer)) = known.iter().find(|(q, _)| *q == p) else {
                continue;
            };
            match answer {
                ReplicateResponse::Holding {
                    complete,
                    stripes: Some(s),
                    ..
                } if s.map == map => {
                    if *complete && plan.pusher.is_none() {
                        plan.pusher = Some(p);
                    }
                    if let Some(c) = s.column.map(usize::from).filter(|c| *c < n) {
                        if plan.holders[c].is_none() {
                            plan.holders[c] = Some((p, *complete));
                        }
                    }
                }
                ReplicateResponse::NotHeld => plan.free.push(p),
                // A whole copy, another map's column, a refusal: it takes no column.
                _ => {}
            }
        }
        plan
    }

    /// Columns nobody holds or is bringing in.
    pub fn missing(&self) -> Vec<usize> {
        (0..self.holders.len())
            .filter(|c| self.holders[*c].is_none())
            .collect()
    }

    /// Columns held whole.
    pub fn whole(&self) -> usize {
        self.holders
            .iter()
            .filter(|h| h.is_some_and(|(_, whole)| whole))
            .count()
    }
}

impl Replicator {
    /// Places the columns of the striped `root` (this node holds its map: `held`) given the
    /// live peers closest to it; see the module docs.
    pub(super) async fn place_columns(
        &self,
        root: BlockAddress,
        held: StripesHeld,
        closest: Vec<PeerId>,
    ) -> Result<ItemRepair, NodeError> {
        let me = self.client.peer_id();
        let store = Arc::clone(&self.store);
        let lease_secs = self.cfg.replica_lease.as_secs();
        let (map, mine, overhead, grant) =
            blocking(move || -> Result<_, crate::store::StoreError> {
                let map = store.stripe_map(&held.map(), &root)?;
                let h = held_here(&store, &root)?;
                let answer = h.response(stripes_here(&store, &root)?);
                // What every column holder keeps besides its column: the manifests and the map.
                let manifests = store.item_links(&root)?.manifests;
                let sizes = store.block_sizes(&manifests)?;
                let overhead: u64 =
                    sizes.into_iter().flatten().sum::<u64>() + map.encode().len() as u64;
                let grant = if h.pinned() {
                    Some(now_secs() + lease_secs)
                } else {
                    store.replica_of(&root)?.and_then(|r| r.lease_until)
                };
                Ok((map, answer, overhead, grant))
            })
            .await??;
        let n = map.shape.n();
        let mut known = self
            .survey_answers(root, &closest[..closest.len().min(n + 8)])
            .await;
        known.retain(|(p, _)| *p != me);
        let pinned = matches!(mine, ReplicateResponse::Holding { pinned: true, .. });
        known.push((me, mine));
        let plan = ColumnPlan::of(&root, held.map(), n, &known);
        let mut report = ItemRepair {
            root: root.to_string(),
            replication: n as u8,
            durability: Durability::Stripes(map.shape).to_string(),
            whole_before: plan.whole(),
            ..ItemRepair::default()
        };
        let column_bytes = |c: usize| -> u64 {
            overhead + map.column(c).map(|(_, _, len)| len as u64).sum::<u64>()
        };
        let ask = |c: usize| ReplicateRequest::Hold {
            root,
            replication: n as u8,
            bytes: column_bytes(c),
            lease_until: grant,
            shard: Some(ShardOf {
                map: held.map(),
                column: c as u8,
            }),
        };
        let mut placed = n - plan.missing().len();
        if plan.pusher == Some(me) {
            let mut free = plan.free.iter().filter(|p| **p != me);
            for c in plan.missing() {
                for p in free.by_ref() {
                    match self.ask_to_hold(root, *p, &ask(c)).await {
                        super::placement::Asked::Accepted => {
                            report.pushed.push(p.to_string());
                            placed += 1;
                            break;
                        }
                        super::placement::Asked::Refused { why, .. } => {
                            report.refused.push((p.to_string(), why))
                        }
                        super::placement::Asked::Failed => {}
                    }
                }
            }
        }
        if pinned {
            // The pinner renews every column's lease: a `Hold` to its holder is a renewal.
            for (c, h) in plan.holders.iter().enumerate() {
                if let Some((p, true)) = h {
                    if *p != me {
                        if let Err(e) = self.client.replicate(*p, ask(c)).await {
                            tracing::debug!(peer = %p, cid = %root, column = c, error = %e, "column lease renewal failed");
                        }
                    }
                }
            }
        }
        report.under_replicated = placed < n;
        tracing::debug!(cid = %root, whole = report.whole_before, placed, n, "columns placed");
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::HeldStripes;

    fn by_distance(root: &BlockAddress, n: usize) -> Vec<PeerId> {
        let mut v: Vec<PeerId> = (0..n).map(|_| PeerId::random()).collect();
        distance_order(root, &mut v);
        v
    }

    fn holding(
        map: BlockAddress,
        column: Option<u8>,
        complete: bool,
        pinned: bool,
    ) -> ReplicateResponse {
        ReplicateResponse::Holding {
            complete,
            pinned,
            stripes: Some(HeldStripes { map, column }),
        }
    }

    #[test]
    fn columns_stay_with_their_holders_and_missing_ones_go_to_the_closest_free_peers() {
        let root = BlockAddress::of(b"course");
        let map = BlockAddress::of(b"map");
        let p = by_distance(&root, 8);
        // p5 pinned and coded it; p1 holds column 2, p6 column 0 (placed when it was closer),
        // p3 is still bringing column 1 in; p0, p2, p4 hold nothing; p7 holds another map's
        // column.
        let known = vec![
            (p[0], ReplicateResponse::NotHeld),
            (p[1], holding(map, Some(2), true, false)),
            (p[2], ReplicateResponse::NotHeld),
            (p[3], holding(map, Some(1), false, false)),
            (p[4], ReplicateResponse::NotHeld),
            (p[5], holding(map, None, true, true)),
            (p[6], holding(map, Some(0), true, false)),
            (
                p[7],
                holding(BlockAddress::of(b"other"), Some(3), true, false),
            ),
        ];
        let plan = ColumnPlan::of(&root, map, 6, &known);
        assert_eq!(
            plan.holders[0],
            Some((p[6], true)),
            "sticky, though farther"
        );
        assert_eq!(
            plan.holders[1],
            Some((p[3], false)),
            "arriving counts as placed"
        );
        assert_eq!(plan.holders[2], Some((p[1], true)));
        assert_eq!(plan.missing(), vec![3, 4, 5]);
        assert_eq!(plan.free, vec![p[0], p[2], p[4]], "closest first");
        assert_eq!(plan.whole(), 2);
        assert_eq!(
            plan.pusher,
            Some(p[1]),
            "the closest whole holder of the map pushes, pinner or not"
        );
    }

    #[test]
    fn two_claims_on_one_column_count_once_and_nobody_pushes_without_the_map() {
        let root = BlockAddress::of(b"notes");
        let map = BlockAddress::of(b"map");
        let p = by_distance(&root, 3);
        let known = vec![
            (p[0], holding(map, Some(0), false, false)),
            (p[1], holding(map, Some(0), true, false)),
            (p[2], holding(map, Some(9), true, false)),
        ];
        let plan = ColumnPlan::of(&root, map, 4, &known);
        assert_eq!(plan.holders[0], Some((p[0], false)), "the closest claim");
        assert_eq!(
            plan.missing(),
            vec![1, 2, 3],
            "column 9 is outside 4 columns"
        );
        assert_eq!(plan.pusher, Some(p[1]));
        let none = ColumnPlan::of(&root, BlockAddress::of(b"another"), 4, &known);
        assert_eq!(none.pusher, None);
        assert!(none.free.is_empty());
    }
}
