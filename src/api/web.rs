//! The web page: its assets (embedded in the binary, so the page loads with the network cut
//! off) and the one-time login that gives a browser its session.
//!
//! The node prints a login URL carrying a code that works once (as Jupyter prints one with
//! its token); opening it sets an `HttpOnly`, `SameSite=Strict` session cookie and sends the
//! browser to the page. The API token itself never appears in a page or a URL, so a page
//! served to another machine cannot leak it. `storgo web` asks the running node for a fresh
//! login URL. The page is plain HTML, CSS and JavaScript, talking to `/api/v1` like any client.
//! The codes and sessions themselves are kept by [`logins`](super::logins).

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use super::state::Api;

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const STYLE_CSS: &str = include_str!("web/style.css");
const ICON_SVG: &str = include_str!("web/icon.svg");

/// `/`, the assets, `/login` and `/logout`.
pub(super) fn router() -> Router<Api> {
    Router::new()
        .route("/", get(index))
        .route(
            "/assets/app.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    page_file("app.js", APP_JS),
                )
            }),
        )
        .route(
            "/assets/style.css",
            get(|| asset("text/css; charset=utf-8", page_file("style.css", STYLE_CSS))),
        )
        .route(
            "/assets/icon.svg",
            get(|| asset("image/svg+xml", page_file("icon.svg", ICON_SVG))),
        )
        .route("/login", get(login))
        .route("/logout", post(logout))
}

/// The embedded asset, or with `STORGO_WEB_DIR` set (for working on the page without
/// rebuilding) the file of the same name in that folder.
fn page_file(name: &str, embedded: &'static str) -> std::borrow::Cow<'static, str> {
    match std::env::var_os("STORGO_WEB_DIR") {
        Some(dir) => std::fs::read_to_string(std::path::Path::new(&dir).join(name))
            .map(Into::into)
            .unwrap_or(embedded.into()),
        None => embedded.into(),
    }
}

async fn asset(content_type: &'static str, body: std::borrow::Cow<'static, str>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The page. Without a session it still loads, and says how to log in.
async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            // Everything the page needs comes from this node; nothing runs from elsewhere.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
        ],
        page_file("index.html", INDEX_HTML),
    )
        .into_response()
}

#[derive(Deserialize)]
struct LoginQuery {
    code: String,
}

/// Redeems a one-time code: sets the session cookie and goes to the page.
async fn login(State(api): State<Api>, Query(q): Query<LoginQuery>) -> Response {
    let Some(session) = api.logins.redeem(q.code.trim()) else {
        // A person followed this link in a browser: answer with a page, not the API's JSON.
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!doctype html><meta charset=utf-8><title>storgo: login link used</title>\
             <body style=\"font:16px system-ui;max-width:40rem;margin:3rem auto\">\
             <h1>This login link has been used</h1><p>A login link opens the page once. \
             Run <code>storgo web</code> on the node's machine for a new one.</p></body>",
        )
            .into_response();
    };
    let cookie = format!(
        "{}={session}; Path=/; HttpOnly; SameSite=Strict",
        api.logins.cookie()
    );
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/".to_owned()),
        ],
    )
        .into_response()
}

async fn logout(State(api): State<Api>, headers: HeaderMap) -> Response {
    api.logins.end(&headers);
    let cookie = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        api.logins.cookie()
    );
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

/// A new one-time login URL (what `storgo web` prints).
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginLink {
    pub url: String,
}

/// A login link for the page at `host` (the Host the request came to).
pub(super) fn login_link(api: &Api, host: Option<&str>) -> LoginLink {
    let page = api.page.map(|a| super::display_host(a).to_string());
    let host = page.as_deref().or(host).unwrap_or("127.0.0.1");
    LoginLink {
        url: format!("http://{host}/login?code={}", api.logins.new_code()),
    }
}

/// The gateway listener's front page.
pub(super) async fn gateway_home() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!doctype html><meta charset=utf-8><title>storgo gateway</title>\
         <body style=\"font:16px system-ui;max-width:40rem;margin:3rem auto\">\
         <h1>storgo gateway</h1><p>Open an item at <code>/c/ID</code>, a file in a folder at \
         <code>/c/ID/path/to/file</code>. This gateway only reads.</p></body>",
    )
        .into_response()
}
