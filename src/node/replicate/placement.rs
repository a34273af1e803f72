//! Placement: where an item's copies go, and the repair of one item. A survey asks the
//! closest peers what they hold; the pure `Plan::of` decides from it which peers take the R
//! slots and which one pushes, and the pure `fill_slots` which peers are asked in turn when
//! some refuse (their rules are unit-tested below); the pusher sends `Hold`s, a
//! pinner renews the copies' leases, and a holder beyond R closer whole holders hands its
//! replica off, but only once each of those has proven its copy by serving a block drawn at
//! random by bytes. Leases that passed with no pinner renewing them are let go here too.
//!
//! It must not take replicas in (that is `intake`'s, answering the `Hold`s sent from here),
//! nor drop a replica before R closer copies are proven.
//!
//! Past 600 lines on purpose: a third of the file is the unit tests of the plan and of slot
//! filling, which stay beside the rules they pin down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::PeerId;

use crate::content::stripe::Durability;
use crate::content::BlockAddress;
use crate::network::{
    distance_order, ChunkRequest, ChunkResponse, RefuseReason, ReplicateRequest, ReplicateResponse,
};
use crate::node::{blocking, now_secs, NodeError, Offence};
use crate::store::StripesHeld;

use super::{held_here, Held, ItemRepair, Replicator};

/// How a peer answered a `Hold`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Asked {
    Accepted,
    /// Refused, with the reason as the report shows it; a busy peer is asked again.
    Refused {
        busy: bool,
        why: String,
    },
    /// No answer, or one that makes no sense for a `Hold`.
    Failed,
}

/// Who does what for one item in a repair round, decided from what each peer said it holds
/// (this node included): a pure function of the survey, so its rules are tested beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    /// Every surveyed peer with what it holds, closest to the item first.
    order: Vec<(PeerId, Held)>,
    /// Peers that may take a replica slot (they do not pin the item), closest first; the
    /// first R of them are the slots.
    candidates: Vec<PeerId>,
    /// Whole copies among the R slots before this round.
    whole_before: usize,
    /// The one peer that pushes copies: the closest whole holder, pinner or not.
    pusher: Option<PeerId>,
    /// Slots closer than this node that claim a whole copy (a handoff proves them first).
    closer_claims: Vec<PeerId>,
}

impl Plan {
    fn of(root: &BlockAddress, r: usize, me: PeerId, known: &[(PeerId, Held)]) -> Plan {
        let mut peers: Vec<PeerId> = known.iter().map(|(p, _)| *p).collect();
        distance_order(root, &mut peers);
        peers.dedup();
        let held_by = |p: &PeerId| {
            known
                .iter()
                .find(|(q, _)| q == p)
                .map(|(_, h)| *h)
                .unwrap_or(Held::No)
        };
        let order: Vec<(PeerId, Held)> = peers.iter().map(|p| (*p, held_by(p))).collect();
        let candidates: Vec<PeerId> = order
            .iter()
            .filter(|(_, h)| !h.pinned())
            .map(|(p, _)| *p)
            .collect();
        let whole_before = candidates
            .iter()
            .take(r)
            .filter(|p| held_by(p).whole())
            .count();
        let pusher = order.iter().find(|(_, h)| h.whole()).map(|(p, _)| *p);
        let closer_claims = candidates
            .iter()
            .take_while(|p| **p != me)
            .filter(|p| held_by(p).whole())
            .copied()
            .collect();
        Plan {
            order,
            candidates,
            whole_before,
            pusher,
            closer_claims,
        }
    }

    fn held(&self, p: &PeerId) -> Held {
        self.order
            .iter()
            .find(|(q, _)| q == p)
            .map(|(_, h)| *h)
            .unwrap_or(Held::No)
    }
}

impl Replicator {
    /// Asks `peers` what they hold of `root`, at most eight at a time; unreachable peers
    /// are left out.
    async fn survey(&self, root: BlockAddress, peers: &[PeerId]) -> Vec<(PeerId, Held)> {
        self.survey_answers(root, peers)
            .await
            .into_iter()
            .filter_map(|(p, r)| Held::from_response(&r).map(|h| (p, h)))
            .collect()
    }

