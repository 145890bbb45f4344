//! A whole Anthropic answer → an OpenAI `chat.completion`.
//!
//! Text blocks are joined into `message.content` and `tool_use` blocks become
//! `message.tool_calls`. Thinking, redacted-thinking and server-tool blocks have no
//! place in a chat completion and are dropped; so are citations and `stop_sequence`
//! (which sequence matched).

use serde_json::{json, Map, Value};

use super::wire::{self, ResponseBlock};
use super::{error_message, finish_reason, openai_usage, CREATED, PROVIDER};
use crate::TranslateError;

/// Anthropic Messages response body → OpenAI `chat.completion` JSON bytes (with
/// `usage`). `client_model` is the model id the client asked for; it goes in `model`.
pub fn from_response(body: &[u8], client_model: &str) -> Result<Vec<u8>, TranslateError> {
    let response: wire::Response = serde_json::from_slice(body).map_err(|e| {
        let reason = match error_message(body) {
            Some(message) => format!("an error instead of a message: {message}"),
            None => format!("not a message: {e}"),
        };
        TranslateError::BadAnswer {
            provider: PROVIDER,
            reason,
        }
    })?;

    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in response.content {
        match block {
            ResponseBlock::Text { text: piece } => text.push_str(&piece),
            ResponseBlock::ToolUse { id, name, input } => tool_calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": arguments(&input)},
            })),
            ResponseBlock::Other => {}
        }
    }

    let mut message = Map::new();
    message.insert("role".into(), "assistant".into());
    // OpenAI sends `content: null` beside tool calls when the model said nothing.
    let content = if text.is_empty() && !tool_calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    message.insert("content".into(), content);
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }

    let mut completion = json!({
        "id": response.id,
        "object": "chat.completion",
        "created": CREATED,
        "model": client_model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(response.stop_reason.as_deref()),
        }],
    });
    // Without usage from Anthropic there is none to give: the data plane then
    // estimates, rather than metering a made-up zero.
    if let (Some(usage), Value::Object(o)) = (&response.usage, &mut completion) {
        o.insert("usage".into(), openai_usage(usage));
    }
    Ok(completion.to_string().into_bytes())
}

/// A tool's `input` object → OpenAI's `arguments` JSON string.
fn arguments(input: &Value) -> String {
    match input {
        Value::Null => "{}".to_string(),
        input => input.to_string(),
    }
}
