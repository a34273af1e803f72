//! The node's HTTP face: the `/api/v1` JSON API ([`v1`]), the gateway ([`gateway`]), the web
//! page ([`web`]), health checks and `/metrics`.
//!
//! The API listens on 127.0.0.1 unless `--api ADDR` says otherwise; every `/api/v1` route
//! needs the bearer token (written with the URL to `DATA_DIR/api`, mode 0600, so several nodes
//! on one machine each have their own and only their owner can use them) or the web page's
//! session cookie. `--gateway ADDR` adds a second listener that serves the gateway alone, read
//! only, without a token. Handlers are thin: they call the `files`, `store` and `node` layers
//! on tokio's blocking pool or through the node [`Client`](crate::node::Client); they hold no
//! state but the jobs and login sessions kept here.
//!
//! This file starts the listeners and assembles the routers (auth, size limit, health,
//! metrics); the routes live in [`v1`], [`gateway`] and [`web`]. Their shared pieces are
//! leaves that import no route file: [`state`] (the handlers' `Api`), [`extract`], the
//! errors, [`jobs`], [`logins`] and the streaming reads.

pub mod client;
mod error;
mod extract;
mod gateway;
pub mod jobs;
mod logins;
mod reading;
mod state;
pub mod v1;
pub mod web;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

pub use error::{ApiError, ErrorBody};
pub use v1::{
    AddRequest, AddResponse, Connect, Connected, GetRequest, ReplicaLine, Status, Unbanned, Written,
};
pub use web::LoginLink;

use crate::node::{Client, FetchOptions, Replicator};
use crate::store::Store;
use state::Api;

/// File in the data dir naming the running node's API.
pub const API_FILE: &str = "api";

/// Where the node's HTTP listeners go.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The API and web page (default 127.0.0.1, port 0).
    pub api: SocketAddr,
    /// The gateway alone, read-only and without a token.
    pub gateway: Option<SocketAddr>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            api: SocketAddr::from(([127, 0, 0, 1], 0)),
            gateway: None,
        }
    }
}

/// What the node needs to serve HTTP.
pub struct NodeParts {
    pub client: Client,
    pub replicator: Replicator,
    pub store: Arc<Store>,
    pub fetch: FetchOptions,
    /// The node was given bootstrap peers (see [`readyz`]).
    pub bootstrap: bool,
    pub metrics: crate::node::Metrics,
    pub collections: crate::node::collections::Collections,
}

/// The listeners as bound.
#[derive(Debug, Clone)]
pub struct Serving {
    pub api: SocketAddr,
    pub gateway: Option<SocketAddr>,
    /// Opens the web page once, logged in (the code in it is good for one use).
    pub login_url: String,
}

/// Starts the API (and the gateway, when asked) and writes `DATA_DIR/api`.
pub async fn serve(node: NodeParts, http: &HttpConfig) -> std::io::Result<Serving> {
    let token = hex::encode(rand::random::<[u8; 16]>());
    let listener = tokio::net::TcpListener::bind(http.api)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("API address {}: {e}", http.api)))?;
    let addr = listener.local_addr()?;
    let api = Api {
        client: node.client,
        replicator: node.replicator,
        store: Arc::clone(&node.store),
        token: Arc::new(token.clone()),
        fetch: node.fetch,
        bootstrap: node.bootstrap,
        metrics: node.metrics,
        collections: node.collections,
        jobs: jobs::Jobs::new(),
        logins: logins::Logins::new(addr.port()),
        loopback: addr.ip().is_loopback(),
        page: None,
    };
    // The URL local commands use (`storgo add`, `get`, `fetch -o` name paths on this disk).
    let mut local_url = format!("http://{}", display_host(addr));
    if !api.loopback {
        tracing::warn!(address = %addr, "the API listens beyond this machine: every request needs the token, and routes that name paths on this disk are refused there");
        // A loopback companion, same token, for commands run on this machine (or with
        // `docker exec` in this container): only they can reach it, so path routes are safe.
        let local = local_listener(addr).await?;
        let at = local.local_addr()?;
        let companion = Api {
            loopback: true,
            page: Some(addr),
            ..api.clone()
        };
        spawn_server(local, api_router(companion));
        local_url = format!("http://{at}");
        tracing::info!(address = %at, "local commands use a loopback listener of their own");
    }
    let gateway = match http.gateway {
        Some(g) => Some(serve_gateway(api.clone(), g).await?),
        None => None,
    };
    let login_url = format!(
        "http://{}/login?code={}",
        display_host(addr),
        api.logins.new_code()
    );
    spawn_server(listener, api_router(api));
    write_api_file(node.store.dir(), &local_url, &token)?;
    Ok(Serving {
        api: addr,
        gateway,
        login_url,
    })
}

