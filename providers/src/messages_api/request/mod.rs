//! An Anthropic Messages request → an OpenAI chat request.
//!
//! The request is read as a `serde_json::Value` and walked by hand where Anthropic
//! allows several shapes (`content` as a string or blocks), so every error names the
//! path of the offending field; leaf pieces are read with the serde types in `wire`.
//! This file holds the top level (`system`, parameters, tools); `messages` the turns.

mod messages;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::wire::{Metadata, TextBlock, Tool, ToolChoice};
use crate::TranslateError;

/// Who cannot do what, in `TranslateError::Unsupported`.
const SURFACE: &str = "TokenRoute's /v1/messages";

/// An Anthropic Messages request body → an OpenAI chat request (a JSON object) for the
/// same model id, and whether it streams. A malformed request is
/// [`TranslateError::Invalid`] naming the field (`max_tokens`, `messages[1].content[0]`,
/// ...); one using what OpenAI chat cannot express is [`TranslateError::Unsupported`].
pub fn to_openai_chat(body: &[u8]) -> Result<(Map<String, Value>, bool), TranslateError> {
    let request: Value = serde_json::from_slice(body)
        .map_err(|e| invalid("body", format!("not valid JSON: {e}")))?;
    let request = request
        .as_object()
        .ok_or_else(|| invalid("body", "must be a JSON object"))?;

    let model = match request.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m,
        None | Some(Value::Null) => return Err(missing("model")),
        Some(_) => return Err(invalid("model", "must be a non-empty string")),
    };
    // Anthropic's API requires it, so clients written against it always send it; a
    // request without one would behave differently here than there.
    let max_tokens = match request.get("max_tokens") {
        None | Some(Value::Null) => return Err(missing("max_tokens")),
        Some(v) => v
            .as_u64()
            .filter(|n| *n >= 1)
            .ok_or_else(|| invalid("max_tokens", "must be a positive integer"))?,
    };
    let messages = match request.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => return Err(invalid("messages", "must not be empty")),
        None | Some(Value::Null) => return Err(missing("messages")),
        Some(_) => return Err(invalid("messages", "must be an array")),
    };
    let stream = match request.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("stream", "must be a boolean")),
    };

    let mut chat_messages = Vec::with_capacity(messages.len() + 1);
    if let Some(system) = system_text(request.get("system"))? {
        chat_messages.push(json!({"role": "system", "content": system}));
    }
    for (i, message) in messages.iter().enumerate() {
        messages::translate(message, &format!("messages[{i}]"), &mut chat_messages)?;
    }

    let mut chat = Map::new();
    chat.insert("model".into(), model.as_str().into());
    chat.insert("messages".into(), Value::Array(chat_messages));
    chat.insert("max_tokens".into(), max_tokens.into());
    for field in ["temperature", "top_p"] {
        match request.get(field) {
            None | Some(Value::Null) => {}
            Some(v @ Value::Number(_)) => {
                chat.insert(field.into(), v.clone());
            }
            Some(_) => return Err(invalid(field, "must be a number")),
        }
    }
    if let Some(stop) = optional::<Vec<&str>>(request, "stop_sequences")? {
        if !stop.is_empty() {
            chat.insert("stop".into(), stop.into());
        }
    }
    chat.insert("stream".into(), stream.into());
    if stream {
        // Usage arrives in a last chunk only when asked for; metering needs it.
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    tools(request, &mut chat)?;
    if let Some(metadata) = optional::<Metadata>(request, "metadata")? {
        if let Some(user) = metadata.user_id {
            chat.insert("user".into(), user.into());
        }
    }
    // `top_k`, `thinking`, `service_tier` and anything else Anthropic-only is dropped.
    Ok((chat, stream))
}

