//! Malformed input of every kind returns an error (or is ignored), never a panic.

use serde_json::{json, Value};

use super::fixture;
use crate::anthropic::{error_message, from_response, to_upstream, StreamTranslator};

/// A tiny deterministic generator, so the mutations are the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `input` with a few bytes overwritten, deleted or duplicated.
fn mutate(input: &[u8], rng: &mut Lcg) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        if out.is_empty() {
            break;
        }
        let at = rng.below(out.len());
        match rng.below(3) {
            0 => out[at] = b"{}[]\",:0a\n \\"[rng.below(12)],
            1 => {
                out.remove(at);
            }
            _ => {
                let end = (at + rng.below(16)).min(out.len());
                let copy = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
        }
    }
    out
}

#[test]
fn malformed_requests_are_errors() {
    for chat in [
        json!({}),
        json!({"messages": "hi"}),
        json!({"messages": [1]}),
        json!({"messages": [{"content": "no role"}]}),
        json!({"messages": [{"role": "wizard", "content": "x"}]}),
        json!({"messages": [{"role": "function", "name": "f", "content": "x"}]}),
        json!({"messages": [{"role": "user", "content": 5}]}),
        json!({"messages": [{"role": "user", "content": [5]}]}),
        json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]}),
        json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
        json!({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}]}),
        json!({"messages": [{"role": "tool", "content": "no id"}]}),
        json!({"messages": [{"role": "assistant", "tool_calls": {}}]}),
        json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "t"}]}]}),
        json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": 5}}]}]}),
        json!({"messages": [], "n": "two"}),
        json!({"messages": [], "stop": 5}),
        json!({"messages": [], "stop": [1]}),
        json!({"messages": [], "stream": "yes"}),
        json!({"messages": [], "temperature": "hot"}),
        json!({"messages": [], "tools": {}}),
        json!({"messages": [], "tools": [{"type": "function"}]}),
        json!({"messages": [], "tools": [{"type": "code_interpreter"}]}),
        json!({"messages": [], "tools": [{"function": {"name": "f", "parameters": []}}]}),
        json!({"messages": [], "tool_choice": "sometimes"}),
        json!({"messages": [], "tool_choice": {"type": "function"}}),
        json!({"messages": [], "tool_choice": 3}),
        json!({"messages": [], "parallel_tool_calls": "no"}),
        json!({"messages": [], "response_format": {"type": "json_schema"}}),
        json!({"messages": [], "response_format": {"type": "yaml"}}),
        json!({"messages": [], "response_format": "json"}),
        json!({"messages": [], "user": 42}),
    ] {
        let Value::Object(chat) = &chat else {
            unreachable!()
        };
        assert!(to_upstream(chat, "m").is_err(), "{chat:?}");
    }
}

#[test]
fn mutated_requests_never_panic() {
    let chat = json!({
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": [{"type": "text", "text": "t"},
              {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
              "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "r"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "stop": ["x"], "max_tokens": 5, "user": "u",
        "response_format": {"type": "json_schema", "json_schema": {"schema": {}}},
    })
    .to_string()
    .into_bytes();
    let mut rng = Lcg(1);
    let mut parsed = 0;
    for _ in 0..3000 {
        if let Ok(Value::Object(chat)) = serde_json::from_slice(&mutate(&chat, &mut rng)) {
            parsed += 1;
            let _ = to_upstream(&chat, "m");
        }
    }
    assert!(
        parsed > 100,
        "the mutations should still parse often: {parsed}"
    );
}

#[test]
fn malformed_answers_are_errors() {
    for body in [
        &b""[..],
        b"null",
        b"[]",
        b"{\"id\": 5}",
        b"{\"content\": []}",
        b"{\"id\": \"m\", \"content\": {}}",
        b"{\"id\": \"m\", \"content\": [{\"type\": \"text\"}]}",
        b"{\"id\": \"m\", \"content\": [], \"usage\": {\"input_tokens\": -1}}",
        b"\xff\xfe",
    ] {
        assert!(
            from_response(body, "m").is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn mutated_answers_and_streams_never_panic() {
    let mut rng = Lcg(2);
    for name in ["messages.json", "error-529.json"] {
        let body = fixture(name);
        for _ in 0..2000 {
            let body = mutate(&body, &mut rng);
            let _ = from_response(&body, "m");
            let _ = error_message(&body);
        }
    }
    for name in ["messages-stream.sse", "tool-use-stream.sse"] {
        let input = fixture(name);
        for _ in 0..500 {
            let input = mutate(&input, &mut rng);
            let mut translator = StreamTranslator::new("m");
            let piece = 1 + rng.below(64);
            for chunk in input.chunks(piece) {
                let _ = translator.push(chunk);
            }
            let _ = translator.finish();
        }
    }
    let mut translator = StreamTranslator::new("m");
    assert!(translator
        .push(b"\x00\xff garbage\n\n\r\r data: {\n\n")
        .is_empty());
    assert!(translator.finish().is_empty());
}