/// A loopback listener beside an API listening on `public`, in the same family: a free port.
async fn local_listener(public: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let lo: std::net::IpAddr = if public.is_ipv6() {
        std::net::Ipv6Addr::LOCALHOST.into()
    } else {
        std::net::Ipv4Addr::LOCALHOST.into()
    };
    tokio::net::TcpListener::bind(SocketAddr::new(lo, 0))
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("local API address {lo}: {e}")))
}

/// An address as a browser reaches it: a wildcard listener is reached at loopback.
fn display_host(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    }
}

fn spawn_server(listener: tokio::net::TcpListener, app: Router) {
    let listener = Listening {
        inner: listener,
        write_stall: WRITE_STALL,
    };
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
}

/// How long an answer may wait for its reader before the connection is closed: a client that
/// stops reading (or a thousand that never start) holds a socket and one buffered chunk each
/// until then, never the node's threads.
const WRITE_STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// The HTTP listener: TCP connections whose writes stall past `write_stall` are closed.
struct Listening {
    inner: tokio::net::TcpListener,
    write_stall: std::time::Duration,
}

impl axum::serve::Listener for Listening {
    type Io = std::pin::Pin<Box<tokio_io_timeout::TimeoutStream<tokio::net::TcpStream>>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let mut io = tokio_io_timeout::TimeoutStream::new(io);
        io.set_write_timeout(Some(self.write_stall));
        (Box::pin(io), addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// The API listener's routes: `/api/v1` behind the token, the gateway and the web page
/// behind the token or the page's session, health checks and metrics open.
fn api_router(api: Api) -> Router {
    let (v1, _doc) = v1::router().split_for_parts();
    let v1 = v1
        .fallback(no_such_route)
        .layer(middleware::from_fn(refuse_declared_oversize))
        .layer(middleware::from_fn_with_state(api.clone(), auth));
    let gateway = gateway::router().layer(middleware::from_fn_with_state(api.clone(), auth));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(web::router())
        .merge(gateway)
        .nest("/api/v1", v1)
        .with_state(api)
}

async fn serve_gateway(api: Api, at: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("gateway address {at}: {e}")))?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/", get(web::gateway_home))
        .route("/healthz", get(healthz))
        .merge(gateway::router())
        .fallback(no_such_route)
        .with_state(api);
    spawn_server(listener, app);
    tracing::info!(address = %addr, "gateway listening (read-only, no token)");
    Ok(addr)
}

/// Largest request body a JSON route takes (axum's default limit, stated here so that it is
/// checked before the body is read).
const JSON_BODY_LIMIT: u64 = 2 * 1024 * 1024;

/// 413 at once for a body whose declared length is over the limit, before any of it is read:
/// answering after reading part of it would reset the connection under a client still
/// sending, which then sees a broken pipe instead of the answer. Uploads have no limit.
async fn refuse_declared_oversize(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if req.uri().path() != "/upload" && declared.is_some_and(|n| n > JSON_BODY_LIMIT) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a request body here may be {JSON_BODY_LIMIT} bytes at most"),
        )
        .into_response();
    }
    next.run(req).await
}

async fn no_such_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_route",
        format!(
            "no route {method} {} (see /api/v1/openapi.json)",
            uri.path()
        ),
    )
}

/// Alive: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// What `/readyz` checked.
#[derive(Debug, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    pub store_open: bool,
    pub listen_addrs: usize,
    pub routing_table_size: usize,
    pub connected_peers: usize,
    pub connections_made: u64,
    pub bootstrap_configured: bool,
    /// What it waits for, when not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
}

