//! Durability with in-process nodes: items on the R peers closest to them, repaired as peers
//! die and join, refused by full peers (DESIGN.md, "Replication and repair").

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/nodes.rs"]
mod nodes;

mod a_full_peer_refuses_and_the_next_closest_holds_it;
mod an_item_survives_its_adder_and_each_holder_dying;
mod bench_ec_placement_and_degraded_fetch;
mod churn_at_scale_keeps_every_item;
mod closer_peers_joining_take_over_without_dropping_below_r;
mod columns_outlive_their_adder_and_m_holders;
mod holders_that_claim_a_copy_must_prove_it;
mod replicas_are_leases_renewed_by_pinners;
mod scrub_replaces_a_corrupt_chunk_from_another_holder;
mod stripes_against_copies_under_churn;

use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use storgo::content::ContentId;
use storgo::node::{begin_session, fetch_in, FetchOptions, Node};
use storgo::store::SessionKind;

/// Fetches `id` on `node` without pinning it and compares the bytes.
pub async fn fetch_and_compare(node: &Node, id: &ContentId, data: &[u8]) {
    let session = begin_session(&node.store, SessionKind::Read, id.to_string())
        .await
        .expect("session");
    let opts = FetchOptions {
        pin: false,
        stall_timeout: Duration::from_secs(20),
        ..FetchOptions::default()
    };
    if let Err(e) = fetch_in(
        &node.client,
        &node.store,
        &session,
        id,
        &opts,
        &|_| {},
        None,
    )
    .await
    {
        let lookup = node.client.find_providers(id.root).await;
        let info = node.client.info().await;
        panic!(
            "fetch of {id} from the survivors: {e}; a lookup now finds {lookup:?}; reader {info:?}"
        );
    }
    let mut out = Vec::new();
    storgo::files::cat(&node.store, id, &mut out, &|_| {}).expect("read back");
    assert!(out == data, "fetched bytes differ");
    drop(session);
}

/// Peer IDs of `nodes`, sorted by distance to `root` (closest first).
pub fn by_distance<'a>(
    root: &storgo::content::BlockAddress,
    nodes: impl Iterator<Item = &'a Node>,
) -> Vec<PeerId> {
    let mut v: Vec<PeerId> = nodes.map(|n| n.client.peer_id()).collect();
    storgo::network::distance_order(root, &mut v);
    v
}

/// Waits until no node is taking a replica in (intakes run in the background).
pub async fn settle(nodes: &[Arc<Node>]) {
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut poll = tokio::time::interval(Duration::from_millis(50));
        loop {
            poll.tick().await;
            let arriving = nodes.iter().any(|n| n.replicator.intakes_in_progress() > 0);
            if !arriving {
                return;
            }
        }
    })
    .await
    .expect("replica intakes finish");
}
