//! The built-in `mock` provider: deterministic OpenAI-shaped answers with no network,
//! so TokenRoute can be tried — and metered — with no provider key.
//!
//! It answers `Echo: <the last user message>` (truncated to `max_tokens` words),
//! counts tokens as one per four bytes of message text, and streams one word per
//! event, with the usage chunk when `stream_options.include_usage` is set.

use std::collections::VecDeque;

use bytes::Bytes;
use serde_json::{json, Value};

use super::{Source, UpstreamResponse};
use crate::meter::estimate_tokens;

const CREATED: u64 = 1_700_000_000;

pub(super) fn respond(body: &[u8]) -> UpstreamResponse {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return error(400, "mock provider: body is not JSON");
    };
    let model = request["model"].as_str().unwrap_or("echo").to_string();
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let prompt_bytes: usize = messages.iter().map(|m| text_of(&m["content"]).len()).sum();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default();
    let max_words = request["max_completion_tokens"]
        .as_u64()
        .or(request["max_tokens"].as_u64())
        .unwrap_or(u64::MAX);
    let words: Vec<String> = std::iter::once("Echo:".to_string())
        .chain(last_user.split_whitespace().take(64).map(str::to_string))
        .take(usize::try_from(max_words).unwrap_or(usize::MAX))
        .collect();
    let answer = words.join(" ");
    let usage = json!({
        "prompt_tokens": estimate_tokens(prompt_bytes) + 3 * messages.len() as u64,
        "completion_tokens": words.len(),
        "total_tokens": estimate_tokens(prompt_bytes) + 3 * messages.len() as u64 + words.len() as u64,
    });
    let id = format!("chatcmpl-mock-{:016x}", fnv1a(body));
    if request["stream"].as_bool().unwrap_or(false) {
        let include_usage = request["stream_options"]["include_usage"]
            .as_bool()
            .unwrap_or(false);
        stream(&id, &model, &words, include_usage.then_some(usage))
    } else {
        let body = json!({
            "id": id,
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": answer, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": usage,
        });
        UpstreamResponse {
            status: 200,
            content_type: Some("application/json".into()),
            retry_after: None,
            source: Source::Mock(VecDeque::from([Bytes::from(body.to_string())])),
        }
    }
}

fn stream(id: &str, model: &str, words: &[String], usage: Option<Value>) -> UpstreamResponse {
    let usage_field = if usage.is_some() {
        Some(Value::Null)
    } else {
        None
    };
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut c = json!({
            "id": id, "object": "chat.completion.chunk", "created": CREATED,
            "model": model, "choices": choices,
        });
        if let Some(u) = usage {
            c["usage"] = u;
        }
        Bytes::from(format!("data: {c}\n\n"))
    };
    let mut events = VecDeque::new();
    events.push_back(chunk(
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
        usage_field.clone(),
    ));
    for (i, word) in words.iter().enumerate() {
        let text = if i == 0 {
            word.clone()
        } else {
            format!(" {word}")
        };
        events.push_back(chunk(
            json!([{"index": 0, "delta": {"content": text}, "finish_reason": null}]),
            usage_field.clone(),
        ));
    }
    events.push_back(chunk(
        json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        usage_field,
    ));
    if let Some(u) = usage {
        events.push_back(chunk(json!([]), Some(u)));
    }
    events.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
    UpstreamResponse {
        status: 200,
        content_type: Some("text/event-stream".into()),
        retry_after: None,
        source: Source::Mock(events),
    }
}

/// Embeddings: eight numbers a text, derived from its hash (same text, same vector).
pub(super) fn embeddings(body: &[u8]) -> UpstreamResponse {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return error(400, "mock provider: body is not JSON");
    };
    let texts: Vec<String> = match &request["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().map(|i| i.to_string()).collect(),
        _ => return error(400, "mock provider: `input` must be a string or an array"),
    };
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let h = fnv1a(text.as_bytes());
            let vector: Vec<f64> = (0..8)
                .map(|i| f64::from(((h >> (i * 8)) & 0xff) as u8) / 255.0 - 0.5)
                .collect();
            json!({"object": "embedding", "index": index, "embedding": vector})
        })
        .collect();
    let tokens: u64 = texts.iter().map(|t| estimate_tokens(t.len())).sum();
    let body = json!({
        "object": "list",
        "data": data,
        "model": request["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    UpstreamResponse {
        status: 200,
        content_type: Some("application/json".into()),
        retry_after: None,
        source: Source::Mock(VecDeque::from([Bytes::from(body.to_string())])),
    }
}

fn error(status: u16, message: &str) -> UpstreamResponse {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}});
    UpstreamResponse {
        status,
        content_type: Some("application/json".into()),
        retry_after: None,
        source: Source::Mock(VecDeque::from([Bytes::from(body.to_string())])),
    }
}

/// Message content as text: a string, or the text parts of a content array.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// A stable id for identical requests (FNV-1a), so the mock is fully deterministic.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
