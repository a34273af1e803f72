//! `/api/v1` about the node itself and its network: `/id`, `/status`, `/peers`, bans,
//! `/routing`, `/providers`, replication (`/replicas`, `/repair`, the wait for an item's
//! replicas) and the web page's `/login-links`.
//!
//! Routed (and documented) by [`v1::router`](super::router); the work is the node's
//! [`Client`](crate::node::Client) and [`Replicator`](crate::node::Replicator). It must not
//! import its sibling route files: what they share lives in [`extract`](crate::api::extract).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{blocking, parse_id, within, ApiJson, ApiPath, ApiQuery, REPLICAS};
use crate::api::reading;
use crate::api::state::Api;

/// This node: its PeerId, addresses and counters.
#[utoipa::path(get, path = "/id", tag = "node",
    responses((status = 200, body = crate::node::NodeInfo)))]
pub(super) async fn id(State(api): State<Api>) -> Result<Json<crate::node::NodeInfo>, ApiError> {
    Ok(Json(api.client.info().await?))
}

/// What `storgo status` shows.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Status {
    pub node: crate::node::NodeInfo,
    pub store: crate::store::StoreStats,
    #[serde(default)]
    pub sessions: SessionStatus,
    #[serde(default)]
    pub replication: ReplicationStatus,
}

/// Replication as `storgo status` shows it.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ReplicationStatus {
    /// Copies the network keeps of each item this node adds.
    pub replication: u8,
    /// How items added here are kept unless their add said: `replicas:R` or `ec:K+M`.
    #[serde(default)]
    pub durability: String,
    /// Items kept as `ec:K+M` that had a column missing at their last placement.
    #[serde(default)]
    pub striped_below_threshold: usize,
    /// Items this node pins or holds that are short of their copies now (their last placement
    /// found fewer than R holders, or could not run for want of peers).
    #[serde(default)]
    pub under_replicated: usize,
    /// Replicas this node holds for the network (whole ones; the rest are still arriving).
    pub replicas_held: u64,
    pub replicas_arriving: u64,
    /// The last repair round, if one has run.
    pub last_round: Option<crate::node::RepairReport>,
    /// The background scrub of replicas since the node started.
    #[serde(default)]
    pub scrub: crate::node::ScrubTotals,
    /// The last batched republish of provider records.
    #[serde(default)]
    pub last_republish: Option<crate::node::RepublishReport>,
}

/// Store sessions (adds, fetches, pins and reads in progress; see `store::session`).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct SessionStatus {
    /// In progress now.
    pub live: usize,
    /// Left by a crash and removed when the node started.
    pub interrupted_at_start: usize,
}

/// The node, its store, sessions and replication.
#[utoipa::path(get, path = "/status", tag = "node", responses((status = 200, body = Status)))]
pub(super) async fn status(State(api): State<Api>) -> Result<Json<Status>, ApiError> {
    let node = api.client.info().await?;
    let store = Arc::clone(&api.store);
    let (stats, held) = blocking(move || Ok((store.stats()?, store.replicas()?))).await?;
    let sessions = SessionStatus {
        live: api.store.live_sessions(),
        interrupted_at_start: api.store.interrupted_sessions().len(),
    };
    let whole = held.iter().filter(|r| r.complete).count() as u64;
    let replication = ReplicationStatus {
        replication: api.replicator.config().replication,
        durability: api.replicator.config().durability().to_string(),
        striped_below_threshold: api.replicator.striped_below_threshold(),
        under_replicated: api.replicator.under_replicated(),
        replicas_held: whole,
        replicas_arriving: api.replicator.intakes_in_progress() as u64,
        last_round: api.replicator.last_round(),
        scrub: api.replicator.scrub_totals(),
        last_republish: api.replicator.republisher().last(),
    };
    Ok(Json(Status {
        node,
        store: stats,
        sessions,
        replication,
    }))
}

/// Connected peers.
#[utoipa::path(get, path = "/peers", tag = "network",
    responses((status = 200, body = Vec<crate::node::PeerInfo>)))]
pub(super) async fn peers(
    State(api): State<Api>,
) -> Result<Json<Vec<crate::node::PeerInfo>>, ApiError> {
    Ok(Json(api.client.peers().await?))
}

/// `POST /peers`: a peer to connect to.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Connect {
    /// The peer's address with its PeerId, e.g. `/ip4/192.0.2.7/tcp/4815/p2p/12D3KooW…`.
    pub address: String,
}

/// A connection made.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Connected {
    pub peer_id: String,
    pub address: String,
}

