//! The Google Gemini upstream: OpenAI chat → Gemini `generateContent` → OpenAI.
//!
//! Paths are relative to the API base (`https://generativelanguage.googleapis.com/v1beta`);
//! [`crate::UpstreamCall::headers`] stays empty because the only header Gemini needs is
//! the caller's `x-goog-api-key`.
//!
//! | module | job |
//! | --- | --- |
//! | `wire` | Gemini's request and answer types |
//! | `request` | OpenAI chat request → `GenerateContentRequest` |
//! | `messages` | OpenAI `messages` → `contents` + `systemInstruction` |
//! | `schema` | JSON Schema → Gemini's OpenAPI-subset `Schema` |
//! | `response` | `generateContent` answer → `chat.completion` |
//! | `stream` | `streamGenerateContent?alt=sse` → `chat.completion.chunk` events |
//! | `embeddings` | OpenAI embeddings ↔ `batchEmbedContents` |
//!
//! # Request mapping
//!
//! - `messages`: `system` / `developer` → `systemInstruction` (all of them, wherever they
//!   stand); `user` → role `user`; `assistant` → role `model`; `tool` (and the legacy
//!   `function`) → a `functionResponse` part in a `user` turn, named after the
//!   assistant tool call its `tool_call_id` answers, with the content under `result`
//!   (parsed when it is JSON). Consecutive turns of one role are merged.
//! - content parts: `text` → `text` (empty ones are skipped: Gemini refuses them);
//!   `image_url` with a `data:` URL → `inlineData`, with an http(s) URL → `fileData`
//!   (MIME type guessed from the extension, `image/jpeg` by default); `input_audio` →
//!   `inlineData` `audio/{format}`; `file` with `file_data` → `inlineData`.
//!   Assistant `tool_calls` → `functionCall` parts.
//! - `max_completion_tokens` (else `max_tokens`) → `maxOutputTokens`; `temperature`,
//!   `top_p` → `topP`, `stop` → `stopSequences`, `seed`, `n` → `candidateCount`,
//!   `presence_penalty`, `frequency_penalty`.
//! - `response_format`: `json_object` → `responseMimeType: application/json`;
//!   `json_schema` → that plus `responseSchema`, rewritten for Gemini (see `schema`:
//!   `additionalProperties`, `$schema`, `strict`… are dropped, `$ref`s inlined).
//! - `tools` → one `functionDeclarations` tool (parameters rewritten the same way; an
//!   empty object schema is left out, as Gemini refuses it); `tool_choice` →
//!   `toolConfig.functionCallingConfig`: `auto` → `AUTO`, `none` → `NONE`,
//!   `required` → `ANY`, a named function → `ANY` + `allowedFunctionNames`.
//! - `stream: true` → `:streamGenerateContent?alt=sse`.
//!
//! Refused ([`crate::TranslateError::Unsupported`]): the legacy `functions` /
//! `function_call`, audio output (`modalities: ["audio"]`, `audio`), tools other than
//! functions, files by `file_id`, unknown content part types.
//!
//! Dropped, as Gemini has no equivalent or the answer does not depend on it:
//! `model` (the route decides), `stream_options` (usage is always reported),
//! `logprobs` / `top_logprobs`, `logit_bias`, `parallel_tool_calls`, `reasoning_effort`,
//! `user`, `store`, `metadata`, `service_tier`, `prediction`, a tool's `strict`, image
//! `detail`, message `name`s, and the place of system messages inside the conversation.
//! Gemini's thought signatures are not carried across turns (OpenAI's shape has no
//! room for them).
//!
//! # Answer mapping
//!
//! Text parts are joined into `message.content` (`null` when there are none); thought
//! summaries, inline images and code-execution parts are dropped. `functionCall` parts
//! become `tool_calls` with ids `call_0`, `call_1`… per choice (Gemini's own id when it
//! sends one) and the arguments as a JSON string. Every candidate becomes a choice.
//! `finishReason`: `STOP` → `stop` (`tool_calls` when the choice called functions),
//! `MAX_TOKENS` → `length`, `SAFETY` / `RECITATION` / `BLOCKLIST` / `PROHIBITED_CONTENT`
//! / `SPII` / `IMAGE_SAFETY` → `content_filter`, anything else → `stop`; a blocked
//! prompt (no candidates, `promptFeedback.blockReason`) is one empty choice ending
//! `content_filter`.
//!
//! Usage: `prompt_tokens` = `promptTokenCount` (+ `toolUsePromptTokenCount`, billed as
//! input, if ever present), `completion_tokens` = `candidatesTokenCount` +
//! `thoughtsTokenCount`, `total_tokens` their sum; `prompt_tokens_details.cached_tokens`
//! = `cachedContentTokenCount` and `completion_tokens_details.reasoning_tokens` =
//! `thoughtsTokenCount`, each only when Gemini reports it. In a stream every event's
//! `usageMetadata` is a running total: the latest one is kept, never summed.
//!
//! The id is `chatcmpl-` + `responseId`; `created` reads the clock, the one impurity here.

