//! Replication: every item kept on the R peers closest to its root, repaired when peers come
//! and go (DESIGN.md, "Replication and repair").
//!
//! - The **replica service** answers the replicate protocol: `Query` (do you hold it, whole?)
//!   and `Hold` (take it in). An accepted item is brought in by a keyless walk and pull inside
//!   a store session, kept as a partial replica while it arrives, committed whole, and then
//!   provided. Intake is bounded (concurrent items, quota headroom); beyond it, a refusal
//!   with a reason.
//! - [`Replicator::repair_item`] is the one placement rule, used after an add, in every repair
//!   round and for handoff: the target set is the R peers closest to the root that do not pin
//!   it (a pin is kept whatever happens, so it is not one of the R); only the closest whole
//!   holder pushes to the target's missing members (so holders do not all push at once), and
//!   a replica holder outside the target drops its replica only once R closer holders are
//!   whole (never fewer than R copies during a move).
//!
//! This module decides what to place where; it must not touch the Swarm (it talks to the
//! event loop through the [`Client`]) nor block the async threads on the store.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::request_response::ResponseChannel;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Semaphore};

use crate::content::BlockAddress;
use crate::network::{
    distance_order, ChunkRequest, ChunkResponse, RefuseReason, ReplicateRequest, ReplicateResponse,
};
use crate::store::{Holding, ReplicaRecord, SessionKind, Store};

use super::fetch::begin_session;
use super::fetch::transfer::{bring, Pace};
use super::republish::regions::KeyspaceMap;
use super::republish::Republisher;
use super::{blocking, now_secs, Client, NodeError, Offence};

/// How a node replicates and repairs; `Default` is what `storgo node` uses.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// Copies the network keeps of each item besides the adder's pin (`--replication`).
    pub replication: u8,
    /// Time between repair rounds, jittered by ±25% so that nodes do not repair in step
    /// (`--repair-interval`); `None` runs rounds only when asked (`storgo repair`).
    pub repair_interval: Option<Duration>,
    /// Items taken in at once; a `Hold` beyond it is refused as busy.
    pub max_intake: usize,
    /// Replicas may fill at most this share of `--max-storage`, so that the user's own adds
    /// always find room: replicas are refused first when the disk fills.
    pub replica_share: f64,
    /// Bytes per second the background scrub re-reads and re-hashes replicas at
    /// (`--scrub-rate`); `None` turns it off.
    pub scrub_rate: Option<u64>,
    /// How long an intake may make no progress before it gives up.
    pub stall_timeout: Duration,
    /// Outstanding chunk requests per provider during intake.
    pub window: usize,
    /// How long one intake or repair may take in all: a peer cannot keep an intake slot
    /// busy forever with an item whose blocks trickle in.
    pub intake_deadline: Duration,
    /// Bytes of replicas one peer may ask this node to take in per hour.
    pub intake_per_peer_per_hour: u64,
    /// Without `--max-storage`, replicas are refused when they would leave less than this
    /// share of the disk free (at most 10 GiB: a large disk need not keep a tenth empty).
    pub keep_free: f64,
    /// How long a copy is kept without a pinner renewing it (`--replica-lease`): a pinner's
    /// repair rounds renew it; after the last pinner unpins (or is gone that long), holders
    /// let the item go instead of keeping and re-pushing it forever.
    pub replica_lease: Duration,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            replication: 3,
            // Reasoned in DESIGN.md: a laptop closing its lid is noticed within the hour.
            repair_interval: Some(Duration::from_secs(30 * 60)),
            max_intake: 4,
            replica_share: 0.9,
            // Gentle on a laptop disk: a 10 GB share of replicas is re-checked every ~40 min.
            scrub_rate: Some(4 << 20),
            stall_timeout: Duration::from_secs(60),
            window: 8,
            intake_deadline: Duration::from_secs(60 * 60),
            intake_per_peer_per_hour: 10 << 30,
            keep_free: 0.1,
            // Tahoe-LAFS keeps a share 31 days without a renewal; a laptop that adds a course
            // and is away for a term break keeps its items alive on return.
            replica_lease: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// An inbound replicate request, handed from the event loop to the replica service.
