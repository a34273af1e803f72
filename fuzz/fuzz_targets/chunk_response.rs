//! A chunk-exchange response held in memory: decodes or errs, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use storgo::network::chunks::codec::{decode_response_frame, encode_response};

fuzz_target!(|data: &[u8]| {
    if let Ok(resp) = decode_response_frame(data) {
        assert_eq!(
            decode_response_frame(&encode_response(&resp)).ok(),
            Some(resp)
        );
    }
});