mod embeddings;
mod messages;
mod request;
mod response;
mod schema;
mod stream;
mod wire;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use crate::{TranslateError, UpstreamCall};

pub use stream::StreamTranslator;

const PROVIDER: &str = "gemini";

/// OpenAI chat request (parsed JSON object) → Gemini request. Path:
/// `/models/{upstream_model}:generateContent`, or for `"stream": true`
/// `/models/{upstream_model}:streamGenerateContent?alt=sse`.
pub fn to_upstream(
    chat: &Map<String, Value>,
    upstream_model: &str,
) -> Result<UpstreamCall, TranslateError> {
    request::to_upstream(chat, upstream_model)
}

/// Gemini `generateContent` answer body → OpenAI `chat.completion` JSON bytes, with
/// `usage` (left out only if Gemini sent no `usageMetadata`); `model` is `client_model`.
pub fn from_response(body: &[u8], client_model: &str) -> Result<Vec<u8>, TranslateError> {
    response::from_response(body, client_model)
}

/// A Gemini error body (`{"error": {"code", "message", "status"}}`) → the human
/// message inside it, if any.
pub fn error_message(body: &[u8]) -> Option<String> {
    response::error_message(body)
}

/// OpenAI embeddings request → Gemini `batchEmbedContents` (path
/// `/models/{upstream_model}:batchEmbedContents`), one embedding request per input string.
pub fn embeddings_to_upstream(
    req: &Map<String, Value>,
    upstream_model: &str,
) -> Result<UpstreamCall, TranslateError> {
    embeddings::to_upstream(req, upstream_model)
}

/// Gemini `batchEmbedContents` answer → OpenAI's embeddings list, `model` = `client_model`.
///
/// Gemini reports no token count for embeddings, so `usage.prompt_tokens` (and
/// `total_tokens`) is an estimate: `ceil(input_bytes / 4)`, where `input_bytes` is the
/// request's input text length in bytes ([`embeddings_input_bytes`]).
pub fn embeddings_from_response(
    body: &[u8],
    client_model: &str,
    input_bytes: usize,
) -> Result<Vec<u8>, TranslateError> {
    embeddings::from_response(body, client_model, input_bytes)
}

/// The total byte length of an OpenAI embeddings request's input strings, the
/// `input_bytes` that [`embeddings_from_response`] estimates tokens from.
pub fn embeddings_input_bytes(req: &Map<String, Value>) -> usize {
    embeddings::input_bytes(req)
}

/// The model id for paths and embed requests (`models/x` and `x` both name model `x`).
fn model_id(upstream_model: &str) -> &str {
    upstream_model
        .strip_prefix("models/")
        .unwrap_or(upstream_model)
}

/// Writes `value` as one SSE `data:` event.
fn write_event(out: &mut Vec<u8>, value: &Value) {
    if let Ok(json) = serde_json::to_vec(value) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&json);
        out.extend_from_slice(b"\n\n");
    }
}

/// Seconds since the Unix epoch, for `created`.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
