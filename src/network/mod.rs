//! The network layer: the libp2p behaviours storgo runs and the transports under them.
//!
//! One module per protocol of storgo's own ([`chunks`], with its codec beside it), the
//! Kademlia record store ([`records`]), the node identity ([`identity`]), and here the
//! composed [`Behaviour`] and [`build_swarm`]. This layer says *how* to talk; it must not
//! decide *what* to fetch or store — that is the node's event loop (`crate::node`).
//!
//! Behaviours: Kademlia under `/storgo/kad/1.0.0` (storgo's own DHT, not IPFS's), the chunk
//! exchange, the replicate protocol ([`replicate`]), the batched provider announcements
//! ([`announce`]), gossipsub (a topic per followed collection: [`collection_topic`]), identify,
//! ping, mDNS (optional), AutoNAT v2 (client and server), circuit relay v2 (service and client),
//! DCUtR hole punching, UPnP port mapping, with what they take as confirmed corrected ([`confirmed`]) and connection limits, over TCP
//! (Noise + Yamux), QUIC and relayed circuits. Which addresses count as reachable, and when the
//! node serves the DHT, is the event loop's (`node::swarm::reach`), by `protocols/reachability-v1.md`.

pub mod announce;
pub mod chunks;
pub mod confirmed;
pub mod dial_gate;
pub mod framing;
pub mod hole_punch;
pub mod identity;
pub mod records;
pub mod replicate;

use std::path::PathBuf;
use std::time::Duration;

use libp2p::core::upgrade;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    allow_block_list, autonat, connection_limits, gossipsub, identify, kad, mdns,
    memory_connection_limits, noise, ping, pnet, relay, request_response, tcp, upnp, yamux,
    Multiaddr, PeerId, StreamProtocol, Swarm, Transport,
};

pub use announce::{AnnounceCodec, AnnounceResponse, Announcement};
pub use chunks::{ChunkCodec, ChunkRequest, ChunkResponse};
pub use records::{DhtStore, ProviderCounts, RemoteProvider};
pub use replicate::{
    HeldStripes, RefuseReason, ReplicateCodec, ReplicateRequest, ReplicateResponse,
};

/// Kademlia protocol name: storgo forms its own DHT.
pub const KAD_PROTOCOL: &str = "/storgo/kad/1.0.0";
/// Kademlia's k: how many peers a lookup returns and how many closest peers hold each provider
/// record (libp2p's default, set explicitly because the batched republish relies on it).
pub const DHT_K: usize = 20;
/// identify protocol version.
pub const IDENTIFY_PROTOCOL: &str = "/storgo/id/1.0.0";
/// Default port for TCP and QUIC: storgo's own, not kubo's 4001, so that both run on one
/// machine. When it is taken, a node that was not given `--listen` takes a free port.
pub const DEFAULT_PORT: u16 = 4815;

/// Errors of the network layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    #[error("node identity {path}: {reason}")]
    Identity { path: PathBuf, reason: String },
    #[error("building the network: {0}")]
    Build(String),
    #[error("listening on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("swarm key {path}: {reason}")]
    SwarmKey { path: PathBuf, reason: String },
}

