//! Hardening review, defect 10: the node answers what `protocols/chunks-v1.md` says, point by
//! point (the framing cases are vectors in the spec; these are the node's answers). A request
//! it cannot accept gets error code 1 with a reason, not a reset stream; a chunk asked for
//! with the manifest op is a bad request, not a corrupt block.

use storgo::content::BlockAddress;
use storgo::files::AddOptions;
use storgo::network::chunks::ErrorCode;
use storgo::network::{ChunkRequest, ChunkResponse};

use crate::nodes::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_code_1_and_a_chunk_is_not_served_as_a_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start_node(&tmp.path().join("a"), vec![]).await;
    // Zeros, uncompressed: chunks of the largest size, over a manifest's limit.
    let path = tmp.path().join("zeros");
    std::fs::write(&path, vec![0u8; 9 << 20]).unwrap();
    let store = a.store.clone();
    let opts = AddOptions {
        compress: false,
        ..AddOptions::default()
    };
    tokio::task::spawn_blocking(move || storgo::files::add_path(&store, &path, &opts, &|_| {}))
        .await
        .unwrap()
        .unwrap();
    let big = chunk_files(&tmp.path().join("a"))
        .into_iter()
        .find(|p| std::fs::metadata(p).unwrap().len() > 2 << 20)
        .expect("a chunk over 2 MiB");
    let chunk =
        BlockAddress::from_hex(&big.file_name().unwrap().to_string_lossy()).expect("hex name");

    let b = start_node(&tmp.path().join("b"), vec![addr(&a)]).await;
    let target = a.client.peer_id();
    let bad_request = |r: Result<ChunkResponse, _>| match r {
        Ok(ChunkResponse::Error {
            code: ErrorCode::BadRequest,
            message,
        }) => message,
        other => panic!("expected a bad-request answer, got {other:?}"),
    };

    let why = bad_request(
        b.client
            .request(target, ChunkRequest::Invalid("test".into()))
            .await,
    );
    assert!(why.contains("unknown op 0"), "{why}");

    let why = bad_request(
        b.client
            .request(target, ChunkRequest::GetManifest(chunk))
            .await,
    );
    assert!(why.contains("over the 2097152-byte limit"), "{why}");
    assert!(big.exists(), "the chunk is not moved aside as corrupt");

    // The same block asked for with the right op is served whole.
    match b
        .client
        .request(target, ChunkRequest::GetChunk(chunk))
        .await
    {
        Ok(ChunkResponse::Block(block)) => assert!(chunk.matches(&block)),
        other => panic!("{other:?}"),
    }
    for n in [a, b] {
        n.stop().await;
    }
}
