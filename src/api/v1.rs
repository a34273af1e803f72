//! `/api/v1`: the node's JSON API, and its OpenAPI document.
//!
//! Every route is registered through [`router`] with `utoipa_axum::routes!`, which takes the
//! method and path from the handler's `#[utoipa::path]`: the document cannot list a route the
//! router lacks, or miss one it has (a test checks both ways). Handlers are thin: they parse,
//! call the `files`, `store` and `node` layers (disk work on tokio's blocking pool), and map
//! errors through [`ApiError`]. Routes that read or write paths on the node's own disk are
//! refused on a listener that is not loopback ([`local_only`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Multipart, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::collections;
use super::error::{ApiError, ErrorBody};
use super::jobs::{Event, Job};
use super::reading;
use super::Api;
use crate::content::ContentId;
use crate::files::{self, AddOptions};
use crate::node::{begin_session, fetch, fetch_in, FetchOptions};
use crate::store::{PinRecord, SessionKind};

/// A JSON body whose rejection is an [`ApiError`] (400, 413 or 415, as JSON).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// A query string whose rejection is an [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "storgo node API",
        description = "Add, read, pin and fetch items on a storgo node, and watch it work. \
            Every route needs `Authorization: Bearer TOKEN` (the token is in DATA_DIR/api) or \
            the web page's session cookie. Errors are `{\"error\": code, \"detail\": text}`.",
        license(name = "MIT OR Apache-2.0")
    ),
    components(schemas(ErrorBody, Event)),
    modifiers(&BearerAuth),
    security(("token" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes of `/api/v1` (paths relative to it) with their document.
pub(super) fn router() -> OpenApiRouter<Api> {
    let (schemas, paths, upload_route) = routes!(upload);
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(id))
        .routes(routes!(status))
        .routes(routes!(peers))
        .routes(routes!(banned))
        .routes(routes!(unban))
        .routes(routes!(routing))
        .routes(routes!(providers))
        .routes(routes!(add))
        // An upload is as large as the file: axum's 2 MB default body limit would cut it.
        .routes((
            schemas,
            paths,
            upload_route.layer(DefaultBodyLimit::disable()),
        ))
        .routes(routes!(cat))
        .routes(routes!(get_item))
        .routes(routes!(ls))
        .routes(routes!(stat))
        .routes(routes!(entries))
        .routes(routes!(pin))
        .routes(routes!(unpin))
        .routes(routes!(fetch_item))
        .routes(routes!(jobs))
        .routes(routes!(job, cancel_job))
        .routes(routes!(job_events))
        .routes(routes!(events))
        .routes(routes!(replicas))
        .routes(routes!(wait_replicas))
        .routes(routes!(repair))
        .routes(routes!(gc))
        .routes(routes!(verify))
        .routes(routes!(openapi_json))
        .routes(routes!(login_link))
        .routes(routes!(collections::list, collections::create))
        .routes(routes!(collections::search))
        .routes(routes!(collections::show))
        .routes(routes!(collections::log))
        .routes(routes!(collections::add_entry))
        .routes(routes!(collections::remove_entry))
        .routes(routes!(collections::delegate))
        .routes(routes!(collections::publish))
        .routes(routes!(collections::rotate))
        .routes(routes!(collections::follow, collections::unfollow))
}

/// The document, as served at `/api/v1/openapi.json` (paths carry the `/api/v1` prefix).
pub fn openapi() -> utoipa::openapi::OpenApi {
    static DOC: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        OpenApiRouter::<Api>::new()
            .nest("/api/v1", router())
            .into_openapi()
    })
    .clone()
}

/// Refuses the request unless it came through a loopback listener: the route reads or writes
/// a path on the node's own disk, which no remote user may name.
fn local_only(api: &Api) -> Result<(), ApiError> {
    if api.loopback {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "local_only",
            "this route reads or writes paths on the node's disk; it answers only on a loopback listener",
        ))
    }
}