/// Network settings; `Default` is what `storgo node` uses.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub listen: Vec<Multiaddr>,
    /// When a listen port is taken, listen on a free one instead (with a warning): the
    /// default addresses do; addresses the user gave (`--listen`) do not.
    pub listen_fallback: bool,
    pub bootstrap: Vec<Multiaddr>,
    pub mdns: bool,
    /// A resident node (`storgo node`): it serves the DHT once it is reachable, offers a
    /// relay, keeps reservations when it is behind a NAT. A temporary fetch node only asks.
    pub dht_server: bool,
    /// How the node learns that peers can dial it (`--reachability`).
    pub reachability: ReachabilityMode,
    /// The circuit relay this node offers to peers behind NATs once it is reachable itself;
    /// `None`: none (`--no-relay-service`).
    pub relay_service: Option<RelayLimits>,
    /// Relay reservations a node behind a NAT keeps (`--relay-reservations`; 0: none).
    pub relay_reservations: usize,
    /// Ask the router for a port mapping by UPnP IGD (`--no-upnp` turns it off).
    pub upnp: bool,
    /// How long a provider record lives on the peers that hold it.
    pub provider_ttl: Duration,
    /// How often this node re-announces what it provides (must be well under the TTL), in one
    /// batched sweep (`node::republish`) rather than kad's one walk per key; `None` sweeps
    /// only when asked (`storgo repair`).
    pub republish_interval: Option<Duration>,
    /// How often followed collections are looked up in the DHT (new versions normally arrive
    /// at once over gossipsub; this finds those missed while offline or out of reach).
    pub collection_refresh: Duration,
    /// How often the node walks the DHT to refresh its routing table.
    pub bootstrap_interval: Duration,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: u32,
    /// Most provider records one peer may have on this node.
    pub max_providers_per_peer: u64,
    /// Connections from one peer, at most.
    pub max_connections_per_peer: u32,
    /// New connections are refused while the process uses more memory than this (the whole
    /// process: libp2p's memory-connection-limits reads its RSS).
    pub max_memory: Option<u64>,
    /// What one peer may ask of this node's store.
    pub serve: ServeLimits,
    /// With a list, only these peers may connect (`--allow-peer`).
    pub allow_peers: Option<Vec<PeerId>>,
    /// Peers never connected with (`--deny-peer`).
    pub deny_peers: Vec<PeerId>,
    /// A private network's key (`--swarm-key`): only nodes with the same key can connect. pnet
    /// works over TCP only, so QUIC is off in that mode.
    pub swarm_key: Option<pnet::PreSharedKey>,
    /// Whether a lost identity file may be replaced (`--new-identity`).
    pub identity: identity::IfMissing,
}

/// Whether `addr` is on loopback (127.0.0.0/8 or ::1).
pub fn is_loopback(addr: &Multiaddr) -> bool {
    match addr.iter().next() {
        Some(libp2p::multiaddr::Protocol::Ip4(ip)) => ip.is_loopback(),
        Some(libp2p::multiaddr::Protocol::Ip6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

impl NetworkConfig {
    /// Whether this node serves the DHT from its first moment: a resident node told its
    /// addresses are reachable, or one that listens only on loopback (`reachability-v1.md`).
    pub fn reachable_at_start(&self) -> bool {
        self.dht_server
            && (self.reachability == ReachabilityMode::Public
                || (!self.listen.is_empty() && self.listen.iter().all(is_loopback)))
    }

    /// Whether `addr` can be used with this configuration (QUIC cannot in a private network).
    pub fn usable(&self, addr: &Multiaddr) -> bool {
        self.swarm_key.is_none()
            || !addr
                .iter()
                .any(|p| matches!(p, libp2p::multiaddr::Protocol::QuicV1))
    }
}

/// How a node learns whether peers can dial it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReachabilityMode {
    /// Peers prove it: an address counts once AutoNAT has dialled it back (or the node listens
    /// only on loopback, where every peer that can reach it at all can). Until then the node
    /// is a DHT client and, behind a NAT, is reached through relays.
    #[default]
    Auto,
    /// Every listen address is reachable as it is (a server with a public address, a LAN or
    /// test network with no AutoNAT peers): a DHT server from the start.
    Public,
    /// Behind a NAT, and known to be: relay reservations are taken at once instead of after
    /// AutoNAT's verdict (kubo's `ForceReachability = "private"`). AutoNAT still runs, so a
    /// direct address a peer confirms (UPnP, a port forward) still makes the node public.
    Private,
}

impl std::str::FromStr for ReachabilityMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "public" => Ok(Self::Public),
            "private" => Ok(Self::Private),
            other => Err(format!("{other:?}: expected auto, public or private")),
        }
    }
}

