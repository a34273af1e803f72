//! The node's counters, as Prometheus metrics.
//!
//! One [`Registry`] per node holds libp2p's own metrics (`libp2p_…`: swarm, kad, identify,
//! ping, connections by transport) and storgo's (`storgo_…`), named by Prometheus's
//! conventions (`_total` for counters, `_bytes` and `_seconds` for units). The counters are
//! atomics shared by every task that moves them; the event loop records libp2p's events;
//! values that are cheaper to read than to keep (blocks stored, replicas held) are read from
//! the store when `/metrics` is scraped ([`Metrics::observe_store`]). This module must not
//! decide anything: status, readiness and tests read the same counters through it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::store::Store;

/// Labels of `storgo_inbound_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Inbound {
    /// `chunks` or `announce`.
    pub protocol: &'static str,
    /// `block`, `have`, `not_found`, `busy`, `bad_request`, `internal`, `stored`, `refused`.
    pub outcome: &'static str,
}

/// Labels of `storgo_background_tasks`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Task {
    /// `replica service`, `repair`, `scrub`, `republish`, `collections` or `resume`.
    pub task: &'static str,
}

/// Labels of `storgo_node_role`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    /// `resident` or `temporary`.
    pub role: &'static str,
}

/// Labels of `storgo_hole_punches_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `direct` (punched) or `failed` (the connection stays relayed).
    pub outcome: &'static str,
}

/// Labels of `storgo_relay_reservations`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Side {
    /// `held` (this node's, on relays) or `served` (peers' on this node's relay).
    pub side: &'static str,
}

/// Labels of `storgo_reachability`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReachLabel {
    /// `public`, `private` or `unknown`.
    pub status: &'static str,
}

/// Counters shared between the event loop, the client and the API.
#[derive(Debug)]
pub struct Counters {
    pub bytes_served: Counter,
    pub bytes_fetched: Counter,
    pub bytes_added: Counter,
    /// Replicate-protocol requests sent (queries and holds): the cost of placement and repair.
    pub replicate_requests: Counter,
    /// Kademlia requests of any kind received from peers (the DHT's cost, counted where it
    /// lands).
    pub dht_requests_received: Counter,
    /// Announce-protocol requests (batches of provider records) received.
    pub announcements_received: Counter,
    /// Requests from peers, by protocol and how they were answered.
    pub inbound_requests: Family<Inbound, Counter>,
    /// Provider records this node sent (kad announcements and batched republish).
    pub provider_records_published: Counter,
    /// Connections made since start (either way): whether this node has reached anyone.
    pub connections_made: Counter,
    /// Fetches that completed, by how long they took.
    pub fetch_seconds: Histogram,
    /// Replicas placed on peers by repair rounds.
    pub repairs: Counter,
    pub blocks_stored: Gauge,
    pub stored_bytes: Gauge,
    pub items_pinned: Gauge,
    pub replicas_held: Gauge,
    pub items_under_replicated: Gauge,
    /// Items kept as `ec:K+M` with a column missing at the last placement: each of their
    /// stripes is below the repair threshold (K + M).
    pub striped_items_below_threshold: Gauge,
    /// Columns of striped items held here for the network.
    pub columns_held: Gauge,
    /// What the node is for (`resident` or `temporary`), 1 on its one label.
    pub role: Family<RoleLabel, Gauge>,
    /// Background tasks besides the swarm's loop: 1 while one runs, 0 once it has ended.
    pub background_tasks: Family<Task, Gauge>,
    /// The names in `background_tasks`, in the order they started (a family cannot be listed).
    task_names: std::sync::Mutex<Vec<&'static str>>,
    /// Hole punches finished, by outcome.
    pub hole_punches: Family<Outcome, Counter>,
    /// How long hole punches took, from the relayed connection to the direct one.
    pub hole_punch_seconds: Histogram,
    /// Relay reservations now, held and served.
    pub relay_reservations: Family<Side, Gauge>,
    /// Circuits this node's relay has opened for others.
    pub circuits_relayed: Counter,
    /// AutoNAT probes of this node's addresses, by result (`reachable`, `unreachable`).
    pub reachability_probes: Family<Outcome, Counter>,
    /// 1 on the node's reachability now.
    pub reachability: Family<ReachLabel, Gauge>,
    /// Woken when a new peer joins the routing table: what is short of copies is placed then.
    /// (Not a metric either.)
    pub peer_joined: tokio::sync::Notify,
    /// Set when the node begins to stop: new holds and announcements are refused. (Not a
    /// metric; it lives here because everything that needs it holds the counters.)
    pub stopping: AtomicBool,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            bytes_served: Counter::default(),
            bytes_fetched: Counter::default(),
            bytes_added: Counter::default(),
            replicate_requests: Counter::default(),
            dht_requests_received: Counter::default(),
            announcements_received: Counter::default(),
            inbound_requests: Family::default(),
            provider_records_published: Counter::default(),
            connections_made: Counter::default(),
            // 50 ms to about 7 minutes.
            fetch_seconds: Histogram::new(exponential_buckets(0.05, 2.0, 14)),
            repairs: Counter::default(),
            blocks_stored: Gauge::default(),
            stored_bytes: Gauge::default(),
            items_pinned: Gauge::default(),
            replicas_held: Gauge::default(),
            items_under_replicated: Gauge::default(),
            striped_items_below_threshold: Gauge::default(),
            columns_held: Gauge::default(),
            role: Family::default(),
            hole_punches: Family::default(),
            // 10 ms to about 40 s.
            hole_punch_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            relay_reservations: Family::default(),
            circuits_relayed: Counter::default(),
            reachability_probes: Family::default(),
            reachability: Family::default(),
            background_tasks: Family::default(),
            task_names: std::sync::Mutex::new(Vec::new()),
            peer_joined: tokio::sync::Notify::new(),
            stopping: AtomicBool::new(false),
        }
    }
}

