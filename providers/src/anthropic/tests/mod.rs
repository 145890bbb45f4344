//! Tests of the Anthropic adapter, on the provider transcripts in
//! `fixtures/providers/anthropic/` where one exists.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod malformed;
mod request;
mod response;
mod stream;

use serde_json::Value;

/// A fixture's bytes, exactly as the provider sends them.
fn fixture(name: &str) -> Vec<u8> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/providers/anthropic"
    );
    std::fs::read(format!("{dir}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}