/// What a storgo node's relay allows (`protocols/reachability-v1.md`, "Relay limits").
/// libp2p's defaults (2 minutes, 128 KiB a circuit) are for hole punching alone; storgo's
/// carry a whole transfer when punching fails, and bound what that costs the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLimits {
    /// Reservations held here, all peers together and by one peer.
    pub reservations: usize,
    pub reservations_per_peer: usize,
    /// Circuits relayed at once, all together and from one peer.
    pub circuits: usize,
    pub circuits_per_peer: usize,
    /// One circuit's life and the bytes it may carry each way; past either it is closed.
    pub circuit_duration: Duration,
    pub circuit_bytes: u64,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            reservations: 128,
            reservations_per_peer: 4,
            circuits: 16,
            circuits_per_peer: 4,
            circuit_duration: Duration::from_secs(30 * 60),
            circuit_bytes: 256 << 20,
        }
    }
}

/// Requests one IP may make in a burst, reservations and circuits alike (libp2p's).
const PER_IP_BURST: u32 = 60;
/// After a burst, one more request per IP every this long. libp2p's default is one a minute:
/// every node behind one campus NAT shares an IP, and at one a minute a hundred laptops there
/// could not all renew their reservations, nor fetch from each other (each hole punch starts
/// with a circuit). One every 5 s is 720 an hour per IP.
const PER_IP_REFILL: Duration = Duration::from_secs(5);
/// Requests one peer may make in a burst, then one every 2 minutes (libp2p's).
const PER_PEER_BURST: u32 = 30;
const PER_PEER_REFILL: Duration = Duration::from_secs(120);

impl RelayLimits {
    fn config(&self) -> relay::Config {
        let n = |v: u32| std::num::NonZeroU32::new(v).expect("a positive constant");
        relay::Config {
            max_reservations: self.reservations,
            max_reservations_per_peer: self.reservations_per_peer,
            max_circuits: self.circuits,
            max_circuits_per_peer: self.circuits_per_peer,
            max_circuit_duration: self.circuit_duration,
            max_circuit_bytes: self.circuit_bytes,
            reservation_rate_limiters: Vec::new(),
            circuit_src_rate_limiters: Vec::new(),
            ..relay::Config::default()
        }
        .reservation_rate_per_peer(n(PER_PEER_BURST), PER_PEER_REFILL)
        .reservation_rate_per_ip(n(PER_IP_BURST), PER_IP_REFILL)
        .circuit_src_per_peer(n(PER_PEER_BURST), PER_PEER_REFILL)
        .circuit_src_per_ip(n(PER_IP_BURST), PER_IP_REFILL)
    }
}

/// Limits on serving chunks to peers (`node::serving`).
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Requests of one peer admitted at once (a fetch keeps 8 in flight per provider).
    pub in_flight_per_peer: usize,
    /// Requests one peer may send a second (one second's worth may come at once).
    pub requests_per_second_per_peer: u32,
    /// Bytes of blocks served a second, all peers together; `None`: as fast as the disk goes.
    pub bytes_per_second: Option<u64>,
    /// Serve stored bytes without checking them against their address, as a lying peer does.
    /// Only tests of hostile peers set it (no flag or setting reaches it): an honest node
    /// checks every block before it leaves.
    #[doc(hidden)]
    pub unchecked: bool,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            in_flight_per_peer: 32,
            // A fetch at 1 GB/s asks ~1,000 chunks a second of all its providers together.
            requests_per_second_per_peer: 2_000,
            bytes_per_second: None,
            unchecked: false,
        }
    }
}

