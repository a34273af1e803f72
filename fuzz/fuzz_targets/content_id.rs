//! Content IDs as users paste them, and binary block addresses as peers send them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use storgo::content::{BlockAddress, ContentId};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(id) = s.parse::<ContentId>() {
            assert_eq!(id.to_string().parse::<ContentId>().ok(), Some(id));
        }
        let _ = s.parse::<BlockAddress>();
    }
    if let Ok(a) = BlockAddress::from_cid_bytes(data) {
        assert_eq!(
            BlockAddress::from_cid_bytes(&a.to_cid_bytes()).ok(),
            Some(a)
        );
    }
});
