//! The config loader on any text: a config or an error naming a key, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenroute_domain::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::from_toml(text, "fuzz", &|_| Some("x".to_string()));
    }
});
