//! A chunk-exchange request as the responder reads it from a stream: always a request or
//! `Invalid`, never a panic, never more than the header limit allocated.
#![no_main]
use libfuzzer_sys::fuzz_target;
use storgo::network::chunks::codec::{decode_request_frame, encode_request};
use storgo::network::ChunkRequest;

fuzz_target!(|data: &[u8]| {
    let req = decode_request_frame(data);
    if !matches!(req, ChunkRequest::Invalid(_) | ChunkRequest::Incomplete(_)) {
        // Whatever decodes re-encodes to something that decodes to the same request.
        assert_eq!(decode_request_frame(&encode_request(&req)), req);
    }
});
