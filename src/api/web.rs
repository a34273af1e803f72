//! The web page: its assets (embedded in the binary, so the page loads with the network cut
//! off) and the one-time login that gives a browser its session.
//!
//! The node prints a login URL carrying a code that works once (as Jupyter prints one with
//! its token); opening it sets an `HttpOnly`, `SameSite=Strict` session cookie and sends the
//! browser to the page. The API token itself never appears in a page or a URL, so a page
//! served to another machine cannot leak it. `storgo web` asks the running node for a fresh
//! login URL. The page is plain HTML, CSS and JavaScript, talking to `/api/v1` like any client.

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::Api;

/// The header the page adds to every request that changes something (see `auth`).
pub const PAGE_HEADER: &str = "x-storgo-page";
/// The session cookie's name, with the port: cookies are not kept apart by port, and two
/// nodes on one machine must not log each other's pages out.
fn cookie_name(port: u16) -> String {
    format!("storgo_session_{port}")
}
/// Login codes not yet used, at most (older ones are dropped first).
const MAX_CODES: usize = 32;
/// Sessions at most; the oldest goes first.
const MAX_SESSIONS: usize = 256;

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const STYLE_CSS: &str = include_str!("web/style.css");
const ICON_SVG: &str = include_str!("web/icon.svg");

/// Login codes and the sessions they opened.
#[derive(Clone)]
pub struct Logins {
    inner: Arc<Mutex<LoginState>>,
    cookie: Arc<str>,
}

#[derive(Default)]
struct LoginState {
    codes: Vec<String>,
    sessions: Vec<String>,
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

impl Logins {
    /// The logins of the page served on `port`.
    pub fn new(port: u16) -> Self {
        Self {
            inner: Arc::default(),
            cookie: cookie_name(port).into(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LoginState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new code, good for one login.
    pub fn new_code(&self) -> String {
        let code = random_hex();
        let mut s = self.lock();
        if s.codes.len() >= MAX_CODES {
            s.codes.remove(0);
        }
        s.codes.push(code.clone());
        code
    }

    /// Uses up `code`; a new session if it was good.
    fn redeem(&self, code: &str) -> Option<String> {
        let mut s = self.lock();
        let at = s
            .codes
            .iter()
            .position(|c| subtle::ConstantTimeEq::ct_eq(c.as_bytes(), code.as_bytes()).into())?;
        s.codes.remove(at);
        let session = random_hex();
        if s.sessions.len() >= MAX_SESSIONS {
            s.sessions.remove(0);
        }
        s.sessions.push(session.clone());
        Some(session)
    }

    /// Whether the request carries a live session cookie.
    pub fn has_session(&self, headers: &HeaderMap) -> bool {
        let Some(value) = session_cookie(headers, &self.cookie) else {
            return false;
        };
        self.lock()
            .sessions
            .iter()
            .any(|s| subtle::ConstantTimeEq::ct_eq(s.as_bytes(), value.as_bytes()).into())
    }

    fn end(&self, headers: &HeaderMap) {
        if let Some(v) = session_cookie(headers, &self.cookie) {
            self.lock().sessions.retain(|s| *s != v);
        }
    }
}

fn session_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

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
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this login link was used already or is not this node's: run `storgo web` for a new one",
        )
        .into_response();
    };
    let cookie = format!(
        "{}={session}; Path=/; HttpOnly; SameSite=Strict",
        api.logins.cookie
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
        api.logins.cookie
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
    let host = host.unwrap_or("127.0.0.1");
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
