//! The Anthropic Messages client surface (`POST /v1/messages`) ↔ OpenAI chat.
//!
//! Anthropic SDK users point at TokenRoute's `/v1/messages`. The data plane speaks
//! OpenAI Chat Completions inside, so the client's request is translated into an
//! OpenAI chat request ([`to_openai_chat`]), and the OpenAI-shaped answer back into
//! Anthropic's: a whole `message` ([`from_openai_response`]), a stream of Anthropic
//! events ([`StreamTranslator`]), or an error body ([`error_body`]).
//!
//! # Request: Anthropic → OpenAI
//!
//! | Anthropic | OpenAI chat |
//! | --- | --- |
//! | `model`, `max_tokens` (required, as Anthropic requires it), `temperature`, `top_p` | the same fields |
//! | `system` (string or text blocks, joined with `\n`) | a leading `system` message |
//! | `text` / `image` blocks (base64 → `data:` URL, or `url`) | `text` / `image_url` parts |
//! | `document` blocks: base64 PDF / plain text | a `file` part / a `text` part |
//! | assistant `tool_use` blocks | `tool_calls` (`arguments` = the `input` as a JSON string); text blocks joined with `\n` as `content` |
//! | user `tool_result` blocks | `tool` messages (text joined with `\n`, `Error: ` prefixed when `is_error`), straight after the assistant's calls; the turn's other blocks follow as one user message |
//! | images inside a `tool_result` | moved to that following user message (OpenAI tool messages take text only) |
//! | `stop_sequences` | `stop` |
//! | `stream` | `stream`, and `stream_options.include_usage` when streaming |
//! | `tools` (`name`, `description`, `input_schema`) | function tools (`parameters` = `input_schema`) |
//! | `tool_choice` `auto` / `any` / `none` / `tool{name}` | `auto` / `required` / `none` / `{"type":"function",...}` |
//! | `disable_parallel_tool_use: true` | `parallel_tool_calls: false` |
//! | `metadata.user_id` | `user` |
//!
//! Dropped, having no OpenAI equivalent: `top_k`, `thinking` (and `thinking` /
//! `redacted_thinking` blocks in past assistant turns), `cache_control` everywhere
//! (OpenAI caches prompts by itself), `service_tier`, and any field this module does not
//! know. `tool_choice` without tools is dropped too (OpenAI rejects it) unless it
//! demands a tool. Refused with [`TranslateError::Unsupported`](crate::TranslateError):
//! Anthropic's server tools (`web_search_…`, `bash_…`, …), Files-API sources, and block
//! types not listed above. A final assistant message (a "prefill") is sent as an
//! ordinary assistant message: OpenAI answers after it rather than continuing it.
//!
//! # Answer: OpenAI → Anthropic
//!
//! The `message` reuses the OpenAI id (`msg_`-prefixed) and the model name the client
//! asked for; its content is the text (or refusal), if any, then one `tool_use` block
//! per tool call (ids kept, since they come back in `tool_result`s; `input` parsed from
//! `arguments`, or the raw string if the model wrote invalid JSON). `finish_reason`
//! `stop` / `length` / `tool_calls` / `content_filter` becomes `stop_reason` `end_turn`
//! / `max_tokens` / `tool_use` / `refusal` (`tool_use` also whenever tool calls are
//! present; `stop_sequence` is always `null`: OpenAI does not say which one matched).
//! `usage.input_tokens` is `prompt_tokens` minus `cached_tokens`, which are reported as
//! `cache_read_input_tokens`; TokenRoute's `usage.cost` is passed on as `usage.cost`.
//!
//! # Stream
//!
//! `message_start` (input tokens 0: OpenAI reports usage last) · per block
//! `content_block_start` / `content_block_delta` (`text_delta`, or `input_json_delta`
//! carrying the `arguments` pieces as they come) / `content_block_stop` ·
//! `message_delta` (stop reason, and the full usage from OpenAI's usage chunk) ·
//! `message_stop`, sent at `data: [DONE]`. An OpenAI error event becomes `event: error`
//! and ends the stream. A stream cut short gets, from [`StreamTranslator::finish`], its
//! open block closed, and `message_delta` / `message_stop` only if a `finish_reason`
//! had arrived: without them the client can tell the answer is incomplete.
//! No `ping` events are sent; the data plane forwards events as they come.

mod error;
mod request;
mod response;
mod stream;
mod wire;

#[cfg(test)]
mod tests;

pub use error::error_body;
pub use request::to_openai_chat;
pub use response::from_openai_response;
pub use stream::StreamTranslator;