    /// Every answer of `peers` to a `Query` for `root`, at most eight asked at a time.
    pub(super) async fn survey_answers(
        &self,
        root: BlockAddress,
        peers: &[PeerId],
    ) -> Vec<(PeerId, ReplicateResponse)> {
        let asks: Vec<_> = peers
            .iter()
            .copied()
            .map(|p| {
                let c = self.client.clone();
                async move {
                    let r = tokio::time::timeout(
                        Duration::from_secs(10),
                        c.replicate(p, ReplicateRequest::Query { root }),
                    )
                    .await;
                    match r {
                        Ok(Ok(resp)) => Some((p, resp)),
                        _ => None,
                    }
                }
            })
            .collect();
        futures::stream::iter(asks)
            .buffered(8)
            .filter_map(|x| async move { x })
            .collect()
            .await
    }

    /// Places `root` on the peers closest to it (found with a DHT walk), as copies or as
    /// columns; see the module docs. Notes whether it is left short (see
    /// `Replicator::under_replicated`).
    pub async fn repair_item(
        &self,
        root: BlockAddress,
        durability: Durability,
    ) -> Result<ItemRepair, NodeError> {
        let placed = async {
            let closest = self.client.closest_peers(root).await?;
            self.place(root, durability, closest).await
        }
        .await;
        let short = placed
            .as_ref()
            .map_or(true, |i| i.under_replicated && !i.handed_off);
        let kept = placed
            .as_ref()
            .ok()
            .and_then(|i| i.durability.parse().ok())
            .unwrap_or(durability);
        self.note_placement(root, kept, short);
        placed
    }

    /// Places `root` given the live peers closest to it, closest first: by its stripe map
    /// when this node holds one (it coded the item, or holds a column), after coding it when
    /// this node pins it whole and it is to be kept as `ec:K+M`, else as copies.
    pub(super) async fn place(
        &self,
        root: BlockAddress,
        durability: Durability,
        closest: Vec<PeerId>,
    ) -> Result<ItemRepair, NodeError> {
        let store = Arc::clone(&self.store);
        let (pin, replica) = blocking(move || -> Result<_, crate::store::StoreError> {
            Ok((store.pin_of(&root)?, store.replica_of(&root)?))
        })
        .await??;
        let held = match (&pin, &replica) {
            (Some(p), _) if p.stripe_map.is_some() && !p.partial => {
                p.stripe_map.map(StripesHeld::Coded)
            }
            (_, Some(r)) if r.complete => r.shard.map(StripesHeld::Column),
            _ => None,
        };
        if let Some(held) = held {
            return self.place_columns(root, held, closest).await;
        }
        match durability {
            Durability::Stripes(shape) if pin.as_ref().is_some_and(|p| !p.partial) => {
                let store = Arc::clone(&self.store);
                match blocking(move || store.code_stripes(&root, shape)).await?? {
                    Some(map) => {
                        self.place_columns(root, StripesHeld::Coded(map.address()), closest)
                            .await
                    }
                    // One chunk (or a map too large to keep): M + 1 copies.
                    None => {
                        let copies = durability.for_chunks(1).holders() as u8;
                        self.place_copies(root, copies, closest).await
                    }
                }
            }
            d => self.place_copies(root, d.holders() as u8, closest).await,
        }
    }

