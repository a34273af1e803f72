//! Hardening review, defect 1: inbound chunk requests go through a bounded service. A peer
//! that sends thousands of requests as fast as the protocol lets it gets an answer to each
//! (`Busy` for those over its limit; the rule is unit-tested in `node::serving`), and another
//! peer's fetch from the same node meanwhile completes intact.
//!
//! The flooder keeps 200 requests open at once: libp2p's request-response refuses more than
//! its per-connection stream limit (256) on the *sending* side before anything reaches the
//! node, so a larger burst measures libp2p's refusal, not storgo's service.

use futures::stream::{self, StreamExt};
use storgo::content::BlockAddress;
use storgo::network::chunks::ErrorCode;
use storgo::network::{ChunkRequest, ChunkResponse};
use storgo::node::{fetch, FetchOptions};

use crate::common::*;
use crate::nodes::*;

const FLOOD: u32 = 10_000;
const OPEN_AT_ONCE: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_answered_busy_and_an_honest_fetch_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start_node(&tmp.path().join("a"), vec![]).await;
    let path = tmp.path().join("lecture");
    let data = write_random(&path, 24 << 20, 5);
    let id = add_and_provide(&a, &path).await;
    let flooder = start_node(&tmp.path().join("f"), vec![addr(&a)]).await;
    let honest = start_node(&tmp.path().join("c"), vec![addr(&a)]).await;
    let target = a.client.peer_id();
    flooder.client.dial(addr(&a)).await.unwrap();

    let flood = async {
        let c = flooder.client.clone();
        let answers = stream::iter(0..FLOOD)
            .map(|i| {
                let c = c.clone();
                let mut digest = [0u8; 32];
                digest[..4].copy_from_slice(&i.to_be_bytes());
                let missing = BlockAddress::from_digest(digest);
                async move { c.request(target, ChunkRequest::GetChunk(missing)).await }
            })
            .buffer_unordered(OPEN_AT_ONCE);
        answers
            .fold(
                (0u32, 0u32, Vec::new()),
                |(busy, nf, mut other), r| async move {
                    match r {
                        Ok(ChunkResponse::Error {
                            code: ErrorCode::Busy,
                            ..
                        }) => (busy + 1, nf, other),
                        Ok(ChunkResponse::NotFound) => (busy, nf + 1, other),
                        r => {
                            other.push(format!("{r:?}"));
                            (busy, nf, other)
                        }
                    }
                },
            )
            .await
    };
    let opts = FetchOptions::default();
    let fetching = fetch(&honest.client, &honest.store, &id, &opts, &|_| {}, None);
    let ((busy, not_found, other), fetched) = tokio::join!(flood, fetching);
    eprintln!(
        "flood of {FLOOD}: {busy} busy, {not_found} not found, {} other (first: {:?})",
        other.len(),
        other.first()
    );
    assert_eq!(
        busy + not_found,
        FLOOD,
        "every request of the flood gets an answer from the node"
    );
    assert!(busy > 0, "a peer over its limit is answered Busy");
    assert!(not_found > 0, "admitted requests are answered");
    let report = fetched.expect("the honest fetch completes during the flood");
    assert_eq!(report.chunks_fetched, report.chunks_total);
    let mut back = Vec::new();
    storgo::files::cat(&honest.store, &id, &mut back, &|_| {}).unwrap();
    assert!(back == data);
    for n in [a, flooder, honest] {
        n.stop().await;
    }
}
