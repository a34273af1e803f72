//! A chunk's plaintext after authentication (codec byte, raw or zstd): exactly the length the
//! manifest names, or an error; memory bounded by that length whatever the frame claims.
#![no_main]
use libfuzzer_sys::fuzz_target;
use storgo::content::chunk::decode_opened;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    // The first bytes choose the length the manifest would name (up to 4 MiB).
    let len = u32::from_le_bytes([data[0], data[1], data[2], 0]) & 0x3f_ffff;
    if let Ok(plain) = decode_opened(len, data[3..].to_vec()) {
        assert_eq!(plain.len(), len as usize);
    }
});