fn parse_id(s: &str) -> Result<ContentId, ApiError> {
    s.trim()
        .parse::<ContentId>()
        .map_err(|e| ApiError::bad_id(format!("{:?} is not a content ID: {e}", s.trim())))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await?
}

/// This node: its PeerId, addresses and counters.
#[utoipa::path(get, path = "/id", tag = "node",
    responses((status = 200, body = crate::node::NodeInfo)))]
async fn id(State(api): State<Api>) -> Result<Json<crate::node::NodeInfo>, ApiError> {
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
async fn status(State(api): State<Api>) -> Result<Json<Status>, ApiError> {
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
async fn peers(State(api): State<Api>) -> Result<Json<Vec<crate::node::PeerInfo>>, ApiError> {
    Ok(Json(api.client.peers().await?))
}

/// Peers banned for misbehaving, and until when.
#[utoipa::path(get, path = "/peers/banned", tag = "network",
    responses((status = 200, body = Vec<crate::node::Ban>)))]
async fn banned(State(api): State<Api>) -> Result<Json<Vec<crate::node::Ban>>, ApiError> {
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
async fn unban(
    State(api): State<Api>,
    Path(peer): Path<String>,
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
async fn routing(State(api): State<Api>) -> Result<Json<crate::node::RoutingTable>, ApiError> {
    Ok(Json(api.client.routing_table().await?))
}

#[derive(Deserialize, IntoParams)]
struct ProvidersQuery {
    /// How long to search, in seconds (default 30, at most 120).
    timeout_secs: Option<u64>,
}

/// Peers that provide an item (this node first, when it holds it whole).
#[utoipa::path(get, path = "/providers/{id}", tag = "network",
    params(("id" = String, Path, description = "content ID"), ProvidersQuery),
    responses((status = 200, body = Vec<String>), (status = 400, body = ErrorBody)))]
async fn providers(
    State(api): State<Api>,
    Path(id): Path<String>,
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
    let wait = Duration::from_secs(q.timeout_secs.unwrap_or(30).clamp(1, 120));
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

/// `POST /add`: a path on the node's disk.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AddRequest {
    #[schema(value_type = String)]
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

/// What an add or upload made.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AddResponse {
    pub id: String,
    pub name: String,
    pub size: u64,
    /// Entries of a folder that were not stored, and why.
    pub skipped: Vec<crate::files::Skipped>,
}

/// Adds a file or folder from the node's own disk (loopback listeners only).
#[utoipa::path(post, path = "/add", tag = "items", request_body = AddRequest,
    responses((status = 200, body = AddResponse), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 507, body = ErrorBody)))]
async fn add(
    State(api): State<Api>,
    ApiJson(req): ApiJson<AddRequest>,
) -> Result<Json<AddResponse>, ApiError> {
    local_only(&api)?;
    let store = Arc::clone(&api.store);
    let opts = AddOptions {
        recursive: req.recursive,
        pin: req.pin,
        replicas: req.replicas,
        compress: req.compress,
    };
    let pin = opts.pin.then_some(req.replicas);
    let added = blocking(move || Ok(files::add_path(&store, &req.path, &opts, &|_| {})?)).await?;
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
        let place = crate::node::items::provide_then_place(
            &api.client,
            &api.replicator,
            added.id.root,
            replicas,
        )
        .await?;
        tokio::spawn(place);
    }
    api.metrics.added(added.size);
    api.jobs.announce(Event::Items);
    Ok(Json(AddResponse {
        id: added.id.to_string(),
        name: added.name,
        size: added.size,
        skipped: added.skipped,
    }))
}

#[derive(Deserialize, IntoParams)]
struct UploadQuery {
    /// The file's name (a multipart upload takes it from the part's filename instead).
    #[serde(default)]
    name: String,
    /// Pin it (default true).
    #[serde(default = "yes")]
    pin: bool,
    /// Copies the network should keep (default: the node's `--replication`).
    #[serde(default)]
    replicas: Option<u8>,
    /// Compress chunks that shrink (default true).
    #[serde(default = "yes")]
    compress: bool,
}

