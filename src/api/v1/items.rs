//! `/api/v1` on items: add a path or upload a stream, read (`/cat`, `/get`), list, stat and
//! browse, pin and unpin, start a fetch (its job is followed through [`events`](super::events)),
//! and the store's `/gc` and `/verify`.
//!
//! Routed (and documented) by [`v1::router`](super::router); the work is the `files`, `store`
//! and `node` layers, disk work on tokio's blocking pool. Routes that name paths on the node's
//! disk answer only on a loopback listener. It must not import its sibling route files: what
//! they share lives in [`extract`](crate::api::extract).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, Multipart, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{
    blocking, local_only, parse_id, within, ApiJson, ApiPath, ApiQuery, FETCH_SECS, REPLICAS,
};
use crate::api::jobs::{Event, Job};
use crate::api::state::Api;
use crate::api::{gateway, reading};
use crate::files::{self, AddOptions};
use crate::node::{begin_session, fetch, fetch_in, FetchOptions};
use crate::store::{PinRecord, SessionKind};

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
    #[schema(minimum = 1, maximum = 16)]
    pub replicas: Option<u8>,
    /// How the network keeps it, `replicas:R` or `ec:K+M` (default: the node's
    /// `--durability`); given with `replicas`, this wins.
    #[serde(default)]
    #[schema(example = "ec:4+2")]
    pub durability: Option<String>,
    /// Compress chunks that shrink (default on).
    #[serde(default = "yes")]
    pub compress: bool,
}

fn yes() -> bool {
    true
}

