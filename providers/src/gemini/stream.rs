//! Gemini `streamGenerateContent?alt=sse` → OpenAI `chat.completion.chunk` events.
//!
//! Every Gemini event is a whole `GenerateContentResponse` holding only what is new
//! (text pieces, whole function calls) — except `usageMetadata`, which holds the running
//! totals: the latest one replaces the one before, never adds to it. Per choice the
//! translator emits a role chunk first, then a chunk per text piece or function call,
//! then one finish chunk when Gemini sends its `finishReason`. When the provider's
//! stream ends it emits one usage chunk (`choices: []`) and — only if a finish reason
//! was seen, i.e. the answer is complete — `data: [DONE]`.
//!
//! State is a few counters per choice and the latest usage; text is never kept, so
//! memory stays flat however long the answer.

use serde_json::{json, Value};

use super::response::{chat_id, finish_reason, tool_call, usage_json};
use super::wire::{ApiError, Candidate, GenerateContentResponse, UsageMetadata};
use crate::sse::SseSplitter;

/// Candidates tracked at most (Gemini allows up to 8); further ones are ignored.
const MAX_CHOICES: usize = 8;
/// An unfinished event this large means the upstream is not speaking SSE.
const MAX_PENDING: usize = 32 * 1024 * 1024;

/// Translates one streamed answer; feed it the provider's bytes as they come.
#[derive(Debug)]
pub struct StreamTranslator {
    splitter: SseSplitter,
    client_model: String,
    created: u64,
    /// Fixed by the first chunk written (from Gemini's `responseId` when known).
    id: Option<String>,
    response_id: Option<String>,
    choices: Vec<ChoiceState>,
    usage: Option<UsageMetadata>,
    finish_seen: bool,
    phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Streaming,
    /// An error event was written; nothing more is.
    Failed,
    /// `finish()` ran.
    Done,
}

#[derive(Debug)]
struct ChoiceState {
    index: u32,
    tool_calls: usize,
    finished: bool,
}

impl StreamTranslator {
    /// A translator for one streamed answer; chunks name `client_model`.
    pub fn new(client_model: &str) -> Self {
        Self {
            splitter: SseSplitter::new(),
            client_model: client_model.to_string(),
            created: super::unix_now(),
            id: None,
            response_id: None,
            choices: Vec::new(),
            usage: None,
            finish_seen: false,
            phase: Phase::Streaming,
        }
    }