/// Uploads one file, streamed: the raw request body (name in `?name=`), or a
/// `multipart/form-data` body with one file part (its filename is the name). Memory does not
/// grow with the file's size.
#[utoipa::path(post, path = "/upload", tag = "items", params(UploadQuery),
    request_body(content(
        ("application/octet-stream"),
        ("multipart/form-data")
    )),
    responses((status = 200, body = AddResponse), (status = 400, body = ErrorBody),
        (status = 507, body = ErrorBody)))]
async fn upload(
    State(api): State<Api>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    request: axum::extract::Request,
) -> Result<Json<AddResponse>, ApiError> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let opts = AddOptions {
        recursive: false,
        pin: q.pin,
        replicas: q.replicas,
        compress: q.compress,
    };
    let pin = opts.pin.then_some(q.replicas);
    let added = if multipart {
        let mut form = Multipart::from_request(request, &())
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let field = loop {
            let Some(field) = form
                .next_field()
                .await
                .map_err(|e| ApiError::bad_request(e.body_text()))?
            else {
                return Err(ApiError::bad_request(
                    "the form has no file part (send one field with a filename)",
                ));
            };
            if field.file_name().is_some() {
                break field;
            }
        };
        let name = field.file_name().unwrap_or_default().to_owned();
        let stream = field.map(|r| r.map_err(std::io::Error::other));
        add_stream(&api, &name, opts, stream).await?
    } else {
        let stream = request
            .into_body()
            .into_data_stream()
            .map(|r| r.map_err(std::io::Error::other));
        add_stream(&api, &q.name, opts, stream).await?
    };
    announce_added(&api, added, pin).await
}

/// Adds what `stream` carries as one file named `name`. The stream is read here, in the
/// request's task (a multipart field borrows its form), and handed to the adding thread
/// through a small channel.
async fn add_stream(
    api: &Api,
    name: &str,
    opts: AddOptions,
    stream: impl Stream<Item = std::io::Result<bytes::Bytes>> + Unpin,
) -> Result<files::Added, ApiError> {
    let (tx, rx) = mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    let name = safe_upload_name(name);
    let runtime = tokio::runtime::Handle::current();
    let store = Arc::clone(&api.store);
    let reader = tokio_util::io::StreamReader::new(reading::receiver_stream(rx));
    let adding = blocking(move || {
        let r = tokio_util::io::SyncIoBridge::new_with_handle(reader, runtime);
        Ok(files::add_reader(&store, r, &name, &opts, &|_| {})?)
    });
    let (added, ()) = tokio::join!(adding, feed(stream, tx));
    added
}

/// Forwards `stream` into `tx` until it ends or the reader goes away.
async fn feed(
    mut stream: impl Stream<Item = std::io::Result<bytes::Bytes>> + Unpin,
    tx: mpsc::Sender<std::io::Result<bytes::Bytes>>,
) {
    while let Some(chunk) = stream.next().await {
        let failed = chunk.is_err();
        if tx.send(chunk).await.is_err() || failed {
            return;
        }
    }
}

/// A browser sends a bare name, but a client may send a path: keep its last part only.
fn safe_upload_name(name: &str) -> String {
    name.rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// A file's bytes, or `Range: bytes=…` of them (206). An item not held here is fetched
/// (without pinning it) and streamed as it arrives.
#[utoipa::path(get, path = "/cat/{id}", tag = "items",
    params(("id" = String, Path, description = "content ID of a file"),
        ("Range" = Option<String>, Header, description = "one byte range, `bytes=START-END`")),
    responses((status = 200, description = "the file's bytes", content_type = "application/octet-stream"),
        (status = 206, description = "the range asked for"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the ID is a folder"),
        (status = 416, body = ErrorBody)))]