/// Ready to serve: the store answers, the node listens, and it has reached the network (made
/// a connection to some peer since start — a LAN neighbour counts; a bootstrap address in the
/// routing table does not, it is there before it answers) unless it was given no bootstrap
/// peer to reach. 503 with what it waits for otherwise.
async fn readyz(State(api): State<Api>) -> (StatusCode, Json<Readiness>) {
    let store = Arc::clone(&api.store);
    let store_open = matches!(
        tokio::task::spawn_blocking(move || store.stats()).await,
        Ok(Ok(_))
    );
    let info = api.client.info().await.ok();
    let (listen_addrs, routing_table_size, connected_peers, connections_made) = info
        .as_ref()
        .map(|i| {
            (
                i.listen_addrs.len(),
                i.routing_table_size,
                i.connected_peers,
                i.connections_made,
            )
        })
        .unwrap_or_default();
    let waiting_for = if !store_open {
        Some("the store to answer".to_owned())
    } else if info.is_none() {
        Some("the node to answer".to_owned())
    } else if listen_addrs == 0 {
        Some("a listen address".to_owned())
    } else if api.bootstrap && connections_made == 0 {
        Some("a first peer (bootstrap peers configured, none reached yet)".to_owned())
    } else {
        None
    };
    let ready = waiting_for.is_none();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let r = Readiness {
        ready,
        store_open,
        listen_addrs,
        routing_table_size,
        connected_peers,
        connections_made,
        bootstrap_configured: api.bootstrap,
        waiting_for,
    };
    (status, Json(r))
}

fn write_api_file(dir: &Path, url: &str, token: &str) -> std::io::Result<()> {
    crate::store::write_private_file(&dir.join(API_FILE), format!("{url}\n{token}\n").as_bytes())
        .map_err(std::io::Error::other)
}

/// Removes `DATA_DIR/api` when the node stops.
pub fn remove_api_file(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(API_FILE));
}

/// Lets a request through with the bearer token, or with the web page's session cookie.
/// A cookie is sent by the browser on its own, so a request that changes something must also
/// carry the page's `X-Storgo-Page` header: a page on another origin cannot add it without a
/// CORS preflight, which this server never grants (no cross-site request forgery).
async fn auth(State(api): State<Api>, req: Request, next: Next) -> Response {
    // The API's description is public: it says nothing about this node.
    if req.uri().path().ends_with("/openapi.json") {
        return next.run(req).await;
    }
    let headers = req.headers();
    let bearer = api.has_token(headers);
    let safe = matches!(*req.method(), Method::GET | Method::HEAD);
    let page =
        api.logins.has_session(headers) && (safe || headers.contains_key(logins::PAGE_HEADER));
    if !bearer && !page {
        return ApiError::unauthorized().into_response();
    }
    next.run(req).await
}

/// The Prometheus text format: libp2p's metrics and storgo's own.
async fn metrics(State(api): State<Api>) -> Response {
    let (store, replicator) = (Arc::clone(&api.store), api.replicator.clone());
    let metrics = api.metrics.clone();
    let text = tokio::task::spawn_blocking(move || {
        metrics.observe_store(&store, &replicator);
        metrics.encode()
    })
    .await;
    match text {
        Ok(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(Err(e)) => ApiError::internal(e).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Tells when the answer's body is dropped (the connection closed).
    struct Dropped(Option<tokio::sync::oneshot::Sender<()>>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
    }

    #[tokio::test]
    async fn a_reader_that_stops_reading_is_let_go() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let guard = std::sync::Mutex::new(Some(Dropped(Some(tx))));
        let guard = Arc::new(guard);
        let app = Router::new().route(
            "/",
            get(move || {
                let guard = guard.lock().unwrap().take();
                async move {
                    // An endless answer that holds the guard while it lives.
                    let chunks = futures::stream::unfold(guard, |g| async move {
                        Some((
                            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![0u8; 1 << 16])),
                            g,
                        ))
                    });
                    axum::body::Body::from_stream(chunks)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        let listener = Listening {
            inner: listener,
            write_stall: std::time::Duration::from_millis(300),
        };
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut reader = tokio::net::TcpStream::connect(at).await.unwrap();
        reader
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // It never reads: once the socket's buffers are full, the write stalls and the
        // connection is closed, dropping the answer.
        tokio::time::timeout(std::time::Duration::from_secs(30), rx)
            .await
            .expect("the stalled answer is dropped within 30 s")
            .unwrap();
        drop(reader);
    }
}