impl Counters {
    pub fn inbound(&self, protocol: &'static str, outcome: &'static str) {
        self.inbound_requests
            .get_or_create(&Inbound { protocol, outcome })
            .inc();
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Records what the node is for (once, at start).
    pub fn set_role(&self, role: &'static str) {
        self.role.get_or_create(&RoleLabel { role }).set(1);
    }

    /// The role set by [`set_role`](Self::set_role), if any.
    pub fn role(&self) -> Option<&'static str> {
        ["resident", "temporary"]
            .into_iter()
            .find(|role| self.role.get_or_create(&RoleLabel { role }).get() == 1)
    }

    /// Marks a background task as running (`true`) or ended (`false`).
    pub fn task_running(&self, task: &'static str, running: bool) {
        if running {
            let mut names = self.task_names.lock().unwrap_or_else(|e| e.into_inner());
            if !names.contains(&task) {
                names.push(task);
            }
        }
        self.background_tasks
            .get_or_create(&Task { task })
            .set(running as i64);
    }

    /// The background tasks running now, in the order they started.
    pub fn running_tasks(&self) -> Vec<&'static str> {
        let names = self.task_names.lock().unwrap_or_else(|e| e.into_inner());
        names
            .iter()
            .copied()
            .filter(|&task| self.background_tasks.get_or_create(&Task { task }).get() == 1)
            .collect()
    }

    fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("storgo");
        let bytes = |r: &mut Registry, name: &str, help: &str, c: &Counter| {
            r.register_with_unit(name, help, Unit::Bytes, c.clone());
        };
        bytes(
            r,
            "added",
            "Bytes of files added on this node",
            &self.bytes_added,
        );
        bytes(
            r,
            "served",
            "Bytes of blocks sent to peers",
            &self.bytes_served,
        );
        bytes(
            r,
            "fetched",
            "Bytes of blocks fetched from peers",
            &self.bytes_fetched,
        );
        r.register(
            "replicate_requests_sent",
            "Replicate-protocol requests sent (placement and repair)",
            self.replicate_requests.clone(),
        );
        r.register(
            "dht_requests_received",
            "Kademlia requests received from peers",
            self.dht_requests_received.clone(),
        );
        r.register(
            "announcements_received",
            "Batches of provider records received",
            self.announcements_received.clone(),
        );
        r.register(
            "inbound_requests",
            "Requests from peers by protocol and outcome",
            self.inbound_requests.clone(),
        );
        r.register(
            "provider_records_published",
            "Provider records this node announced",
            self.provider_records_published.clone(),
        );
        r.register(
            "connections_made",
            "Connections made since start, either way",
            self.connections_made.clone(),
        );
        r.register_with_unit(
            "fetch_duration",
            "How long completed fetches took",
            Unit::Seconds,
            self.fetch_seconds.clone(),
        );
        r.register(
            "repairs",
            "Replicas placed by repair rounds",
            self.repairs.clone(),
        );
        r.register(
            "blocks_stored",
            "Blocks held in the store",
            self.blocks_stored.clone(),
        );
        r.register_with_unit(
            "stored",
            "Bytes of blocks held in the store",
            Unit::Bytes,
            self.stored_bytes.clone(),
        );
        r.register(
            "node_role",
            "What this node is for: resident (storgo node) or temporary (a lone fetch)",
            self.role.clone(),
        );
        r.register(
            "background_tasks",
            "Background tasks besides the swarm's loop: 1 running, 0 ended",
            self.background_tasks.clone(),
        );
        r.register(
            "hole_punches",
            "Hole punches finished, by outcome: direct or failed (the connection stays relayed)",
            self.hole_punches.clone(),
        );
        r.register_with_unit(
            "hole_punch_duration",
            "From a relayed connection to the direct one a hole punch made",
            Unit::Seconds,
            self.hole_punch_seconds.clone(),
        );
        r.register(
            "relay_reservations",
            "Relay reservations now: held on relays, served to peers",
            self.relay_reservations.clone(),
        );
        r.register(
            "circuits_relayed",
            "Circuits this node's relay opened between two other peers",
            self.circuits_relayed.clone(),
        );
        r.register(
            "reachability_probes",
            "AutoNAT dial-backs of this node's addresses, by outcome: reachable or unreachable",
            self.reachability_probes.clone(),
        );
        r.register(
            "reachability",
            "Whether peers can dial this node: 1 on public, private or unknown",
            self.reachability.clone(),
        );
        r.register(
            "items_pinned",
            "Items pinned here",
            self.items_pinned.clone(),
        );
        r.register(
            "replicas_held",
            "Replicas held whole for the network",
            self.replicas_held.clone(),
        );
        r.register(
            "items_under_replicated",
            "Items below their replication at the last repair round",
            self.items_under_replicated.clone(),
        );
        r.register(
            "striped_items_below_threshold",
            "Items kept as ec:K+M that had a column missing at their last placement",
            self.striped_items_below_threshold.clone(),
        );
        r.register(
            "columns_held",
            "Columns of striped items held whole for the network",
            self.columns_held.clone(),
        );
    }
}

