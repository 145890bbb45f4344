//! OpenAI chat → Anthropic Messages upstream, and back.
//!
//! The data plane speaks OpenAI Chat Completions; for a model served by Anthropic it
//! calls [`to_upstream`] on the client's request, sends the result to
//! `{base}/messages` (adding its own `x-api-key`), and turns the answer back into
//! OpenAI's shape with [`from_response`] or, for streams, a [`StreamTranslator`].
//! Error bodies of failed calls go through [`error_message`].
//!
//! | module | job |
//! | --- | --- |
//! | `wire` | Anthropic's request, response and stream-event types |
//! | `messages` | OpenAI `messages` → Anthropic `system` + alternating turns |
//! | `request` | every other request field: limits, sampling, tools, JSON mode |
//! | `response` | a whole answer → `chat.completion` |
//! | `stream` | stream events → `chat.completion.chunk` events |
//!
//! What does not cross, and why, is documented where it is decided: dropped request
//! fields in `request`, dropped content in `response` and `stream`.

mod messages;
mod request;
mod response;
mod stream;
mod wire;

#[cfg(test)]
mod tests;

pub use request::to_upstream;
pub use response::from_response;
pub use stream::StreamTranslator;

use serde_json::{json, Value};

/// Names Anthropic in [`crate::TranslateError`]s.
const PROVIDER: &str = "Anthropic";

/// The `created` of every completion and chunk.
///
/// Anthropic reports no creation time, and this crate reads no clock so that a
/// translation depends on its input alone (and tests can compare outputs byte for
/// byte). OpenAI clients accept any integer; the data plane may stamp the real time.
const CREATED: u64 = 0;

/// An Anthropic error body (e.g. `{"type":"error","error":{"type":"overloaded_error",
/// "message":"Overloaded"}}`) → the human message inside it, if any.
pub fn error_message(body: &[u8]) -> Option<String> {
    let parsed: wire::ErrorBody = serde_json::from_slice(body).ok()?;
    parsed.error.message.filter(|m| !m.is_empty())
}

/// Anthropic's `stop_reason` → OpenAI's `finish_reason`.
fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn (a server tool paused the turn: the
        // answer so far is complete), and reasons added later.
        _ => "stop",
    }
}

/// Anthropic usage → OpenAI `usage`.
///
/// Anthropic counts cached prompt tokens apart from `input_tokens`; OpenAI counts
/// them inside `prompt_tokens` and repeats the cache hits in `cached_tokens`, so the
/// prompt is the sum of all three. (Cache writes are billed above the input price by
/// Anthropic; this shape cannot say so, and they are metered as plain input.)
fn openai_usage(usage: &wire::Usage) -> Value {
    let cache_read = usage.cache_read_input_tokens.unwrap_or(0);
    let prompt = usage
        .input_tokens
        .unwrap_or(0)
        .saturating_add(usage.cache_creation_input_tokens.unwrap_or(0))
        .saturating_add(cache_read);
    let completion = usage.output_tokens.unwrap_or(0);
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt.saturating_add(completion),
        "prompt_tokens_details": {"cached_tokens": cache_read},
    })
}

/// The request field `field` is malformed.
fn invalid(field: impl Into<String>, reason: impl Into<String>) -> crate::TranslateError {
    crate::TranslateError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The request asks for something Anthropic cannot do.
fn unsupported(what: impl Into<String>) -> crate::TranslateError {
    crate::TranslateError::Unsupported {
        provider: PROVIDER,
        what: what.into(),
    }
}
