//! Health: what the network holds of one item right now, as `storgo stat ID --health`, the
//! API and the web page show it — who holds what (pins, copies, columns), and for a striped
//! item the shards alive in every stripe, the worst stripe and its margin (how many more
//! shards it can lose and still be read).
//!
//! It asks the item's closest peers (`query`) and decides nothing: placement is
//! `placement`'s and `columns`'.

use std::sync::Arc;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::content::stripe::{Durability, StripeMap};
use crate::content::BlockAddress;
use crate::network::{distance_order, ChunkRequest, ChunkResponse, ReplicateResponse};
use crate::node::{blocking, NodeError};

use super::{held_here, stripes_here, Replicator};

/// One peer holding something of the item.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HolderHealth {
    pub peer: String,
    /// `pin`, `copy`, `column N`, or `every column` (the pinner that coded it).
    pub holds: String,
    /// Everything it keeps of the item is there (not still arriving, not found bad).
    pub whole: bool,
}

/// What the network holds of one item.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemHealth {
    pub root: String,
    /// `replicas:R` or `ec:K+M`, as found: striped when a holder names a stripe map.
    pub durability: String,
    /// Peers holding something of it, closest to it first (this node included).
    pub holders: Vec<HolderHealth>,
    /// Striped: shards alive (held whole by some peer) in each stripe, in stripe order.
    pub stripes_alive: Vec<u8>,
    /// Striped: shards each stripe needs to be read (K, fewer in a short last stripe).
    pub stripes_need: Vec<u8>,
    /// Striped: the stripe with the fewest shards to spare.
    pub worst_stripe: Option<usize>,
    /// How many more holders (copies) or shards (in the worst stripe) can be lost with the
    /// item still readable; negative when it cannot be read now.
    pub margin: i64,
}

impl ItemHealth {
    /// From what each holder said (closest first) and the item's map when it is striped.
    fn of(
        root: &BlockAddress,
        answers: &[(PeerId, ReplicateResponse)],
        map: Option<&StripeMap>,
    ) -> ItemHealth {
        let mut holders = Vec::new();
        let mut columns: Vec<bool> = vec![false; map.map_or(0, |m| m.shape.n())];
        let mut whole_copies = 0i64;
        for (p, answer) in answers {
            let ReplicateResponse::Holding {
                complete,
                pinned,
                stripes,
            } = answer
            else {
                continue;
            };
            let holds = match (stripes, pinned) {
                (Some(s), _) if map.is_some_and(|m| m.shape.n() > 0) => match s.column {
                    Some(c) => {
                        if *complete {
                            if let Some(slot) = columns.get_mut(c as usize) {
                                *slot = true;
                            }
                        }
                        format!("column {c}")
                    }
                    None => {
                        if *complete {
                            columns.iter_mut().for_each(|c| *c = true);
                        }
                        "every column".to_string()
                    }
                },
                (_, true) => "pin".to_string(),
                (_, false) => "copy".to_string(),
            };
            if *complete && stripes.is_none() {
                whole_copies += 1;
            }
            holders.push(HolderHealth {
                peer: p.to_string(),
                holds,
                whole: *complete,
            });
        }
        let Some(map) = map else {
            return ItemHealth {
                root: root.to_string(),
                durability: Durability::Replicas(whole_copies.clamp(0, 255) as u8).to_string(),
                holders,
                stripes_alive: Vec::new(),
                stripes_need: Vec::new(),
                worst_stripe: None,
                margin: whole_copies - 1,
            };
        };
        let k = map.shape.k as usize;
        let mut alive = Vec::with_capacity(map.stripes.len());
        let mut need = Vec::with_capacity(map.stripes.len());
        for s in &map.stripes {
            let k_here = s.data.len();
            let data = (0..k_here).filter(|c| columns[*c]).count();
            let parity = (0..s.parity.len()).filter(|j| columns[k + j]).count();
            // A whole copy holds every data block too.
            let data = if whole_copies > 0 { k_here } else { data };
            alive.push((data + parity) as u8);
            need.push(k_here as u8);
        }
        let worst = (0..alive.len()).min_by_key(|i| alive[*i] as i64 - need[*i] as i64);
        let margin = worst.map_or(0, |i| alive[i] as i64 - need[i] as i64);
        ItemHealth {
            root: root.to_string(),
            durability: Durability::Stripes(map.shape).to_string(),
            holders,
            stripes_alive: alive,
            stripes_need: need,
            worst_stripe: worst,
            margin,
        }
    }
}