/// A `durability` parameter: `replicas:R` or `ec:K+M`.
fn durability_param(
    d: Option<&str>,
) -> Result<Option<crate::content::stripe::Durability>, ApiError> {
    d.map(|s| s.parse().map_err(ApiError::bad_request))
        .transpose()
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
pub(super) async fn add(
    State(api): State<Api>,
    ApiJson(req): ApiJson<AddRequest>,
) -> Result<Json<AddResponse>, ApiError> {
    local_only(&api)?;
    within("replicas", req.replicas, REPLICAS)?;
    let durability = durability_param(req.durability.as_deref())?;
    let store = Arc::clone(&api.store);
    let opts = AddOptions {
        recursive: req.recursive,
        pin: req.pin,
        replicas: req.replicas,
        durability,
        compress: req.compress,
        internal: false,
    };
    let pin = opts.pin.then_some((req.replicas, durability));
    let added = blocking(move || Ok(files::add_path(&store, &req.path, &opts, &|_| {})?)).await?;
    announce_added(&api, added, pin).await
}

/// Provides a newly pinned item, starts placing its replicas (without waiting for them: the
/// local copy is already safe), and answers with its ID. `pin` is `None` for an unpinned add,
/// else the replication asked for.
async fn announce_added(
    api: &Api,
    added: files::Added,
    pin: Option<(Option<u8>, Option<crate::content::stripe::Durability>)>,
) -> Result<Json<AddResponse>, ApiError> {
    if let Some((replicas, durability)) = pin {
        let place = crate::node::items::provide_then_place(
            &api.client,
            &api.replicator,
            added.id.root,
            replicas,
            durability,
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
#[into_params(parameter_in = Query)]
pub(super) struct UploadQuery {
    /// The file's name (a multipart upload takes it from the part's filename instead).
    #[serde(default)]
    name: String,
    /// Pin it (default true).
    #[serde(default = "yes")]
    pin: bool,
    /// Copies the network should keep (default: the node's `--replication`).
    #[serde(default)]
    #[param(minimum = 1, maximum = 16)]
    replicas: Option<u8>,
    /// How the network keeps it, `replicas:R` or `ec:K+M` (default: the node's
    /// `--durability`).
    #[serde(default)]
    durability: Option<String>,
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
pub(super) async fn upload(
    State(api): State<Api>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    request: axum::extract::Request,
) -> Result<Json<AddResponse>, ApiError> {
    within("replicas", q.replicas, REPLICAS)?;
    let durability = durability_param(q.durability.as_deref())?;
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let opts = AddOptions {
        recursive: false,
        pin: q.pin,
        replicas: q.replicas,
        durability,
        compress: q.compress,
        internal: false,
    };
    let pin = opts.pin.then_some((q.replicas, durability));
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
    params(("id" = String, Path, description = "content ID of a file"), ReadQuery,
        ("Range" = Option<String>, Header, description = "one byte range, `bytes=START-END`")),
    responses((status = 200, description = "the file's bytes", content_type = "application/octet-stream"),
        (status = 206, description = "the range asked for"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the ID is a folder"),
        (status = 416, body = ErrorBody)))]
pub(super) async fn cat(
    State(api): State<Api>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReadQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let stall = q.stall()?;
    let Some(range) = headers.get(header::RANGE) else {
        let body = reading::streaming_body(&api, &id, stall).await?;
        return Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response());
    };
    let opened = reading::open_within(&api, &id, stall).await?;
    if opened.head.kind != "file" {
        return Err(files::FilesError::IsFolder { id: id.to_string() }.into());
    }
    let size = opened.head.size;
    match gateway::parse_range(range.to_str().unwrap_or(""), size) {
        gateway::RangeAsked::Whole => Ok((
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (header::CONTENT_LENGTH, size.to_string()),
            ],
            reading::body(&api, opened, None),
        )
            .into_response()),
        gateway::RangeAsked::Part(r) => Ok(gateway::partial(&api, opened, r)),
        gateway::RangeAsked::Unsatisfiable => Ok(gateway::unsatisfiable(size)),
    }
}

/// How long a read of an item not held here may look for it.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ReadQuery {
    /// Give up fetching after this many seconds without progress (default: the node's).
    #[param(minimum = 1, maximum = 86400)]
    timeout_secs: Option<u64>,
}

impl ReadQuery {
    fn stall(&self) -> Result<Option<Duration>, ApiError> {
        Ok(within("timeout_secs", self.timeout_secs, FETCH_SECS)?.map(Duration::from_secs))
    }
}

/// `POST /get`: write an item to a path on the node's disk.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct GetRequest {
    pub id: String,
    #[schema(value_type = String)]
    pub output: PathBuf,
    /// Give up fetching after this many seconds without progress (default: the node's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 86400)]
    pub timeout_secs: Option<u64>,
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
pub(super) async fn get_item(
    State(api): State<Api>,
    ApiJson(req): ApiJson<GetRequest>,
) -> Result<Json<Written>, ApiError> {
    local_only(&api)?;
    let id = parse_id(&req.id)?;
    let stall = within("timeout_secs", req.timeout_secs, FETCH_SECS)?.map(Duration::from_secs);
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
        let out = Some(files::Output::Path(output));
        reading::fetch_through(&api, &session, &id, out, stall).await?;
    }
    Ok(Json(Written { output: req.output }))
}

/// Items pinned here by the user (storgo's own pins, collections' versions, are not listed).
#[utoipa::path(get, path = "/ls", tag = "items", responses((status = 200, body = Vec<PinRecord>)))]
pub(super) async fn ls(State(api): State<Api>) -> Result<Json<Vec<PinRecord>>, ApiError> {
    let store = Arc::clone(&api.store);
    blocking(move || Ok(Json(store.user_pins()?))).await
}

/// An item's size, files and chunks, and how many of them are held here.
#[utoipa::path(get, path = "/stat/{id}", tag = "items",
    params(("id" = String, Path, description = "content ID")),
    responses((status = 200, body = files::ItemStat), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn stat(
    State(api): State<Api>,
    ApiPath(id): ApiPath<String>,
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
pub(super) async fn entries(
    State(api): State<Api>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<files::browse::Entry>>, ApiError> {
    let id = parse_id(&id)?;
    let store = Arc::clone(&api.store);
    blocking(move || Ok(Json(files::browse::entries(&store, &id)?))).await
}

/// Pins an item, fetching what is not held here first.
#[utoipa::path(post, path = "/pin/{id}", tag = "items",
    params(("id" = String, Path, description = "content ID"), ReadQuery),
    responses((status = 200, body = PinRecord), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn pin(
    State(api): State<Api>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> Result<Json<PinRecord>, ApiError> {
    let id = parse_id(&id)?;
    let stall = q.stall()?;
    let store = Arc::clone(&api.store);
    let local = blocking(move || Ok(files::pin_complete(&store, &id).ok())).await?;
    if let Some(rec) = local {
        api.client.start_providing(id.root).await?;
        api.jobs.announce(Event::Items);
        return Ok(Json(rec));
    }
    let opts = FetchOptions {
        pin: true,
        stall_timeout: stall.unwrap_or(api.fetch.stall_timeout),
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
pub(super) async fn unpin(
    State(api): State<Api>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PinRecord>, ApiError> {
    let id = parse_id(&id)?;
    let store = Arc::clone(&api.store);
    let rec = blocking(move || Ok(store.unpin(&id)?)).await?;
    api.client.stop_providing(id.root).await?;
    api.jobs.announce(Event::Items);
    Ok(Json(rec))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct FetchQuery {
    /// Pin it when complete (default true).
    #[serde(default = "yes")]
    pin: bool,
    /// Also write it to this path on the node's disk (loopback listeners only).
    #[param(value_type = Option<String>)]
    output: Option<PathBuf>,
    /// Give up after this many seconds without progress (default: the node's).
    #[param(minimum = 1, maximum = 86400)]
    timeout_secs: Option<u64>,
    /// Give up when the whole fetch has taken this many seconds (at most a day).
    #[param(minimum = 1, maximum = 86400)]
    deadline_secs: Option<u64>,
}

/// Starts fetching an item from the network; answers at once with the job. Follow it at
/// `/jobs/{job}` or `/jobs/{job}/events`.
#[utoipa::path(post, path = "/fetch/{id}", tag = "fetch",
    params(("id" = String, Path, description = "content ID"), FetchQuery),
    responses((status = 202, body = Job), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub(super) async fn fetch_item(
    State(api): State<Api>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<FetchQuery>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let id = parse_id(&id)?;
    if q.output.is_some() {
        local_only(&api)?;
    }
    let timeout = within("timeout_secs", q.timeout_secs, FETCH_SECS)?;
    let deadline = within("deadline_secs", q.deadline_secs, FETCH_SECS)?;
    let opts = FetchOptions {
        pin: q.pin,
        stall_timeout: timeout.map_or(api.fetch.stall_timeout, Duration::from_secs),
        deadline: deadline.map(Duration::from_secs).or(api.fetch.deadline),
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

/// Removes blocks no pin, replica or session needs.
#[utoipa::path(post, path = "/gc", tag = "store",
    responses((status = 200, body = crate::store::GcReport)))]
pub(super) async fn gc(State(api): State<Api>) -> Result<Json<crate::store::GcReport>, ApiError> {
    let store = Arc::clone(&api.store);
    let r = blocking(move || Ok(Json(store.gc()?))).await?;
    api.jobs.announce(Event::Items);
    Ok(r)
}

/// Reads and checks every block held.
#[utoipa::path(post, path = "/verify", tag = "store",
    responses((status = 200, body = crate::store::VerifyReport)))]
pub(super) async fn verify(
    State(api): State<Api>,
) -> Result<Json<crate::store::VerifyReport>, ApiError> {
    let store = Arc::clone(&api.store);
    blocking(move || Ok(Json(store.verify()?))).await
}