pub(crate) struct InboundReplicate {
    pub peer: PeerId,
    pub request: ReplicateRequest,
    pub channel: ResponseChannel<ReplicateResponse>,
}

/// How a peer answered a `Hold`.
enum Asked {
    Accepted,
    Busy,
    No,
}

/// What one peer said it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    No,
    Partial { pinned: bool },
    Whole { pinned: bool },
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

impl Held {
    fn from_response(r: &ReplicateResponse) -> Option<Held> {
        match r {
            ReplicateResponse::Holding { complete, pinned } => Some(if *complete {
                Held::Whole { pinned: *pinned }
            } else {
                Held::Partial { pinned: *pinned }
            }),
            ReplicateResponse::NotHeld => Some(Held::No),
            _ => None,
        }
    }

    fn pinned(self) -> bool {
        matches!(
            self,
            Held::Partial { pinned: true } | Held::Whole { pinned: true }
        )
    }

    fn whole(self) -> bool {
        matches!(self, Held::Whole { .. })
    }

    fn response(self) -> ReplicateResponse {
        match self {
            Held::No => ReplicateResponse::NotHeld,
            Held::Partial { pinned } => ReplicateResponse::Holding {
                complete: false,
                pinned,
            },
            Held::Whole { pinned } => ReplicateResponse::Holding {
                complete: true,
                pinned,
            },
        }
    }
}

/// What this node holds of `root`.
fn held_here(store: &Store, root: &BlockAddress) -> Result<Held, crate::store::StoreError> {
    if let Some(p) = store.pin_of(root)? {
        return Ok(if p.partial {
            Held::Partial { pinned: true }
        } else {
            Held::Whole { pinned: true }
        });
    }
    Ok(match store.replica_of(root)? {
        Some(r) if r.complete => Held::Whole { pinned: false },
        Some(_) => Held::Partial { pinned: false },
        None => Held::No,
    })
}

/// What one [`Replicator::repair_item`] did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ItemRepair {
    pub root: String,
    pub replication: u8,
    /// Whole replicas among the target set before this round's pushes.
    pub whole_before: usize,
    /// Peers asked to hold it that accepted.
    pub pushed: Vec<String>,
    /// Peers that refused, with their reasons.
    pub refused: Vec<(String, String)>,
    /// This node dropped its replica: R closer peers hold it whole.
    pub handed_off: bool,
    /// Fewer than R peers hold it or will (too few peers, or refusals).
    pub under_replicated: bool,
}

/// What a repair round did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RepairReport {
    /// Unix seconds when the round started.
    pub started: u64,
    pub duration_ms: u64,
    pub items: usize,
    pub under_replicated: usize,
    pub pushes: usize,
    pub refusals: usize,
    pub handed_off: usize,
    /// DHT walks made to map the key space around every item (not one per item).
    #[serde(default)]
    pub walks: u32,
    /// Replicas let go because their lease passed with no pinner renewing it.
    #[serde(default)]
    pub expired: usize,
    /// Items whose repair failed (the DHT walk or the store), with the reason.
    pub failed: Vec<(String, String)>,
    /// The records this round sent to peers newly among an item's closest (between full
    /// sweeps, records follow churn this way).
    #[serde(default)]
    pub republish: Option<crate::node::RepublishReport>,
}

/// What scrubbing one replica did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScrubReport {
    pub root: String,
    pub checked_blocks: u64,
    pub checked_bytes: u64,
    /// Blocks that were corrupt or missing and have been fetched again from other holders.
    pub repaired_blocks: u64,
}

/// Totals of the background scrub since the node started, for `status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScrubTotals {
    pub checked_bytes: u64,
    pub repaired_blocks: u64,
    pub failed: u64,
}

