//! Work a stopped or killed node left unfinished, taken up again when it starts.
//!
//! - A fetch that was to pin its item (a partial pin) is fetched again: the walk finds the
//!   manifests and chunks already here and asks the network only for the rest.
//! - A fetch that only read its item (`cat` or `get` through the node of an item not pinned)
//!   is not resumed: its partial pin is let go, so GC may take what arrived.
//! - A partial replica is taken in again ([`Replicator::resume_intakes`]).
//!
//! Fetches wait for a first peer (there is nobody to fetch from before), and run one at a
//! time, so a restart does not start a burst of transfers. This module decides what to
//! resume; fetching and intake are [`fetch`](crate::node::fetch)'s and [`replicate`](crate::node::replicate)'s.

use std::sync::Arc;
use std::time::Duration;

use crate::content::ContentId;
use crate::store::Store;

use crate::node::fetch::{fetch, FetchOptions};
use crate::node::replicate::Replicator;
use crate::node::{blocking, Client};

/// Resumes what `left` (the pins as the node found them at start, before anything of this run
/// touched them) and the partial replicas say was interrupted.
pub(crate) async fn resume(
    client: Client,
    store: Arc<Store>,
    replicator: Replicator,
    left: Vec<crate::store::PinRecord>,
) {
    let pins = left;
    let mut to_fetch = Vec::new();
    for p in pins.into_iter().filter(|p| p.partial) {
        let Ok(id) = p.id.parse::<ContentId>() else {
            tracing::warn!(id = %p.id, "a partial pin with an unreadable content ID");
            continue;
        };
        // Reads no longer write pins; a row marked for reading is one an older version left.
        if p.for_reading {
            let s = Arc::clone(&store);
            match blocking(move || s.unpin(&id)).await {
                Ok(Ok(_)) => tracing::info!(id = %id.short(), "let go of an interrupted read"),
                Ok(Err(e)) => {
                    tracing::warn!(id = %id.short(), error = %e, "letting go of an interrupted read")
                }
                Err(_) => {}
            }
        } else {
            to_fetch.push(id);
        }
    }
    let work_left = !to_fetch.is_empty() || has_partial_replicas(&store).await;
    if work_left && !first_peer(&client).await {
        return; // the node stopped before any peer came
    }
    replicator.resume_intakes().await;
    for id in to_fetch {
        // Unpinned (or completed) since the start: nothing of it is to be resumed.
        let s = Arc::clone(&store);
        let still = matches!(
            blocking(move || s.pin_of(&id.root)).await,
            Ok(Ok(Some(p))) if p.partial
        );
        if !still {
            continue;
        }
        tracing::info!(id = %id.short(), "resuming an interrupted fetch");
        let opts = FetchOptions::default();
        match fetch(&client, &store, &id, &opts, &|_| {}, None).await {
            Ok(r) => tracing::info!(
                id = %id.short(),
                chunks = r.chunks_fetched,
                bytes = r.bytes_fetched,
                "resumed fetch complete"
            ),
            Err(e) => tracing::warn!(id = %id.short(), error = %e, "resumed fetch failed"),
        }
    }
}

async fn has_partial_replicas(store: &Arc<Store>) -> bool {
    let s = Arc::clone(store);
    matches!(blocking(move || s.replicas()).await, Ok(Ok(rs)) if rs.iter().any(|r| !r.complete))
}

/// Waits until some peer is connected, however long that takes (a laptop may start hours
/// before it reaches a network); false when the node stops first.
async fn first_peer(client: &Client) -> bool {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        match client.peers().await {
            Ok(p) if !p.is_empty() => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}