async fn cat(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let Some(range) = headers.get(header::RANGE) else {
        let body = reading::streaming_body(&api, &id).await?;
        return Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response());
    };
    let opened = reading::open(&api, &id).await?;
    if opened.head.kind != "file" {
        return Err(files::FilesError::IsFolder { id: id.to_string() }.into());
    }
    let size = opened.head.size;
    match super::gateway::parse_range(range.to_str().unwrap_or(""), size) {
        super::gateway::RangeAsked::Whole => Ok((
            [(header::CONTENT_LENGTH, size.to_string())],
            reading::body(&api, opened, None),
        )
            .into_response()),
        super::gateway::RangeAsked::Part(r) => Ok(super::gateway::partial(&api, opened, r)),
        super::gateway::RangeAsked::Unsatisfiable => Ok(super::gateway::unsatisfiable(size)),
    }
}

/// `POST /get`: write an item to a path on the node's disk.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct GetRequest {
    pub id: String,
    #[schema(value_type = String)]
    pub output: PathBuf,
}

/// What was written.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Written {
    #[schema(value_type = String)]
    pub output: PathBuf,
}

/// Writes an item to a path on the node's disk (loopback listeners only); an item not held
/// here is fetched and written as its chunks arrive.
#[utoipa::path(post, path = "/get", tag = "items", request_body = GetRequest,
    responses((status = 200, body = Written), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn get_item(
    State(api): State<Api>,
    ApiJson(req): ApiJson<GetRequest>,
) -> Result<Json<Written>, ApiError> {
    local_only(&api)?;
    let id = parse_id(&req.id)?;
    let session = begin_session(&api.store, SessionKind::Read, id.to_string()).await?;
    let (s, store, i) = (Arc::clone(&session), Arc::clone(&api.store), id);
    let whole = blocking(move || {
        s.claim_item(&i.root)?;
        Ok(files::stat(&store, &i).is_ok_and(|st| st.chunks_local == st.chunks))
    })
    .await?;
    let output = req.output.clone();
    if whole {
        let store = Arc::clone(&api.store);
        blocking(move || {
            let _reading = session;
            Ok(files::get(&store, &id, &output, &|_| {})?)
        })
        .await?;
    } else {
        // A read: it pins nothing (a pin of this item is the user's alone; see fetch_through).
        let opts = FetchOptions {
            pin: false,
            ..api.fetch.clone()
        };
        let out = Some(files::Output::Path(output));
        fetch_in(&api.client, &api.store, &session, &id, &opts, &|_| {}, out).await?;
    }
    Ok(Json(Written { output: req.output }))
}

/// Items pinned here.
#[utoipa::path(get, path = "/ls", tag = "items", responses((status = 200, body = Vec<PinRecord>)))]
async fn ls(State(api): State<Api>) -> Result<Json<Vec<PinRecord>>, ApiError> {
    let store = Arc::clone(&api.store);
    blocking(move || Ok(Json(store.pins()?))).await
}

/// An item's size, files and chunks, and how many of them are held here.
#[utoipa::path(get, path = "/stat/{id}", tag = "items",
    params(("id" = String, Path, description = "content ID")),
    responses((status = 200, body = files::ItemStat), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn stat(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<files::ItemStat>, ApiError> {
    let id = parse_id(&id)?;
    let store = Arc::clone(&api.store);
    blocking(move || Ok(Json(files::stat(&store, &id)?))).await
}

/// A folder's entries (held here), each with the ID that reads it alone.
#[utoipa::path(get, path = "/entries/{id}", tag = "items",
    params(("id" = String, Path, description = "content ID of a folder")),
    responses((status = 200, body = Vec<files::browse::Entry>), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn entries(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<Vec<files::browse::Entry>>, ApiError> {
    let id = parse_id(&id)?;
    let store = Arc::clone(&api.store);
    blocking(move || Ok(Json(files::browse::entries(&store, &id)?))).await
}

/// Pins an item, fetching what is not held here first.
#[utoipa::path(post, path = "/pin/{id}", tag = "items",
    params(("id" = String, Path, description = "content ID")),
    responses((status = 200, body = PinRecord), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn pin(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<PinRecord>, ApiError> {
    let id = parse_id(&id)?;
    let store = Arc::clone(&api.store);
    let local = blocking(move || Ok(files::pin_complete(&store, &id).ok())).await?;
    if let Some(rec) = local {
        api.client.start_providing(id.root).await?;
        api.jobs.announce(Event::Items);
        return Ok(Json(rec));
    }
    let opts = FetchOptions {
        pin: true,
        ..api.fetch.clone()
    };
    fetch(&api.client, &api.store, &id, &opts, &|_| {}, None).await?;
    api.jobs.announce(Event::Items);
    let rec = api.store.pin_of(&id.root)?;
    rec.map(Json)
        .ok_or_else(|| ApiError::internal("the pin vanished as it was made"))
}

/// Unpins an item and stops providing it (its blocks go at the next gc).
#[utoipa::path(post, path = "/unpin/{id}", tag = "items",
    params(("id" = String, Path, description = "content ID")),
    responses((status = 200, body = PinRecord), (status = 404, body = ErrorBody)))]
async fn unpin(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<PinRecord>, ApiError> {
    let id = parse_id(&id)?;
    let store = Arc::clone(&api.store);
    let rec = blocking(move || Ok(store.unpin(&id)?)).await?;
    api.client.stop_providing(id.root).await?;
    api.jobs.announce(Event::Items);
    Ok(Json(rec))
}

#[derive(Deserialize, IntoParams)]
struct FetchQuery {
    /// Pin it when complete (default true).
    #[serde(default = "yes")]
    pin: bool,
    /// Also write it to this path on the node's disk (loopback listeners only).
    #[param(value_type = Option<String>)]
    output: Option<PathBuf>,
    /// Give up after this many seconds without progress (default: the node's).
    timeout_secs: Option<u64>,
    /// Give up when the whole fetch has taken this many seconds.
    deadline_secs: Option<u64>,
}

/// Starts fetching an item from the network; answers at once with the job. Follow it at
/// `/jobs/{job}` or `/jobs/{job}/events`.
#[utoipa::path(post, path = "/fetch/{id}", tag = "fetch",
    params(("id" = String, Path, description = "content ID"), FetchQuery),
    responses((status = 202, body = Job), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn fetch_item(
    State(api): State<Api>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<FetchQuery>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let id = parse_id(&id)?;
    if q.output.is_some() {
        local_only(&api)?;
    }
    let opts = FetchOptions {
        pin: q.pin,
        stall_timeout: q
            .timeout_secs
            .map_or(api.fetch.stall_timeout, |s| Duration::from_secs(s.max(1))),
        deadline: q
            .deadline_secs
            .map(|s| Duration::from_secs(s.max(1)))
            .or(api.fetch.deadline),
        ..api.fetch.clone()
    };
    let job = api.jobs.create(id.to_string(), q.pin);
    let n = job.job;
    let api2 = api.clone();
    let task = tokio::spawn(async move {
        let api = api2;
        let result = async {
            let session = begin_session(&api.store, SessionKind::Fetch, id.to_string()).await?;
            let jobs = api.jobs.clone();
            let progress = move |p| jobs.progress(n, p);
            let output = q.output.map(files::Output::Path);
            // The output is written while the chunks arrive; the session keeps the item until
            // the fetch (and with it the output) is done.
            fetch_in(
                &api.client,
                &api.store,
                &session,
                &id,
                &opts,
                &progress,
                output,
            )
            .await
        }
        .await;
        api.jobs
            .finish(n, result.map_err(|e| ApiError::from(e).body()));
    });
    api.jobs.set_abort(n, task.abort_handle());
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// Fetch jobs, newest first (running ones and the last hundred finished).
#[utoipa::path(get, path = "/jobs", tag = "fetch", responses((status = 200, body = Vec<Job>)))]
async fn jobs(State(api): State<Api>) -> Json<Vec<Job>> {
    Json(api.jobs.list())
}

fn no_such_job(job: u64) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no job {job}"))
}

/// One job.
#[utoipa::path(get, path = "/jobs/{job}", tag = "fetch",
    params(("job" = u64, Path, description = "job number")),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)))]
async fn job(State(api): State<Api>, Path(job): Path<u64>) -> Result<Json<Job>, ApiError> {
    api.jobs.get(job).map(Json).ok_or_else(|| no_such_job(job))
}

/// Cancels a running job (what it fetched stays, and a new fetch resumes from it); a
/// finished job is forgotten (dismissed from the list). Answers the job as it ended.
#[utoipa::path(delete, path = "/jobs/{job}", tag = "fetch",
    params(("job" = u64, Path, description = "job number")),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)))]