/// Replication for one node: the replica service's state and the repair logic.
#[derive(Clone)]
pub struct Replicator {
    client: Client,
    store: Arc<Store>,
    cfg: ReplicationConfig,
    intake: Arc<Semaphore>,
    last_round: Arc<Mutex<Option<RepairReport>>>,
    scrubbed: Arc<Mutex<ScrubTotals>>,
    republisher: Republisher,
    /// Bytes each peer asked this node to hold in the current hour (since the first ask).
    asked: Arc<Mutex<HashMap<PeerId, (Instant, u64)>>>,
    /// Roots being taken in now: a partial replica not among them was cut off (a crash, a
    /// failed pull) and is taken in again when asked, or at start.
    arriving: Arc<Mutex<HashSet<BlockAddress>>>,
    /// New replicas whose provider records are being announced (after their intake slot is
    /// let go: a DHT walk must not keep other pushers' items waiting as Busy).
    announcing: Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts one announcement in [`Replicator::announcing`] while it lives.
struct Announcing(Arc<std::sync::atomic::AtomicUsize>);

impl Announcing {
    fn begin(n: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        n.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Self(Arc::clone(n))
    }
}

impl Drop for Announcing {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Removes a root from [`Replicator::arriving`] when its intake ends, however it ends.
struct Arriving {
    set: Arc<Mutex<HashSet<BlockAddress>>>,
    root: BlockAddress,
}

impl Arriving {
    /// `None` when `root` is arriving already.
    fn begin(set: &Arc<Mutex<HashSet<BlockAddress>>>, root: BlockAddress) -> Option<Self> {
        let fresh = set.lock().unwrap_or_else(|e| e.into_inner()).insert(root);
        fresh.then(|| Self {
            set: Arc::clone(set),
            root,
        })
    }
}

impl Drop for Arriving {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.root);
    }
}

impl Replicator {
    pub(crate) fn new(
        client: Client,
        store: Arc<Store>,
        cfg: ReplicationConfig,
        republisher: Republisher,
    ) -> Self {
        Self {
            client,
            store,
            intake: Arc::new(Semaphore::new(cfg.max_intake.max(1))),
            cfg,
            last_round: Arc::default(),
            scrubbed: Arc::default(),
            republisher,
            asked: Arc::default(),
            arriving: Arc::default(),
            announcing: Arc::default(),
        }
    }

    /// Takes in again every replica a stopped or killed node left partial; blocks already
    /// here are not pulled again. Runs at start, within the intake limit.
    pub(crate) async fn resume_intakes(self) {
        let store = Arc::clone(&self.store);
        let partial = match blocking(move || store.replicas()).await {
            Ok(Ok(rs)) => rs.into_iter().filter(|r| !r.complete).collect::<Vec<_>>(),
            _ => return,
        };
        for r in partial {
            let Ok(permit) = Arc::clone(&self.intake).acquire_owned().await else {
                return;
            };
            let Some(arriving) = Arriving::begin(&self.arriving, r.root) else {
                continue;
            };
            tracing::info!(cid = %r.root, bytes = r.bytes, "resuming an interrupted replica intake");
            let me = self.clone();
            tokio::spawn(async move {
                let held = (permit, arriving);
                let lease = r
                    .lease_until
                    .unwrap_or_else(|| now_secs() + me.cfg.replica_lease.as_secs());
                let taken = me.take_in(r.root, r.replication, r.bytes, lease).await;
                drop(held);
                match taken {
                    Ok(announcing) => me.announce_taken(r.root, announcing).await,
                    Err(e) => {
                        tracing::warn!(cid = %r.root, error = %e, "resumed replica intake failed")
                    }
                }
            });
        }
    }

    /// Books `bytes` of intake asked by `peer` against its hourly allowance; false when that
    /// would pass it.
    fn intake_allowance(&self, peer: PeerId, bytes: u64) -> bool {
        let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        asked.retain(|_, (since, _)| now.duration_since(*since) < Duration::from_secs(3600));
        let (_, used) = asked.entry(peer).or_insert((now, 0));
        if used.saturating_add(bytes) > self.cfg.intake_per_peer_per_hour {
            return false;
        }
        *used += bytes;
        true
    }

