//! What `storgo node` (and a temporary `fetch` node) is built from: [`NodeConfig`], resolved
//! from the flags and checked, the network part alone ([`network`]), and peer lists with
//! `@FILE` expanded.
//!
//! It turns parsed flags into the typed configuration of the `network`, `node` and `api`
//! layers; it must not start anything nor read the config file (that is done before the flags
//! are parsed, by [`file`](super::file)).

use std::time::Duration;

use super::error::ConfigError;
use super::flags::{NetArgs, NodeArgs, ReachArgs};
use crate::network::NetworkConfig;
use crate::node::ReplicationConfig;

/// What `storgo node` is built from, resolved and checked.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub network: NetworkConfig,
    pub replication: ReplicationConfig,
    pub http: crate::api::HttpConfig,
    /// `--api` was given: its port is never replaced by a free one.
    pub api_given: bool,
}

/// The default API port; when it is taken (a second node on this machine), a free one.
pub const DEFAULT_API_PORT: u16 = 4816;

impl NodeConfig {
    pub fn from_args(args: &NodeArgs) -> Result<Self, ConfigError> {
        let mut cfg = network(&args.net, true)?;
        cfg.provider_ttl = args.provider_ttl.into();
        if args.new_identity {
            cfg.identity = crate::network::identity::IfMissing::CreateAlways;
        }
        cfg.collection_refresh = args.collection_refresh.into();
        if cfg.collection_refresh < Duration::from_secs(10) {
            return Err(ConfigError::Invalid(format!(
                "collection-refresh {} is too short: at least 10s (each refresh is a DHT lookup per followed collection)",
                args.collection_refresh
            )));
        }
        let republish: Duration = args.republish_interval.into();
        cfg.republish_interval = (!republish.is_zero()).then_some(republish);
        if republish >= cfg.provider_ttl {
            return Err(ConfigError::Invalid(
                "republish-interval must be shorter than provider-ttl, or records expire between announcements".into(),
            ));
        }
        let l = &args.limits;
        cfg.max_connections = l.max_connections;
        cfg.max_connections_per_peer = l.max_connections_per_peer.max(1);
        cfg.max_memory = (l.max_memory > 0).then_some(l.max_memory);
        cfg.max_providers_per_peer = l.max_providers_per_peer;
        cfg.serve = crate::network::ServeLimits {
            in_flight_per_peer: l.peer_requests_in_flight.max(1),
            requests_per_second_per_peer: l.peer_request_rate.max(1),
            bytes_per_second: (l.serve_rate > 0).then_some(l.serve_rate),
            ..Default::default()
        };
        apply_reach(&mut cfg, &args.reach)?;
        let interval: Duration = args.repair_interval.into();
        let replication = ReplicationConfig {
            replication: args.replication,
            durability: args.durability,
            repair_interval: (!interval.is_zero()).then_some(interval),
            scrub_rate: (args.scrub_rate > 0).then_some(args.scrub_rate),
            max_intake: l.max_intake.max(1),
            intake_per_peer_per_hour: l.intake_per_peer_per_hour,
            replica_lease: Duration::from(args.replica_lease).max(Duration::from_secs(60)),
            ..Default::default()
        };
        let http = crate::api::HttpConfig {
            api: args.api.unwrap_or(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                DEFAULT_API_PORT,
            ))),
            gateway: args.gateway,
        };
        Ok(Self {
            network: cfg,
            replication,
            http,
            api_given: args.api.is_some(),
        })
    }
}

/// The reachability flags: AutoNAT or not, the relay offered, the reservations kept, UPnP.
fn apply_reach(cfg: &mut NetworkConfig, r: &ReachArgs) -> Result<(), ConfigError> {
    cfg.reachability = r.reachability.parse().map_err(ConfigError::Invalid)?;
    let limits = crate::network::RelayLimits {
        reservations: r.relay_max_reservations,
        reservations_per_peer: r.relay_max_reservations_per_peer.max(1),
        circuits: r.relay_max_circuits,
        circuits_per_peer: r.relay_max_circuits_per_peer.max(1),
        circuit_duration: r.relay_circuit_duration.into(),
        circuit_bytes: r.relay_circuit_bytes,
    };
    if limits.circuit_duration < Duration::from_secs(10) || limits.circuit_bytes < 64 << 10 {
        return Err(ConfigError::Invalid(
            "relay-circuit-duration must be at least 10s and relay-circuit-bytes at least 64KiB: a circuit must live long enough for a hole punch".into(),
        ));
    }
    cfg.relay_service = (!r.no_relay_service).then_some(limits);
    cfg.relay_reservations = r.relay_reservations;
    // A node on loopback alone has no router to ask, and the search is a multicast on the
    // LAN (SSDP): it is not sent.
    let loopback_only = cfg.listen.iter().all(crate::network::is_loopback);
    cfg.upnp = !r.no_upnp && !loopback_only;
    Ok(())
}

/// The network part of the flags (`node` and `fetch`). A temporary fetch node
/// (`dht_server` false) listens only on a free port to talk from.
pub fn network(net: &NetArgs, dht_server: bool) -> Result<NetworkConfig, ConfigError> {
    let invalid = |e: anyhow::Error| ConfigError::Invalid(e.to_string());
    let allow = peer_list(&net.allow_peer).map_err(invalid)?;
    let mut cfg = NetworkConfig {
        bootstrap: net.bootstrap.clone(),
        mdns: !net.no_mdns,
        dht_server,
        allow_peers: (!allow.is_empty()).then_some(allow),
        deny_peers: peer_list(&net.deny_peer).map_err(invalid)?,
        swarm_key: net
            .swarm_key
            .as_deref()
            .map(crate::network::read_swarm_key)
            .transpose()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?,
        ..NetworkConfig::default()
    };
    if !net.listen.is_empty() {
        cfg.listen = net.listen.clone();
        cfg.listen_fallback = false;
    } else if !dht_server {
        cfg.listen = vec!["/ip4/0.0.0.0/tcp/0".parse().expect("constant multiaddr")];
    }
    if let Some(a) = cfg.bootstrap.iter().find(|a| !cfg.usable(a)) {
        return Err(ConfigError::Invalid(format!(
            "--bootstrap {a}: a private network (--swarm-key) works over TCP only; give the peer's /tcp/ address"
        )));
    }
    Ok(cfg)
}

/// PeerIds given on the command line, `@FILE` expanded (one per line; `#` comments).
pub fn peer_list(args: &[String]) -> anyhow::Result<Vec<libp2p::PeerId>> {
    let mut out = Vec::new();
    let parse = |s: &str, from: &str| -> anyhow::Result<libp2p::PeerId> {
        s.parse()
            .map_err(|e| anyhow::anyhow!("{s:?}{from} is not a PeerId: {e}"))
    };
    for a in args {
        match a.strip_prefix('@') {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading peer list {path}: {e}"))?;
                for (n, line) in text.lines().enumerate() {
                    let line = line.split('#').next().unwrap_or("").trim();
                    if !line.is_empty() {
                        out.push(parse(line, &format!(" (in {path}, line {})", n + 1))?);
                    }
                }
            }
            None => out.push(parse(a, "")?),
        }
    }
    Ok(out)
}
