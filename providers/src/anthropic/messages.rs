//! OpenAI `messages` → Anthropic's top-level `system` and alternating turns.
//!
//! Anthropic takes system instructions apart from the conversation, and a conversation
//! that strictly alternates `user` and `assistant` turns, each a list of content
//! blocks. So:
//! - `system` and `developer` messages, wherever they stand, are hoisted into the
//!   system prompt (parts joined with a newline, messages with a blank line);
//! - `tool` messages become `tool_result` blocks of a user turn;
//! - consecutive messages of one side (user + tool results, or two assistant
//!   messages) merge into one turn, in order;
//! - messages left without content (`""`, `null`, no tool calls) are skipped, as
//!   Anthropic rejects empty turns.
//!
//! A message's `name` has no Anthropic counterpart and is dropped.

use serde_json::{Map, Value};

use super::wire::{Block, ImageSource, Message, Role};
use super::{invalid, unsupported};
use crate::TranslateError;

/// The conversation, split the way Anthropic wants it.
#[derive(Debug, Default)]
pub(super) struct Conversation {
    /// One entry per system/developer message, in order.
    pub system: Vec<String>,
    pub messages: Vec<Message>,
}

impl Conversation {
    /// Appends blocks for `role`, merging them into the last turn if it is the same side.
    fn push(&mut self, role: Role, blocks: Vec<Block>) {
        if blocks.is_empty() {
            return;
        }
        match self.messages.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => self.messages.push(Message {
                role,
                content: blocks,
            }),
        }
    }
}

/// Converts the request's `messages` (absent counts as malformed: OpenAI requires it).
pub(super) fn convert(messages: Option<&Value>) -> Result<Conversation, TranslateError> {
    let Some(Value::Array(list)) = messages else {
        return Err(invalid("messages", "must be an array of messages"));
    };
    let mut conversation = Conversation::default();
    for (i, message) in list.iter().enumerate() {
        let field = format!("messages[{i}]");
        let Value::Object(message) = message else {
            return Err(invalid(field, "must be an object"));
        };
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{field}.role"), "must be a string"))?;
        let content = message.get("content").unwrap_or(&Value::Null);
        let content_field = format!("{field}.content");
        match role {
            "system" | "developer" => {
                let text = system_text(content, &content_field)?;
                if !text.is_empty() {
                    conversation.system.push(text);
                }
            }
            "user" => conversation.push(Role::User, blocks(content, &content_field)?),
            "assistant" => {
                let mut content = blocks(content, &content_field)?;
                content.extend(tool_uses(message.get("tool_calls"), &field)?);
                conversation.push(Role::Assistant, content);
            }
            "tool" => conversation.push(Role::User, vec![tool_result(message, &field)?]),
            "function" => {
                return Err(unsupported(
                    "the deprecated `function` role (send `tool` messages)",
                ))
            }
            other => {
                return Err(invalid(
                    format!("{field}.role"),
                    format!("unknown role `{other}`"),
                ))
            }
        }
    }
    Ok(conversation)
}

/// A system message's text: a string, or its text parts joined by newlines.
fn system_text(content: &Value, field: &str) -> Result<String, TranslateError> {
    let blocks = blocks(content, field)?;
    let mut texts = Vec::with_capacity(blocks.len());
    for block in blocks {
        match block {
            Block::Text { text } => texts.push(text),
            _ => return Err(unsupported("images in system messages")),
        }
    }
    Ok(texts.join("\n"))
}

/// Message content (a string, an array of content parts, or null) → content blocks.
/// Empty texts are left out: Anthropic rejects empty text blocks.
fn blocks(content: &Value, field: &str) -> Result<Vec<Block>, TranslateError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(text) => Ok(text_block(text).into_iter().collect()),
        Value::Array(parts) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (k, part) in parts.iter().enumerate() {
                blocks.extend(part_block(part, &format!("{field}[{k}]"))?);
            }
            Ok(blocks)
        }
        _ => Err(invalid(
            field,
            "must be a string or an array of content parts",
        )),
    }
}

fn text_block(text: &str) -> Option<Block> {
    (!text.is_empty()).then(|| Block::Text {
        text: text.to_string(),
    })
}

