//! The settings as flags: the clap structs shared by `storgo node` and `storgo fetch`
//! ([`NetArgs`], [`NodeArgs`], [`LimitArgs`]) and the parsers of their values (multiaddrs,
//! durations, sizes as people write them).
//!
//! This is the schema: a config file's key is a flag's long name here and its variable the
//! flag's `env`. A leaf of `config` (the `cli` layer flattens these structs into its own); it
//! must not read files or the environment itself.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use libp2p::Multiaddr;

/// Network flags shared by `node` and `fetch`.
#[derive(Debug, Clone, Args)]
pub struct NetArgs {
    /// Listen on this multiaddr (repeatable; port 0 picks a free port).
    #[arg(long, env = "STORGO_LISTEN", value_delimiter = ',', value_name = "MULTIADDR", value_parser = parse_multiaddr)]
    pub listen: Vec<Multiaddr>,
    /// Join the network through this peer (repeatable), e.g. /ip4/1.2.3.4/tcp/4815/p2p/12D3…
    #[arg(long, env = "STORGO_BOOTSTRAP", value_delimiter = ',', value_name = "MULTIADDR", value_parser = parse_multiaddr)]
    pub bootstrap: Vec<Multiaddr>,
    /// Do not discover or announce on the LAN with mDNS.
    #[arg(long, env = "STORGO_NO_MDNS")]
    pub no_mdns: bool,
    /// Join a private network: only nodes holding this key connect (IPFS swarm.key format;
    /// `storgo keygen swarm` makes one). TCP only: QUIC is off in a private network.
    #[arg(long, env = "STORGO_SWARM_KEY", value_name = "FILE")]
    pub swarm_key: Option<PathBuf>,
    /// Only this peer may connect (repeatable; `@FILE` reads one PeerId per line).
    #[arg(
        long,
        env = "STORGO_ALLOW_PEER",
        value_delimiter = ',',
        value_name = "PEERID"
    )]
    pub allow_peer: Vec<String>,
    /// Never connect with this peer (repeatable; `@FILE` reads one PeerId per line).
    #[arg(
        long,
        env = "STORGO_DENY_PEER",
        value_delimiter = ',',
        value_name = "PEERID"
    )]
    pub deny_peer: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub net: NetArgs,
    /// How long provider records that peers announce are kept here (e.g. 24h).
    #[arg(
        long,
        env = "STORGO_PROVIDER_TTL",
        default_value = "24h",
        value_name = "DURATION"
    )]
    pub provider_ttl: humantime::Duration,
    /// How often everything held is re-announced in one batched sweep, jittered by ±10%
    /// (keep well under the peers' TTL; 0s: only `storgo repair`).
    #[arg(
        long,
        env = "STORGO_REPUBLISH_INTERVAL",
        default_value = "6h",
        value_name = "DURATION"
    )]
    pub republish_interval: humantime::Duration,
    /// How often followed collections are looked up in the DHT for versions missed while
    /// offline or out of gossip's reach (new versions are normally pushed at once; e.g. 5m).
    #[arg(
        long,
        env = "STORGO_COLLECTION_REFRESH",
        default_value = "5m",
        value_name = "DURATION"
    )]
    pub collection_refresh: humantime::Duration,
    /// Copies the network keeps of each item added here (besides this node's pin).
    #[arg(long, env = "STORGO_REPLICATION", default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=16))]
    pub replication: u8,
    /// How items added here are kept: `replicas:R` (R whole copies) or `ec:K+M` (stripes of K
    /// data and M parity shards, one column per peer: survives any M peers gone at about
    /// (K+M)/K of the size). Default: `replicas:` --replication.
    #[arg(long, env = "STORGO_DURABILITY", value_name = "replicas:R|ec:K+M")]
    pub durability: Option<crate::content::stripe::Durability>,
    /// Time between repair rounds, jittered by ±25% (e.g. 30s, 10m; 0s: only `storgo repair`).
    #[arg(
        long,
        env = "STORGO_REPAIR_INTERVAL",
        default_value = "30m",
        value_name = "DURATION"
    )]
    pub repair_interval: humantime::Duration,
    /// How long a replica held here is kept once no pinner renews it (e.g. 30d, 720h): the
    /// item's pinners renew it every repair round; after the last unpins, holders let it go.
    #[arg(
        long,
        env = "STORGO_REPLICA_LEASE",
        default_value = "30days",
        value_name = "DURATION"
    )]
    pub replica_lease: humantime::Duration,
    /// Bytes per second the background scrub re-reads replicas at (e.g. 4MiB; 0: off).
    #[arg(long, env = "STORGO_SCRUB_RATE", default_value = "4MiB", value_name = "SIZE", value_parser = parse_size)]
    pub scrub_rate: u64,
    /// Start as a new node (new PeerId) when this data dir's identity file was lost.
    #[arg(long)]
    pub new_identity: bool,
    /// Where the API and web page listen. Off this machine's loopback, every request needs
    /// the token and routes that name paths on this disk are refused. Default 127.0.0.1:4816
    /// (a free port, with a warning, when that is taken).
    #[arg(long, env = "STORGO_API", value_name = "ADDR")]
    pub api: Option<std::net::SocketAddr>,
    /// Also serve the gateway alone (`/c/ID`), read-only and without a token, here (e.g.
    /// 0.0.0.0:8080 to offer a lab read access).
    #[arg(long, env = "STORGO_GATEWAY", value_name = "ADDR")]
    pub gateway: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub reach: ReachArgs,
}

