//! Config files (`--config FILE`, `config.toml`): any text is refused with an error naming
//! what is wrong, or taken; never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = storgo::config::check_text::<storgo::cli::Cli>(s);
    }
});
