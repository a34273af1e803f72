//! Intake: taking in the replicas other peers push. The replica service answers `Query`
//! (what this node holds of an item) and `Hold` (take it in, or renew its lease); an accepted
//! item is brought in by a keyless walk and pull inside a store session, kept as a partial
//! replica while it arrives, committed whole, then announced. Intake is bounded: a few items at
//! once, the replica share of the quota (or of the free disk), and an hourly allowance per
//! peer; beyond them, a refusal with a reason. Intakes a stop cut off are resumed.
//!
//! It must not decide placement (which peers should hold what is `placement`'s), nor take in
//! more than the `Hold` declared and was let in for.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tokio::sync::mpsc;

use crate::content::BlockAddress;
use crate::network::{RefuseReason, ReplicateRequest, ReplicateResponse};
use crate::node::fetch::begin_session;
use crate::node::fetch::transfer::{bring, Bring};
use crate::node::fetch::walk::Walked;
use crate::node::{blocking, now_secs, NodeError, Offence};
use crate::store::{Holding, ReplicaRecord, SessionKind};

use super::{held_here, stripes_here, Held, InboundReplicate, Replicator};
use crate::content::stripe::ShardOf;

/// What a `Hold` asks of this node.
struct Ask {
    replication: u8,
    bytes: u64,
    lease: u64,
    shard: Option<ShardOf>,
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
                let taken = me
                    .take_in(r.root, r.replication, r.bytes, lease, r.shard)
                    .await;
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

    /// Answers inbound replicate requests until the event loop stops.
    pub(crate) async fn serve(self, mut rx: mpsc::Receiver<InboundReplicate>) {
        while let Some(InboundReplicate {
            peer,
            request,
            channel,
        }) = rx.recv().await
        {
            let response = match request {
                // Read-only and asked by every fetch and intake of an item, once per provider:
                // answered beside the holds, not queued behind them.
                ReplicateRequest::Query { root } => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        let answer = me.query(root).await;
                        let _ = me.client.respond_replicate(channel, answer).await;
                    });
                    continue;
                }
                ReplicateRequest::Hold {
                    root,
                    replication,
                    bytes,
                    lease_until,
                    shard,
                } => {
                    // Never longer than this node's own lease from now.
                    let most = now_secs() + self.cfg.replica_lease.as_secs();
                    let lease = lease_until.unwrap_or(most).min(most);
                    let ask = Ask {
                        replication,
                        bytes,
                        lease,
                        shard,
                    };
                    self.hold(peer, root, ask).await
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
        let here = blocking(move || -> Result<_, crate::store::StoreError> {
            Ok((held_here(&store, &root)?, stripes_here(&store, &root)?))
        });
        match here.await {
            Ok(Ok((h, stripes))) => h.response(stripes),
            _ => ReplicateResponse::Refused {
                reason: RefuseReason::Busy,
                message: "store unavailable".into(),
            },
        }
    }

    async fn hold(&self, peer: PeerId, root: BlockAddress, ask: Ask) -> ReplicateResponse {
        let Ask {
            replication,
            bytes,
            lease,
            shard,
        } = ask;
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
            let taken = me.take_in(root, replication, bytes, lease, shard).await;
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
        shard: Option<ShardOf>,
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
            shard,
        };
        let partial = |_: &Walked| Some(Holding::Replica(record(false)));
        let what = Bring::copy(root, &partial, self.pace(Some(bytes))).column(shard);
        let brought = bring(&self.client, &session, what).await;
        if let Err(e) = brought {
            // Nothing keeps a failed intake: the next repair round pushes it again.
            let store = Arc::clone(&self.store);
            let _ = blocking(move || store.drop_replica(&root)).await;
            return Err(e);
        }
        let s = Arc::clone(&session);
        blocking(move || s.commit(&Holding::Replica(record(true)))).await??;
        match shard {
            Some(s) => {
                tracing::info!(cid = %root, column = s.column, map = %s.map, "holding a column")
            }
            None => tracing::info!(cid = %root, replication, "holding a replica"),
        }
        Ok(Announcing::begin(&self.announcing))
    }
}
