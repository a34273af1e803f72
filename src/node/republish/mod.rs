//! Republishing provider records in one sweep (DESIGN.md, "Republishing provider records").
//!
//! Provider records expire on the peers that hold them, so everything a node holds whole
//! (pins and replicas) is announced again every `republish_interval`. kad's own republish walks
//! the DHT once per key and sends one record per message — tens of messages per root. The sweep
//! instead maps the key space around all the roots at once ([`KeyspaceMap`]: a few walks per
//! region of about 2k peers), computes each root's k closest peers locally, and hands each of
//! those peers all of its records in batches of up to 4096 on the announce protocol
//! (`protocols/announce-v1.md`). The receiver stores them in its Kademlia record store, where
//! ordinary `get_providers` lookups find them.
//!
//! New items are still announced on their own at once (one walk), so that they are findable
//! before the next sweep. This module decides what to announce to whom; it must not touch the
//! Swarm (it talks to the event loop through the [`Client`]) nor block on the store.

pub mod regions;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::content::BlockAddress;
use crate::network::announce::MAX_ROOTS;
use crate::network::{AnnounceResponse, Announcement, DhtStore, DHT_K};
use crate::store::Store;

use super::tasks::{periodic, Schedule};
use super::{blocking, now_secs, Client, NodeError};
use regions::KeyspaceMap;

/// Peers sent batches at once.
const PARALLEL_PEERS: usize = 16;

/// What one sweep did, for `storgo status`, `storgo repair` and the benchmark.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RepublishReport {
    /// Unix seconds when it started.
    pub started: u64,
    pub duration_ms: u64,
    /// Roots announced (every item held whole).
    pub roots: usize,
    /// Regions of the key space, DHT walks made to map them, and the requests those sent.
    pub regions: usize,
    pub walks: u32,
    pub walk_requests: u64,
    /// Peers that were sent records, batches sent, records in them, records the peers stored.
    pub peers: usize,
    pub batches: usize,
    pub records_sent: u64,
    pub records_stored: u64,
    /// Peers that refused or could not be reached, with the reason.
    /// (As pairs of strings: `[who or what, why]`.)
    #[schema(value_type = Vec<Vec<String>>)]
    pub failed: Vec<(String, String)>,
}

/// The periodic republish of one node.
#[derive(Clone)]
pub struct Republisher {
    client: Client,
    store: Arc<Store>,
    interval: Option<Duration>,
    last: Arc<Mutex<Option<RepublishReport>>>,
    /// One sweep at a time: a sweep asked for while one runs waits for it.
    running: Arc<tokio::sync::Mutex<()>>,
    /// Per root, the peers (short hashes of their IDs) that stored its record since the last
    /// full sweep: a repair round sends records only to peers that are newly among a root's
    /// closest.
    announced: Arc<Mutex<HashMap<BlockAddress, Vec<u64>>>>,
}

/// Which records a sweep sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every root to each of its k closest peers.
    All,
    /// Only to the peers that have not stored a root's record since the last full sweep.
    NewClosest,
    /// A few roots this node has just come to hold, to each of their k closest peers, without
    /// waiting for a sweep or forgetting what earlier sweeps sent.
    Newly,
}

fn short(peer: &PeerId) -> u64 {
    let b = peer.to_bytes();
    let tail = &b[b.len().saturating_sub(8)..];
    let mut x = [0u8; 8];
    x[8 - tail.len()..].copy_from_slice(tail);
    u64::from_be_bytes(x)
}

impl Republisher {
    pub(crate) fn new(client: Client, store: Arc<Store>, interval: Option<Duration>) -> Self {
        Self {
            client,
            store,
            interval,
            last: Arc::default(),
            running: Arc::default(),
            announced: Arc::default(),
        }
    }

    /// The last sweep's report.
    pub fn last(&self) -> Option<RepublishReport> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Announces every item this node holds whole (pins and replicas).
    pub async fn sweep(&self) -> RepublishReport {
        let store = Arc::clone(&self.store);
        let roots = match blocking(move || held_roots(&store)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return self.failed(e.to_string()),
            Err(e) => return self.failed(e.to_string()),
        };
        self.announce(roots).await
    }