/// `system` as a string or text blocks, joined; `None` when absent or empty.
fn system_text(system: Option<&Value>) -> Result<Option<String>, TranslateError> {
    match system {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok((!s.is_empty()).then(|| s.clone())),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (i, block) in blocks.iter().enumerate() {
                let path = format!("system[{i}]");
                match block_type(block, &path)? {
                    "text" => texts.push(parse::<TextBlock>(block, &path)?.text),
                    other => {
                        return Err(invalid(
                            format!("{path}.type"),
                            format!("system blocks must be `text`, not `{other}`"),
                        ))
                    }
                }
            }
            let text = texts.join("\n");
            Ok((!text.is_empty()).then_some(text))
        }
        Some(_) => Err(invalid(
            "system",
            "must be a string or an array of text blocks",
        )),
    }
}

/// `tools` and `tool_choice` → OpenAI function tools, `tool_choice`, `parallel_tool_calls`.
fn tools(
    request: &Map<String, Value>,
    chat: &mut Map<String, Value>,
) -> Result<(), TranslateError> {
    let defined = match request.get("tools") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(invalid("tools", "must be an array")),
    };
    let mut functions = Vec::with_capacity(defined.len());
    for (i, tool) in defined.iter().enumerate() {
        let path = format!("tools[{i}]");
        let tool: Tool = parse(tool, &path)?;
        if let Some(kind) = tool.kind.filter(|k| *k != "custom") {
            return Err(unsupported(&format!("Anthropic's server tool `{kind}`")));
        }
        let schema = tool
            .input_schema
            .ok_or_else(|| missing(format!("{path}.input_schema")))?;
        let mut function = Map::new();
        function.insert("name".into(), tool.name.into());
        if let Some(description) = tool.description {
            function.insert("description".into(), description.into());
        }
        function.insert("parameters".into(), schema);
        functions.push(json!({"type": "function", "function": function}));
    }
    let choice = optional::<ToolChoice>(request, "tool_choice")?;
    if functions.is_empty() {
        // OpenAI rejects `tool_choice` without tools; only a choice that needs a tool
        // is an error, as it is for Anthropic.
        return match choice {
            Some(ToolChoice::Any { .. } | ToolChoice::Tool { .. }) => {
                Err(invalid("tool_choice", "requires `tools`"))
            }
            _ => Ok(()),
        };
    }
    chat.insert("tools".into(), functions.into());
    let (choice, no_parallel) = match choice {
        None => return Ok(()),
        Some(ToolChoice::Auto {
            disable_parallel_tool_use,
        }) => (json!("auto"), disable_parallel_tool_use),
        Some(ToolChoice::Any {
            disable_parallel_tool_use,
        }) => (json!("required"), disable_parallel_tool_use),
        Some(ToolChoice::Tool {
            name,
            disable_parallel_tool_use,
        }) => (
            json!({"type": "function", "function": {"name": name}}),
            disable_parallel_tool_use,
        ),
        Some(ToolChoice::None {}) => (json!("none"), false),
    };
    chat.insert("tool_choice".into(), choice);
    if no_parallel {
        chat.insert("parallel_tool_calls".into(), false.into());
    }
    Ok(())
}

/// A block's `type`, which every block must have.
fn block_type<'a>(block: &'a Value, path: &str) -> Result<&'a str, TranslateError> {
    match block {
        Value::Object(fields) => match fields.get("type") {
            Some(Value::String(t)) => Ok(t),
            _ => Err(missing(format!("{path}.type"))),
        },
        _ => Err(invalid(path, "must be an object")),
    }
}

/// An optional top-level field, `null` counting as absent.
fn optional<'a, T: Deserialize<'a>>(
    request: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<T>, TranslateError> {
    match request.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse(v, field).map(Some),
    }
}

fn parse<'a, T: Deserialize<'a>>(value: &'a Value, path: &str) -> Result<T, TranslateError> {
    T::deserialize(value).map_err(|e| invalid(path, e.to_string()))
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> TranslateError {
    TranslateError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

fn missing(field: impl Into<String>) -> TranslateError {
    invalid(field, "is required")
}

fn unsupported(what: &str) -> TranslateError {
    TranslateError::Unsupported {
        provider: SURFACE,
        what: what.to_owned(),
    }
}

fn unsupported_block(kind: &str) -> TranslateError {
    unsupported(&format!("content blocks of type `{kind}`"))
}
