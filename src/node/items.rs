//! What follows a new item on this node, written once: an add through the API, an upload from
//! the web page and a collection's new version all make the item findable at once and then
//! place its copies on the peers closest to it. This module owns that order; it must not store
//! anything itself (the item is already pinned when it is called).

use std::future::Future;

use crate::content::stripe::Durability;
use crate::content::BlockAddress;

use super::{Client, NodeError, Replicator};

/// Provides `root` (findable from now on), then hands back the placement of its copies or
/// columns — as `durability` or `replicas` say, or the node's `--durability` — for the caller
/// to run in its own tracked task. A placement that fails is logged; the next repair round tries again.
pub async fn provide_then_place(
    client: &Client,
    replicator: &Replicator,
    root: BlockAddress,
    replicas: Option<u8>,
    durability: Option<Durability>,
) -> Result<impl Future<Output = ()> + Send + 'static, NodeError> {
    client.start_providing(root).await?;
    let r = durability
        .or(replicas.map(Durability::Replicas))
        .unwrap_or_else(|| replicator.config().durability());
    let replicator = replicator.clone();
    Ok(async move {
        if let Err(e) = replicator.repair_item(root, r).await {
            tracing::warn!(cid = %root, error = %e, "placing replicas failed; the next repair round retries");
        }
    })
}