    fn failed(&self, reason: String) -> RepublishReport {
        tracing::warn!(error = %reason, "republish could not list what this node holds");
        let report = RepublishReport {
            started: now_secs(),
            failed: vec![("(store)".into(), reason)],
            ..RepublishReport::default()
        };
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(report.clone());
        report
    }

    /// Announces `roots` as provided by this node: locally, then to each root's k closest
    /// peers in batches.
    pub async fn announce(&self, roots: Vec<BlockAddress>) -> RepublishReport {
        self.run(roots, None, Scope::All).await
    }

    /// Announces roots this node has just come to hold (a replica taken in): locally, then to
    /// each root's k closest peers, waiting for their answers. Kademlia's own ADD_PROVIDER
    /// counts a record sent as stored and never says when it is lost; here a holder's record
    /// is known to be on the peers that answered `Stored`, before its intake ends.
    pub async fn announce_new(&self, roots: Vec<BlockAddress>) -> RepublishReport {
        self.run(roots, None, Scope::Newly).await
    }

    /// After a repair round: sends each of `roots` to the peers of `map` that are now among
    /// its k closest but have not stored its record since the last full sweep (peers that
    /// joined, or moved up as others left), so that records follow churn between sweeps.
    pub async fn follow(&self, map: &KeyspaceMap, roots: Vec<BlockAddress>) -> RepublishReport {
        self.run(roots, Some(map), Scope::NewClosest).await
    }

    async fn run(
        &self,
        roots: Vec<BlockAddress>,
        map: Option<&KeyspaceMap>,
        scope: Scope,
    ) -> RepublishReport {
        // One sweep at a time; a new holder's announcement of its few roots does not wait
        // behind a sweep of every root (it would hold its intake that long).
        let _one = match scope {
            Scope::Newly => None,
            Scope::All | Scope::NewClosest => Some(self.running.lock().await),
        };
        let started = Instant::now();
        let mut report = RepublishReport {
            started: now_secs(),
            roots: roots.len(),
            ..RepublishReport::default()
        };
        let result = self.announce_inner(&roots, map, scope, &mut report).await;
        if let Err(e) = result {
            report.failed.push(("(node)".into(), e.to_string()));
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        if scope == Scope::Newly {
            // Not a sweep: the last sweep's report stays what `status` shows.
            tracing::debug!(
                roots = report.roots,
                peers = report.peers,
                stored = report.records_stored,
                failed = report.failed.len(),
                "announced newly held items"
            );
            return report;
        }
        tracing::info!(
            roots = report.roots,
            regions = report.regions,
            walks = report.walks,
            peers = report.peers,
            batches = report.batches,
            records = report.records_sent,
            failed = report.failed.len(),
            ms = report.duration_ms,
            scope = ?scope,
            "republish sweep"
        );
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(report.clone());
        report
    }

    async fn announce_inner(
        &self,
        roots: &[BlockAddress],
        map: Option<&KeyspaceMap>,
        scope: Scope,
        report: &mut RepublishReport,
    ) -> Result<(), NodeError> {
        let built;
        let map = match map {
            Some(m) => m,
            None => {
                let dht = DhtStore::new(Arc::clone(&self.store), self.client.peer_id());
                let local = roots.to_vec();
                blocking(move || dht.provide_locally(&local)).await??;
                built = KeyspaceMap::build(&self.client, roots, DHT_K).await?;
                report.regions = built.regions;
                report.walks = built.walks;
                report.walk_requests = built.walk_requests;
                &built
            }
        };
        let (peers, batches) = {
            let mut announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
            if scope == Scope::All {
                announced.clear();
            }
            plan_batches(roots, |root| map.closest(root, DHT_K), &announced)
        };
        report.peers = peers;
        let addrs = self.addresses();
        report.batches = batches.len();
        let client = &self.client;
        let mut sent = futures::stream::iter(batches)
            .map(|(peer, roots)| {
                let announcement = Announcement {
                    roots,
                    addrs: addrs.clone(),
                };
                async move {
                    let answer = client.announce(peer, announcement.clone()).await;
                    (peer, announcement.roots, answer)
                }
            })
            .buffer_unordered(PARALLEL_PEERS);
        let mut stored: Vec<(PeerId, Vec<BlockAddress>)> = Vec::new();
        while let Some((peer, roots, answer)) = sent.next().await {
            report.records_sent += roots.len() as u64;
            client
                .counters()
                .provider_records_published
                .inc_by(roots.len() as u64);
            match answer {
                Ok(AnnounceResponse::Stored { count }) => {
                    report.records_stored += u64::from(count);
                    if count as usize >= roots.len() {
                        stored.push((peer, roots));
                    } else {
                        // Some keys were full there, and the answer does not say which: none
                        // of the batch counts as stored, so the next round sends it again.
                        report.failed.push((
                            peer.to_string(),
                            format!("stored {count} of {} records", roots.len()),
                        ));
                    }
                }
                Ok(AnnounceResponse::Refused { reason, message }) => {
                    tracing::debug!(peer = %peer, ?reason, message, "announcement refused");
                    report
                        .failed
                        .push((peer.to_string(), format!("{reason:?}: {message}")));
                }
                Err(e) => {
                    tracing::debug!(peer = %peer, error = %e, "announcement failed");
                    report.failed.push((peer.to_string(), e.to_string()));
                }
            }
        }
        let mut announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
        for (peer, roots) in stored {
            for root in roots {
                announced.entry(root).or_default().push(short(&peer));
            }
        }
        Ok(())
    }

    /// This node's confirmed addresses as provider records carry them (without `/p2p/…`):
    /// direct ones and `/p2p-circuit` ones through its relays, never an address no peer could
    /// dial.
    fn addresses(&self) -> Vec<Multiaddr> {
        self.client
            .advertised_addrs()
            .into_iter()
            .map(|mut a| {
                if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
                    a.pop();
                }
                a
            })
            .collect()
    }

