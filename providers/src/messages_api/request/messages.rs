//! `messages`: each Anthropic turn and its content blocks → OpenAI messages and parts.

use serde_json::{json, Map, Value};

use super::{block_type, invalid, missing, parse, unsupported, unsupported_block};
use crate::messages_api::wire::{
    DocumentBlock, ImageBlock, MediaSource, TextBlock, ToolResultBlock, ToolUseBlock,
};
use crate::TranslateError;

/// Appends the OpenAI messages for one Anthropic message: usually one, but a user turn
/// answering tool calls becomes one `tool` message per result, then the rest.
pub(super) fn translate(
    message: &Value,
    path: &str,
    out: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    let message = message
        .as_object()
        .ok_or_else(|| invalid(path, "must be an object"))?;
    let role = match message.get("role") {
        Some(Value::String(r)) => r.as_str(),
        None | Some(Value::Null) => return Err(missing(format!("{path}.role"))),
        Some(_) => return Err(invalid(format!("{path}.role"), "must be a string")),
    };
    let content_path = format!("{path}.content");
    let content = match message.get("content") {
        Some(Value::String(s)) => Content::Text(s),
        Some(Value::Array(blocks)) => Content::Blocks(blocks),
        None | Some(Value::Null) => return Err(missing(content_path)),
        Some(_) => {
            return Err(invalid(
                content_path,
                "must be a string or an array of content blocks",
            ))
        }
    };
    match role {
        "user" => user_message(content, &content_path, out),
        "assistant" => assistant_message(content, &content_path, out),
        other => Err(invalid(
            format!("{path}.role"),
            format!("must be `user` or `assistant`, not `{other}`"),
        )),
    }
}

enum Content<'a> {
    Text(&'a str),
    Blocks(&'a [Value]),
}

fn user_message(content: Content, path: &str, out: &mut Vec<Value>) -> Result<(), TranslateError> {
    let blocks = match content {
        Content::Text(text) => {
            out.push(json!({"role": "user", "content": text}));
            return Ok(());
        }
        Content::Blocks(blocks) => blocks,
    };
    // Tool results go first, as `tool` messages straight after the assistant message
    // that called the tools (OpenAI requires it); the rest of the turn follows.
    let mut parts = Vec::with_capacity(blocks.len());
    let mut tool_results = 0;
    for (j, block) in blocks.iter().enumerate() {
        let path = format!("{path}[{j}]");
        match block_type(block, &path)? {
            "text" => parts.push(text_part(parse::<TextBlock>(block, &path)?.text)),
            "image" => parts.push(image_part(block, &path)?),
            "document" => parts.push(document_part(block, &path)?),
            "tool_result" => {
                tool_results += 1;
                let (message, images) = tool_result(block, &path)?;
                out.push(message);
                parts.extend(images);
            }
            "tool_use" => {
                return Err(invalid(
                    format!("{path}.type"),
                    "`tool_use` blocks belong in assistant messages",
                ))
            }
            other => return Err(unsupported_block(other)),
        }
    }
    if !parts.is_empty() {
        out.push(json!({"role": "user", "content": parts}));
    } else if tool_results == 0 {
        return Err(invalid(path, "must not be empty"));
    }
    Ok(())
}

fn assistant_message(
    content: Content,
    path: &str,
    out: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    let blocks = match content {
        Content::Text(text) => {
            out.push(json!({"role": "assistant", "content": text}));
            return Ok(());
        }
        Content::Blocks(blocks) => blocks,
    };
    let mut texts = Vec::new();
    let mut tool_calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let path = format!("{path}[{j}]");
        match block_type(block, &path)? {
            "text" => texts.push(parse::<TextBlock>(block, &path)?.text),
            "tool_use" => {
                let call: ToolUseBlock = parse(block, &path)?;
                let arguments = if call.input.is_null() {
                    "{}".to_owned()
                } else {
                    call.input.to_string()
                };
                tool_calls.push(json!({
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": arguments},
                }));
            }
            // The model's earlier reasoning: OpenAI chat has no way to hand it back.
            "thinking" | "redacted_thinking" => {}
            t @ ("image" | "document" | "tool_result") => {
                return Err(invalid(
                    format!("{path}.type"),
                    format!("`{t}` blocks belong in user messages"),
                ))
            }
            other => return Err(unsupported_block(other)),
        }
    }
    if texts.is_empty() && tool_calls.is_empty() {
        // Only thinking, or nothing (an empty final prefill): nothing to send.
        return Ok(());
    }
    let mut message = Map::new();
    message.insert("role".into(), "assistant".into());
    message.insert(
        "content".into(),
        if texts.is_empty() {
            Value::Null
        } else {
            texts.join("\n").into()
        },
    );
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), tool_calls.into());
    }
    out.push(Value::Object(message));
    Ok(())
}

/// A `tool_result` block → a `tool` message, and the images it returned: OpenAI tool
/// messages take text only, so images move to the user message after the results.
fn tool_result(block: &Value, path: &str) -> Result<(Value, Vec<Value>), TranslateError> {
    let result: ToolResultBlock = parse(block, path)?;
    let mut texts = Vec::new();
    let mut images = Vec::new();
    match block.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => texts.push(s.as_str()),
        Some(Value::Array(blocks)) => {
            for (k, inner) in blocks.iter().enumerate() {
                let path = format!("{path}.content[{k}]");
                match block_type(inner, &path)? {
                    "text" => texts.push(parse::<TextBlock>(inner, &path)?.text),
                    "image" => images.push(image_part(inner, &path)?),
                    other => {
                        return Err(unsupported(&format!("`{other}` blocks in a tool result")))
                    }
                }
            }
        }
        Some(_) => {
            return Err(invalid(
                format!("{path}.content"),
                "must be a string or an array of content blocks",
            ))
        }
    }
    let mut text = texts.join("\n");
    if result.is_error {
        text = if text.is_empty() {
            "Error".to_owned()
        } else {
            format!("Error: {text}")
        };
    }
    if !images.is_empty() {
        images.insert(
            0,
            text_part(&format!(
                "[images returned by tool call {}]",
                result.tool_use_id
            )),
        );
    }
    let message = json!({"role": "tool", "tool_call_id": result.tool_use_id, "content": text});
    Ok((message, images))
}

fn text_part(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

fn image_part(block: &Value, path: &str) -> Result<Value, TranslateError> {
    let image: ImageBlock = parse(block, path)?;
    let url = match image.source {
        MediaSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        MediaSource::Url { url } => url.to_owned(),
        MediaSource::Text { .. } | MediaSource::Other => {
            return Err(unsupported("image sources other than `base64` and `url`"))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// PDFs become OpenAI `file` parts; plain-text documents become text.
fn document_part(block: &Value, path: &str) -> Result<Value, TranslateError> {
    let document: DocumentBlock = parse(block, path)?;
    match document.source {
        MediaSource::Base64 { media_type, data } if media_type == "application/pdf" => Ok(json!({
            "type": "file",
            "file": {
                "filename": document.title.unwrap_or("document.pdf"),
                "file_data": format!("data:{media_type};base64,{data}"),
            },
        })),
        MediaSource::Text { data } => Ok(text_part(&match document.title {
            Some(title) => format!("{title}\n\n{data}"),
            None => data.to_owned(),
        })),
        MediaSource::Base64 { media_type, .. } => {
            Err(unsupported(&format!("documents of type `{media_type}`")))
        }
        MediaSource::Url { .. } | MediaSource::Other => Err(unsupported(
            "document sources other than base64 PDF and text",
        )),
    }
}
