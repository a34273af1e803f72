//! The node's local control API: HTTP on 127.0.0.1, the seed of the versioned `/api/v1`.
//!
//! The running node writes `DATA_DIR/api` (mode 0600) with the API's URL and a random bearer
//! token, so several nodes on one machine each have their own and only their owner can use
//! them. The command line ([`client`]) uses it whenever a node runs on its data dir. Handlers
//! are thin: they call the `files`, `store` and `node` layers on tokio's blocking pool or
//! through the node [`Client`](crate::node::Client); they must not hold state of their own.

pub mod client;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::content::ContentId;
use crate::files::{self, AddOptions};
use crate::node::{begin_session, fetch, fetch_in, Client, FetchOptions, Replicator};
use crate::store::{PinRecord, Session, SessionKind, Store};

/// File in the data dir naming the running node's API.
pub const API_FILE: &str = "api";

#[derive(Clone)]
struct Api {
    client: Client,
    replicator: Replicator,
    store: Arc<Store>,
    token: Arc<String>,
    fetch: FetchOptions,
    /// The node was given bootstrap peers: it is ready only once it has reached the network.
    bootstrap: bool,
}

/// An error as the API returns it: a status and one line of text.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

#[derive(Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, e.to_string())
}

fn failed(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn parse_id(s: &str) -> Result<ContentId, ApiError> {
    s.parse::<ContentId>().map_err(bad)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(failed)?
}

/// Starts the API on 127.0.0.1 (port 0) and writes `DATA_DIR/api`. `bootstrap`: the node
/// was given bootstrap peers (see [`readyz`]).
pub async fn serve(
    client: Client,
    replicator: Replicator,
    store: Arc<Store>,
    fetch: FetchOptions,
    bootstrap: bool,
) -> std::io::Result<SocketAddr> {
    let token = hex::encode(rand::random::<[u8; 16]>());
    let state = Api {
        client,
        replicator,
        store: Arc::clone(&store),
        token: Arc::new(token.clone()),
        fetch,
        bootstrap,
    };
    let v1 = Router::new()
        .route("/id", get(id))
        .route("/status", get(status))
        .route("/peers", get(peers))
        .route("/peers/banned", get(banned))
        .route("/peers/{peer}/unban", post(unban))
        .route("/providers/{id}", get(providers))
        .route("/add", post(add))
        .route("/add/stream", post(add_stream))
        .route("/cat/{id}", get(cat))
        .route("/get", post(get_item))
        .route("/ls", get(ls))
        .route("/pin/{id}", post(pin))
        .route("/unpin/{id}", post(unpin))
        .route("/gc", post(gc))
        .route("/verify", post(verify))
        .route("/stat/{id}", get(stat))
        .route("/fetch/{id}", post(fetch_item))
        .route("/replicas", get(replicas))
        .route("/replicas/{id}/wait", post(wait_replicas))
        .route("/repair", post(repair))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state.clone());
    // Health checks answer without the token: a container's HEALTHCHECK or a load balancer
    // has none, and they say nothing private.
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
        .nest("/api/v1", v1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    write_api_file(store.dir(), &format!("http://{addr}"), &token)?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "API server stopped");
        }
    });
    Ok(addr)
}

/// Alive: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// What `/readyz` checked.
#[derive(Debug, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    pub store_open: bool,
    pub listen_addrs: usize,
    pub routing_table_size: usize,
    pub connected_peers: usize,
    pub connections_made: u64,
    pub bootstrap_configured: bool,
    /// What it waits for, when not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
}

/// Ready to serve: the store answers, the node listens, and it has reached the network (made
/// a connection to some peer since start — a LAN neighbour counts; a bootstrap address in the
/// routing table does not, it is there before it answers) unless it was given no bootstrap
/// peer to reach. 503 with what it waits for otherwise.
async fn readyz(State(api): State<Api>) -> (StatusCode, Json<Readiness>) {
    let store = Arc::clone(&api.store);
    let store_open = blocking(move || store.stats().map_err(failed))
        .await
        .is_ok();
    let info = api.client.info().await.ok();
    let (listen_addrs, routing_table_size, connected_peers, connections_made) = info
        .as_ref()
        .map(|i| {
            (
                i.listen_addrs.len(),
                i.routing_table_size,
                i.connected_peers,
                i.connections_made,
            )
        })
        .unwrap_or_default();
    let waiting_for = if !store_open {
        Some("the store to answer".to_owned())
    } else if info.is_none() {
        Some("the node to answer".to_owned())
    } else if listen_addrs == 0 {
        Some("a listen address".to_owned())
    } else if api.bootstrap && connections_made == 0 {
        Some("a first peer (bootstrap peers configured, none reached yet)".to_owned())
    } else {
        None
    };
    let ready = waiting_for.is_none();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let r = Readiness {
        ready,
        store_open,
        listen_addrs,
        routing_table_size,
        connected_peers,
        connections_made,
        bootstrap_configured: api.bootstrap,
        waiting_for,
    };
    (status, Json(r))
}