async fn cancel_job(State(api): State<Api>, Path(job): Path<u64>) -> Result<Json<Job>, ApiError> {
    let before = api.jobs.get(job).ok_or_else(|| no_such_job(job))?;
    if before.finished() {
        api.jobs.forget(job);
        return Ok(Json(before));
    }
    api.jobs.cancel(job);
    api.jobs.get(job).map(Json).ok_or_else(|| no_such_job(job))
}

fn sse_json(name: &str, v: &impl Serialize) -> Result<SseEvent, std::convert::Infallible> {
    Ok(SseEvent::default()
        .event(name)
        .data(serde_json::to_string(v).unwrap_or_default()))
}

/// A job's state as server-sent events (`event: job`), now and on every change, ending
/// when the job ends.
#[utoipa::path(get, path = "/jobs/{job}/events", tag = "fetch",
    params(("job" = u64, Path, description = "job number")),
    responses((status = 200, description = "`text/event-stream` of Job objects", content_type = "text/event-stream"),
        (status = 404, body = ErrorBody)))]
async fn job_events(State(api): State<Api>, Path(job): Path<u64>) -> Result<Response, ApiError> {
    let rx = api.jobs.watch(job).ok_or_else(|| no_such_job(job))?;
    // The current state first, then each change, until one that is final.
    let stream = futures::stream::unfold((rx, true, false), |(mut rx, first, ended)| async move {
        if ended {
            return None;
        }
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let j = rx.borrow_and_update().clone();
        let ended = j.finished();
        Some((sse_json("job", &j), (rx, false, ended)))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Everything that changes, as server-sent events: `job` (a fetch moved), `items` (the items
/// held changed), `status` (the node's counters, every 2 s), `collection` (a followed
/// collection has a new version).
#[utoipa::path(get, path = "/events", tag = "node",
    responses((status = 200, description = "`text/event-stream` of Event objects", content_type = "text/event-stream")))]
async fn events(State(api): State<Api>) -> Response {
    let rx = api.jobs.subscribe();
    let changes = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) => return Some((e, rx)),
                // A slow page missed some: it reads the state afresh on the next event.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    });
    let (client, store) = (api.client.clone(), Arc::clone(&api.store));
    let ticks = futures::stream::unfold(
        tokio::time::interval(Duration::from_secs(2)),
        move |mut t| {
            let (client, store) = (client.clone(), Arc::clone(&store));
            async move {
                t.tick().await;
                let node = client.info().await.ok()?;
                let store = tokio::task::spawn_blocking(move || store.stats())
                    .await
                    .ok()?
                    .ok()?;
                Some((Event::Status(super::jobs::StatusEvent { node, store }), t))
            }
        },
    );
    let news = futures::stream::unfold(api.collections.subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) => return Some((Event::Collection(e), rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    });
    let stream = futures::stream::select(futures::stream::select(changes, news), ticks).map(|e| {
        let name = match &e {
            Event::Job(_) => "job",
            Event::Items => "items",
            Event::Status(_) => "status",
            Event::Collection(_) => "collection",
        };
        sse_json(name, &e)
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Replicas this node holds for the network.
#[utoipa::path(get, path = "/replicas", tag = "replication",
    responses((status = 200, body = Vec<crate::store::ReplicaRecord>)))]
async fn replicas(
    State(api): State<Api>,
) -> Result<Json<Vec<crate::store::ReplicaRecord>>, ApiError> {
    let store = Arc::clone(&api.store);
    blocking(move || Ok(Json(store.replicas()?))).await
}

/// Runs a repair round now (which also sends records to peers newly among an item's
/// closest).
#[utoipa::path(post, path = "/repair", tag = "replication",
    responses((status = 200, body = crate::node::RepairReport)))]
