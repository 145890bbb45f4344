//! Anthropic stream events → OpenAI `chat.completion.chunk` events, incrementally.
//!
//! | Anthropic event | OpenAI chunk |
//! | --- | --- |
//! | `message_start` | `delta: {"role": "assistant", "content": ""}`; input tokens kept |
//! | `content_block_start` (text) | its text, if any |
//! | `content_block_start` (tool_use) | a `tool_calls` entry: index, id, name, `arguments: ""` |
//! | `content_block_delta` (text / input_json) | a `content` / `arguments` piece |
//! | `message_delta` | nothing yet; stop reason and (cumulative) usage kept |
//! | `message_stop` | `finish_reason` chunk, usage chunk (`choices: []`), `[DONE]` |
//! | `error` | `data: {"error": {...}}`, and the stream ends without `[DONE]` |
//! | `ping`, thinking, citations, anything unknown | nothing |
//!
//! State is a handful of counters plus the splitter's one incomplete event: memory
//! stays flat however long the stream runs.

use serde_json::{json, Map, Value};

use super::wire::{BlockDelta, ErrorDetail, StartedBlock, StreamEvent, Usage};
use super::{finish_reason, openai_usage, CREATED};
use crate::sse::{SseEvent, SseSplitter};

/// Translates one Anthropic stream into OpenAI's, as bytes arrive.
#[derive(Debug)]
pub struct StreamTranslator {
    splitter: SseSplitter,
    model: String,
    /// The message id, from `message_start`; every chunk carries it.
    id: String,
    /// What Anthropic reported so far (`None`: nothing, so nothing to meter).
    usage: Option<Usage>,
    stop_reason: Option<String>,
    /// Tool-use blocks still open: (Anthropic block index, OpenAI tool-call index).
    open_tools: Vec<(u64, u64)>,
    /// Tool calls seen so far; OpenAI numbers them from 0, apart from text blocks.
    tool_calls: u64,
    /// `message_stop` or an error was translated, or the stream was finished.
    ended: bool,
}

impl StreamTranslator {
    pub fn new(client_model: &str) -> Self {
        StreamTranslator {
            splitter: SseSplitter::new(),
            model: client_model.to_string(),
            id: String::new(),
            usage: None,
            stop_reason: None,
            open_tools: Vec::new(),
            tool_calls: 0,
            ended: false,
        }
    }