fn write_api_file(dir: &Path, url: &str, token: &str) -> std::io::Result<()> {
    crate::store::write_private_file(&dir.join(API_FILE), format!("{url}\n{token}\n").as_bytes())
        .map_err(std::io::Error::other)
}

/// Removes `DATA_DIR/api` when the node stops.
pub fn remove_api_file(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(API_FILE));
}

async fn auth(State(api): State<Api>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        // Constant time: how long a wrong guess takes must not tell how much of it was right.
        .is_some_and(|t| subtle::ConstantTimeEq::ct_eq(t.as_bytes(), api.token.as_bytes()).into());
    if !ok {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API token".into(),
        )
        .into_response();
    }
    next.run(req).await
}

async fn id(State(api): State<Api>) -> Result<Json<crate::node::NodeInfo>, ApiError> {
    api.client.info().await.map(Json).map_err(failed)
}

#[derive(Serialize, Deserialize)]
pub struct Status {
    pub node: crate::node::NodeInfo,
    pub store: crate::store::StoreStats,
    #[serde(default)]
    pub sessions: SessionStatus,
    #[serde(default)]
    pub replication: ReplicationStatus,
}

/// Replication as `storgo status` shows it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// Copies the network keeps of each item this node adds.
    pub replication: u8,
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
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SessionStatus {
    /// In progress now.
    pub live: usize,
    /// Left by a crash and removed when the node started.
    pub interrupted_at_start: usize,
}

async fn status(State(api): State<Api>) -> Result<Json<Status>, ApiError> {
    let node = api.client.info().await.map_err(failed)?;
    let store = api.store.stats().map_err(failed)?;
    let sessions = SessionStatus {
        live: api.store.live_sessions(),
        interrupted_at_start: api.store.interrupted_sessions().len(),
    };
    let held = api.store.replicas().map_err(failed)?;
    let whole = held.iter().filter(|r| r.complete).count() as u64;
    let replication = ReplicationStatus {
        replication: api.replicator.config().replication,
        replicas_held: whole,
        replicas_arriving: api.replicator.intakes_in_progress() as u64,
        last_round: api.replicator.last_round(),
        scrub: api.replicator.scrub_totals(),
        last_republish: api.replicator.republisher().last(),
    };
    Ok(Json(Status {
        node,
        store,
        sessions,
        replication,
    }))
}

async fn peers(State(api): State<Api>) -> Result<Json<Vec<crate::node::PeerInfo>>, ApiError> {
    api.client.peers().await.map(Json).map_err(failed)
}

async fn banned(State(api): State<Api>) -> Result<Json<Vec<crate::node::Ban>>, ApiError> {
    api.client.banned().await.map(Json).map_err(failed)
}

/// Whether a ban was lifted.
#[derive(Serialize, Deserialize)]
pub struct Unbanned {
    pub was_banned: bool,
}

async fn unban(
    State(api): State<Api>,
    UrlPath(peer): UrlPath<String>,
) -> Result<Json<Unbanned>, ApiError> {
    let peer: libp2p::PeerId = peer
        .parse()
        .map_err(|e| bad(format!("{peer:?} is not a PeerId: {e}")))?;
    let was_banned = api.client.unban(peer).await.map_err(failed)?;
    Ok(Json(Unbanned { was_banned }))
}

async fn providers(
    State(api): State<Api>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Vec<String>>, ApiError> {
    let id = parse_id(&id)?;
    let mut rx = api.client.providers(id.root).await.map_err(failed)?;
    let mut out = Vec::new();
    let pinned = api
        .store
        .pin_of(&id.root)
        .map_err(failed)?
        .is_some_and(|p| !p.partial);
    let replica = api
        .store
        .replica_of(&id.root)
        .map_err(failed)?
        .is_some_and(|r| r.complete);
    if pinned || replica {
        out.push(api.client.peer_id().to_string());
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(p) = rx.recv().await {
            out.push(p.to_string());
        }
    })
    .await;
    Ok(Json(out))
}