async fn repair(State(api): State<Api>) -> Json<crate::node::RepairReport> {
    Json(api.replicator.round().await)
}

#[derive(Deserialize, IntoParams)]
struct WaitQuery {
    /// Peers that should hold it (default: the node's `--replication`).
    replicas: Option<u8>,
    /// How long to wait, in seconds (default 120).
    #[serde(default = "default_wait")]
    timeout_secs: u64,
}

fn default_wait() -> u64 {
    120
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
async fn wait_replicas(
    State(api): State<Api>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
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
        let wait = Duration::from_secs(q.timeout_secs);
        let result = match r.repair_item(id.root, wanted).await {
            Ok(_) => r.wait_for_replicas(id.root, wanted, wait, &progress).await,
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

/// Removes blocks no pin, replica or session needs.
#[utoipa::path(post, path = "/gc", tag = "store",
    responses((status = 200, body = crate::store::GcReport)))]
async fn gc(State(api): State<Api>) -> Result<Json<crate::store::GcReport>, ApiError> {
    let store = Arc::clone(&api.store);
    let r = blocking(move || Ok(Json(store.gc()?))).await?;
    api.jobs.announce(Event::Items);
    Ok(r)
}

/// Reads and checks every block held.
#[utoipa::path(post, path = "/verify", tag = "store",
    responses((status = 200, body = crate::store::VerifyReport)))]
