//! An OpenAI `chat.completion.chunk` stream → Anthropic's Messages stream, incrementally.
//!
//! Nothing of the answer is kept: text and tool arguments are translated as they pass,
//! and the translator holds only the SSE reader's incomplete event, which block is
//! open, one small record per tool call, the finish reason and the usage.

use serde::Deserialize;
use serde_json::{json, Value};

use super::error::stream_error_event;
use super::response::{message_id, stop_reason, tool_use_id, usage};
use super::wire::{Chunk, Delta, ToolCallDelta, Usage};
use crate::sse::SseSplitter;

/// Turns OpenAI `chat.completion.chunk` SSE bytes, in pieces of any size, into
/// Anthropic's Messages SSE events as they complete.
#[derive(Debug)]
pub struct StreamTranslator {
    model: String,
    sse: SseSplitter,
    /// `message_start` has been sent.
    started: bool,
    /// `message_stop` or `error` has been sent (or `finish` was called): nothing more.
    ended: bool,
    open: Open,
    /// Content blocks started so far; the open one, if any, is the last.
    blocks: usize,
    tools: Vec<ToolSlot>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    Tool,
}

/// Where an OpenAI tool call (keyed by its `index`) went.
#[derive(Debug)]
struct ToolSlot {
    key: u32,
    id: Option<String>,
    block: usize,
}

impl StreamTranslator {
    /// A translator whose `message_start` names `client_model`.
    pub fn new(client_model: &str) -> Self {
        StreamTranslator {
            model: client_model.to_owned(),
            sse: SseSplitter::new(),
            started: false,
            ended: false,
            open: Open::None,
            blocks: 0,
            tools: Vec::new(),
            finish_reason: None,
            usage: None,
        }
    }

    /// The Anthropic events completed by these bytes (possibly none).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        for event in self.sse.push(bytes) {
            self.on_data(&event.data, &mut out);
            if self.ended {
                break;
            }
        }
        out
    }

    /// The upstream stream ended: the events that close the message, if any are due.
    /// Pushing or finishing afterwards yields nothing.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        if let Some(event) = self.sse.finish() {
            self.on_data(&event.data, &mut out);
        }
        if !self.ended {
            // Cut short: a finished answer whose [DONE] went missing still ends
            // properly; an unfinished one only has its open block closed, so the
            // client sees no `message_stop` and knows the message is incomplete.
            self.close_block(&mut out);
            if self.finish_reason.is_some() {
                self.end(&mut out);
            }
            self.ended = true;
        }
        out
    }

    fn on_data(&mut self, data: &str, out: &mut Vec<u8>) {
        let data = data.trim();
        if data.is_empty() {
            return;
        }
        if data == "[DONE]" {
            self.start(None, None, out);
            self.end(out);
            return;
        }
        // Events that are not JSON (keep-alives, garbage) are skipped, not fatal.
        let Ok(value) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
            emit(out, "error", &stream_error_event(error));
            self.stop_reading();
            return;
        }
        let Ok(chunk) = Chunk::deserialize(value) else {
            return;
        };
        self.start(chunk.id.as_deref(), chunk.usage.as_ref(), out);
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        // Only the first choice: TokenRoute never asks for more.
        for choice in chunk.choices.unwrap_or_default() {
            if choice.index != 0 {
                continue;
            }
            if let Some(delta) = choice.delta {
                self.on_delta(delta, out);
            }
            if let Some(reason) = choice.finish_reason {
                self.close_block(out);
                self.finish_reason = Some(reason);
            }
        }
    }

    fn on_delta(&mut self, delta: Delta, out: &mut Vec<u8>) {
        for text in [delta.content, delta.refusal].into_iter().flatten() {
            if !text.is_empty() {
                self.text(&text, out);
            }
        }
        for (position, call) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
            self.tool_call(position, call, out);
        }
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        if self.open != Open::Text {
            self.close_block(out);
            self.open_block(json!({"type": "text", "text": ""}), Open::Text, out);
        }
        let index = self.blocks - 1;
        emit(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": text}}),
        );
    }

    /// A piece of a tool call. A new OpenAI `index` (or a new `id` at a known index)
    /// starts a `tool_use` block, closing the previous block; pieces of a call whose
    /// block was already closed (never seen from OpenAI) still go to that block's
    /// index, where Anthropic SDKs accumulate them.
    fn tool_call(&mut self, position: usize, call: ToolCallDelta, out: &mut Vec<u8>) {
        let key = call
            .index
            .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX));
        let known = self.tools.iter().position(|t| t.key == key);
        let continues = known.filter(|&i| match &call.id {
            Some(id) => self.tools[i].id.as_ref() == Some(id),
            None => true,
        });
        let (name, arguments) = match call.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        let block = match continues {
            Some(i) => self.tools[i].block,
            None => {
                self.close_block(out);
                let block = self.blocks;
                let start = json!({
                    "type": "tool_use",
                    "id": tool_use_id(call.id.as_deref(), block),
                    "name": name.unwrap_or_default(),
                    "input": {},
                });
                self.open_block(start, Open::Tool, out);
                let slot = ToolSlot {
                    key,
                    id: call.id,
                    block,
                };
                match known {
                    Some(i) => self.tools[i] = slot,
                    None => self.tools.push(slot),
                }
                block
            }
        };
        if let Some(arguments) = arguments.filter(|a| !a.is_empty()) {
            emit(
                out,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": block,
                        "delta": {"type": "input_json_delta", "partial_json": arguments}}),
            );
        }
    }

    /// `message_start`, once, before anything else.
    fn start(&mut self, openai_id: Option<&str>, known: Option<&Usage>, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let mut usage = usage(known);
        usage["output_tokens"] = 0.into();
        emit(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": message_id(openai_id),
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": usage,
            }}),
        );
    }

    fn open_block(&mut self, block: Value, kind: Open, out: &mut Vec<u8>) {
        emit(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": self.blocks, "content_block": block}),
        );
        self.blocks += 1;
        self.open = kind;
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if self.open == Open::None {
            return;
        }
        self.open = Open::None;
        emit(
            out,
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": self.blocks - 1}),
        );
    }

    /// `message_delta` (stop reason, final usage) and `message_stop`.
    fn end(&mut self, out: &mut Vec<u8>) {
        self.close_block(out);
        let usage = match &self.usage {
            Some(u) => usage(Some(u)),
            None => json!({"output_tokens": 0}),
        };
        let stop = stop_reason(self.finish_reason.as_deref(), !self.tools.is_empty());
        emit(
            out,
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": null},
                    "usage": usage}),
        );
        emit(out, "message_stop", &json!({"type": "message_stop"}));
        self.stop_reading();
    }

    /// Nothing more is sent; bytes still buffered are let go.
    fn stop_reading(&mut self) {
        self.ended = true;
        self.sse = SseSplitter::new();
    }
}

fn emit(out: &mut Vec<u8>, event: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}
