//! `/api/v1` that follows work as it happens: the fetch jobs (`/jobs`, one job, its cancel,
//! its server-sent events) and `/events`, the stream of everything that changes (jobs, items,
//! the node's counters every 2 s, new versions of followed collections).
//!
//! Routed (and documented) by [`v1::router`](super::router); the jobs themselves are kept by
//! [`jobs`](crate::api::jobs). It must not import its sibling route files.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde::Serialize;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::ApiPath;
use crate::api::jobs::{Event, Job, StatusEvent};
use crate::api::state::Api;

/// Fetch jobs, newest first (running ones and the last hundred finished).
#[utoipa::path(get, path = "/jobs", tag = "fetch", responses((status = 200, body = Vec<Job>)))]
pub(super) async fn jobs(State(api): State<Api>) -> Json<Vec<Job>> {
    Json(api.jobs.list())
}

fn no_such_job(job: u64) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no job {job}"))
}

/// One job.
#[utoipa::path(get, path = "/jobs/{job}", tag = "fetch",
    params(("job" = u64, Path, description = "job number")),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)))]
pub(super) async fn job(
    State(api): State<Api>,
    ApiPath(job): ApiPath<u64>,
) -> Result<Json<Job>, ApiError> {
    api.jobs.get(job).map(Json).ok_or_else(|| no_such_job(job))
}

/// Cancels a running job: what it fetched stays, and a new fetch resumes from it. The job
/// stays listed, `cancelled`, until it is deleted. Answers the job as it ended (a job that had
/// already ended is answered as it is).
#[utoipa::path(post, path = "/jobs/{job}/cancel", tag = "fetch",
    params(("job" = u64, Path, description = "job number")),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)))]
pub(super) async fn cancel_job(
    State(api): State<Api>,
    ApiPath(job): ApiPath<u64>,
) -> Result<Json<Job>, ApiError> {
    api.jobs.get(job).ok_or_else(|| no_such_job(job))?;
    api.jobs.cancel(job);
    api.jobs.get(job).map(Json).ok_or_else(|| no_such_job(job))
}

/// Deletes a job: cancels it if it runs (what it fetched stays), then forgets it — it is gone
/// from `/jobs` and answers 404 from then on. Answers the job as it ended.
#[utoipa::path(delete, path = "/jobs/{job}", tag = "fetch",
    params(("job" = u64, Path, description = "job number")),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_job(
    State(api): State<Api>,
    ApiPath(job): ApiPath<u64>,
) -> Result<Json<Job>, ApiError> {
    api.jobs.get(job).ok_or_else(|| no_such_job(job))?;
    api.jobs.cancel(job);
    let ended = api.jobs.get(job).ok_or_else(|| no_such_job(job))?;
    api.jobs.forget(job);
    Ok(Json(ended))
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
pub(super) async fn job_events(
    State(api): State<Api>,
    ApiPath(job): ApiPath<u64>,
) -> Result<Response, ApiError> {
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
pub(super) async fn events(State(api): State<Api>) -> Response {
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
                Some((Event::Status(StatusEvent { node, store }), t))
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