async fn verify(State(api): State<Api>) -> Result<Json<crate::store::VerifyReport>, ApiError> {
    let store = Arc::clone(&api.store);
    blocking(move || Ok(Json(store.verify()?))).await
}

/// This document (OpenAPI 3.1).
#[utoipa::path(get, path = "/openapi.json", tag = "node",
    responses((status = 200, description = "the OpenAPI document", body = Object)))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

/// A new one-time login URL for the web page (what `storgo web` prints). Needs the bearer
/// token itself: a page's session cannot mint more sessions.
#[utoipa::path(post, path = "/login-links", tag = "node",
    responses((status = 200, body = super::web::LoginLink), (status = 401, body = ErrorBody)))]
async fn login_link(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<Json<super::web::LoginLink>, ApiError> {
    if !api.has_token(&headers) {
        return Err(ApiError::unauthorized());
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    Ok(Json(super::web::login_link(&api, host)))
}

#[cfg(test)]
mod tests {
    /// The router is built only with `routes!`, which takes each route from its handler's
    /// `#[utoipa::path]`: a plain `.route(` here would add a route the document lacks.
    #[test]
    fn every_route_is_registered_through_its_documentation() {
        let src = include_str!("v1.rs")
            .split("#[cfg(test)]")
            .next()
            .unwrap_or_default();
        let router = src
            .split("pub(super) fn router()")
            .nth(1)
            .and_then(|s| s.split("\n}\n").next())
            .expect("the router function");
        assert!(!router.contains(".route("), "a route bypasses the document");
        assert!(
            !router.contains(".nest("),
            "a nested router bypasses the document"
        );
        assert!(
            !router.contains(".merge("),
            "a merged router bypasses the document"
        );
        let handlers = src.matches("#[utoipa::path(").count()
            + include_str!("collections.rs")
                .matches("#[utoipa::path(")
                .count();
        let registered = router.matches("routes!(").count()
            + router.matches(", cancel_job").count()
            + router.matches(", collections::").count();
        assert_eq!(handlers, registered, "every documented handler is routed");
        let doc = super::openapi();
        let operations: usize = doc
            .paths
            .paths
            .values()
            .map(|item| {
                [&item.get, &item.post, &item.delete, &item.put, &item.patch]
                    .iter()
                    .filter(|o| o.is_some())
                    .count()
            })
            .sum();
        assert_eq!(operations, handlers, "every handler is in the document");
    }
}
