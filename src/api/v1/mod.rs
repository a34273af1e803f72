//! `/api/v1`: the node's JSON API, and its OpenAPI document.
//!
//! Every route is registered through [`router`] with `utoipa_axum::routes!`, which takes the
//! method and path from the handler's `#[utoipa::path]`: the document cannot list a route the
//! router lacks, or miss one it has (a test checks both ways). Handlers are thin: they parse,
//! call the `files`, `store` and `node` layers (disk work on tokio's blocking pool), and map
//! errors through [`ApiError`](crate::api::ApiError). Routes that read or write paths on the
//! node's own disk are refused on a listener that is not loopback
//! ([`local_only`](crate::api::extract::local_only)).
//!
//! This file owns the router and the document (title, security scheme, shared schemas); the
//! handlers live by subject in [`items`], [`node`], [`events`] and [`collections`], which never
//! import each other (what they share is in [`extract`](crate::api::extract)). It must not
//! hold handlers other than the document's own.

mod events;
mod items;
mod node;

pub mod collections;

use axum::extract::DefaultBodyLimit;
use axum::Json;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::jobs::Event;
use super::state::Api;

pub use items::{AddRequest, AddResponse, GetRequest, Written};
pub use node::{ReplicaLine, ReplicationStatus, SessionStatus, Status, Unbanned};

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
    let (schemas, paths, upload_route) = routes!(items::upload);
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(node::id))
        .routes(routes!(node::status))
        .routes(routes!(node::peers))
        .routes(routes!(node::banned))
        .routes(routes!(node::unban))
        .routes(routes!(node::routing))
        .routes(routes!(node::providers))
        .routes(routes!(items::add))
        // An upload is as large as the file: axum's 2 MB default body limit would cut it.
        .routes((
            schemas,
            paths,
            upload_route.layer(DefaultBodyLimit::disable()),
        ))
        .routes(routes!(items::cat))
        .routes(routes!(items::get_item))
        .routes(routes!(items::ls))
        .routes(routes!(items::stat))
        .routes(routes!(items::entries))
        .routes(routes!(items::pin))
        .routes(routes!(items::unpin))
        .routes(routes!(items::fetch_item))
        .routes(routes!(events::jobs))
        .routes(routes!(events::job, events::cancel_job))
        .routes(routes!(events::job_events))
        .routes(routes!(events::events))
        .routes(routes!(node::replicas))
        .routes(routes!(node::wait_replicas))
        .routes(routes!(node::repair))
        .routes(routes!(items::gc))
        .routes(routes!(items::verify))
        .routes(routes!(openapi_json))
        .routes(routes!(node::login_link))
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

/// This document (OpenAPI 3.1).
#[utoipa::path(get, path = "/openapi.json", tag = "node",
    responses((status = 200, description = "the OpenAPI document", body = Object)))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

#[cfg(test)]
mod tests {
    /// The files that hold `/api/v1` handlers.
    const HANDLER_FILES: [&str; 5] = [
        include_str!("mod.rs"),
        include_str!("items.rs"),
        include_str!("node.rs"),
        include_str!("events.rs"),
        include_str!("collections.rs"),
    ];

    /// The router is built only with `routes!`, which takes each route from its handler's
    /// `#[utoipa::path]`: a plain `.route(` here would add a route the document lacks.
    #[test]
    fn every_route_is_registered_through_its_documentation() {
        let src = include_str!("mod.rs")
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
        let handlers: usize = HANDLER_FILES
            .iter()
            .map(|f| {
                f.split("#[cfg(test)]")
                    .next()
                    .unwrap_or_default()
                    .matches("#[utoipa::path(")
                    .count()
            })
            .sum();
        // Each handler named in a `routes!(a, b, ...)`.
        let registered: usize = router
            .split("routes!(")
            .skip(1)
            .map(|s| s.split(')').next().unwrap_or_default().split(',').count())
            .sum();
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