impl Replicator {
    /// Asks the peers closest to `root` what they hold of it (see the module docs).
    pub async fn health(&self, root: BlockAddress) -> Result<ItemHealth, NodeError> {
        let me = self.client.peer_id();
        let mut closest = self.client.closest_peers(root).await?;
        closest.truncate(crate::network::DHT_K);
        let mut answers = self.survey_answers(root, &closest).await;
        answers.retain(|(p, _)| *p != me);
        let store = Arc::clone(&self.store);
        let mine = blocking(move || -> Result<_, crate::store::StoreError> {
            Ok(held_here(&store, &root)?.response(stripes_here(&store, &root)?))
        })
        .await??;
        answers.push((me, mine));
        let mut peers: Vec<PeerId> = answers.iter().map(|(p, _)| *p).collect();
        distance_order(&root, &mut peers);
        let ordered: Vec<(PeerId, ReplicateResponse)> = peers
            .iter()
            .filter_map(|p| answers.iter().find(|(q, _)| q == p).cloned())
            .collect();
        let map = self.map_of(root, &ordered).await;
        Ok(ItemHealth::of(&root, &ordered, map.as_ref()))
    }

    /// The item's stripe map, from this node's store or from the first holder naming it.
    async fn map_of(
        &self,
        root: BlockAddress,
        answers: &[(PeerId, ReplicateResponse)],
    ) -> Option<StripeMap> {
        for (p, a) in answers {
            let ReplicateResponse::Holding {
                stripes: Some(s), ..
            } = a
            else {
                continue;
            };
            let (store, address) = (Arc::clone(&self.store), s.map);
            if let Ok(Ok(m)) = blocking(move || store.stripe_map(&address, &root)).await {
                return Some(m);
            }
            let got = self.client.request(*p, ChunkRequest::GetChunk(s.map)).await;
            if let Ok(ChunkResponse::Block(b)) = got {
                if s.map.matches(&b) {
                    if let Ok(m) = crate::store::stripes::decode_map(&s.map, &root, &b) {
                        return Some(m);
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::stripe::{map, DataShard, Shape};
    use crate::network::HeldStripes;

    fn striped() -> StripeMap {
        let shape = Shape::new(4, 2).unwrap();
        let d = |i: u8, len| DataShard {
            address: BlockAddress::from_digest([i; 32]),
            len,
        };
        let p = |i: u8| BlockAddress::from_digest([100 + i; 32]);
        map(
            shape,
            BlockAddress::of(b"root"),
            vec![
                (
                    vec![d(1, 10), d(2, 10), d(3, 10), d(4, 10)],
                    vec![p(1), p(2)],
                ),
                (vec![d(5, 8), d(6, 8)], vec![p(3), p(4)]),
            ],
        )
    }

    fn column(c: Option<u8>, complete: bool) -> ReplicateResponse {
        ReplicateResponse::Holding {
            complete,
            pinned: c.is_none(),
            stripes: Some(HeldStripes {
                map: BlockAddress::of(b"map"),
                column: c,
            }),
        }
    }

    #[test]
    fn the_worst_stripe_and_its_margin_come_from_the_columns_alive() {
        let m = striped();
        let root = m.root;
        // Columns 0, 1, 4 whole, 2 arriving, 3 and 5 gone: stripe 0 has 3 of its 6 shards
        // (needs 4), the short stripe has columns 0, 1 and parity 4: 3 of 4 (needs 2).
        let answers: Vec<(PeerId, ReplicateResponse)> = [
            column(Some(0), true),
            column(Some(1), true),
            column(Some(2), false),
            column(Some(4), true),
        ]
        .into_iter()
        .map(|a| (PeerId::random(), a))
        .collect();
        let h = ItemHealth::of(&root, &answers, Some(&m));
        assert_eq!(h.durability, "ec:4+2");
        assert_eq!(h.stripes_alive, vec![3, 3]);
        assert_eq!(h.stripes_need, vec![4, 2]);
        assert_eq!(
            (h.worst_stripe, h.margin),
            (Some(0), -1),
            "stripe 0 cannot be read"
        );
        assert_eq!(h.holders.len(), 4);
        assert_eq!(h.holders[2].holds, "column 2");
        // The pinner that coded it holds every column.
        let mut with_pinner = answers.clone();
        with_pinner.push((PeerId::random(), column(None, true)));
        let h = ItemHealth::of(&root, &with_pinner, Some(&m));
        assert_eq!(h.stripes_alive, vec![6, 4]);
        assert_eq!(h.margin, 2);
    }

    #[test]
    fn copies_are_counted_with_their_pinner() {
        let root = BlockAddress::of(b"notes");
        let copy = |pinned| ReplicateResponse::Holding {
            complete: true,
            pinned,
            stripes: None,
        };
        let answers = vec![
            (PeerId::random(), copy(true)),
            (PeerId::random(), copy(false)),
            (PeerId::random(), copy(false)),
            (PeerId::random(), ReplicateResponse::NotHeld),
        ];
        let h = ItemHealth::of(&root, &answers, None);
        assert_eq!(h.holders.len(), 3);
        assert_eq!(h.margin, 2, "three whole holders: two can go");
        assert_eq!(h.holders[0].holds, "pin");
    }
}