    /// Places `root` as `replication` whole copies.
    pub(super) async fn place_copies(
        &self,
        root: BlockAddress,
        replication: u8,
        closest: Vec<PeerId>,
    ) -> Result<ItemRepair, NodeError> {
        let r = replication.max(1) as usize;
        let me = self.client.peer_id();
        let store = Arc::clone(&self.store);
        let lease_secs = self.cfg.replica_lease.as_secs();
        // The lease this node passes on: a pinner grants a full one; a holder its own.
        let (mine, grant) = blocking(move || -> Result<_, crate::store::StoreError> {
            let h = held_here(&store, &root)?;
            let grant = if h.pinned() {
                Some(now_secs() + lease_secs)
            } else {
                store.replica_of(&root)?.and_then(|r| r.lease_until)
            };
            Ok((h, grant))
        })
        .await??;
        let mut known = self
            .survey(root, &closest[..closest.len().min(r + 8)])
            .await;
        known.push((me, mine));
        let plan = Plan::of(&root, r, me, &known);
        let held = |p: &PeerId| plan.held(p);
        let candidates = &plan.candidates;
        let mut report = ItemRepair {
            root: root.to_string(),
            replication,
            durability: Durability::Replicas(replication).to_string(),
            whole_before: plan.whole_before,
            ..ItemRepair::default()
        };
        let pusher = plan.pusher;
        let bytes = if pusher == Some(me) || mine.pinned() {
            let store = Arc::clone(&self.store);
            blocking(move || store.item_bytes(&root)).await??
        } else {
            0
        };
        if pusher == Some(me) {
            let targets: Vec<(PeerId, Held)> = candidates.iter().map(|p| (*p, held(p))).collect();
            let ask = ReplicateRequest::Hold {
                root,
                replication,
                bytes,
                lease_until: grant,
                shard: None,
            };
            let filled = self.push_copies(root, &ask, &targets, r, &mut report).await;
            report.under_replicated = filled < r;
        } else {
            let filled = candidates
                .iter()
                .take(r)
                .filter(|p| held(p).whole())
                .count();
            report.under_replicated = filled < r;
        }
        if mine.pinned() {
            // A pinner renews the copies' leases: a `Hold` to a holder is a renewal.
            let holders: Vec<PeerId> = candidates
                .iter()
                .take(r)
                .filter(|p| held(p).whole() && **p != me)
                .copied()
                .collect();
            for p in holders {
                let renew = ReplicateRequest::Hold {
                    root,
                    replication,
                    bytes,
                    lease_until: grant,
                    shard: None,
                };
                if let Err(e) = self.client.replicate(p, renew).await {
                    tracing::debug!(peer = %p, cid = %root, error = %e, "lease renewal failed");
                }
            }
        }
        // Handoff: a replica beyond R closer whole holders is no longer needed here. A holder
        // counts as whole only once it has served a block picked at random from the item:
        // R peers answering "whole" without the data would otherwise make every honest
        // farther holder drop its copy.
        if mine == (Held::Whole { pinned: false }) {
            let claimed = plan.closer_claims.clone();
            let closer_whole = if claimed.len() >= r {
                self.proven_holders(root, &claimed, r).await?
            } else {
                claimed.len()
            };
            tracing::debug!(
                cid = %root,
                closer_whole,
                asked = closest.len().min(r + 8),
                answered = known.len() - 1,
                "replica placement seen by a holder"
            );
            if closer_whole >= r {
                let store = Arc::clone(&self.store);
                blocking(move || store.drop_replica(&root)).await??;
                self.client.stop_providing(root).await?;
                report.handed_off = true;
                tracing::info!(cid = %root, "replica handed off to closer peers");
            }
        }
        Ok(report)
    }

    /// Sends `ask` (a `Hold`) to `targets` in order until `r` of them hold the item whole or
    /// have accepted it (see [`fill_slots`]), noting every answer in `report`. Returns the
    /// count.
    async fn push_copies(
        &self,
        root: BlockAddress,
        ask: &ReplicateRequest,
        targets: &[(PeerId, Held)],
        r: usize,
        report: &mut ItemRepair,
    ) -> usize {
        let (filled, answers) =
            fill_slots(targets, r, move |p| self.ask_to_hold(root, p, ask)).await;
        for (p, answer) in answers {
            match answer {
                Asked::Accepted => report.pushed.push(p.to_string()),
                Asked::Refused { why, .. } => report.refused.push((p.to_string(), why)),
                Asked::Failed => {}
            }
        }
        filled
    }

    pub(super) async fn ask_to_hold(
        &self,
        root: BlockAddress,
        p: PeerId,
        ask: &ReplicateRequest,
    ) -> Asked {
        tracing::debug!(cid = %root, peer = %p, "asking to hold");
        match self.client.replicate(p, ask.clone()).await {
            Ok(ReplicateResponse::Accepted) => Asked::Accepted,
            Ok(ReplicateResponse::Refused { reason, message }) => {
                tracing::info!(peer = %p, cid = %root, ?reason, message, "replica refused");
                Asked::Refused {
                    busy: reason == RefuseReason::Busy,
                    why: format!("{reason:?}: {message}"),
                }
            }
            Ok(other) => {
                tracing::debug!(peer = %p, response = ?other, "unexpected answer to hold");
                Asked::Failed
            }
            Err(e) => {
                tracing::debug!(peer = %p, error = %e, "hold request failed");
                Asked::Failed
            }
        }
    }