/// What the event loop records into: the shared counters and libp2p's recorder.
pub struct LoopMetrics {
    pub counters: Arc<Counters>,
    pub p2p: libp2p::metrics::Metrics,
}

/// A node's metrics: the registry to encode and the counters to move.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub counters: Arc<Counters>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// `registry` (which the swarm's transports already count bytes into: libp2p's
    /// `bandwidth`, by protocol stack, relayed circuits apart) with libp2p's metrics and
    /// storgo's counters added, and what the event loop records into.
    pub fn new(mut registry: Registry) -> (Self, LoopMetrics) {
        let p2p = libp2p::metrics::Metrics::new(&mut registry);
        let counters = Arc::new(Counters::default());
        counters.register(&mut registry);
        let for_loop = LoopMetrics {
            counters: Arc::clone(&counters),
            p2p,
        };
        (
            Self {
                registry: Arc::new(registry),
                counters,
            },
            for_loop,
        )
    }

    pub fn added(&self, bytes: u64) {
        self.counters.bytes_added.inc_by(bytes);
    }

    /// Reads the store's counts into the gauges (blocking: it reads the index).
    pub fn observe_store(&self, store: &Store, replicator: &super::Replicator) {
        let c = &self.counters;
        if let Ok(s) = store.stats() {
            c.blocks_stored.set(s.blocks as i64);
            c.stored_bytes.set(s.bytes as i64);
            c.items_pinned.set(s.pins as i64);
        }
        if let Ok(r) = store.replicas() {
            c.replicas_held
                .set(r.iter().filter(|r| r.complete).count() as i64);
            c.columns_held
                .set(r.iter().filter(|r| r.complete && r.shard.is_some()).count() as i64);
        }
        c.items_under_replicated
            .set(replicator.under_replicated() as i64);
        c.striped_items_below_threshold
            .set(replicator.striped_below_threshold() as i64);
    }

    /// The Prometheus text format (OpenMetrics).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
