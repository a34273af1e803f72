//! `storgo node`: opens the store, starts the node and its HTTP listeners, prints where they
//! are, and stops cleanly on Ctrl-C or SIGTERM.
//!
//! The configuration is built by [`config`](crate::config) and the node by
//! [`node`](crate::node); this file only wires them together and says what runs. It must not
//! hold node logic.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::args::{Cli, NodeArgs};
use super::resolve::open_store;
use crate::api;
use crate::node::{FetchOptions, Node};

/// Ctrl-C or SIGTERM. The handlers are installed when this is called, not when the future is
/// first polled: a signal that comes right after the node says it is ready (a service manager,
/// a test) must stop it cleanly, not kill it with the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    async fn first(s: Option<Signal>) {
        match s {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    let term = first(signal(SignalKind::terminate()).ok());
    let int = first(signal(SignalKind::interrupt()).ok());
    async move {
        tokio::select! {
            _ = term => {}
            _ = int => {}
        }
    }
}

pub async fn run_node(cli: &Cli, args: &NodeArgs) -> Result<()> {
    let store = Arc::new(open_store(cli)?);
    let config = crate::config::NodeConfig::from_args(args)?;
    let cfg = config.network.clone();
    let replication = config.replication.clone();
    let bootstrap = !cfg.bootstrap.is_empty();
    let node = Node::start_with(Arc::clone(&store), cfg, replication).await?;
    let serving = serve_http(&node, &store, bootstrap, &config).await?;
    let stop = shutdown_signal();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "peer id: {}", node.client.peer_id())?;
        for a in node.client.listen_addrs() {
            writeln!(out, "listening on {a}")?;
        }
        if let Some(g) = serving.gateway {
            writeln!(out, "gateway: http://{g}/c/ID")?;
        }
        writeln!(out, "web: {}", serving.login_url)?;
        // Last: scripts and tests wait for this line to know the node is up.
        writeln!(out, "api: http://{}", serving.api)?;
        out.flush()?;
    }
    stop.await;
    eprintln!("storgo: stopping");
    api::remove_api_file(store.dir());
    node.stop().await;
    store.close()?;
    Ok(())
}

async fn serve_http(
    node: &Node,
    store: &Arc<crate::store::Store>,
    bootstrap: bool,
    config: &crate::config::NodeConfig,
) -> Result<api::Serving> {
    let parts = || api::NodeParts {
        client: node.client.clone(),
        replicator: node.replicator.clone(),
        store: Arc::clone(store),
        fetch: FetchOptions::default(),
        bootstrap,
        metrics: node.metrics.clone(),
        collections: node.collections.clone(),
    };
    let mut http = config.http.clone();
    match api::serve(parts(), &http).await {
        Ok(s) => Ok(s),
        Err(e) if !config.api_given && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(address = %http.api, "the default API port is taken; using a free one (give --api to choose)");
            http.api.set_port(0);
            api::serve(parts(), &http).await.context("starting the API")
        }
        Err(e) => Err(e).context("starting the API"),
    }
}
