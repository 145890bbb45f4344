//! An OpenAI `chat.completion` → an Anthropic `message`, and the pieces the stream
//! translation shares with it (ids, stop reasons, usage).

use serde_json::{json, Map, Value};

use super::wire::{ChatCompletion, ChatMessage, Usage};
use crate::TranslateError;

/// Who answered, in `TranslateError::BadAnswer`: whatever provider sits behind the data
/// plane, its answer arrives here in OpenAI's shape.
const ANSWERER: &str = "the provider";

/// An OpenAI `chat.completion` body (with TokenRoute's `usage.cost`, and
/// `usage.prompt_tokens_details.cached_tokens` when the provider reports them) → an
/// Anthropic `message` body naming `client_model`. [`TranslateError::BadAnswer`] when
/// the body is not a chat completion with a choice.
pub fn from_openai_response(body: &[u8], client_model: &str) -> Result<Vec<u8>, TranslateError> {
    let completion: ChatCompletion =
        serde_json::from_slice(body).map_err(|e| bad(format!("not a chat.completion: {e}")))?;
    // TokenRoute never asks for `n` > 1; if several choices come anyway, the first counts.
    let choice = completion
        .choices
        .into_iter()
        .min_by_key(|c| c.index)
        .ok_or_else(|| bad("a chat.completion without choices".into()))?;
    let message = choice
        .message
        .ok_or_else(|| bad("a choice without a message".into()))?;

    let mut content = Vec::new();
    let text = message_text(&message);
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    let calls = message.tool_calls.unwrap_or_default();
    for (i, call) in calls.iter().enumerate() {
        let function = call.function.as_ref();
        let arguments = function.and_then(|f| f.arguments.as_deref()).unwrap_or("");
        content.push(json!({
            "type": "tool_use",
            "id": tool_use_id(call.id.as_deref(), i),
            "name": function.and_then(|f| f.name.as_deref()).unwrap_or(""),
            "input": tool_input(arguments),
        }));
    }

    let answer = json!({
        "id": message_id(completion.id.as_deref()),
        "type": "message",
        "role": "assistant",
        "model": client_model,
        "content": content,
        "stop_reason": stop_reason(choice.finish_reason.as_deref(), !calls.is_empty()),
        "stop_sequence": null,
        "usage": usage(completion.usage.as_ref()),
    });
    serde_json::to_vec(&answer).map_err(|e| bad(e.to_string()))
}

/// The message's text: `content` as a string or text parts, else its `refusal`.
fn message_text(message: &ChatMessage) -> String {
    let text = match &message.content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    };
    if text.is_empty() {
        message.refusal.clone().unwrap_or_default()
    } else {
        text
    }
}

/// The OpenAI id, prefixed as Anthropic's ids are. Translation is pure, so an answer
/// without an id gets a fixed one rather than a random one.
pub(super) fn message_id(openai_id: Option<&str>) -> String {
    match openai_id {
        Some(id) if id.starts_with("msg_") => id.to_owned(),
        Some(id) if !id.is_empty() => format!("msg_{id}"),
        _ => "msg_tokenroute".to_owned(),
    }
}

/// Tool-call ids are kept as they are: the client sends them back in `tool_result`
/// blocks, and they must reach the provider unchanged.
pub(super) fn tool_use_id(openai_id: Option<&str>, position: usize) -> String {
    match openai_id {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => format!("toolu_{position}"),
    }
}

/// A tool call's `arguments` string as Anthropic's `input`: parsed; `{}` when empty;
/// the string itself when the model wrote invalid JSON, so nothing is lost.
fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_owned()))
}

/// OpenAI's `finish_reason` → Anthropic's `stop_reason`. Some OpenAI-compatible
/// providers end a tool call with `stop`; Anthropic clients loop on `tool_use`, so tool
/// calls win over a plain stop. Which stop sequence matched is not known (`end_turn`).
pub(super) fn stop_reason(finish_reason: Option<&str>, has_tool_calls: bool) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("content_filter") => "refusal",
        Some("tool_calls" | "function_call") => "tool_use",
        _ if has_tool_calls => "tool_use",
        _ => "end_turn",
    }
}

/// Anthropic's usage: `input_tokens` excludes cached tokens, which are reported apart;
/// TokenRoute's `cost` (USD) is passed on when there is one.
pub(super) fn usage(usage: Option<&Usage>) -> Value {
    let cached = usage
        .and_then(|u| u.prompt_tokens_details.as_ref())
        .and_then(|d| d.cached_tokens)
        .unwrap_or(0);
    let prompt = usage.and_then(|u| u.prompt_tokens).unwrap_or(0);
    let mut out = Map::new();
    out.insert("input_tokens".into(), prompt.saturating_sub(cached).into());
    out.insert("cache_creation_input_tokens".into(), 0.into());
    out.insert("cache_read_input_tokens".into(), cached.into());
    out.insert(
        "output_tokens".into(),
        usage.and_then(|u| u.completion_tokens).unwrap_or(0).into(),
    );
    if let Some(cost) = usage
        .and_then(|u| u.cost.as_ref())
        .filter(|c| c.is_number())
    {
        out.insert("cost".into(), cost.clone());
    }
    Value::Object(out)
}

fn bad(reason: String) -> TranslateError {
    TranslateError::BadAnswer {
        provider: ANSWERER,
        reason,
    }
}
