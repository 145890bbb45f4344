//! Gemini `generateContent` answer → OpenAI `chat.completion`, and the pieces of that
//! mapping the stream translator shares (finish reasons, usage, ids).

use serde_json::{json, Map, Value};

use super::wire::{
    ApiError, Candidate, ErrorBody, FunctionCall, GenerateContentResponse, UsageMetadata,
};
use crate::TranslateError;

pub(super) fn from_response(body: &[u8], client_model: &str) -> Result<Vec<u8>, TranslateError> {
    let answer: GenerateContentResponse = serde_json::from_slice(body)
        .map_err(|e| bad(format!("not a generateContent answer: {e}")))?;
    if let Some(error) = &answer.error {
        return Err(bad(format!("an error: {}", describe(error))));
    }
    let choices: Vec<Value> = if answer.candidates.is_empty() {
        // The prompt itself was blocked: no candidates, only the reason.
        let Some(reason) = answer
            .prompt_feedback
            .as_ref()
            .and_then(|f| f.block_reason.as_deref())
        else {
            return Err(bad("no candidates".into()));
        };
        vec![json!({
            "index": 0,
            "message": {"role": "assistant", "content": null},
            "logprobs": null,
            "finish_reason": finish_reason(reason, false),
        })]
    } else {
        answer
            .candidates
            .iter()
            .enumerate()
            .map(|(position, candidate)| choice(position, candidate))
            .collect()
    };
    let mut completion = json!({
        "id": chat_id(answer.response_id.as_deref()),
        "object": "chat.completion",
        "created": super::unix_now(),
        "model": client_model,
        "choices": choices,
    });
    if let (Some(usage), Value::Object(obj)) = (&answer.usage_metadata, &mut completion) {
        obj.insert("usage".into(), usage_json(usage));
    }
    serde_json::to_vec(&completion).map_err(|e| bad(e.to_string()))
}

fn choice(position: usize, candidate: &Candidate) -> Value {
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for part in candidate.content.iter().flat_map(|c| &c.parts) {
        if part.thought == Some(true) {
            continue; // thought summaries are not the answer
        }
        if let Some(t) = &part.text {
            text.get_or_insert_with(String::new).push_str(t);
        }
        if let Some(call) = &part.function_call {
            tool_calls.push(tool_call(call, tool_calls.len()));
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), "assistant".into());
    message.insert("content".into(), text.map_or(Value::Null, Value::String));
    let had_calls = !tool_calls.is_empty();
    if had_calls {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    let finish = candidate.finish_reason.as_deref().unwrap_or("STOP");
    json!({
        "index": candidate.index.map_or(position as u64, u64::from),
        "message": message,
        "logprobs": null,
        "finish_reason": finish_reason(finish, had_calls),
    })
}

/// An OpenAI tool call (without the stream's `index`) for the `nth` call of a choice.
pub(super) fn tool_call(call: &FunctionCall, nth: usize) -> Value {
    let arguments = call
        .args
        .as_ref()
        .map_or_else(|| "{}".to_string(), Value::to_string);
    json!({
        "id": call.id.clone().unwrap_or_else(|| format!("call_{nth}")),
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    })
}

/// Gemini's `finishReason` → OpenAI's `finish_reason`.
pub(super) fn finish_reason(reason: &str, had_tool_calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if had_tool_calls => "tool_calls",
        _ => "stop",
    }
}

/// OpenAI usage from Gemini's counts. Thinking tokens are billed as output, so they
/// count as completion tokens (and are shown as `reasoning_tokens`); tokens of
/// Google-run tool results are billed as input, so they count as prompt tokens.
/// `total_tokens` is the sum of the two, which is Gemini's `totalTokenCount`.
pub(super) fn usage_json(usage: &UsageMetadata) -> Value {
    let prompt = usage
        .prompt_token_count
        .saturating_add(usage.tool_use_prompt_token_count.unwrap_or(0));
    let completion = usage
        .candidates_token_count
        .saturating_add(usage.thoughts_token_count.unwrap_or(0));
    let mut out = Map::new();
    out.insert("prompt_tokens".into(), prompt.into());
    out.insert("completion_tokens".into(), completion.into());
    out.insert(
        "total_tokens".into(),
        prompt.saturating_add(completion).into(),
    );
    if let Some(cached) = usage.cached_content_token_count {
        out.insert(
            "prompt_tokens_details".into(),
            json!({ "cached_tokens": cached }),
        );
    }
    if let Some(thoughts) = usage.thoughts_token_count {
        out.insert(
            "completion_tokens_details".into(),
            json!({ "reasoning_tokens": thoughts }),
        );
    }
    Value::Object(out)
}

pub(super) fn chat_id(response_id: Option<&str>) -> String {
    format!("chatcmpl-{}", response_id.unwrap_or("gemini"))
}

/// The message of a Gemini error body (`{"error": {...}}`, or that inside a one-element
/// array, as the non-SSE stream endpoint sends it).
pub(super) fn error_message(body: &[u8]) -> Option<String> {
    let error = match serde_json::from_slice::<Value>(body).ok()? {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        other => other,
    };
    let ErrorBody { error } = serde_json::from_value(error).ok()?;
    error.message.filter(|m| !m.is_empty())
}

/// `message (STATUS code)`, for error texts.
pub(super) fn describe(error: &ApiError) -> String {
    let mut out = error
        .message
        .clone()
        .unwrap_or_else(|| "(no message)".into());
    if let Some(status) = &error.status {
        out.push_str(&format!(" ({status})"));
    }
    out
}

fn bad(reason: String) -> TranslateError {
    TranslateError::BadAnswer {
        provider: super::PROVIDER,
        reason,
    }
}