/// Connects to a peer (as `--bootstrap` does at start): answers once the connection is made,
/// and the peer joins the routing table.
#[utoipa::path(post, path = "/peers", tag = "network", request_body = Connect,
    responses((status = 200, body = Connected),
        (status = 502, body = ErrorBody, description = "the peer could not be reached"),
        (status = 504, body = ErrorBody, description = "no connection within 30 s")))]
pub(super) async fn connect(
    State(api): State<Api>,
    ApiJson(req): ApiJson<Connect>,
) -> Result<Json<Connected>, ApiError> {
    let address: libp2p::Multiaddr = req.address.trim().parse().map_err(|e| {
        ApiError::bad_request(format!("{:?} is not a multiaddr: {e}", req.address.trim()))
    })?;
    let Some(libp2p::multiaddr::Protocol::P2p(peer)) = address.iter().last() else {
        return Err(ApiError::bad_request(format!(
            "{address} does not end in /p2p/PEERID: the node must know whom it reaches"
        )));
    };
    match tokio::time::timeout(Duration::from_secs(30), api.client.dial(address.clone())).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(ApiError::new(
                axum::http::StatusCode::GATEWAY_TIMEOUT,
                "dial_timeout",
                format!("no connection to {address} within 30 s"),
            ))
        }
    }
    Ok(Json(Connected {
        peer_id: peer.to_string(),
        address: address.to_string(),
    }))
}

/// Peers banned for misbehaving, and until when.
#[utoipa::path(get, path = "/peers/banned", tag = "network",
    responses((status = 200, body = Vec<crate::node::Ban>)))]
pub(super) async fn banned(
    State(api): State<Api>,
) -> Result<Json<Vec<crate::node::Ban>>, ApiError> {
    Ok(Json(api.client.banned().await?))
}

/// Whether a ban was lifted.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Unbanned {
    pub was_banned: bool,
}

/// Lifts a peer's ban.
#[utoipa::path(post, path = "/peers/{peer}/unban", tag = "network",
    params(("peer" = String, Path, description = "PeerId")),
    responses((status = 200, body = Unbanned), (status = 400, body = ErrorBody)))]
pub(super) async fn unban(
    State(api): State<Api>,
    ApiPath(peer): ApiPath<String>,
) -> Result<Json<Unbanned>, ApiError> {
    let peer: libp2p::PeerId = peer
        .parse()
        .map_err(|e| ApiError::bad_request(format!("{peer:?} is not a PeerId: {e}")))?;
    let was_banned = api.client.unban(peer).await?;
    Ok(Json(Unbanned { was_banned }))
}

/// The routing table: this node's peers by XOR distance (k-bucket), as the network view
/// draws it.
#[utoipa::path(get, path = "/routing", tag = "network",
    responses((status = 200, body = crate::node::RoutingTable)))]
pub(super) async fn routing(
    State(api): State<Api>,
) -> Result<Json<crate::node::RoutingTable>, ApiError> {
    Ok(Json(api.client.routing_table().await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ProvidersQuery {
    /// How long to search, in seconds (default 30, at most 120).
    #[param(minimum = 1, maximum = 120)]
    timeout_secs: Option<u64>,
}

/// Peers that provide an item (this node first, when it holds it whole).
#[utoipa::path(get, path = "/providers/{id}", tag = "network",
    params(("id" = String, Path, description = "content ID"), ProvidersQuery),
    responses((status = 200, body = Vec<String>), (status = 400, body = ErrorBody)))]
pub(super) async fn providers(
    State(api): State<Api>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ProvidersQuery>,
) -> Result<Json<Vec<String>>, ApiError> {
    let id = parse_id(&id)?;
    let mut rx = api.client.providers(id.root).await?;
    let mut out = Vec::new();
    let pinned = api.store.pin_of(&id.root)?.is_some_and(|p| !p.partial);
    let replica = api.store.replica_of(&id.root)?.is_some_and(|r| r.complete);
    if pinned || replica {
        out.push(api.client.peer_id().to_string());
    }
    let secs = within("timeout_secs", q.timeout_secs, 1..=120)?;
    let wait = Duration::from_secs(secs.unwrap_or(30));
    let _ = tokio::time::timeout(wait, async {
        while let Some(p) = rx.recv().await {
            let p = p.to_string();
            if !out.contains(&p) {
                out.push(p);
            }
        }
    })
    .await;
    Ok(Json(out))
}

/// Replicas this node holds for the network.
#[utoipa::path(get, path = "/replicas", tag = "replication",
    responses((status = 200, body = Vec<crate::store::ReplicaRecord>)))]
pub(super) async fn replicas(
    State(api): State<Api>,
) -> Result<Json<Vec<crate::store::ReplicaRecord>>, ApiError> {
    let store = Arc::clone(&api.store);
    blocking(move || Ok(Json(store.replicas()?))).await
}