/// Reads a swarm key in the IPFS `swarm.key` format (`/key/swarm/psk/1.0.0/`, `/base16/`, 64
/// hex digits), checking that only its owner can read it.
pub fn read_swarm_key(path: &std::path::Path) -> Result<pnet::PreSharedKey, NetworkError> {
    use std::os::unix::fs::PermissionsExt;
    let bad = |reason: String| NetworkError::SwarmKey {
        path: path.to_owned(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if meta.len() > 4096 {
        return Err(bad(format!(
            "{} bytes; a swarm key is about 90",
            meta.len()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(bad(format!(
            "readable by others (mode {:o}); run chmod 600",
            meta.permissions().mode() & 0o777
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    parse_swarm_key(&text).map_err(bad)
}

/// A swarm key file's text, parsed; the error says which line is wrong.
pub fn parse_swarm_key(text: &str) -> Result<pnet::PreSharedKey, String> {
    // libp2p-pnet's parser slices the key line by byte offsets and panics on a multi-byte
    // character (found by `just fuzz`): only a line of 64 ASCII hex digits reaches it.
    if let Some(key) = text.lines().nth(2) {
        let key = key.trim_end();
        if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("the key must be 64 hex digits".into());
        }
    }
    text.parse::<pnet::PreSharedKey>().map_err(|e| {
        let why = match e {
            pnet::KeyParseError::InvalidKeyFile => "not a swarm key file (three lines expected)",
            pnet::KeyParseError::InvalidKeyType => "first line must be /key/swarm/psk/1.0.0/",
            pnet::KeyParseError::InvalidKeyEncoding => "second line must be /base16/",
            pnet::KeyParseError::InvalidKeyLength => "the key must be 64 hex digits",
            pnet::KeyParseError::InvalidKeyChar(_) => "the key has a character that is not hex",
        };
        why.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::parse_swarm_key;

    #[test]
    fn swarm_keys_parse_and_bad_ones_are_errors_not_panics() {
        let good = format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", "ab".repeat(32));
        assert!(parse_swarm_key(&good).is_ok());
        // Found by the swarm_key fuzz target: a multi-byte character in the key line made
        // libp2p-pnet panic.
        let crash = "/key/swarm/psk/1.0.0/\n/base16/\nabababab/\u{3ff}78\u{3ff}/\tbababababababab+bababababababababababababababab\n";
        assert_eq!(
            parse_swarm_key(crash).unwrap_err(),
            "the key must be 64 hex digits"
        );
        let long = format!("/key/swarm/psk/1.0.0/\n/base16/\n{}é\n", "ab".repeat(31));
        assert!(parse_swarm_key(&long).is_err());
        assert!(parse_swarm_key("/key/swarm/psk/1.0.0/\n/base64/\nAAAA\n").is_err());
    }
}

/// A new random swarm key in the IPFS `swarm.key` format.
pub fn new_swarm_key() -> String {
    pnet::PreSharedKey::new(rand::random()).to_string()
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                format!("/ip4/0.0.0.0/tcp/{DEFAULT_PORT}")
                    .parse()
                    .expect("constant multiaddr"),
                format!("/ip4/0.0.0.0/udp/{DEFAULT_PORT}/quic-v1")
                    .parse()
                    .expect("constant multiaddr"),
            ],
            listen_fallback: true,
            bootstrap: Vec::new(),
            mdns: true,
            dht_server: true,
            // In-process networks on loopback are the library's main use; `storgo node`
            // takes `auto` from its flag's default.
            reachability: ReachabilityMode::Public,
            relay_service: Some(RelayLimits::default()),
            relay_reservations: 2,
            upnp: false,
            // Reasoned in DESIGN.md: records outlive a night-long laptop sleep; republishing
            // every quarter of the TTL tolerates three missed rounds.
            provider_ttl: Duration::from_secs(24 * 3600),
            republish_interval: Some(Duration::from_secs(6 * 3600)),
            bootstrap_interval: Duration::from_secs(5 * 60),
            collection_refresh: Duration::from_secs(5 * 60),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_connections: 512,
            max_providers_per_peer: records::MAX_PROVIDERS_PER_PEER,
            max_connections_per_peer: 4,
            // Measured over the whole process: a program that runs many nodes in one process
            // (the tests) must not share one budget. `storgo node` sets 1 GiB.
            max_memory: None,
            serve: ServeLimits::default(),
            allow_peers: None,
            deny_peers: Vec::new(),
            swarm_key: None,
            identity: identity::IfMissing::default(),
        }
    }
}

/// Every behaviour of a storgo node.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub kad: kad::Behaviour<DhtStore>,
    pub chunks: request_response::Behaviour<ChunkCodec>,
    pub replicate: request_response::Behaviour<ReplicateCodec>,
    pub announce: request_response::Behaviour<AnnounceCodec>,
    /// New collection versions pushed to followers (`collection-v1.md`).
    pub gossip: gossipsub::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Asks peers to dial this node's candidate addresses back (AutoNAT v2).
    pub autonat: autonat::v2::client::Behaviour,
    /// Dials peers' candidate addresses back for them.
    pub autonat_server: autonat::v2::server::Behaviour,
    /// The relay offered to peers behind NATs (advertised only once this node is reachable).
    pub relay: Toggle<confirmed::DirectOnly<relay::Behaviour>>,
    /// Reservations on relays, and circuits through them.
    pub relay_client: relay::client::Behaviour,
    /// Hole punching: a relayed connection upgraded to a direct one.
    pub dcutr: hole_punch::HolePunch,
    /// A port mapping asked of the router, offered to AutoNAT as a candidate.
    pub upnp: Toggle<confirmed::Unconfirmed<upnp::tokio::Behaviour>>,
    pub limits: connection_limits::Behaviour,
    /// New connections refused while the process is over `max_memory`.
    pub memory: Toggle<memory_connection_limits::Behaviour>,
    /// Denied and banned peers: their connections are refused and closed.
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// With `--allow-peer`, everyone else is refused.
    pub allowed: Toggle<allow_block_list::Behaviour<allow_block_list::AllowedPeers>>,
    /// Peers not dialled for a while because their relay said it cannot reach them.
    pub dial_gate: dial_gate::DialGate,
}

/// Builds the swarm: TCP+Noise+Yamux and QUIC on tokio, and every behaviour.
pub fn build_swarm(
    keypair: libp2p::identity::Keypair,
    store: DhtStore,
    cfg: &NetworkConfig,
    registry: &mut prometheus_client::registry::Registry,
) -> Result<Swarm<Behaviour>, NetworkError> {
    let build = |e: &dyn std::fmt::Display| NetworkError::Build(e.to_string());
    let mut kad_cfg = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_cfg
        .set_provider_record_ttl(Some(cfg.provider_ttl))
        // storgo's batched republish (`node::republish`) replaces kad's one walk per key.
        .set_provider_publication_interval(None)
        // Every record a peer sends comes to the event loop as an event, to be checked and
        // written off the loop (`node::serve::records`); kad's own writes go through a write-behind thread (`DhtStore::written_behind`).
        .set_record_filtering(kad::StoreInserts::FilterBoth)
        .set_replication_factor(std::num::NonZeroUsize::new(DHT_K).expect("k > 0"))
        .set_record_ttl(Some(cfg.provider_ttl))
        // Collection records are put again by their publisher and followers
        // (`node::collections`); kad's jobs would read the whole record table on the loop.
        .set_replication_interval(None)
        .set_publication_interval(None)
        .set_periodic_bootstrap_interval(Some(cfg.bootstrap_interval))
        .set_query_timeout(Duration::from_secs(30));
    let mdns_on = cfg.mdns;
    let dht_server = cfg.dht_server;
    let request_timeout = cfg.request_timeout;
    let (allow, deny) = (cfg.allow_peers.clone(), cfg.deny_peers.clone());
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(cfg.max_connections))
        .with_max_pending_incoming(Some(64))
        .with_max_established_per_peer(Some(cfg.max_connections_per_peer));
    let max_memory = cfg.max_memory;
    // The event loop sets the mode as reachability is learnt (`node::swarm::reach`); a
    // public node serves from the start.
    let kad_mode = if cfg.reachable_at_start() {
        kad::Mode::Server
    } else {
        kad::Mode::Client
    };
    let relay_service = cfg.relay_service.filter(|_| dht_server);
    let upnp_on = cfg.upnp && dht_server;
    let make_behaviour = |key: &libp2p::identity::Keypair,
                          relay_client: relay::client::Behaviour|
     -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
        let peer = key.public().to_peer_id();
        let mut kad = kad::Behaviour::with_config(peer, store, kad_cfg);
        kad.set_mode(Some(kad_mode));
        let gossip = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossip_config()?,
        )?;
        let mdns = if mdns_on {
            Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer)?)
        } else {
            None
        };
        Ok(Behaviour {
            kad,
            gossip,
            chunks: request_response::Behaviour::with_codec(
                ChunkCodec,
                [(
                    StreamProtocol::new(chunks::PROTOCOL),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default()
                    .with_request_timeout(request_timeout)
                    .with_max_concurrent_streams(256),
            ),
            replicate: request_response::Behaviour::with_codec(
                ReplicateCodec::default(),
                [(
                    StreamProtocol::new(replicate::PROTOCOL),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default()
                    .with_request_timeout(request_timeout)
                    .with_max_concurrent_streams(64),
            ),
            announce: request_response::Behaviour::with_codec(
                AnnounceCodec::default(),
                [(
                    StreamProtocol::new(announce::PROTOCOL),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default()
                    .with_request_timeout(request_timeout)
                    .with_max_concurrent_streams(16),
            ),
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                    .with_agent_version(format!("storgo/{}", env!("CARGO_PKG_VERSION")))
                    .with_push_listen_addr_updates(true)
                    // Only addresses this node knows to be reachable are told: a
                    // private address behind a NAT is useless to a peer elsewhere.
                    .with_hide_listen_addrs(true),
            ),
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(15))),
            mdns: mdns.into(),
            autonat: autonat::v2::client::Behaviour::default(),
            autonat_server: autonat::v2::server::Behaviour::default(),
            relay: relay_service
                .map(|limits| confirmed::DirectOnly(relay::Behaviour::new(peer, limits.config())))
                .into(),
            relay_client,
            dcutr: hole_punch::HolePunch::new(peer),
            upnp: upnp_on
                .then(|| confirmed::Unconfirmed(upnp::tokio::Behaviour::default()))
                .into(),
            limits: connection_limits::Behaviour::new(limits),
            memory: max_memory
                .map(|bytes| memory_connection_limits::Behaviour::with_max_bytes(bytes as usize))
                .into(),
            blocked: {
                let mut b = allow_block_list::Behaviour::default();
                for p in &deny {
                    b.block_peer(*p);
                }
                b
            },
            allowed: allow
                .as_ref()
                .map(|list| {
                    let mut a = allow_block_list::Behaviour::default();
                    for p in list {
                        a.allow_peer(*p);
                    }
                    a
                })
                .into(),
            dial_gate: dial_gate::DialGate::default(),
        })
    };
    let idle = cfg.idle_timeout;
    let psk = cfg.swarm_key;
    let swarm = match psk {
        None => libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_quic_config(|mut c| {
                c.max_stream_data = 16 * 1024 * 1024;
                c.max_connection_data = 64 * 1024 * 1024;
                c.max_idle_timeout = 30_000;
                c
            })
            .with_other_transport(move |key| tcp_transport(key, None))
            .map_err(|e| build(&e))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| build(&e))?
            .with_bandwidth_metrics(registry)
            .with_behaviour(make_behaviour)
            .map_err(|e| build(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
        // A private network: TCP alone (pnet has no QUIC).
        Some(_) => libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_other_transport(move |key| tcp_transport(key, psk))
            .map_err(|e| build(&e))?
            // A relayed circuit runs inside the relay's own pnet-protected connections on
            // both hops: only key holders can be the relay or reach it.
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| build(&e))?
            .with_bandwidth_metrics(registry)
            .with_behaviour(make_behaviour)
            .map_err(|e| build(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
    };
    Ok(swarm)
}

/// How long a TCP dial (connect, Noise, Yamux) may take. Without one a dial to an address
/// whose router drops it waits for TCP to give up (about two minutes). It must also be under
/// the 10 s an AutoNAT v2 server gives one request: a dial-back that outlives it is never
/// reported to the node asking (libp2p logs it and moves on), so a node behind a NAT that
/// drops the dial-back would never learn that it is private.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(8);

/// TCP, then (in a private network) the pre-shared key's encryption under Noise, so that a
/// peer without the key fails before it can say anything; Noise, Yamux, and a deadline.
fn tcp_transport(
    key: &libp2p::identity::Keypair,
    psk: Option<pnet::PreSharedKey>,
) -> Result<
    libp2p::core::transport::Boxed<(PeerId, libp2p::core::muxing::StreamMuxerBox)>,
    Box<dyn std::error::Error + Send + Sync>,
> {
    use futures::future::Either;
    let noise = noise::Config::new(key)?;
    Ok(
        tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
            .and_then(move |socket, _| async move {
                match psk {
                    Some(k) => pnet::PnetConfig::new(k)
                        .handshake(socket)
                        .await
                        .map(Either::Left),
                    None => Ok(Either::Right(socket)),
                }
            })
            .upgrade(upgrade::Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .timeout(DIAL_TIMEOUT)
            .map(|(peer, muxer), _| (peer, libp2p::core::muxing::StreamMuxerBox::new(muxer)))
            .boxed(),
    )
}

/// gossipsub as collections use it: messages are latest-version records, checked by the node
/// before they are forwarded (`validate_messages`), identified by their bytes so that the same
/// record put again by many followers travels once.
fn gossip_config() -> Result<gossipsub::Config, Box<dyn std::error::Error + Send + Sync>> {
    use sha2::Digest;
    Ok(gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_secs(1))
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(4096)
        .message_id_fn(|m| gossipsub::MessageId::from(&sha2::Sha256::digest(&m.data)[..20]))
        .build()?)
}

/// The gossipsub topic of a collection (by its public key).
pub fn collection_topic(collection: &[u8; 32]) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("/storgo/collection/1/{}", hex::encode(collection)))
}

/// The collection a gossipsub topic is about, if it is one of [`collection_topic`]'s.
pub fn topic_collection(topic: &gossipsub::TopicHash) -> Option<[u8; 32]> {
    let hex = topic.as_str().strip_prefix("/storgo/collection/1/")?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex, &mut out).ok()?;
    Some(out)
}

/// The DHT key under which an item's root is provided: the root's multihash.
pub fn provider_key(root: &crate::content::BlockAddress) -> kad::RecordKey {
    let mut k = Vec::with_capacity(34);
    k.extend_from_slice(&[0x12, 0x20]);
    k.extend_from_slice(root.digest());
    kad::RecordKey::from(k)
}

/// Where `root` sits in the DHT's key space: the SHA-256 of its provider key, as Kademlia
/// measures distance.
pub fn key_point(root: &crate::content::BlockAddress) -> [u8; 32] {
    point_of(kad::KBucketKey::new(provider_key(root).to_vec()).hashed_bytes())
}

/// Where `peer` sits in the DHT's key space.
pub fn peer_point(peer: &libp2p::PeerId) -> [u8; 32] {
    point_of(kad::KBucketKey::from(*peer).hashed_bytes())
}

fn point_of(hashed: &[u8]) -> [u8; 32] {
    let mut p = [0u8; 32];
    p.copy_from_slice(&hashed[..32]);
    p
}

/// Sorts `peers` by XOR distance to `root`'s DHT key, closest first: the order in which the
/// DHT places the item's provider records and its replicas.
pub fn distance_order(root: &crate::content::BlockAddress, peers: &mut [libp2p::PeerId]) {
    let target = kad::KBucketKey::new(provider_key(root).to_vec());
    peers.sort_by_key(|p| kad::KBucketKey::from(*p).distance(&target));
}

/// Starts listening on every usable address of `cfg`. A port that is taken is replaced by a
/// free one when `cfg.listen_fallback` allows (a warning names the taken address; the free
/// one appears among the listen addresses); otherwise, and for any other failure, the error
/// names the address and the cause.
pub fn listen(
    swarm: &mut libp2p::Swarm<Behaviour>,
    cfg: &NetworkConfig,
) -> Result<(), NetworkError> {
    for addr in cfg.listen.iter().filter(|a| cfg.usable(a)) {
        // libp2p's TCP listeners set SO_REUSEPORT, so a second node's listen on a port another
        // node holds succeeds and the kernel splits inbound connections between two different
        // peers: the port is asked of the OS first, by a bind without SO_REUSEPORT.
        let (reason, taken) = if port_taken(addr) {
            let e = std::io::Error::from_raw_os_error(libc::EADDRINUSE);
            (e.to_string(), true)
        } else {
            match swarm.listen_on(addr.clone()) {
                Ok(_) => continue,
                Err(e) => (error_chain(&e), port_taken(addr)),
            }
        };
        let fallback = with_port_zero(addr).filter(|_| taken && cfg.listen_fallback);
        let Some(any_port) = fallback else {
            return Err(NetworkError::Listen {
                addr: addr.clone(),
                reason,
            });
        };
        tracing::warn!(address = %addr, "port taken (another storgo or IPFS node?): listening on a free port instead");
        swarm
            .listen_on(any_port.clone())
            .map_err(|e| NetworkError::Listen {
                addr: any_port,
                reason: error_chain(&e),
            })?;
    }
    Ok(())
}

/// `addr` with its TCP or UDP port set to 0 (`None` when it has neither).
fn with_port_zero(addr: &Multiaddr) -> Option<Multiaddr> {
    use libp2p::multiaddr::Protocol;
    let mut changed = false;
    let out = addr
        .iter()
        .map(|p| match p {
            Protocol::Tcp(_) => {
                changed = true;
                Protocol::Tcp(0)
            }
            Protocol::Udp(_) => {
                changed = true;
                Protocol::Udp(0)
            }
            other => other,
        })
        .collect();
    changed.then_some(out)
}

/// An error and its causes, as one line ("a: b: c"); libp2p's transport errors print
/// nothing of their own for an I/O error, only their source says what happened.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !s.is_empty() && parts.last() != Some(&s) {
            parts.push(s);
        }
        cur = err.source();
    }
    if parts.is_empty() {
        parts.push("unknown error".into());
    }
    parts.join(": ")
}

/// Whether `addr`'s TCP or UDP port (not 0) is held by another socket, asked of the OS by
/// binding it without SO_REUSEPORT (libp2p's error nests the socket's error inside `Either`s
/// whose `source()` skips it, and its own listeners share ports with each other).
fn port_taken(addr: &Multiaddr) -> bool {
    use libp2p::multiaddr::Protocol;
    let mut ip = None;
    for p in addr.iter() {
        let in_use = |r: std::io::Result<()>| matches!(r, Err(e) if e.kind() == std::io::ErrorKind::AddrInUse);
        match p {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
            Protocol::Tcp(0) | Protocol::Udp(0) => return false,
            Protocol::Tcp(port) => {
                let Some(ip) = ip else { return false };
                return in_use(std::net::TcpListener::bind((ip, port)).map(drop));
            }
            Protocol::Udp(port) => {
                let Some(ip) = ip else { return false };
                return in_use(std::net::UdpSocket::bind((ip, port)).map(drop));
            }
            _ => {}
        }
    }
    false
}