    /// How many of `claimed` (peers that said they hold `root` whole) prove it, checking until
    /// `enough` have: each is asked for one block of the item picked at random from this
    /// node's own whole copy, and the answer is checked against its address. A peer that
    /// sends other bytes, or says it does not have the block, is booked.
    async fn proven_holders(
        &self,
        root: BlockAddress,
        claimed: &[PeerId],
        enough: usize,
    ) -> Result<usize, NodeError> {
        let store = Arc::clone(&self.store);
        let blocks = blocking(move || store.item_blocks_sized(&root)).await??;
        let total: u64 = blocks.iter().map(|(_, s)| *s).sum();
        if total == 0 {
            return Ok(0);
        }
        let mut proven = 0;
        for peer in claimed {
            if proven >= enough {
                break;
            }
            let Some(pick) = block_at_byte(&blocks, rand::random::<u64>() % total) else {
                break;
            };
            let answer = tokio::time::timeout(
                Duration::from_secs(30),
                self.client.request(*peer, ChunkRequest::GetChunk(pick)),
            )
            .await;
            match answer {
                Ok(Ok(ChunkResponse::Block(b))) if pick.matches(&b) => proven += 1,
                Ok(Ok(ChunkResponse::Block(_))) => {
                    tracing::warn!(peer = %peer, cid = %root, block = %pick, "a peer claiming a whole replica sent wrong bytes");
                    self.client.report(*peer, Offence::BadBlock).await;
                }
                Ok(Ok(ChunkResponse::NotFound)) => {
                    tracing::info!(peer = %peer, cid = %root, block = %pick, "a peer claiming a whole replica does not have one of its blocks");
                    self.client.report(*peer, Offence::ClaimedButMissing).await;
                }
                Ok(Ok(other)) => {
                    tracing::debug!(peer = %peer, cid = %root, answer = ?other, "no proof of a whole replica");
                }
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, cid = %root, error = %e, "no proof of a whole replica");
                }
                Err(_) => {
                    tracing::debug!(peer = %peer, cid = %root, "no proof of a whole replica: no answer in time");
                }
            }
        }
        Ok(proven)
    }

    /// Waits until `replication` peers that do not pin `root` hold it whole, or `timeout`
    /// passes; `progress` is told each count as it changes. Returns the peers that do.
    pub async fn wait_for_replicas(
        &self,
        root: BlockAddress,
        replication: u8,
        timeout: Duration,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<Vec<PeerId>, NodeError> {
        let deadline = Instant::now() + timeout;
        let mut last = usize::MAX;
        let mut poll = tokio::time::interval(Duration::from_millis(200));
        loop {
            poll.tick().await;
            let closest = self.client.closest_peers(root).await?;
            let held = self
                .survey(
                    root,
                    &closest[..closest.len().min(replication as usize + 8)],
                )
                .await;
            let whole: Vec<PeerId> = held
                .iter()
                .filter(|(_, h)| *h == Held::Whole { pinned: false })
                .map(|(p, _)| *p)
                .collect();
            if whole.len() != last {
                last = whole.len();
                progress(last);
            }
            if whole.len() >= replication as usize || Instant::now() >= deadline {
                return Ok(whole);
            }
        }
    }

    /// Lets go of replicas whose lease has passed (nobody pinning the item renewed it) and
    /// gives rows from before leases a lease from now. Returns how many were let go.
    pub(super) async fn expire_leases(&self) -> Result<usize, NodeError> {
        let store = Arc::clone(&self.store);
        let lease = self.cfg.replica_lease.as_secs();
        let expired = blocking(
            move || -> Result<Vec<BlockAddress>, crate::store::StoreError> {
                let now = now_secs();
                let mut gone = Vec::new();
                for r in store.replicas()? {
                    match r.lease_until {
                        None => {
                            store.renew_replica(&r.root, now + lease)?;
                        }
                        Some(until) if until < now => {
                            store.drop_replica(&r.root)?;
                            gone.push(r.root);
                        }
                        Some(_) => {}
                    }
                }
                Ok(gone)
            },
        )
        .await??;
        for root in &expired {
            // Still provided while a pin of it is here.
            let (store, at) = (Arc::clone(&self.store), *root);
            let pinned = blocking(move || store.pin_of(&at))
                .await
                .ok()
                .and_then(|r| r.ok())
                .flatten()
                .is_some();
            if !pinned {
                self.client.stop_providing(*root).await?;
            }
            tracing::info!(cid = %root, "replica let go: its lease passed with no pinner renewing it");
        }
        Ok(expired.len())
    }
}