fn part_block(part: &Value, field: &str) -> Result<Option<Block>, TranslateError> {
    let kind = part
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{field}.type"), "must be a string"))?;
    let string = |key: &str| {
        part.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{field}.{key}"), "must be a string"))
    };
    match kind {
        "text" => Ok(text_block(string("text")?)),
        // An assistant's earlier refusal, sent back as history: it was said, as text.
        "refusal" => Ok(text_block(string("refusal")?)),
        "image_url" => {
            let source = image_source(part.get("image_url"), &format!("{field}.image_url"))?;
            Ok(Some(Block::Image { source }))
        }
        other => Err(unsupported(format!("`{other}` content parts"))),
    }
}

/// `image_url` (`{"url": ...}`, or the bare URL some clients send) → an image source:
/// base64 data for `data:` URLs, a URL reference for http(s).
fn image_source(image_url: Option<&Value>, field: &str) -> Result<ImageSource, TranslateError> {
    let url = match image_url {
        Some(Value::String(url)) => url,
        Some(Value::Object(o)) => o
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{field}.url"), "must be a string"))?,
        _ => return Err(invalid(field, "must be an object with a `url`")),
    };
    let field = format!("{field}.url");
    if let Some(rest) = strip_prefix_ignore_case(url, "data:") {
        let (header, data) = rest
            .split_once(',')
            .ok_or_else(|| invalid(&field, "a data: URL needs a comma before its data"))?;
        let Some(params) = header.strip_suffix(";base64") else {
            return Err(invalid(&field, "only base64 data: URLs are supported"));
        };
        let media_type = params.split(';').next().unwrap_or_default();
        if media_type.is_empty() {
            return Err(invalid(&field, "the data: URL names no media type"));
        }
        return Ok(ImageSource::Base64 {
            media_type: media_type.to_string(),
            data: data.to_string(),
        });
    }
    if strip_prefix_ignore_case(url, "https://").is_some()
        || strip_prefix_ignore_case(url, "http://").is_some()
    {
        return Ok(ImageSource::Url {
            url: url.to_string(),
        });
    }
    Err(invalid(field, "must be a data: URL or an http(s) URL"))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    s.get(prefix.len()..)
}

/// An assistant message's `tool_calls` → `tool_use` blocks.
fn tool_uses(tool_calls: Option<&Value>, field: &str) -> Result<Vec<Block>, TranslateError> {
    let calls = match tool_calls {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(calls)) => calls,
        Some(_) => return Err(invalid(format!("{field}.tool_calls"), "must be an array")),
    };
    let mut blocks = Vec::with_capacity(calls.len());
    for (j, call) in calls.iter().enumerate() {
        let field = format!("{field}.tool_calls[{j}]");
        let Value::Object(call) = call else {
            return Err(invalid(field, "must be an object"));
        };
        match call.get("type").and_then(Value::as_str) {
            None | Some("function") => {}
            Some(other) => return Err(unsupported(format!("`{other}` tool calls"))),
        }
        let id = required_str(call, "id", &field)?;
        let function = call
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid(format!("{field}.function"), "must be an object"))?;
        let function_field = format!("{field}.function");
        let name = required_str(function, "name", &function_field)?;
        let input = arguments(
            function.get("arguments"),
            &format!("{function_field}.arguments"),
        )?;
        blocks.push(Block::ToolUse {
            id: id.to_string(),
            name: name.to_string(),
            input,
        });
    }
    Ok(blocks)
}

/// OpenAI's `arguments` is a JSON string; Anthropic's `input` is the object itself.
/// An empty string means "no arguments" (some clients send it for parameterless tools).
fn arguments(arguments: Option<&Value>, field: &str) -> Result<Value, TranslateError> {
    let input = match arguments {
        None | Some(Value::Null) => return Ok(Value::Object(Map::new())),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(Value::Object(Map::new())),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s)
            .map_err(|e| invalid(field, format!("is not valid JSON: {e}")))?,
        Some(_) => return Err(invalid(field, "must be a string of JSON")),
    };
    if !input.is_object() {
        return Err(invalid(field, "must encode a JSON object"));
    }
    Ok(input)
}

/// A `tool` message → a `tool_result` block (text and images; Anthropic allows both).
fn tool_result(message: &Map<String, Value>, field: &str) -> Result<Block, TranslateError> {
    let tool_use_id = required_str(message, "tool_call_id", field)?;
    let content = blocks(
        message.get("content").unwrap_or(&Value::Null),
        &format!("{field}.content"),
    )?;
    Ok(Block::ToolResult {
        tool_use_id: tool_use_id.to_string(),
        content,
    })
}

fn required_str<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<&'a str, TranslateError> {
    object
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{field}.{key}"), "must be a string"))
}
