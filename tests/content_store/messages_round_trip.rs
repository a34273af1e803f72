//! Every wire message: encode → decode is the identity, and arbitrary bytes decode to an
//! error (or, for chunk requests, `Invalid`) without panicking. The fuzz targets
//! (`just fuzz`) run the same decoders for longer.

use proptest::prelude::*;
use storgo::content::BlockAddress;
use storgo::network::chunks::{codec as chunks, ErrorCode, MAX_HAVE};
use storgo::network::{announce, replicate};
use storgo::network::{
    AnnounceResponse, Announcement, ChunkRequest, ChunkResponse, RefuseReason, ReplicateRequest,
    ReplicateResponse,
};

fn address() -> impl Strategy<Value = BlockAddress> {
    any::<[u8; 32]>().prop_map(BlockAddress::from_digest)
}

fn chunk_request() -> impl Strategy<Value = ChunkRequest> {
    prop_oneof![
        address().prop_map(ChunkRequest::GetManifest),
        address().prop_map(ChunkRequest::GetChunk),
        proptest::collection::vec(address(), 0..40).prop_map(ChunkRequest::Have),
    ]
}

fn chunk_response() -> impl Strategy<Value = ChunkResponse> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..3000).prop_map(ChunkResponse::Block),
        proptest::collection::vec(any::<bool>(), 0..MAX_HAVE).prop_map(ChunkResponse::Have),
        Just(ChunkResponse::NotFound),
        (1u8..=3, "[ -~]{0,256}").prop_map(|(c, m)| ChunkResponse::Error {
            code: ErrorCode::from_u8(c),
            message: m,
        }),
    ]
}

fn refuse_reason() -> impl Strategy<Value = RefuseReason> {
    (1u8..=4).prop_map(|c| RefuseReason::from_u8(c).expect("a known reason"))
}

fn replicate_request() -> impl Strategy<Value = ReplicateRequest> {
    prop_oneof![
        address().prop_map(|root| ReplicateRequest::Query { root }),
        (
            address(),
            1u8..=16,
            any::<u64>(),
            proptest::option::of(any::<u64>()),
            proptest::option::of((address(), any::<u8>())),
        )
            .prop_map(|(root, replication, bytes, lease_until, shard)| {
                ReplicateRequest::Hold {
                    root,
                    replication,
                    bytes,
                    lease_until,
                    shard: shard.map(|(map, c)| storgo::content::stripe::ShardOf {
                        map,
                        column: c % replication,
                    }),
                }
            }),
    ]
}

fn replicate_response() -> impl Strategy<Value = ReplicateResponse> {
    prop_oneof![
        Just(ReplicateResponse::Accepted),
        Just(ReplicateResponse::NotHeld),
        (
            any::<bool>(),
            any::<bool>(),
            proptest::option::of((address(), proptest::option::of(0u8..16)))
        )
            .prop_map(|(complete, pinned, stripes)| ReplicateResponse::Holding {
                complete,
                pinned,
                stripes: stripes.map(|(map, column)| storgo::network::HeldStripes { map, column }),
            }),
        (refuse_reason(), "[ -~]{0,100}")
            .prop_map(|(reason, message)| ReplicateResponse::Refused { reason, message }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn chunk_requests_round_trip(r in chunk_request()) {
        prop_assert_eq!(chunks::decode_request_frame(&chunks::encode_request(&r)), r);
    }

    #[test]
    fn chunk_responses_round_trip(r in chunk_response()) {
        prop_assert_eq!(chunks::decode_response_frame(&chunks::encode_response(&r)).unwrap(), r);
    }

    #[test]
    fn replicate_messages_round_trip(q in replicate_request(), a in replicate_response()) {
        prop_assert_eq!(
            replicate::codec::decode_request_frame(&replicate::codec::encode_request(&q)).unwrap(),
            q
        );
        prop_assert_eq!(
            replicate::codec::decode_response_frame(&replicate::codec::encode_response(&a)).unwrap(),
            a
        );
    }

    #[test]
    fn announcements_round_trip(roots in proptest::collection::vec(address(), 0..100), count in any::<u32>()) {
        let a = Announcement { roots, addrs: vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()] };
        prop_assert_eq!(
            announce::codec::decode_request_frame(&announce::codec::encode_request(&a)).unwrap(),
            a
        );
        let r = AnnounceResponse::Stored { count };
        prop_assert_eq!(
            announce::codec::decode_response_frame(&announce::codec::encode_response(&r)).unwrap(),
            r
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..5000), framed in any::<bool>()) {
        let mut b = b;
        if framed && b.len() >= 4 {
            // A plausible length prefix, so that decoding gets past the framing.
            let n = (b.len() - 4) as u32;
            b[..4].copy_from_slice(&n.to_be_bytes());
        }
        let _ = chunks::decode_request_frame(&b);
        let _ = chunks::decode_response_frame(&b);
        let _ = replicate::codec::decode_request_frame(&b);
        let _ = replicate::codec::decode_response_frame(&b);
        let _ = announce::codec::decode_request_frame(&b);
        let _ = announce::codec::decode_response_frame(&b);
        let _ = storgo::content::chunk::decode_opened(b.len() as u32, b.clone());
    }
}