    /// Feed raw provider bytes (any chunking); returns OpenAI SSE bytes
    /// (`data: {...}\n\n` events) to send now.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        for event in self.splitter.push(bytes) {
            self.translate(&event, &mut out);
            if self.ended {
                // Whatever follows the end is not part of the answer.
                self.splitter = SseSplitter::new();
                break;
            }
        }
        out
    }

    /// The provider's stream ended (cleanly or not): returns any final bytes.
    ///
    /// A stream cut before `message_stop` gets its usage chunk still, if Anthropic
    /// reported any usage, so the tokens are metered, but no `[DONE]`: the client
    /// must not take a cut answer for a whole one.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        // The last event may lack its blank line.
        if let Some(event) = self.splitter.finish() {
            self.translate(&event, &mut out);
        }
        if !self.ended {
            self.ended = true;
            self.write_usage(&mut out);
        }
        out
    }

    fn translate(&mut self, event: &SseEvent, out: &mut Vec<u8>) {
        let parsed = match serde_json::from_str::<StreamEvent>(&event.data) {
            Ok(parsed) => parsed,
            // An error whose body is not the documented JSON is still an error.
            Err(_) if event.event.as_deref() == Some("error") => StreamEvent::Error {
                error: ErrorDetail::default(),
            },
            // Comments, empty or garbled events: nothing a client could use.
            Err(_) => return,
        };
        match parsed {
            StreamEvent::MessageStart { message } => {
                self.id = message.id;
                self.add_usage(message.usage);
                self.write_delta(json!({"role": "assistant", "content": ""}), out);
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                StartedBlock::Text { text } => self.write_text(text, out),
                StartedBlock::ToolUse { id, name } => {
                    let call = self.tool_calls;
                    self.tool_calls += 1;
                    self.open_tools.push((index, call));
                    let delta = json!({"tool_calls": [{
                        "index": call,
                        "id": id,
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }]});
                    self.write_delta(delta, out);
                }
                StartedBlock::Other => {}
            },
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } => self.write_text(text, out),
                BlockDelta::InputJsonDelta { partial_json } => {
                    let call = self.open_tools.iter().find(|(i, _)| *i == index);
                    if let (Some(&(_, call)), false) = (call, partial_json.is_empty()) {
                        let delta = json!({"tool_calls": [{
                            "index": call,
                            "function": {"arguments": partial_json},
                        }]});
                        self.write_delta(delta, out);
                    }
                }
                BlockDelta::Other => {}
            },
            StreamEvent::ContentBlockStop { index } => {
                self.open_tools.retain(|(i, _)| *i != index);
            }
            StreamEvent::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                self.add_usage(usage);
            }
            StreamEvent::MessageStop {} => {
                let reason = finish_reason(self.stop_reason.as_deref());
                self.write_choice(json!({}), Value::from(reason), out);
                self.write_usage(out);
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.ended = true;
            }
            StreamEvent::Error { error } => {
                let message = error
                    .message
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "Anthropic reported an error mid-stream".to_string());
                let body = json!({"error": {
                    "message": message,
                    "type": "upstream_error",
                    "param": null,
                    "code": error.kind.unwrap_or_else(|| "api_error".to_string()),
                }});
                write_event(&body, out);
                self.ended = true;
            }
            StreamEvent::Other => {}
        }
    }

    /// Takes the counts a usage report carries. Anthropic's counts are cumulative
    /// (`message_delta`'s `output_tokens` is the total so far), so newer replaces older.
    fn add_usage(&mut self, reported: Option<Usage>) {
        let Some(new) = reported else {
            return;
        };
        let old = self.usage.unwrap_or_default();
        self.usage = Some(Usage {
            input_tokens: new.input_tokens.or(old.input_tokens),
            output_tokens: new.output_tokens.or(old.output_tokens),
            cache_creation_input_tokens: new
                .cache_creation_input_tokens
                .or(old.cache_creation_input_tokens),
            cache_read_input_tokens: new.cache_read_input_tokens.or(old.cache_read_input_tokens),
        });
    }

    fn write_text(&self, text: String, out: &mut Vec<u8>) {
        if !text.is_empty() {
            self.write_delta(json!({"content": text}), out);
        }
    }

    fn write_delta(&self, delta: Value, out: &mut Vec<u8>) {
        self.write_choice(delta, Value::Null, out);
    }

    fn write_choice(&self, delta: Value, finish_reason: Value, out: &mut Vec<u8>) {
        let choice = json!({
            "index": 0,
            "delta": delta,
            "logprobs": null,
            "finish_reason": finish_reason,
        });
        self.write_chunk(Value::Array(vec![choice]), None, out);
    }

    /// The usage chunk (`choices: []`), if Anthropic reported any usage: a made-up
    /// zero would meter the request as free, where no usage lets the data plane
    /// estimate.
    fn write_usage(&self, out: &mut Vec<u8>) {
        if let Some(usage) = &self.usage {
            self.write_chunk(Value::Array(Vec::new()), Some(openai_usage(usage)), out);
        }
    }

    fn write_chunk(&self, choices: Value, usage: Option<Value>, out: &mut Vec<u8>) {
        let mut chunk = Map::new();
        chunk.insert("id".into(), Value::from(self.id.as_str()));
        chunk.insert("object".into(), "chat.completion.chunk".into());
        chunk.insert("created".into(), CREATED.into());
        chunk.insert("model".into(), Value::from(self.model.as_str()));
        chunk.insert("choices".into(), choices);
        if let Some(usage) = usage {
            chunk.insert("usage".into(), usage);
        }
        write_event(&Value::Object(chunk), out);
    }
}

fn write_event(body: &Value, out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(body.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}