#[derive(Serialize, Deserialize)]
pub struct AddRequest {
    pub path: PathBuf,
    #[serde(default)]
    pub recursive: bool,
    #[serde(default = "yes")]
    pub pin: bool,
    /// Copies the network should keep (default: the node's `--replication`).
    #[serde(default)]
    pub replicas: Option<u8>,
    /// Compress chunks that shrink (default on).
    #[serde(default = "yes")]
    pub compress: bool,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, Deserialize)]
pub struct AddResponse {
    pub id: String,
    pub name: String,
    pub size: u64,
    pub skipped: Vec<crate::files::Skipped>,
}

async fn add(
    State(api): State<Api>,
    Json(req): Json<AddRequest>,
) -> Result<Json<AddResponse>, ApiError> {
    let store = Arc::clone(&api.store);
    let opts = AddOptions {
        recursive: req.recursive,
        pin: req.pin,
        replicas: req.replicas,
        compress: req.compress,
    };
    let pin = opts.pin.then_some(req.replicas);
    let added =
        blocking(move || files::add_path(&store, &req.path, &opts, &|_| {}).map_err(bad)).await?;
    announce_added(&api, added, pin).await
}

/// Provides a newly pinned item, starts placing its replicas (without waiting for them: the
/// local copy is already safe), and answers with its ID. `pin` is `None` for an unpinned add,
/// else the replication asked for.
async fn announce_added(
    api: &Api,
    added: files::Added,
    pin: Option<Option<u8>>,
) -> Result<Json<AddResponse>, ApiError> {
    if let Some(replicas) = pin {
        api.client
            .start_providing(added.id.root)
            .await
            .map_err(failed)?;
        let r = replicas.unwrap_or(api.replicator.config().replication);
        let (replicator, root) = (api.replicator.clone(), added.id.root);
        tokio::spawn(async move {
            if let Err(e) = replicator.repair_item(root, r).await {
                tracing::warn!(cid = %root, error = %e, "placing replicas failed; the next repair round retries");
            }
        });
    }
    Ok(Json(AddResponse {
        id: added.id.to_string(),
        name: added.name,
        size: added.size,
        skipped: added.skipped,
    }))
}

#[derive(Deserialize)]
struct StreamQuery {
    #[serde(default)]
    name: String,
    #[serde(default = "yes")]
    pin: bool,
    #[serde(default)]
    replicas: Option<u8>,
    #[serde(default = "yes")]
    compress: bool,
}

/// Adds the request body as one file (what `storgo add -` sends).
async fn add_stream(
    State(api): State<Api>,
    Query(q): Query<StreamQuery>,
    body: Body,
) -> Result<Json<AddResponse>, ApiError> {
    // The body as a blocking reader for the add, which runs on a blocking thread.
    let body = tokio_util::io::StreamReader::new(
        body.into_data_stream()
            .map(|r| r.map_err(std::io::Error::other)),
    );
    let runtime = tokio::runtime::Handle::current();
    let store = Arc::clone(&api.store);
    let opts = AddOptions {
        recursive: false,
        pin: q.pin,
        replicas: q.replicas,
        compress: q.compress,
    };
    let name = q.name;
    let pin = opts.pin.then_some(q.replicas);
    let added = blocking(move || {
        files::add_reader(
            &store,
            tokio_util::io::SyncIoBridge::new_with_handle(body, runtime),
            &name,
            &opts,
            &|_| {},
        )
        .map_err(bad)
    })
    .await?;
    announce_added(&api, added, pin).await
}