/// Runs a repair round now (which also sends records to peers newly among an item's
/// closest).
#[utoipa::path(post, path = "/repair", tag = "replication",
    responses((status = 200, body = crate::node::RepairReport)))]
pub(super) async fn repair(State(api): State<Api>) -> Json<crate::node::RepairReport> {
    Json(api.replicator.round().await)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct WaitQuery {
    /// Peers that should hold it (default: the node's `--replication`).
    #[param(minimum = 1, maximum = 16)]
    replicas: Option<u8>,
    /// How long to wait, in seconds (default 120, at most an hour).
    #[serde(default = "default_wait")]
    #[param(minimum = 1, maximum = 3600)]
    timeout_secs: u64,
}

fn default_wait() -> u64 {
    120
}

/// What the network holds of an item now: who holds what (pins, copies, columns) and, for an
/// item kept as `ec:K+M`, the shards alive in each stripe, the worst stripe and its margin.
/// Asks the item's closest peers.
#[utoipa::path(get, path = "/replicas/{id}/health", tag = "replication",
    params(("id" = String, Path, description = "content ID")),
    responses((status = 200, body = crate::node::ItemHealth), (status = 400, body = ErrorBody)))]
pub(super) async fn item_health(
    State(api): State<Api>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<crate::node::ItemHealth>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(api.replicator.health(id.root).await?))
}

/// One line of the newline-delimited JSON `/replicas/{id}/wait` streams back.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaLine {
    /// Peers (not pinning it) that hold the item whole so far.
    Progress {
        confirmed: usize,
        wanted: u8,
    },
    /// The peers that hold it whole when the wait ended (enough, or the timeout).
    Done {
        confirmed: Vec<String>,
        wanted: u8,
    },
    Error(String),
}

/// Places an item's replicas (again) and streams, as newline-delimited JSON, how many peers
/// hold it whole until the replication is reached or the timeout passes.
#[utoipa::path(post, path = "/replicas/{id}/wait", tag = "replication",
    params(("id" = String, Path, description = "content ID"), WaitQuery),
    responses((status = 200, description = "newline-delimited ReplicaLine objects",
        body = ReplicaLine, content_type = "application/x-ndjson"), (status = 400, body = ErrorBody)))]
pub(super) async fn wait_replicas(
    State(api): State<Api>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    within("replicas", q.replicas, REPLICAS)?;
    within("timeout_secs", Some(q.timeout_secs), 1..=3600)?;
    let (tx, rx) = mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(64);
    let line = |l: &ReplicaLine| {
        let mut v = serde_json::to_vec(l).unwrap_or_default();
        v.push(b'\n');
        Ok(bytes::Bytes::from(v))
    };
    tokio::spawn(async move {
        let r = &api.replicator;
        // Asked for R copies, or kept as its pin says (copies or columns).
        let durability = match q.replicas {
            Some(n) => crate::content::stripe::Durability::Replicas(n),
            None => {
                let (store, root) = (Arc::clone(&api.store), id.root);
                let pin = tokio::task::spawn_blocking(move || store.pin_of(&root))
                    .await
                    .ok()
                    .and_then(|p| p.ok())
                    .flatten();
                match pin {
                    Some(p) => r.config().durability_of(&p),
                    None => r.config().durability(),
                }
            }
        };
        let wait = Duration::from_secs(q.timeout_secs);
        let mut wanted = durability.holders() as u8;
        let result = match r.repair_item(id.root, durability).await {
            Ok(placed) => {
                // Copies or columns, as the placement decided (a small item: copies).
                wanted = placed.replication;
                let ptx = tx.clone();
                let progress = move |n| {
                    let _ = ptx.try_send(line(&ReplicaLine::Progress {
                        confirmed: n,
                        wanted,
                    }));
                };
                r.wait_for_replicas(id.root, wanted, wait, &progress).await
            }
            Err(e) => Err(e),
        };
        let last = match result {
            Ok(peers) => ReplicaLine::Done {
                confirmed: peers.iter().map(|p| p.to_string()).collect(),
                wanted,
            },
            Err(e) => ReplicaLine::Error(e.to_string()),
        };
        let _ = tx.send(line(&last)).await;
    });
    let body = Body::from_stream(reading::receiver_stream(rx));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// A new one-time login URL for the web page (what `storgo web` prints). Needs the bearer
/// token itself: a page's session cannot mint more sessions.
#[utoipa::path(post, path = "/login-links", tag = "node",
    responses((status = 200, body = crate::api::web::LoginLink), (status = 401, body = ErrorBody)))]
pub(super) async fn login_link(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<Json<crate::api::web::LoginLink>, ApiError> {
    if !api.has_token(&headers) {
        return Err(ApiError::unauthorized());
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    Ok(Json(crate::api::web::login_link(&api, host)))
}