/// How peers reach this node behind NATs (`protocols/reachability-v1.md`).
#[derive(Debug, Clone, Args)]
pub struct ReachArgs {
    /// auto: an address counts once a peer has dialled it back (AutoNAT); until then the node
    /// is a DHT client and, behind a NAT, is reached through relays. public: every listen
    /// address is reachable as it is (a server with a public address, a LAN with no NAT).
    /// private: behind a NAT, known to be: relay reservations at once, not after AutoNAT.
    #[arg(long, env = "STORGO_REACHABILITY", default_value = "auto", value_name = "MODE", value_parser = ["auto", "public", "private"], help_heading = "Reachability")]
    pub reachability: String,
    /// Do not offer a relay to peers behind NATs (offered only while this node is reachable).
    #[arg(long, env = "STORGO_NO_RELAY_SERVICE", help_heading = "Reachability")]
    pub no_relay_service: bool,
    /// Relays a node behind a NAT keeps a reservation on (0: none).
    #[arg(
        long,
        env = "STORGO_RELAY_RESERVATIONS",
        default_value_t = 2,
        value_name = "N",
        help_heading = "Reachability"
    )]
    pub relay_reservations: usize,
    /// Reservations this node's relay holds for peers, all together.
    #[arg(
        long,
        env = "STORGO_RELAY_MAX_RESERVATIONS",
        default_value_t = 128,
        value_name = "N",
        help_heading = "Reachability"
    )]
    pub relay_max_reservations: usize,
    /// Reservations one peer may hold on this node's relay.
    #[arg(
        long,
        env = "STORGO_RELAY_MAX_RESERVATIONS_PER_PEER",
        default_value_t = 4,
        value_name = "N",
        help_heading = "Reachability"
    )]
    pub relay_max_reservations_per_peer: usize,
    /// Circuits this node's relay carries at once, all together.
    #[arg(
        long,
        env = "STORGO_RELAY_MAX_CIRCUITS",
        default_value_t = 16,
        value_name = "N",
        help_heading = "Reachability"
    )]
    pub relay_max_circuits: usize,
    /// Circuits from one peer at once.
    #[arg(
        long,
        env = "STORGO_RELAY_MAX_CIRCUITS_PER_PEER",
        default_value_t = 4,
        value_name = "N",
        help_heading = "Reachability"
    )]
    pub relay_max_circuits_per_peer: usize,
    /// How long one relayed circuit may last before the relay closes it (e.g. 30m).
    #[arg(
        long,
        env = "STORGO_RELAY_CIRCUIT_DURATION",
        default_value = "30m",
        value_name = "DURATION",
        help_heading = "Reachability"
    )]
    pub relay_circuit_duration: humantime::Duration,
    /// Bytes one relayed circuit may carry each way before the relay closes it (e.g. 256MiB).
    #[arg(long, env = "STORGO_RELAY_CIRCUIT_BYTES", default_value = "256MiB", value_name = "SIZE", value_parser = parse_size, help_heading = "Reachability")]
    pub relay_circuit_bytes: u64,
    /// Do not ask the router for a port mapping (UPnP IGD). Never asked by a node that
    /// listens only on loopback.
    #[arg(long, env = "STORGO_NO_UPNP", help_heading = "Reachability")]
    pub no_upnp: bool,
}

