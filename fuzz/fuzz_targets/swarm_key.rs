//! Swarm key files (`--swarm-key`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = storgo::network::parse_swarm_key(s);
    }
});
