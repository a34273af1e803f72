//! The web page's logins: one-time login codes and the sessions they open, and the header a
//! page adds to requests that change something.
//!
//! A leaf of `api`: the auth middleware and the handler state take it, the page's `/login`
//! and `/logout` use it. It keeps codes and sessions in memory only (a restart logs every page
//! out) and must not know about routes or the API token.

use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap};

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

    /// The session cookie's name.
    pub(super) fn cookie(&self) -> &str {
        &self.cookie
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
    pub(super) fn redeem(&self, code: &str) -> Option<String> {
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

    pub(super) fn end(&self, headers: &HeaderMap) {
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
