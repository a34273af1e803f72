//! `/api/v1/collections`: shared collections over HTTP — make, edit, publish, follow, show,
//! history and search. Routed (and documented) by [`v1::router`](super::router); the work is
//! the node's collections service (`node::collections`). It must not import its sibling route
//! files: the extractors it shares with them live in [`extract`](crate::api::extract).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{within, ApiJson, ApiPath, ApiQuery};
use crate::api::state::Api;
use crate::collections::search::Hit;
use crate::collections::{CollectionId, Entry};
use crate::node::collections::{CollectionView, HistoryEntry, Published};

fn parse_collection(s: &str) -> Result<CollectionId, ApiError> {
    Ok(s.trim().parse::<CollectionId>()?)
}

/// A new collection.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct NewCollection {
    /// Its name on this node (1 to 64 letters, digits, `-`, `_`, `.`); the first version's
    /// listing carries it.
    pub name: String,
    /// Seal its listings with a read key carried in the ID.
    #[serde(default)]
    pub private: bool,
    /// Take up an existing collection whose owner delegated to this node, instead of making a
    /// new one.
    #[serde(default)]
    pub of: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct CreatedCollection {
    /// The ID to share (a private collection's carries its read key).
    pub id: String,
}

/// Collections this node publishes or follows.
#[utoipa::path(get, path = "/collections", tag = "collections",
    responses((status = 200, body = Vec<CollectionView>)))]
pub(super) async fn list(State(api): State<Api>) -> Result<Json<Vec<CollectionView>>, ApiError> {
    Ok(Json(api.collections.list().await?))
}

