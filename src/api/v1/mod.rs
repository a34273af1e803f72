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
pub use node::{
    Connect, Connected, ReplicaLine, ReplicationStatus, SessionStatus, Status, Unbanned,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "storgo node API",
        version = env!("CARGO_PKG_VERSION"),
        description = "Add, read, pin and fetch items on a storgo node, and watch it work. \
            Every route needs `Authorization: Bearer TOKEN` (the token is in DATA_DIR/api) or \
            the web page's session cookie. Errors are `{\"error\": code, \"detail\": text}`. \
            Content IDs are `sg1` and 111 base32 letters with a checksum (protocols/content-id-v1.md).",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0")
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
        .routes(routes!(node::peers, node::connect))
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
        .routes(routes!(events::job, events::delete_job))
        .routes(routes!(events::cancel_job))
        .routes(routes!(events::job_events))
        .routes(routes!(events::events))
        .routes(routes!(node::replicas))
        .routes(routes!(node::wait_replicas))
        .routes(routes!(node::item_health))
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
        // Nested into a router that carries this document's `info`: a bare
        // `OpenApiRouter::new()` would put utoipa-axum's own title and author on it.
        let mut doc = OpenApiRouter::<Api>::with_openapi(ApiDoc::openapi())
            .nest("/api/v1", router())
            .into_openapi();
        utoipa::Modify::modify(&CommonAnswers, &mut doc);
        doc
    })
    .clone()
}

/// What every route may answer besides its own replies, added to each operation once routes
/// are in the document: 401 without a valid token or cookie; 400 for a malformed path, query
/// or body value; 413, 415 and 422 for a JSON body too large, not JSON, or of the wrong shape. Every response gets a
/// description, which OpenAPI requires.
struct CommonAnswers;

impl utoipa::Modify for CommonAnswers {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Response};
        for item in doc.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                let has_input = op.parameters.as_ref().is_some_and(|p| !p.is_empty())
                    || op.request_body.is_some();
                let json_body = matches!(&op.request_body,
                    Some(RefOr::T(b)) if b.content.contains_key("application/json"));
                let answers = &mut op.responses.responses;
                let mut add = |code: &str, why: &str| {
                    answers
                        .entry(code.to_string())
                        .or_insert_with(|| RefOr::T(error_response(why)));
                };
                add("401", "no token, a wrong token, or no valid session cookie");
                if has_input {
                    add(
                        "400",
                        "a path, query or body value that is not valid (the error names it)",
                    );
                }
                if json_body {
                    add("413", "the body is larger than the route takes");
                    add("415", "the body is not `Content-Type: application/json`");
                    add(
                        "422",
                        "JSON of the wrong shape: a field missing or of the wrong type",
                    );
                }
                for (code, answer) in answers.iter_mut() {
                    if let RefOr::T(Response { description, .. }) = answer {
                        if description.is_empty() {
                            *description = default_description(code).to_string();
                        }
                    }
                }
            }
        }
    }
}

/// A response whose body is the JSON error.
fn error_response(why: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{Content, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(why)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build()
}

/// What a status means on this API, for responses the handler's document leaves undescribed.
fn default_description(code: &str) -> &'static str {
    match code {
        "200" => "done",
        "201" => "created",
        "202" => "accepted: the work goes on as a job",
        "204" => "done, with nothing to say",
        "206" => "the range asked for",
        "400" => "a value that is not valid (the error names it)",
        "401" => "no token, a wrong token, or no valid session cookie",
        "403" => "refused here (the error says why)",
        "404" => "not held here, or not found in the network in time",
        "409" => "the item or collection is not in a state that allows this",
        "413" => "too large",
        "415" => "the body is not of a type this route takes",
        "416" => "the range asked for is not in the file",
        "422" => "a value well formed but not acceptable (the error names it)",
        "503" => "the node is stopping or too busy",
        "507" => "no room left in the store",
        _ => "see the error body",
    }
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