/// The block that holds byte `at` of the blocks laid end to end: a pick weighted by size, so
/// the small manifest blocks a lying holder might keep are rarely what it is asked for.
fn block_at_byte(blocks: &[(BlockAddress, u64)], mut at: u64) -> Option<BlockAddress> {
    for (a, size) in blocks {
        if at < *size {
            return Some(*a);
        }
        at -= size;
    }
    None
}

/// Which peers are asked to hold a copy: `targets` in order (closest first) until `r` of them
/// hold it whole or have accepted. A whole holder fills its slot without being asked; a
/// partial holder is asked too (it answers "accepted" while its intake runs, and restarts one
/// that is stuck); a refusal moves on to the next peer; a peer that refuses as busy is asked
/// again after a pause (twice at most, 1 s then 2 s) when the others did not make up the
/// count. Returns the count and every answer, in the order asked.
async fn fill_slots<F, Fut>(
    targets: &[(PeerId, Held)],
    r: usize,
    mut ask: F,
) -> (usize, Vec<(PeerId, Asked)>)
where
    F: FnMut(PeerId) -> Fut,
    Fut: std::future::Future<Output = Asked>,
{
    let mut filled = 0;
    let mut answers = Vec::new();
    let mut busy = Vec::new();
    let mut note = |p: PeerId, a: Asked, filled: &mut usize, busy: &mut Vec<PeerId>| {
        match &a {
            Asked::Accepted => *filled += 1,
            Asked::Refused { busy: true, .. } => busy.push(p),
            Asked::Refused { .. } | Asked::Failed => {}
        }
        answers.push((p, a));
    };
    for (p, h) in targets {
        if filled == r {
            break;
        }
        if h.whole() {
            filled += 1;
            continue;
        }
        let a = ask(*p).await;
        note(*p, a, &mut filled, &mut busy);
    }
    for pause in [Duration::from_secs(1), Duration::from_secs(2)] {
        if filled >= r || busy.is_empty() {
            break;
        }
        tokio::time::sleep(pause).await;
        for p in std::mem::take(&mut busy) {
            if filled == r {
                break;
            }
            let a = ask(p).await;
            note(p, a, &mut filled, &mut busy);
        }
    }
    (filled, answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` peers in the order of their distance to `root`, closest first.
    fn peers_by_distance(root: &BlockAddress, n: usize) -> Vec<PeerId> {
        let mut v: Vec<PeerId> = (0..n).map(|_| PeerId::random()).collect();
        distance_order(root, &mut v);
        v
    }

    #[test]
    fn the_closest_holders_that_do_not_pin_take_the_slots_and_the_closest_whole_one_pushes() {
        let root = BlockAddress::of(b"lecture");
        let p = peers_by_distance(&root, 6);
        // p0 pins it (the adder), p2 holds a whole replica, p1 a partial one, the rest nothing.
        let known = vec![
            (p[3], Held::No),
            (p[0], Held::Whole { pinned: true }),
            (p[2], Held::Whole { pinned: false }),
            (p[1], Held::Partial { pinned: false }),
            (p[4], Held::No),
            (p[5], Held::No),
        ];
        let plan = Plan::of(&root, 3, p[4], &known);
        assert_eq!(plan.candidates, p[1..].to_vec(), "a pinner takes no slot");
        assert_eq!(plan.whole_before, 1, "a partial copy does not count");
        assert_eq!(
            plan.pusher,
            Some(p[0]),
            "the closest whole holder pushes, pinner or not"
        );
        assert_eq!(
            plan.closer_claims,
            vec![p[2]],
            "slots closer than p4 that claim a copy"
        );
    }

    #[test]
    fn a_joining_closer_peer_takes_a_slot_and_the_farthest_holder_may_hand_off() {
        let root = BlockAddress::of(b"notes");
        let p = peers_by_distance(&root, 5);
        // R = 2 held by p2 and p3; p0 and p1 joined and took copies: p3 is now beyond R.
        let known: Vec<(PeerId, Held)> = [p[0], p[1], p[2], p[3]]
            .iter()
            .map(|q| (*q, Held::Whole { pinned: false }))
            .chain([(p[4], Held::Whole { pinned: true })])
            .collect();
        let plan = Plan::of(&root, 2, p[3], &known);
        assert_eq!(plan.whole_before, 2);
        assert_eq!(
            plan.closer_claims,
            vec![p[0], p[1], p[2]],
            "three closer claims to prove"
        );
        // Nobody holds it yet: no pusher, no claims.
        let empty: Vec<(PeerId, Held)> = p.iter().map(|q| (*q, Held::No)).collect();
        let plan = Plan::of(&root, 2, p[0], &empty);
        assert_eq!((plan.pusher, plan.whole_before), (None, 0));
        assert!(plan.closer_claims.is_empty());
    }

    #[test]
    fn a_proof_is_drawn_by_bytes_not_by_blocks() {
        let small = BlockAddress::of(b"manifest");
        let big = BlockAddress::of(b"chunk");
        let blocks = [(small, 10), (big, 990)];
        assert_eq!(block_at_byte(&blocks, 0), Some(small));
        assert_eq!(block_at_byte(&blocks, 9), Some(small));
        assert_eq!(block_at_byte(&blocks, 10), Some(big));
        assert_eq!(block_at_byte(&blocks, 999), Some(big));
        assert_eq!(block_at_byte(&blocks, 1000), None);
    }

    /// A peer that answers from a script, one answer per time it is asked.
    fn scripted(
        answers: Vec<(PeerId, Vec<Asked>)>,
    ) -> impl FnMut(PeerId) -> std::future::Ready<Asked> {
        let mut answers: std::collections::HashMap<PeerId, std::collections::VecDeque<Asked>> =
            answers.into_iter().map(|(p, a)| (p, a.into())).collect();
        move |p| {
            let a = answers
                .get_mut(&p)
                .and_then(|q| q.pop_front())
                .unwrap_or(Asked::Failed);
            std::future::ready(a)
        }
    }

    fn full() -> Asked {
        Asked::Refused {
            busy: false,
            why: "Full: no room".into(),
        }
    }

    fn busy() -> Asked {
        Asked::Refused {
            busy: true,
            why: "Busy: intake full".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_passes_the_copy_to_the_next_closest_and_whole_holders_are_not_asked() {
        let p: Vec<PeerId> = (0..6).map(|_| PeerId::random()).collect();
        let targets = vec![
            (p[0], Held::Whole { pinned: false }),
            (p[1], Held::No),
            (p[2], Held::Partial { pinned: false }),
            (p[3], Held::No),
            (p[4], Held::No),
            (p[5], Held::No),
        ];
        let ask = scripted(vec![
            (p[1], vec![full()]),
            (p[2], vec![Asked::Accepted]),
            (p[3], vec![Asked::Failed]),
            (p[4], vec![Asked::Accepted]),
        ]);
        let (filled, answers) = fill_slots(&targets, 3, ask).await;
        assert_eq!(filled, 3);
        assert_eq!(
            answers,
            vec![
                (p[1], full()),
                (p[2], Asked::Accepted),
                (p[3], Asked::Failed),
                (p[4], Asked::Accepted),
            ],
            "p0 holds it already; p5 is not needed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_peer_is_asked_again_after_a_pause_only_when_the_others_fall_short() {
        let p: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        let none: Vec<(PeerId, Held)> = p.iter().map(|q| (*q, Held::No)).collect();
        // Busy, then accepted on the second ask: the copies are made up.
        let ask = scripted(vec![
            (p[0], vec![busy(), Asked::Accepted]),
            (p[1], vec![Asked::Accepted]),
            (p[2], vec![full()]),
            (p[3], vec![full()]),
        ]);
        let started = tokio::time::Instant::now();
        let (filled, answers) = fill_slots(&none, 2, ask).await;
        assert_eq!(filled, 2);
        assert_eq!(answers.last(), Some(&(p[0], Asked::Accepted)));
        assert_eq!(answers.len(), 5);
        assert_eq!(started.elapsed(), Duration::from_secs(1), "one pause");

        // The others make up the count: the busy one is not asked again.
        let ask = scripted(vec![
            (p[0], vec![busy()]),
            (p[1], vec![Asked::Accepted]),
            (p[2], vec![Asked::Accepted]),
        ]);
        let started = tokio::time::Instant::now();
        let (filled, answers) = fill_slots(&none, 2, ask).await;
        assert_eq!((filled, answers.len()), (2, 3));
        assert_eq!(started.elapsed(), Duration::ZERO, "no pause");

        // Busy every time: asked three times in all, 3 s of pauses, and the round falls short.
        let ask = scripted(vec![(p[0], vec![busy(), busy(), busy(), busy()])]);
        let started = tokio::time::Instant::now();
        let (filled, answers) = fill_slots(&none[..1], 1, ask).await;
        assert_eq!(filled, 0);
        assert_eq!(answers, vec![(p[0], busy()); 3]);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }
}