    /// Sweeps once the node knows some peers, then every `interval` (jittered ±10%) until
    /// the node's tasks are stopped.
    pub(crate) async fn republish_loop(self) {
        let Some(every) = self.interval else {
            return;
        };
        // The first sweep waits for a routing table to announce into (bootstrap, mDNS).
        loop {
            match self.client.info().await {
                Err(_) => return,
                Ok(info) if info.routing_table_size > 0 => break,
                Ok(_) => tokio::time::sleep(Duration::from_secs(2)).await,
            }
        }
        let schedule = Schedule {
            every,
            jitter: 0.1,
            first_at_once: true,
        };
        periodic(schedule, || {
            let me = self.clone();
            async move {
                me.sweep().await;
            }
        })
        .await
    }
}

/// Which records go to which peer, in batches the announce protocol carries (at most
/// [`MAX_ROOTS`] roots each): every root to each of its `closest` peers, less the peers that
/// `announced` says have stored it. Returns how many peers are sent anything, and the batches.
fn plan_batches(
    roots: &[BlockAddress],
    closest: impl Fn(&BlockAddress) -> Vec<PeerId>,
    announced: &HashMap<BlockAddress, Vec<u64>>,
) -> (usize, Vec<(PeerId, Vec<BlockAddress>)>) {
    let mut per_peer: HashMap<PeerId, Vec<BlockAddress>> = HashMap::new();
    for root in roots {
        let had = announced.get(root);
        for peer in closest(root) {
            if had.is_none_or(|h| !h.contains(&short(&peer))) {
                per_peer.entry(peer).or_default().push(*root);
            }
        }
    }
    let peers = per_peer.len();
    let batches = per_peer
        .into_iter()
        .flat_map(|(peer, roots)| {
            roots
                .chunks(MAX_ROOTS)
                .map(|c| (peer, c.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect();
    (peers, batches)
}

/// The roots of every item held whole: the user's pins and the network's replicas.
pub(crate) fn held_roots(store: &Store) -> Result<Vec<BlockAddress>, crate::store::StoreError> {
    let mut roots: Vec<BlockAddress> = store
        .pins()?
        .into_iter()
        .filter(|p| !p.partial)
        .filter_map(|p| p.id.parse::<crate::content::ContentId>().ok())
        .map(|id| id.root)
        .collect();
    roots.extend(
        store
            .replicas()?
            .into_iter()
            .filter(|r| r.complete)
            .map(|r| r.root),
    );
    roots.sort_unstable_by_key(|r| *r.digest());
    roots.dedup();
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(i: u32) -> BlockAddress {
        let mut d = [0u8; 32];
        d[..4].copy_from_slice(&i.to_be_bytes());
        BlockAddress::from_digest(d)
    }

    /// Each root's closest peers: three of `peers`, chosen by the root's number.
    fn three_of(peers: &[PeerId]) -> impl Fn(&BlockAddress) -> Vec<PeerId> + '_ {
        |r: &BlockAddress| {
            let i = u32::from_be_bytes(r.digest()[..4].try_into().unwrap()) as usize;
            (0..3).map(|k| peers[(i + k) % peers.len()]).collect()
        }
    }

    fn sent(batches: &[(PeerId, Vec<BlockAddress>)]) -> Vec<(PeerId, BlockAddress)> {
        let mut v: Vec<_> = batches
            .iter()
            .flat_map(|(p, roots)| roots.iter().map(move |r| (*p, *r)))
            .collect();
        v.sort_by_key(|(p, r)| (p.to_bytes(), *r.digest()));
        v
    }

    #[test]
    fn every_root_goes_once_to_each_of_its_closest_peers_in_bounded_batches() {
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        let roots: Vec<BlockAddress> = (0..(MAX_ROOTS as u32 * 2 + 7)).map(root).collect();
        let closest = three_of(&peers);
        let (n, batches) = plan_batches(&roots, &closest, &HashMap::new());
        assert_eq!(n, 4);
        assert!(batches
            .iter()
            .all(|(_, b)| !b.is_empty() && b.len() <= MAX_ROOTS));
        let mut want: Vec<(PeerId, BlockAddress)> = roots
            .iter()
            .flat_map(|r| closest(r).into_iter().map(move |p| (p, *r)))
            .collect();
        want.sort_by_key(|(p, r)| (p.to_bytes(), *r.digest()));
        assert_eq!(sent(&batches), want, "each (peer, root) once, nothing else");
        // Each peer has ~3/4 of 2·MAX_ROOTS+7 roots: two batches each, not one per root.
        assert_eq!(batches.len(), 8);
    }

    #[test]
    fn peers_that_stored_a_root_are_not_sent_it_again() {
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        let roots: Vec<BlockAddress> = (0..10).map(root).collect();
        let closest = three_of(&peers);
        let mut announced = HashMap::new();
        // Root 0's closest all stored it; root 1's first closest did.
        announced.insert(roots[0], closest(&roots[0]).iter().map(short).collect());
        announced.insert(roots[1], vec![short(&closest(&roots[1])[0])]);
        let (_, batches) = plan_batches(&roots, &closest, &announced);
        let sent = sent(&batches);
        assert!(
            !sent.iter().any(|(_, r)| *r == roots[0]),
            "root 0 is everywhere"
        );
        let to_1: Vec<PeerId> = sent
            .iter()
            .filter(|(_, r)| *r == roots[1])
            .map(|(p, _)| *p)
            .collect();
        assert_eq!(to_1.len(), 2);
        assert!(!to_1.contains(&closest(&roots[1])[0]));
        assert_eq!(sent.len(), 3 * 10 - 3 - 1);
        let (n, none) = plan_batches(&[], &closest, &announced);
        assert_eq!((n, none.len()), (0, 0));
    }
}