    /// Bytes of the Gemini SSE stream, in any pieces → OpenAI `data: {...}\n\n` events
    /// for every Gemini event they complete. After an error event, nothing more.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.phase != Phase::Streaming {
            return out;
        }
        for event in self.splitter.push(bytes) {
            self.event(&event.data, true, &mut out);
            if self.phase != Phase::Streaming {
                return out;
            }
        }
        if self.splitter.pending().len() > MAX_PENDING {
            self.fail(
                &mut out,
                "unexpected answer from gemini: an SSE event over 32 MiB",
            );
        }
        out
    }

    /// The provider's stream ended: the usage chunk (if Gemini sent usage), then
    /// `data: [DONE]` if the answer finished; nothing after an error event, or twice.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.phase != Phase::Streaming {
            return out;
        }
        if let Some(last) = self.splitter.finish() {
            // A last event without its blank line counts; a cut-off half event does not.
            self.event(&last.data, false, &mut out);
            if self.phase != Phase::Streaming {
                return out;
            }
        }
        self.phase = Phase::Done;
        if let Some(usage) = self.usage.as_ref().map(usage_json) {
            let chunk = json!({
                "id": self.id(),
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.client_model,
                "choices": [],
                "usage": usage,
            });
            super::write_event(&mut out, &chunk);
            if self.finish_seen {
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
        }
        out
    }

    /// One event's data. `complete` is false for the bytes left when the stream ended.
    fn event(&mut self, data: &str, complete: bool, out: &mut Vec<u8>) {
        let data = data.trim();
        if data.is_empty() || data == "[DONE]" {
            return;
        }
        let chunk: GenerateContentResponse = match serde_json::from_str(data) {
            Ok(chunk) => chunk,
            Err(_) if !complete => return,
            Err(e) => {
                let message = format!("unexpected answer from gemini: an event that is not a generateContent chunk ({e})");
                self.fail(out, &message);
                return;
            }
        };
        if let Some(error) = &chunk.error {
            self.upstream_error(out, error);
            return;
        }
        if self.response_id.is_none() {
            self.response_id = chunk.response_id;
        }
        if let Some(usage) = chunk.usage_metadata {
            self.usage = Some(usage);
        }
        for (position, candidate) in chunk.candidates.iter().enumerate() {
            self.candidate(position, candidate, out);
        }
        let blocked = chunk.prompt_feedback.and_then(|f| f.block_reason);
        if let (true, Some(reason)) = (chunk.candidates.is_empty(), blocked) {
            // The prompt was blocked: there will be no candidate.
            let blocked = Candidate {
                finish_reason: Some(reason),
                ..Candidate::default()
            };
            self.candidate(0, &blocked, out);
        }
    }

    fn candidate(&mut self, position: usize, candidate: &Candidate, out: &mut Vec<u8>) {
        let index = candidate
            .index
            .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX));
        let slot = match self.choices.iter().position(|c| c.index == index) {
            Some(slot) => slot,
            None if self.choices.len() < MAX_CHOICES => {
                self.choices.push(ChoiceState {
                    index,
                    tool_calls: 0,
                    finished: false,
                });
                self.chunk(
                    out,
                    index,
                    json!({"role": "assistant", "content": ""}),
                    None,
                );
                self.choices.len() - 1
            }
            None => return,
        };
        for part in candidate.content.iter().flat_map(|c| &c.parts) {
            if part.thought == Some(true) {
                continue;
            }
            if let Some(text) = part.text.as_deref().filter(|t| !t.is_empty()) {
                self.chunk(out, index, json!({ "content": text }), None);
            }
            if let Some(call) = &part.function_call {
                let nth = self.choices[slot].tool_calls;
                self.choices[slot].tool_calls += 1;
                let mut delta = serde_json::Map::new();
                delta.insert("index".into(), nth.into());
                if let Value::Object(call) = tool_call(call, nth) {
                    delta.extend(call);
                }
                self.chunk(out, index, json!({ "tool_calls": [delta] }), None);
            }
        }
        let state = &self.choices[slot];
        if let (Some(reason), false) = (&candidate.finish_reason, state.finished) {
            let reason = finish_reason(reason, state.tool_calls > 0);
            self.choices[slot].finished = true;
            self.finish_seen = true;
            self.chunk(out, index, json!({}), Some(reason));
        }
    }

    fn chunk(&mut self, out: &mut Vec<u8>, index: u32, delta: Value, finish: Option<&str>) {
        let chunk = json!({
            "id": self.id(),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.client_model,
            "choices": [{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        super::write_event(out, &chunk);
    }

    fn id(&mut self) -> String {
        self.id
            .get_or_insert_with(|| chat_id(self.response_id.as_deref()))
            .clone()
    }

    fn upstream_error(&mut self, out: &mut Vec<u8>, error: &ApiError) {
        let message = error.message.as_deref().unwrap_or("error from gemini");
        let kind = error.status.as_deref().unwrap_or("upstream_error");
        let code = error.code.clone().unwrap_or(Value::Null);
        self.write_error(out, message, kind, code);
    }

    fn fail(&mut self, out: &mut Vec<u8>, message: &str) {
        self.write_error(out, message, "upstream_error", Value::Null);
    }

    fn write_error(&mut self, out: &mut Vec<u8>, message: &str, kind: &str, code: Value) {
        self.phase = Phase::Failed;
        let error = json!({"error": {"message": message, "type": kind, "code": code}});
        super::write_event(out, &error);
    }
}
