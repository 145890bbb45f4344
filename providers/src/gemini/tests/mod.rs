//! Tests of the Gemini adapter, on the transcripts in `fixtures/providers/gemini`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod embeddings;
mod request;
mod response;
mod schema;
mod stream;

use serde_json::{Map, Value};

/// A Gemini fixture's bytes.
macro_rules! fixture {
    ($name:literal) => {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/providers/gemini/",
            $name
        ))
        .expect($name)
    };
}
pub(crate) use fixture;

/// A JSON object literal as the `Map` the public API takes.
fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}
