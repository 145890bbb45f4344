//! Tests of the Messages surface, on the provider transcripts in
//! `fixtures/providers/` and on hand-written requests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod errors;
mod request;
mod response;
mod round_trip;
mod stream;

use serde_json::Value;

/// A transcript from `fixtures/providers/`, e.g. `openai/chat.json`.
fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../fixtures/providers/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

/// Anthropic SSE bytes → `(event, data)` pairs, checking each event's framing and that
/// its `event:` name is its data's `type`.
fn events(sse: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(sse).unwrap();
    assert!(
        text.is_empty() || text.ends_with("\n\n"),
        "unterminated: {text:?}"
    );
    text.split_terminator("\n\n")
        .filter(|e| !e.is_empty())
        .map(|event| {
            let (name, data) = event
                .strip_prefix("event: ")
                .and_then(|e| e.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("not an Anthropic event: {event:?}"));
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], name, "{event}");
            (name.to_owned(), data)
        })
        .collect()
}

/// The `data:` JSON of an SSE transcript's events (Anthropic's, to compare against).
fn fixture_events(name: &str) -> Vec<(String, Value)> {
    let bytes = fixture(name);
    let mut splitter = crate::sse::SseSplitter::new();
    let mut events = splitter.push(&bytes);
    events.extend(splitter.finish());
    events
        .into_iter()
        .map(|e| {
            (
                e.event.unwrap_or_default(),
                serde_json::from_str(&e.data).unwrap(),
            )
        })
        .collect()
}