/// What peers may cost this node (SECURITY.md, "Hostile peers").
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Connections in all, at most.
    #[arg(
        long,
        env = "STORGO_MAX_CONNECTIONS",
        default_value_t = 512,
        value_name = "N",
        help_heading = "Limits"
    )]
    pub max_connections: u32,
    /// Connections from one peer, at most.
    #[arg(
        long,
        env = "STORGO_MAX_CONNECTIONS_PER_PEER",
        default_value_t = 4,
        value_name = "N",
        help_heading = "Limits"
    )]
    pub max_connections_per_peer: u32,
    /// Refuse new connections while the process uses more memory than this (0: no limit).
    #[arg(long, env = "STORGO_MAX_MEMORY", default_value = "1GiB", value_name = "SIZE", value_parser = parse_size, help_heading = "Limits")]
    pub max_memory: u64,
    /// Chunk requests of one peer served at once; more are answered busy.
    #[arg(
        long,
        env = "STORGO_PEER_REQUESTS_IN_FLIGHT",
        default_value_t = 32,
        value_name = "N",
        help_heading = "Limits"
    )]
    pub peer_requests_in_flight: usize,
    /// Chunk requests one peer may send a second; more are answered busy.
    #[arg(
        long,
        env = "STORGO_PEER_REQUEST_RATE",
        default_value_t = 2000,
        value_name = "N",
        help_heading = "Limits"
    )]
    pub peer_request_rate: u32,
    /// Bytes a second served to all peers together (e.g. 50MB; 0: no limit).
    #[arg(long, env = "STORGO_SERVE_RATE", default_value = "0", value_name = "SIZE", value_parser = parse_size, help_heading = "Limits")]
    pub serve_rate: u64,
    /// DHT provider records one peer may have here.
    #[arg(
        long,
        env = "STORGO_MAX_PROVIDERS_PER_PEER",
        default_value_t = 10_000,
        value_name = "N",
        help_heading = "Limits"
    )]
    pub max_providers_per_peer: u64,
    /// Items taken in as replicas at once.
    #[arg(
        long,
        env = "STORGO_MAX_INTAKE",
        default_value_t = 4,
        value_name = "N",
        help_heading = "Limits"
    )]
    pub max_intake: usize,
    /// Bytes of replicas one peer may ask this node to hold per hour.
    #[arg(long, env = "STORGO_INTAKE_PER_PEER_PER_HOUR", default_value = "10GiB", value_name = "SIZE", value_parser = parse_size, help_heading = "Limits")]
    pub intake_per_peer_per_hour: u64,
}

pub fn parse_multiaddr(s: &str) -> Result<Multiaddr, String> {
    s.parse::<Multiaddr>()
        .map_err(|e| format!("{s:?} is not a multiaddr: {e}"))
}

/// A duration as people write it (`30s`, `10m`, `1h 30m`); a bare number is seconds.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 30s or 10m: {e}"))
}

/// A size as people write it: `4096`, `500MB`, `20GiB`, `1.5 TB` (bytesize's rules: kB, MB, GB
/// are powers of 1000; KiB, MiB, GiB powers of 1024).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{s:?} is not a size like 500MB or 20GiB: {e}"))
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, parse_size};
    use std::time::Duration;

    #[test]
    fn sizes_and_durations_as_people_write_them() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("soon").is_err());
    }
}
