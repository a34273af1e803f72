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
//! Its rooms, each an `impl Replicator` block:
//!
//! - this file: the [`Replicator`] itself, its configuration and reports, what a peer holds
//!   (`Held`), and the repair loop with its round (leases, placement of every item, then the
//!   records that follow the replicas);
//! - `intake`: taking in the replicas other peers push (`Query`, `Hold`, allowance, resume);
//! - `placement`: where an item's copies go and who pushes them (the pure `Plan`), proofs
//!   before a handoff, leases;
//! - `scrub`: re-checking held replicas and fetching bad blocks again.
//!
//! This module decides what to place where; it must not touch the Swarm (it talks to the
//! event loop through the [`Client`]) nor block the async threads on the store.

mod columns;
mod health;
mod intake;
mod placement;
mod scrub;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::request_response::ResponseChannel;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::content::stripe::Durability;
use crate::content::BlockAddress;
use crate::network::{HeldStripes, ReplicateRequest, ReplicateResponse};
use crate::store::Store;
pub use health::{HolderHealth, ItemHealth};

use super::fetch::transfer::Pace;
use super::republish::regions::KeyspaceMap;
use super::republish::Republisher;
use super::tasks::{periodic, Schedule};
use super::{blocking, now_secs, Client};

/// How a node replicates and repairs; `Default` is what `storgo node` uses.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// Copies the network keeps of each item besides the adder's pin (`--replication`).
    pub replication: u8,
    /// How items added here are kept when their pin does not say (`--durability`): `None`
    /// keeps `replication` copies.
    pub durability: Option<Durability>,
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

impl ReplicationConfig {
    /// How an item added here is kept when its pin does not say.
    pub fn durability(&self) -> Durability {
        self.durability
            .unwrap_or(Durability::Replicas(self.replication))
    }

    /// How the pinned item `pin` is kept: its own durability, its older `replicas`, or the
    /// node's.
    pub fn durability_of(&self, pin: &crate::store::PinRecord) -> Durability {
        pin.durability
            .or(pin.replicas.map(Durability::Replicas))
            .unwrap_or_else(|| self.durability())
    }
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            replication: 3,
            durability: None,
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

/// What one peer said it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    No,
    Partial { pinned: bool },
    Whole { pinned: bool },
}

