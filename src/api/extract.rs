//! What `/api/v1` handlers take from a request and share: the JSON body and query string
//! extractors whose rejections answer as [`ApiError`] JSON, a path's content ID, the
//! loopback-only guard for routes that name paths on the node's disk, and the hop to tokio's
//! blocking pool.
//!
//! A leaf under the routes: every file of `v1` imports it and it imports none of them (this is
//! what `v1` and its collections used to take from each other). It must not hold handlers or
//! routes.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;

use super::error::ApiError;
use super::state::Api;
use crate::content::ContentId;

/// A JSON body whose rejection is an [`ApiError`] (400, 413 or 415, as JSON).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// A query string whose rejection is an [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Path segments whose rejection (a job number that is not one) is an [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// A number from a query string or body, refused (400 `bad_request`, naming the field and the
/// range) outside `range`: what the document declares as its minimum and maximum.
pub(super) fn within<T>(
    field: &str,
    value: Option<T>,
    range: std::ops::RangeInclusive<T>,
) -> Result<Option<T>, ApiError>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    match value {
        Some(v) if !range.contains(&v) => Err(ApiError::bad_request(format!(
            "{field} = {v} is not in {}..={}",
            range.start(),
            range.end()
        ))),
        _ => Ok(value),
    }
}

/// Copies the network should keep of an item: 1 to 16, as `--replication` and the replicate
/// protocol take.
pub(super) const REPLICAS: std::ops::RangeInclusive<u8> =
    1..=crate::network::replicate::MAX_REPLICATION;

/// Seconds a fetch may go without progress, or take in all: at most a day.
pub(super) const FETCH_SECS: std::ops::RangeInclusive<u64> = 1..=86_400;

/// Refuses the request unless it came through a loopback listener: the route reads or writes
/// a path on the node's own disk, which no remote user may name.
pub(super) fn local_only(api: &Api) -> Result<(), ApiError> {
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

/// A content ID from a path segment or body field (400 `bad_id` otherwise).
pub(super) fn parse_id(s: &str) -> Result<ContentId, ApiError> {
    s.trim()
        .parse::<ContentId>()
        .map_err(|e| ApiError::bad_id(format!("{:?} is not a content ID: {e}", s.trim())))
}

/// Runs `f` (disk work) on tokio's blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await?
}