/// Makes a collection (or takes up one delegated to this node, with `of`).
#[utoipa::path(post, path = "/collections", tag = "collections", request_body = NewCollection,
    responses((status = 201, body = CreatedCollection), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(super) async fn create(
    State(api): State<Api>,
    ApiJson(req): ApiJson<NewCollection>,
) -> Result<(StatusCode, Json<CreatedCollection>), ApiError> {
    let id = match req.of {
        Some(of) => {
            let id = parse_collection(&of)?;
            api.collections.adopt(&req.name, &id).await?;
            id
        }
        None => api.collections.create(&req.name, req.private).await?,
    };
    Ok((
        StatusCode::CREATED,
        Json(CreatedCollection { id: id.to_string() }),
    ))
}

/// A collection by local name or ID: its newest version (and, for one this node publishes,
/// the draft applied).
#[utoipa::path(get, path = "/collections/{which}", tag = "collections",
    params(("which" = String, Path, description = "local name or collection ID")),
    responses((status = 200, body = CollectionView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn show(
    State(api): State<Api>,
    ApiPath(which): ApiPath<String>,
) -> Result<Json<CollectionView>, ApiError> {
    Ok(Json(api.collections.show(which.trim()).await?))
}

/// The verified history, newest first: every signature and link checked.
#[utoipa::path(get, path = "/collections/{which}/log", tag = "collections",
    params(("which" = String, Path, description = "local name or collection ID")),
    responses((status = 200, body = Vec<HistoryEntry>), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(super) async fn log(
    State(api): State<Api>,
    ApiPath(which): ApiPath<String>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    Ok(Json(api.collections.log(which.trim()).await?))
}

/// An entry to add to a collection's draft.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct NewEntry {
    /// The item's content ID.
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub note: String,
}

/// Adds an item to a collection's draft (published with the next `publish`).
#[utoipa::path(post, path = "/collections/{name}/entries", tag = "collections",
    params(("name" = String, Path, description = "local name")), request_body = NewEntry,
    responses((status = 200, body = Entry), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn add_entry(
    State(api): State<Api>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<NewEntry>,
) -> Result<Json<Entry>, ApiError> {
    let entry = Entry {
        id: req.id,
        title: req.title,
        tags: req.tags,
        note: req.note,
        added: 0,
    };
    Ok(Json(api.collections.add(&name, entry).await?))
}

/// Removes an item from a collection's draft.
#[utoipa::path(delete, path = "/collections/{name}/entries/{id}", tag = "collections",
    params(("name" = String, Path, description = "local name"),
        ("id" = String, Path, description = "the item's content ID")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(super) async fn remove_entry(
    State(api): State<Api>,
    ApiPath((name, id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    api.collections.remove(&name, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct NewDelegate {
    /// A node's PeerId (its identity key) or an Ed25519 public key in hex.
    pub key: String,
}

/// Lets another key publish the collection, from its next version on.
#[utoipa::path(post, path = "/collections/{name}/delegates", tag = "collections",
    params(("name" = String, Path, description = "local name")), request_body = NewDelegate,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn delegate(
    State(api): State<Api>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<NewDelegate>,
) -> Result<StatusCode, ApiError> {
    let key = delegate_key(&req.key)?;
    api.collections.delegate(&name, key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A delegate's key from a PeerId or 64 hex digits.
pub fn delegate_key(s: &str) -> Result<[u8; 32], ApiError> {
    let s = s.trim();
    let mut key = [0u8; 32];
    if s.len() == 64 && hex::decode_to_slice(s, &mut key).is_ok() {
        return Ok(key);
    }
    let peer: libp2p::PeerId = s.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "{s:?} is neither a PeerId nor an Ed25519 public key in hex"
        ))
    })?;
    Ok(crate::collections::signed::key_of_peer(&peer)?)
}

/// Publishes the draft as the collection's next version: into the DHT and to followers.
#[utoipa::path(post, path = "/collections/{name}/publish", tag = "collections",
    params(("name" = String, Path, description = "local name")),
    responses((status = 200, body = Published), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn publish(
    State(api): State<Api>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Published>, ApiError> {
    Ok(Json(api.collections.publish(&name).await?))
}

/// Gives a private collection a new read key from its next version on (to remove a member);
/// answers the new ID to share with everyone who stays.
#[utoipa::path(post, path = "/collections/{name}/rotate", tag = "collections",
    params(("name" = String, Path, description = "local name")),
    responses((status = 200, body = CreatedCollection), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no collection of that name here")))]
pub(super) async fn rotate(
    State(api): State<Api>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<CreatedCollection>, ApiError> {
    let id = api.collections.rotate(&name).await?;
    Ok(Json(CreatedCollection { id: id.to_string() }))
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
pub struct FollowRequest {
    /// Pin every item of every new version.
    #[serde(default)]
    pub auto_fetch: bool,
}

/// Follows a collection: keeps its newest version (looked up at once), and with auto-fetch
/// pins every item.
#[utoipa::path(post, path = "/collections/{id}/follow", tag = "collections",
    params(("id" = String, Path, description = "collection ID")), request_body = FollowRequest,
    responses((status = 200, body = CollectionView), (status = 400, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(super) async fn follow(
    State(api): State<Api>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<FollowRequest>,
) -> Result<Json<CollectionView>, ApiError> {
    let id = parse_collection(&id)?;
    api.collections.follow(&id, req.auto_fetch).await?;
    Ok(Json(api.collections.show(&id.to_string()).await?))
}

/// Stops following a collection (its pinned items stay pinned).
#[utoipa::path(delete, path = "/collections/{id}/follow", tag = "collections",
    params(("id" = String, Path, description = "collection ID")),
    responses((status = 204), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "published from this node: its publisher always follows it")))]
pub(super) async fn unfollow(
    State(api): State<Api>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_collection(&id)?;
    if api.collections.unfollow(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(crate::collections::CollectionError::NotFollowed(id.public().to_string()).into())
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Words to find in titles, tags and notes.
    #[serde(default)]
    pub q: String,
    /// Only entries with this tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// Most results (default 50, at most 1000).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// Searches every followed collection, locally.
#[utoipa::path(get, path = "/collections/search", tag = "collections", params(SearchQuery),
    responses((status = 200, body = Vec<Hit>)))]
pub(super) async fn search(
    State(api): State<Api>,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<Vec<Hit>>, ApiError> {
    let limit = within("limit", q.limit, 1..=1000)?.unwrap_or(50);
    Ok(Json(
        api.collections
            .search(&q.q, q.tag.as_deref(), limit)
            .await?,
    ))
}
