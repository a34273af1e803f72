//! Manifest blocks: the public header (what a replica holder parses), and a decrypted body
//! (what the holder of an ID decodes; whoever made the item may have crafted it).
#![no_main]
use libfuzzer_sys::fuzz_target;
use storgo::content::manifest::parse_links;
use storgo::content::{BlockAddress, BlockKey, Manifest};

fuzz_target!(|data: &[u8]| {
    let address = BlockAddress::of(data);
    let _ = parse_links(address, data);
    let _ = Manifest::decode_body(address, data);
    let _ = Manifest::open(address, &BlockKey::from_bytes([7; 32]), data);
});