impl Held {
    fn from_response(r: &ReplicateResponse) -> Option<Held> {
        match r {
            ReplicateResponse::Holding {
                complete, pinned, ..
            } => Some(if *complete {
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

    fn response(self, stripes: Option<HeldStripes>) -> ReplicateResponse {
        match self {
            Held::No => ReplicateResponse::NotHeld,
            Held::Partial { pinned } => ReplicateResponse::Holding {
                complete: false,
                pinned,
                stripes,
            },
            Held::Whole { pinned } => ReplicateResponse::Holding {
                complete: true,
                pinned,
                stripes,
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

/// What this node holds of a striped `root`: every column (it coded the item and pins it)
/// or one.
fn stripes_here(
    store: &Store,
    root: &BlockAddress,
) -> Result<Option<HeldStripes>, crate::store::StoreError> {
    if let Some(map) = store.pin_of(root)?.and_then(|p| p.stripe_map) {
        return Ok(Some(HeldStripes { map, column: None }));
    }
    Ok(store
        .replica_of(root)?
        .and_then(|r| r.shard)
        .map(|s| HeldStripes {
            map: s.map,
            column: Some(s.column),
        }))
}

/// What one [`Replicator::repair_item`] did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ItemRepair {
    pub root: String,
    /// Holders wanted besides the pinners: R copies, or K + M columns.
    pub replication: u8,
    /// `replicas:R` or `ec:K+M`.
    #[serde(default)]
    pub durability: String,
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
    /// (As pairs of strings: `[who or what, why]`.)
    #[schema(value_type = Vec<Vec<String>>)]
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
    /// Items this node pins or holds whose last placement left them short of their R copies
    /// or K + M columns (or could not run: no peers yet), by root, with how they are kept.
    /// `storgo_items_under_replicated` counts them, and a peer joining the routing table has
    /// them placed at once.
    short: Arc<Mutex<HashMap<BlockAddress, Durability>>>,
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
            short: Arc::default(),
        }
    }

    /// Items known to be short of their R copies now (see `short`).
    pub fn under_replicated(&self) -> usize {
        self.short.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Items kept as stripes whose last placement left a column missing.
    pub fn striped_below_threshold(&self) -> usize {
        self.short
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|d| matches!(d, Durability::Stripes(_)))
            .count()
    }

    /// Notes how a placement of `root` ended: short of R (or failed), or not.
    pub(super) fn note_placement(&self, root: BlockAddress, durability: Durability, short: bool) {
        let mut known = self.short.lock().unwrap_or_else(|e| e.into_inner());
        if short {
            known.insert(root, durability);
        } else {
            known.remove(&root);
        }
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
        let cfg = self.cfg.clone();
        let items = blocking(
            move || -> Result<Vec<(BlockAddress, Durability)>, crate::store::StoreError> {
                let mut v: Vec<(BlockAddress, Durability)> = store
                    .pins()?
                    .into_iter()
                    .filter(|p| !p.partial)
                    .filter_map(|p| {
                        let id = p.id.parse::<crate::content::ContentId>().ok()?;
                        Some((id.root, cfg.durability_of(&p)))
                    })
                    .collect();
                // A column holder's item is placed by its map, whatever is passed here.
                v.extend(
                    store
                        .replicas()?
                        .into_iter()
                        .filter(|r| r.complete)
                        .map(|r| (r.root, Durability::Replicas(r.replication))),
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
        let wanted: HashMap<BlockAddress, Durability> = items.iter().copied().collect();
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
        let mut short = HashMap::new();
        for (root, result) in &results {
            let is_short = match result {
                Ok(item) => item.under_replicated && !item.handed_off,
                Err(_) => true,
            };
            if is_short {
                // As placed: a column holder's item is striped whatever its row said.
                let asked = wanted
                    .get(root)
                    .copied()
                    .unwrap_or_else(|| self.cfg.durability());
                let placed = result.as_ref().ok().and_then(|i| i.durability.parse().ok());
                short.insert(*root, placed.unwrap_or(asked));
            }
        }
        // The round saw every item held: what it found short is the whole list.
        *self.short.lock().unwrap_or_else(|e| e.into_inner()) = short;
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

    /// Places what is short of copies as soon as peers appear: an item added before any peer
    /// joined, or while too few were known, gets its copies within seconds of the next peer
    /// joining the routing table, not at the next round. Only those: items this node has not
    /// tried to place since it started wait for the round, as before (a node that joins a
    /// network does not push everything it holds at the first handshake). Off with repair
    /// (`repair_interval` none): then rounds run only when asked.
    pub(crate) async fn catch_up_loop(self) {
        if self.cfg.repair_interval.is_none() {
            return;
        }
        let joined = &self.client.counters().peer_joined;
        loop {
            joined.notified().await;
            // Peers come in bursts (a bootstrap peer, then its neighbours): one placement
            // for the burst, after it settles.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let short: Vec<(BlockAddress, Durability)> = self
                .short
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(root, r)| (*root, *r))
                .collect();
            for (root, r) in short {
                if let Err(e) = self.repair_item(root, r).await {
                    tracing::debug!(cid = %root, error = %e, "placing copies after a peer joined failed");
                }
            }
        }
    }

    /// Runs repair rounds every `repair_interval` (jittered) until the node stops.
    pub(crate) async fn repair_loop(self) {
        let Some(every) = self.cfg.repair_interval else {
            return;
        };
        let schedule = Schedule {
            every,
            jitter: 0.25,
            first_at_once: false,
        };
        periodic(schedule, || {
            let me = self.clone();
            async move {
                me.round().await;
            }
        })
        .await
    }
}
