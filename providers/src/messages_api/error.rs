//! OpenAI-shaped errors → Anthropic's error body and `event: error`.
//!
//! Anthropic SDKs pick their exception class from the HTTP status, so the status decides
//! the `type` whenever it is an error status; the OpenAI `type`/`code` decide otherwise
//! (mid-stream, where there is no status).

use serde_json::{json, Value};

/// An OpenAI-shaped error body (`{"error": {"message", "type", "code"}}`) and its HTTP
/// status → Anthropic's `{"type": "error", "error": {"type", "message"}}`. Never fails:
/// a body that is not OpenAI's shape still gives a message (its text, or the status).
pub fn error_body(status: u16, openai_error_body: &[u8]) -> Vec<u8> {
    let parsed: Option<Value> = serde_json::from_slice(openai_error_body).ok();
    let error = parsed.as_ref().map(|v| v.get("error").unwrap_or(v));
    let kind = by_status(status)
        .or_else(|| error.and_then(by_kind))
        .unwrap_or(if (400..500).contains(&status) {
            "invalid_request_error"
        } else {
            "api_error"
        });
    let message = error
        .and_then(message_of)
        .or_else(|| {
            // Not JSON (a proxy's HTML page, say): its text is still the best message.
            let text = String::from_utf8_lossy(openai_error_body);
            let text = text.trim();
            (parsed.is_none() && !text.is_empty()).then(|| truncate(text, 500))
        })
        .unwrap_or_else(|| format!("The request failed (HTTP {status})."));
    body(kind, &message).to_string().into_bytes()
}

/// The `event: error` that replaces the rest of a stream, from an OpenAI `error` value.
pub(super) fn stream_error_event(error: &Value) -> Value {
    let kind = by_kind(error).unwrap_or("api_error");
    let message = message_of(error).unwrap_or_else(|| "The stream failed.".to_owned());
    body(kind, &message)
}

fn body(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

fn by_status(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        500..=599 => "api_error",
        _ => return None,
    })
}

/// From the OpenAI error's `type` and `code` (a string, or an HTTP status as some
/// OpenAI-compatible providers send it).
fn by_kind(error: &Value) -> Option<&'static str> {
    if let Some(status) = error
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
    {
        if let Some(kind) = by_status(status) {
            return Some(kind);
        }
    }
    let field = |name| error.get(name).and_then(Value::as_str).unwrap_or("");
    let (kind, code) = (field("type"), field("code"));
    let is = |names: &[&str]| names.contains(&kind) || names.contains(&code);
    Some(
        if kind.contains("overloaded") || code.contains("overloaded") {
            "overloaded_error"
        } else if is(&[
            "rate_limit_exceeded",
            "rate_limit_error",
            "requests",
            "tokens",
            "concurrency_limit_exceeded",
        ]) {
            "rate_limit_error"
        } else if is(&[
            "authentication_error",
            "invalid_api_key",
            "missing_api_key",
            "revoked_api_key",
        ]) {
            "authentication_error"
        } else if is(&["permission_error", "model_not_allowed", "account_inactive"]) {
            "permission_error"
        } else if is(&["not_found_error", "model_not_found", "unknown_url"]) {
            "not_found_error"
        } else if is(&["request_too_large"]) {
            "request_too_large"
        } else if is(&["invalid_request_error", "insufficient_quota"]) {
            // Anthropic itself answers "credit balance too low" as an invalid request.
            "invalid_request_error"
        } else if is(&["server_error", "api_error", "upstream_error"]) {
            "api_error"
        } else {
            return None;
        },
    )
}

/// `error.message`, or the error itself when it is a bare string.
fn message_of(error: &Value) -> Option<String> {
    match error {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(fields) => fields
            .get("message")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .map(str::to_owned),
        _ => None,
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}
