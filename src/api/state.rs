//! The state every handler is given (`State<Api>`): the node's handles, the API token, the
//! fetch jobs and the web page's logins, and the check of the bearer token.
//!
//! A leaf of `api`: it names the pieces a handler may use and imports no handler, router or
//! page, so that every route module can take it without a loop. It must not grow logic of its
//! own beyond the token check.

use std::sync::Arc;

use axum::http::header;

use super::jobs::Jobs;
use super::logins::Logins;
use crate::node::{Client, FetchOptions, Replicator};
use crate::store::Store;

#[derive(Clone)]
pub(crate) struct Api {
    pub(super) client: Client,
    pub(super) replicator: Replicator,
    pub(super) store: Arc<Store>,
    pub(super) token: Arc<String>,
    pub(super) fetch: FetchOptions,
    pub(super) bootstrap: bool,
    pub(super) metrics: crate::node::Metrics,
    pub(super) collections: crate::node::collections::Collections,
    pub(super) jobs: Jobs,
    pub(super) logins: Logins,
    /// The listener is on a loopback address: routes that name paths on this machine's disk
    /// are allowed.
    pub(super) loopback: bool,
    /// Where the web page is served, when this listener is not that one: the loopback
    /// companion of an API that listens beyond this machine links logins to the page's own
    /// listener.
    pub(super) page: Option<std::net::SocketAddr>,
}

impl Api {
    /// Whether the request carries the bearer token.
    pub(super) fn has_token(&self, headers: &axum::http::HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            // Constant time: how long a wrong guess takes must not tell how much was right.
            .is_some_and(|t| {
                subtle::ConstantTimeEq::ct_eq(t.as_bytes(), self.token.as_bytes()).into()
            })
    }
}