/// A blocking writer that forwards what it is given to a response body. Not tokio-util's
/// `SyncIoBridge` over a pipe: a read that fails half-way must reach the client as an error in
/// the body stream (so that the transfer is seen to have failed), and a pipe can only end.
struct ChannelWriter(mpsc::Sender<Result<bytes::Bytes, std::io::Error>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(bytes::Bytes::copy_from_slice(b)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A session that claims `id` here, and the item's stat when every block is held. The
/// session keeps what is held here until the caller has read it and drops it.
async fn claim_local(
    api: &Api,
    id: &ContentId,
) -> Result<(Option<files::ItemStat>, Arc<Session>), ApiError> {
    let session = begin_session(&api.store, SessionKind::Read, id.to_string())
        .await
        .map_err(failed)?;
    let (s, store, i) = (Arc::clone(&session), Arc::clone(&api.store), *id);
    let local = blocking(move || {
        s.claim_item(&i.root).map_err(failed)?;
        Ok(files::stat(&store, &i))
    })
    .await?;
    match local {
        Ok(st) if st.chunks_local == st.chunks => Ok((Some(st), session)),
        Ok(_) | Err(files::FilesError::Store(crate::store::StoreError::Missing { .. })) => {
            Ok((None, session))
        }
        Err(e) => Err(bad(e)),
    }
}

/// Fetches `id` into `session` (pinned only if it was pinned, as `ipfs cat` reads through
/// the network without keeping what it read), writing `output` as the chunks arrive.
async fn fetch_through(
    api: &Api,
    session: &Arc<Session>,
    id: &ContentId,
    output: files::Output,
) -> Result<(), ApiError> {
    let pinned = api
        .store
        .pin_of(&id.root)
        .map_err(failed)?
        .is_some_and(|p| !p.partial);
    let opts = FetchOptions {
        pin: pinned,
        ..api.fetch.clone()
    };
    fetch_in(
        &api.client,
        &api.store,
        session,
        id,
        &opts,
        &|_| {},
        Some(output),
    )
    .await
    .map(|_| ())
    .map_err(bad)
}

/// A file item's bytes; an item not held here is fetched and streamed as its chunks arrive.
async fn cat(State(api): State<Api>, UrlPath(id): UrlPath<String>) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let (local, session) = claim_local(&api, &id).await?;
    let (tx, mut rx) = mpsc::channel(8);
    let out = std::io::BufWriter::with_capacity(1 << 20, ChannelWriter(tx.clone()));
    match local {
        Some(st) => {
            if st.kind != "file" {
                return Err(bad(files::FilesError::IsFolder { id: id.to_string() }));
            }
            let store = Arc::clone(&api.store);
            tokio::task::spawn_blocking(move || {
                let _reading = session;
                let mut out = out;
                if let Err(e) = files::cat(&store, &id, &mut out, &|_| {}) {
                    if !e.is_broken_pipe() {
                        let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    }
                }
            });
        }
        None => {
            let api = api.clone();
            tokio::spawn(async move {
                let output = files::Output::Stream(Box::new(out));
                if let Err(e) = fetch_through(&api, &session, &id, output).await {
                    let _ = tx.send(Err(std::io::Error::other(e.1))).await;
                }
            });
        }
    }
    // Fail with a status, not a cut-off body, when the item cannot be read at all.
    let first = match rx.recv().await {
        Some(Err(e)) => return Err(bad(e)),
        first => first,
    };
    let stream = futures::stream::iter(first).chain(tokio_stream_from(rx));
    Ok(Body::from_stream(stream).into_response())
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[derive(Serialize, Deserialize)]
pub struct GetRequest {
    pub id: String,
    pub output: PathBuf,
}

/// Writes an item to a path on the node's disk; an item not held here is fetched and
/// written as its chunks arrive.
async fn get_item(
    State(api): State<Api>,
    Json(req): Json<GetRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&req.id)?;
    let (local, session) = claim_local(&api, &id).await?;
    if local.is_none() {
        fetch_through(&api, &session, &id, files::Output::Path(req.output)).await?;
    } else {
        let store = Arc::clone(&api.store);
        blocking(move || {
            let _reading = session;
            files::get(&store, &id, &req.output, &|_| {}).map_err(bad)
        })
        .await?;
    }
    Ok(Json(serde_json::json!({"ok": true})))
}

async fn ls(State(api): State<Api>) -> Result<Json<Vec<PinRecord>>, ApiError> {
    api.store.pins().map(Json).map_err(failed)
}

async fn pin(
    State(api): State<Api>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<PinRecord>, ApiError> {
    let id = parse_id(&id)?;
    let store = Arc::clone(&api.store);
    let local = blocking(move || Ok(files::pin_complete(&store, &id).ok())).await?;
    if let Some(rec) = local {
        api.client.start_providing(id.root).await.map_err(failed)?;
        return Ok(Json(rec));
    }
    let opts = FetchOptions {
        pin: true,
        ..api.fetch.clone()
    };
    fetch(&api.client, &api.store, &id, &opts, &|_| {}, None)
        .await
        .map_err(bad)?;
    api.store
        .pin_of(&id.root)
        .map_err(failed)?
        .map(Json)
        .ok_or_else(|| failed("pin vanished"))
}

async fn replicas(
    State(api): State<Api>,
) -> Result<Json<Vec<crate::store::ReplicaRecord>>, ApiError> {
    api.store.replicas().map(Json).map_err(failed)
}

/// A repair round (which also sends records to peers newly among an item's closest).
async fn repair(State(api): State<Api>) -> Json<crate::node::RepairReport> {
    Json(api.replicator.round().await)
}

#[derive(Deserialize)]
struct WaitQuery {
    replicas: Option<u8>,
    #[serde(default = "default_wait")]
    timeout_secs: u64,
}

fn default_wait() -> u64 {
    120
}

/// One line of the newline-delimited JSON `/replicas/{id}/wait` streams back.
#[derive(Serialize, Deserialize)]
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

/// Places an item's replicas (again) and streams how many peers hold it whole until the
/// replication is reached or the timeout passes.
async fn wait_replicas(
    State(api): State<Api>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let wanted = q.replicas.unwrap_or(api.replicator.config().replication);
    let (tx, rx) = mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(64);
    let line = |l: &ReplicaLine| {
        let mut v = serde_json::to_vec(l).unwrap_or_default();
        v.push(b'\n');
        Ok(bytes::Bytes::from(v))
    };
    tokio::spawn(async move {
        let r = &api.replicator;
        let ptx = tx.clone();
        let progress = move |n| {
            let _ = ptx.try_send(line(&ReplicaLine::Progress {
                confirmed: n,
                wanted,
            }));
        };
        let result = match r.repair_item(id.root, wanted).await {
            Ok(_) => {
                r.wait_for_replicas(
                    id.root,
                    wanted,
                    std::time::Duration::from_secs(q.timeout_secs),
                    &progress,
                )
                .await
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
    Ok(Body::from_stream(tokio_stream_from(rx)).into_response())
}

async fn unpin(
    State(api): State<Api>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<PinRecord>, ApiError> {
    let id = parse_id(&id)?;
    let rec = api.store.unpin(&id).map_err(bad)?;
    api.client.stop_providing(id.root).await.map_err(failed)?;
    Ok(Json(rec))
}

async fn gc(State(api): State<Api>) -> Result<Json<crate::store::GcReport>, ApiError> {
    let store = Arc::clone(&api.store);
    blocking(move || store.gc().map(Json).map_err(failed)).await
}

async fn verify(State(api): State<Api>) -> Result<Json<crate::store::VerifyReport>, ApiError> {
    let store = Arc::clone(&api.store);
    blocking(move || store.verify().map(Json).map_err(failed)).await
}

async fn stat(
    State(api): State<Api>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<files::ItemStat>, ApiError> {
    let id = parse_id(&id)?;
    let store = Arc::clone(&api.store);
    blocking(move || files::stat(&store, &id).map(Json).map_err(bad)).await
}

#[derive(Deserialize)]
struct FetchQuery {
    #[serde(default = "yes")]
    pin: bool,
    output: Option<PathBuf>,
    /// Overrides the node's stall timeout for this fetch.
    timeout_secs: Option<u64>,
    /// Gives this fetch a deadline.
    deadline_secs: Option<u64>,
}

/// One line of the newline-delimited JSON a fetch streams back.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FetchLine {
    Progress(crate::node::FetchProgress),
    Done(crate::node::FetchReport),
    Error(String),
}

async fn fetch_item(
    State(api): State<Api>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<FetchQuery>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let (tx, rx) = mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(64);
    let line = |l: &FetchLine| {
        let mut v = serde_json::to_vec(l).unwrap_or_default();
        v.push(b'\n');
        Ok(bytes::Bytes::from(v))
    };
    tokio::spawn(async move {
        let opts = FetchOptions {
            pin: q.pin,
            stall_timeout: q
                .timeout_secs
                .map_or(api.fetch.stall_timeout, Duration::from_secs),
            deadline: q
                .deadline_secs
                .map(Duration::from_secs)
                .or(api.fetch.deadline),
            ..api.fetch.clone()
        };
        let ptx = tx.clone();
        let session = match begin_session(&api.store, SessionKind::Fetch, id.to_string()).await {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(line(&FetchLine::Error(e.to_string()))).await;
                return;
            }
        };
        let progress = move |p| {
            let _ = ptx.try_send(line(&FetchLine::Progress(p)));
        };
        // The output is written while the chunks arrive; the session keeps the item until
        // the fetch (and with it the output) is done.
        let output = q.output.map(files::Output::Path);
        let result = fetch_in(
            &api.client,
            &api.store,
            &session,
            &id,
            &opts,
            &progress,
            output,
        )
        .await
        .map_err(|e| e.to_string());
        let last = match result {
            Ok(r) => FetchLine::Done(r),
            Err(e) => FetchLine::Error(e),
        };
        let _ = tx.send(line(&last)).await;
    });
    Ok(Body::from_stream(tokio_stream_from(rx)).into_response())
}