    /// How an intake or repair pulls; `max_bytes` bounds what it may bring (a `Hold`'s
    /// declared size: a peer cannot fill this node past what it declared and was let in for).
    fn pace(&self, max_bytes: Option<u64>) -> Pace {
        Pace {
            window: self.cfg.window,
            stall_timeout: self.cfg.stall_timeout,
            deadline: Some(self.cfg.intake_deadline),
            max_bytes,
        }
    }

    /// The node's republish of provider records (run after an asked-for round).
    pub fn republisher(&self) -> &Republisher {
        &self.republisher
    }

    pub fn config(&self) -> &ReplicationConfig {
        &self.cfg
    }

    /// Items being taken in now (counted from the moment a `Hold` is accepted until the new
    /// replica's provider record is stored on its closest peers).
    pub fn intakes_in_progress(&self) -> usize {
        self.cfg.max_intake.max(1) - self.intake.available_permits()
            + self.announcing.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The last repair round's report.
    pub fn last_round(&self) -> Option<RepairReport> {
        self.last_round
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Answers inbound replicate requests until the event loop stops.
    pub(crate) async fn serve(self, mut rx: mpsc::Receiver<InboundReplicate>) {
        while let Some(InboundReplicate {
            peer,
            request,
            channel,
        }) = rx.recv().await
        {
            let response = match request {
                ReplicateRequest::Query { root } => self.query(root).await,
                ReplicateRequest::Hold {
                    root,
                    replication,
                    bytes,
                    lease_until,
                } => {
                    // Never longer than this node's own lease from now.
                    let most = now_secs() + self.cfg.replica_lease.as_secs();
                    let lease = lease_until.unwrap_or(most).min(most);
                    self.hold(peer, root, replication, bytes, lease).await
                }
            };
            if self
                .client
                .respond_replicate(channel, response)
                .await
                .is_err()
            {
                break;
            }
        }
    }

    async fn query(&self, root: BlockAddress) -> ReplicateResponse {
        let store = Arc::clone(&self.store);
        match blocking(move || held_here(&store, &root)).await {
            Ok(Ok(h)) => h.response(),
            _ => ReplicateResponse::Refused {
                reason: RefuseReason::Busy,
                message: "store unavailable".into(),
            },
        }
    }

    async fn hold(
        &self,
        peer: PeerId,
        root: BlockAddress,
        replication: u8,
        bytes: u64,
        lease: u64,
    ) -> ReplicateResponse {
        let refuse = |reason, message: String| ReplicateResponse::Refused { reason, message };
        if self.client.stopping() {
            return refuse(RefuseReason::ShuttingDown, "stopping".into());
        }
        let store = Arc::clone(&self.store);
        let state = blocking(move || -> Result<_, crate::store::StoreError> {
            Ok((held_here(&store, &root)?, store.stats()?.bytes))
        })
        .await;
        let (held, used) = match state {
            Ok(Ok(s)) => s,
            _ => return refuse(RefuseReason::Busy, "store unavailable".into()),
        };
        let arriving_now = || {
            self.arriving
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&root)
        };
        // A partial replica nobody is bringing in was cut off: take it in again (what is
        // here already is not pulled twice).
        let cut_off = held == Held::Partial { pinned: false } && !arriving_now();
        if held != Held::No && !cut_off {
            // Held already: a renewal of its lease (a pin here keeps it anyway).
            let store = Arc::clone(&self.store);
            let _ = blocking(move || store.renew_replica(&root, lease)).await;
            return ReplicateResponse::Accepted;
        }
        if let Some(limit) = self.store.max_storage() {
            let room = (limit as f64 * self.cfg.replica_share) as u64;
            if used.saturating_add(bytes) > room {
                return refuse(
                    RefuseReason::OverQuota,
                    format!(
                        "{bytes} bytes would pass this node's replica room of {room} ({used} used)"
                    ),
                );
            }
        }
        if self.store.max_storage().is_none() {
            // No quota set: the disk itself is the limit, and replicas never take its last
            // tenth, or 10 GiB (the user's own adds and the rest of the machine need it).
            let store = Arc::clone(&self.store);
            if let Ok(Ok((free, total))) = blocking(move || store.disk_space()).await {
                let keep = ((total as f64 * self.cfg.keep_free) as u64).min(10 << 30);
                if free.saturating_sub(bytes) < keep {
                    return refuse(
                        RefuseReason::OverQuota,
                        format!(
                            "{bytes} bytes would leave less than {keep} free on this node's disk"
                        ),
                    );
                }
            }
        }
        // A slot first, the allowance after: a Busy refusal must not cost the peer any of
        // its hourly allowance, nor may an item already arriving (answered "accepted").
        let Ok(permit) = Arc::clone(&self.intake).try_acquire_owned() else {
            return refuse(RefuseReason::Busy, "taking in other items now".into());
        };
        let Some(arriving) = Arriving::begin(&self.arriving, root) else {
            let store = Arc::clone(&self.store);
            let _ = blocking(move || store.renew_replica(&root, lease)).await;
            return ReplicateResponse::Accepted;
        };
        if !self.intake_allowance(peer, bytes) {
            return refuse(
                RefuseReason::Busy,
                format!(
                    "you asked this node to hold more than {} bytes in the last hour",
                    self.cfg.intake_per_peer_per_hour
                ),
            );
        }
        let me = self.clone();
        tokio::spawn(async move {
            let taken = me.take_in(root, replication, bytes, lease).await;
            drop((permit, arriving));
            match taken {
                Ok(announcing) => me.announce_taken(root, announcing).await,
                Err(e) => {
                    tracing::warn!(cid = %root, peer = %peer, error = %e, "replica intake failed");
                    if matches!(e, NodeError::OverDeclared { .. }) {
                        // It asked this node to hold more than it declared (and was let in for).
                        me.client.report(peer, Offence::Malformed).await;
                    }
                }
            }
        });
        ReplicateResponse::Accepted
    }

    /// Announces a replica just taken in to its root's closest peers, each answer awaited (a
    /// holder nobody's record names cannot be found by a fetch). `announcing` counts it as
    /// work in progress until then.
    async fn announce_taken(&self, root: BlockAddress, announcing: Announcing) {
        let announced = self.republisher.announce_new(vec![root]).await;
        if announced.records_stored == 0 {
            tracing::warn!(cid = %root, failed = announced.failed.len(), "no peer stored this replica's provider record; the next round sends it again");
        }
        drop(announcing);
    }

    /// Brings `root` in as a replica: keyless walk and pull in a session, a partial replica
    /// while it arrives, the whole replica committed. Returns the announcement to make, counted
    /// as work in progress from before the intake's slot is let go.
    async fn take_in(
        &self,
        root: BlockAddress,
        replication: u8,
        bytes: u64,
        lease: u64,
    ) -> Result<Announcing, NodeError> {
        let session = begin_session(&self.store, SessionKind::Replica, root.to_string()).await?;
        let since = now_secs();
        let record = move |complete| ReplicaRecord {
            root,
            replication,
            bytes,
            since,
            complete,
            last_verified: complete.then(now_secs),
            lease_until: Some(lease),
        };
        let brought = bring(
            &self.client,
            &session,
            root,
            None,
            &|_| Some(Holding::Replica(record(false))),
            self.pace(Some(bytes)),
            &|_| {},
            None,
        )
        .await;
        if let Err(e) = brought {
            // Nothing keeps a failed intake: the next repair round pushes it again.
            let store = Arc::clone(&self.store);
            let _ = blocking(move || store.drop_replica(&root)).await;
            return Err(e);
        }
        let s = Arc::clone(&session);
        blocking(move || s.commit(&Holding::Replica(record(true)))).await??;
        tracing::info!(cid = %root, replication, "holding a replica");
        Ok(Announcing::begin(&self.announcing))
    }

    /// Asks `peers` what they hold of `root`, at most eight at a time; unreachable peers
    /// are left out.
    async fn survey(&self, root: BlockAddress, peers: &[PeerId]) -> Vec<(PeerId, Held)> {
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
                        Ok(Ok(resp)) => Held::from_response(&resp).map(|h| (p, h)),
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

    /// Places `root` on the R peers closest to it (found with a DHT walk); see the module docs.
    pub async fn repair_item(
        &self,
        root: BlockAddress,
        replication: u8,
    ) -> Result<ItemRepair, NodeError> {
        let closest = self.client.closest_peers(root).await?;
        self.place(root, replication, closest).await
    }

    /// Places `root` given the live peers closest to it, closest first.
    async fn place(
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
    /// have accepted it; a peer that refuses as busy is asked again after a pause (twice at
    /// most, 1 s then 2 s), when the others did not make up the count. Returns the count.
    async fn push_copies(
        &self,
        root: BlockAddress,
        ask: &ReplicateRequest,
        targets: &[(PeerId, Held)],
        r: usize,
        report: &mut ItemRepair,
    ) -> usize {
        let mut filled = 0;
        let mut busy = Vec::new();
        for (p, h) in targets {
            if filled == r {
                return filled;
            }
            // Only a whole copy counts. A partial holder is sent `Hold` too: it answers
            // "accepted" while its intake runs, and restarts an intake that is stuck.
            if h.whole() {
                filled += 1;
                continue;
            }
            match self.ask_to_hold(root, *p, ask, report).await {
                Asked::Accepted => filled += 1,
                Asked::Busy => busy.push(*p),
                Asked::No => {}
            }
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
                match self.ask_to_hold(root, p, ask, report).await {
                    Asked::Accepted => filled += 1,
                    Asked::Busy => busy.push(p),
                    Asked::No => {}
                }
            }
        }
        filled
    }

    async fn ask_to_hold(
        &self,
        root: BlockAddress,
        p: PeerId,
        ask: &ReplicateRequest,
        report: &mut ItemRepair,
    ) -> Asked {
        tracing::debug!(cid = %root, peer = %p, "asking to hold");
        match self.client.replicate(p, ask.clone()).await {
            Ok(ReplicateResponse::Accepted) => {
                report.pushed.push(p.to_string());
                Asked::Accepted
            }
            Ok(ReplicateResponse::Refused { reason, message }) => {
                tracing::info!(peer = %p, cid = %root, ?reason, message, "replica refused");
                report
                    .refused
                    .push((p.to_string(), format!("{reason:?}: {message}")));
                if reason == RefuseReason::Busy {
                    Asked::Busy
                } else {
                    Asked::No
                }
            }
            Ok(other) => {
                tracing::debug!(peer = %p, response = ?other, "unexpected answer to hold");
                Asked::No
            }
            Err(e) => {
                tracing::debug!(peer = %p, error = %e, "hold request failed");
                Asked::No
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
    async fn expire_leases(&self) -> Result<usize, NodeError> {
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

    /// One repair round over every item this node pins or holds whole.
    pub async fn round(&self) -> RepairReport {
        // A partial replica whose intake stopped (no provider then, a restart) is taken in
        // again whenever a round runs, in the background: it is not a copy until it is whole.
        tokio::spawn(self.clone().resume_intakes());
        let started = Instant::now();
        let mut report = RepairReport {
            started: now_secs(),
            ..RepairReport::default()
        };
        match self.expire_leases().await {
            Ok(n) => report.expired = n,
            Err(e) => report.failed.push(("(leases)".into(), e.to_string())),
        }
        let store = Arc::clone(&self.store);
        let default_r = self.cfg.replication;
        let items = blocking(
            move || -> Result<Vec<(BlockAddress, u8)>, crate::store::StoreError> {
                let mut v: Vec<(BlockAddress, u8)> = store
                    .pins()?
                    .into_iter()
                    .filter(|p| !p.partial)
                    .filter_map(|p| {
                        let id = p.id.parse::<crate::content::ContentId>().ok()?;
                        Some((id.root, p.replicas.unwrap_or(default_r)))
                    })
                    .collect();
                v.extend(
                    store
                        .replicas()?
                        .into_iter()
                        .filter(|r| r.complete)
                        .map(|r| (r.root, r.replication)),
                );
                Ok(v)
            },
        )
        .await;
        let items = match items {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                report.failed.push(("(store)".into(), e.to_string()));
                return self.finish_round(report, started);
            }
            Err(e) => {
                report.failed.push(("(store)".into(), e.to_string()));
                return self.finish_round(report, started);
            }
        };
        report.items = items.len();
        // One map of the key space for every item instead of a DHT walk per item.
        let roots: Vec<BlockAddress> = items.iter().map(|(root, _)| *root).collect();
        let map = match KeyspaceMap::build(&self.client, &roots, crate::network::DHT_K).await {
            Ok(m) => m,
            Err(e) => {
                report
                    .failed
                    .push(("(key space map)".into(), e.to_string()));
                return self.finish_round(report, started);
            }
        };
        report.walks = map.walks;
        let map = &map;
        let results: Vec<_> = futures::stream::iter(items)
            .map(|(root, r)| async move {
                let closest = map.closest(&root, crate::network::DHT_K);
                (root, self.place(root, r, closest).await)
            })
            .buffer_unordered(4)
            .collect()
            .await;
        let mut gone = std::collections::HashSet::new();
        for (root, result) in results {
            match result {
                Ok(item) => {
                    report.under_replicated += item.under_replicated as usize;
                    report.pushes += item.pushed.len();
                    report.refusals += item.refused.len();
                    report.handed_off += item.handed_off as usize;
                    if item.handed_off {
                        gone.insert(root);
                    }
                }
                Err(e) => report.failed.push((root.to_string(), e.to_string())),
            }
        }
        // Records follow the replicas: peers newly among an item's closest get its record now
        // rather than at the next full sweep.
        let kept: Vec<BlockAddress> = roots.into_iter().filter(|r| !gone.contains(r)).collect();
        report.republish = Some(self.republisher.follow(map, kept).await);
        self.finish_round(report, started)
    }

    fn finish_round(&self, mut report: RepairReport, started: Instant) -> RepairReport {
        report.duration_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            items = report.items,
            under_replicated = report.under_replicated,
            pushes = report.pushes,
            handed_off = report.handed_off,
            failed = report.failed.len(),
            ms = report.duration_ms,
            "repair round"
        );
        *self.last_round.lock().unwrap_or_else(|e| e.into_inner()) = Some(report.clone());
        report
    }

    /// Totals of the background scrub.
    pub fn scrub_totals(&self) -> ScrubTotals {
        self.scrubbed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-checks every block of the replica `root` against its address at `rate` bytes/s
    /// (unbounded when `None`); blocks found corrupt are set aside and, with missing ones,
    /// fetched again from the other holders; the replica's `last_verified` is updated.
    pub async fn scrub_item(
        &self,
        root: BlockAddress,
        rate: Option<u64>,
    ) -> Result<ScrubReport, NodeError> {
        let session =
            begin_session(&self.store, SessionKind::Replica, format!("scrub {root}")).await?;
        let mut report = ScrubReport {
            root: root.to_string(),
            ..ScrubReport::default()
        };
        // A replica with bad or missing blocks is marked partial at once: until it is whole
        // again this node must not answer "whole" (a handoff elsewhere could count on it).
        // Blocks under a manifest that had to be fetched again are only reached on the next
        // pass, so up to three passes with a fetch between them.
        let mut marked_partial = false;
        let mut pass = 0;
        loop {
            let (store, s) = (Arc::clone(&self.store), Arc::clone(&session));
            let checked = blocking(move || {
                let mut pace = |n: u64| {
                    if let Some(rate) = rate.filter(|r| *r > 0) {
                        std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
                    }
                };
                store.check_item(&s, &root, &mut pace)
            })
            .await??;
            report.checked_blocks += checked.checked_blocks;
            report.checked_bytes += checked.checked_bytes;
            if checked.lacking.is_empty() {
                break;
            }
            pass += 1;
            tracing::warn!(cid = %root, blocks = checked.lacking.len(), pass, "scrub found bad or missing blocks; fetching them again");
            if !marked_partial {
                self.settle_scrubbed(&session, root, false).await?;
                marked_partial = true;
            }
            let brought = if pass > 2 {
                Err(NodeError::Incomplete {
                    root,
                    missing: checked.lacking.len(),
                    total: checked.lacking.len(),
                })
            } else {
                bring(
                    &self.client,
                    &session,
                    root,
                    None,
                    &|_| None,
                    self.pace(None),
                    &|_| {},
                    None,
                )
                .await
            };
            match brought {
                Ok(b) => {
                    report.repaired_blocks +=
                        (b.walked.new_manifests_count + b.pulled.blocks) as u64;
                }
                Err(e) => {
                    // Left partial, and counted as checked now: the scrub moves on to other
                    // replicas, and a repair round's `Hold` brings this one back.
                    self.settle_scrubbed(&session, root, false).await?;
                    return Err(e);
                }
            }
        }
        self.settle_scrubbed(&session, root, true).await?;
        let mut t = self.scrubbed.lock().unwrap_or_else(|e| e.into_inner());
        t.checked_bytes += report.checked_bytes;
        t.repaired_blocks += report.repaired_blocks;
        Ok(report)
    }

    /// Records a scrub's outcome on the replica `root`: whole (and verified now) or partial
    /// (verified now too, so the scrub does not come back to it first).
    async fn settle_scrubbed(
        &self,
        session: &Arc<crate::store::Session>,
        root: BlockAddress,
        whole: bool,
    ) -> Result<(), NodeError> {
        let store = Arc::clone(&self.store);
        let s = Arc::clone(session);
        blocking(move || -> Result<(), crate::store::StoreError> {
            if let Some(mut r) = store.replica_of(&root)? {
                r.complete = whole;
                r.last_verified = Some(now_secs());
                s.commit(&Holding::Replica(r))?;
            }
            Ok(())
        })
        .await??;
        Ok(())
    }

    /// Scrubs replicas one after another, the least recently verified first, at the
    /// configured rate, until the node stops.
    pub(crate) async fn scrub_loop(self) {
        let Some(rate) = self.cfg.scrub_rate.filter(|r| *r > 0) else {
            return;
        };
        loop {
            let store = Arc::clone(&self.store);
            let next = blocking(move || {
                store.replicas().ok().and_then(|v| {
                    v.into_iter()
                        .filter(|r| r.complete)
                        .min_by_key(|r| r.last_verified.unwrap_or(0))
                })
            })
            .await;
            let due = next.ok().flatten().filter(|r| {
                // Re-check a replica at most once an hour; otherwise wait for one to be due.
                r.last_verified
                    .is_none_or(|t| now_secs().saturating_sub(t) >= 3600)
            });
            match due {
                Some(r) => {
                    if let Err(e) = self.scrub_item(r.root, Some(rate)).await {
                        if matches!(e, NodeError::Stopped) {
                            return;
                        }
                        tracing::warn!(cid = %r.root, error = %e, "scrub failed");
                        self.scrubbed
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .failed += 1;
                    }
                }
                None => {
                    if self.client.info().await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
            }
        }
    }

    /// Runs repair rounds every `repair_interval` (jittered) until the node stops.
    pub(crate) async fn repair_loop(self) {
        let Some(every) = self.cfg.repair_interval else {
            return;
        };
        loop {
            let jitter = 0.75 + rand::random::<f64>() * 0.5;
            tokio::time::sleep(every.mul_f64(jitter)).await;
            if self.client.info().await.is_err() {
                return; // the node has stopped
            }
            self.round().await;
        }
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
}
