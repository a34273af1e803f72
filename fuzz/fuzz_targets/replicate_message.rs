//! `/storgo/replicate/1.0.0` frames, both directions.
#![no_main]
use libfuzzer_sys::fuzz_target;
use storgo::network::replicate::codec::{decode_request_frame, decode_response_frame};

fuzz_target!(|data: &[u8]| {
    let _ = decode_request_frame(data);
    let _ = decode_response_frame(data);
});
