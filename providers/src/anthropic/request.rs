//! An OpenAI chat request → an Anthropic Messages request.
//!
//! Mapped: `messages` (see `messages`), `max_completion_tokens` / `max_tokens`
//! (Anthropic requires one: [`DEFAULT_MAX_TOKENS`] when the client gave none),
//! `temperature`, `top_p`, `stop` → `stop_sequences`, `stream`, `tools`,
//! `tool_choice` with `parallel_tool_calls`, `user` → `metadata.user_id`, and
//! `response_format` as a system-prompt instruction (Anthropic has no JSON mode).
//!
//! Refused: `n` > 1 (Anthropic answers once per request) and `temperature` above 1
//! (Anthropic's range is 0–1, OpenAI's 0–2; rescaling would silently change the
//! sampling the client asked for).
//!
//! Dropped, as Anthropic has no counterpart: `stream_options` (the translated stream
//! always ends with a usage chunk, which metering needs anyway), `seed`, `logprobs`,
//! `top_logprobs`, `logit_bias`, `frequency_penalty`, `presence_penalty`,
//! `service_tier`, `store`, `metadata`, `prediction`, `modalities`, `audio`,
//! `reasoning_effort`, `web_search_options`, tools' and schemas' `strict`, and any
//! field not named here.

use serde_json::{Map, Number, Value};

use super::wire::{self, Metadata, Tool, ToolChoice};
use super::{invalid, messages, unsupported};
use crate::{TranslateError, UpstreamCall};

/// The `anthropic-version` this translation is written against.
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// `max_tokens` when the client set no limit. OpenAI's default is "up to the context
/// window"; Anthropic insists on a number, and this one fits every current model.
const DEFAULT_MAX_TOKENS: u64 = 4096;

/// OpenAI chat request (already-parsed JSON object) → Anthropic Messages request.
pub fn to_upstream(
    chat: &Map<String, Value>,
    upstream_model: &str,
) -> Result<UpstreamCall, TranslateError> {
    if let Some(n) = field(chat, "n") {
        match n.as_u64() {
            Some(1) => {}
            Some(n) if n > 1 => {
                return Err(unsupported("`n` above 1 (several choices per request)"))
            }
            _ => return Err(invalid("n", "must be a positive integer")),
        }
    }
    let conversation = messages::convert(chat.get("messages"))?;
    let mut system = conversation.system;
    system.extend(json_mode_instruction(field(chat, "response_format"))?);

    let tools = tools(field(chat, "tools"))?;
    let tool_choice = tool_choice(
        field(chat, "tool_choice"),
        field(chat, "parallel_tool_calls"),
    )?;
    let request = wire::Request {
        model: upstream_model.to_string(),
        max_tokens: max_tokens(chat)?,
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        messages: conversation.messages,
        temperature: temperature(chat)?,
        top_p: number(chat, "top_p")?,
        stop_sequences: stop_sequences(field(chat, "stop"))?,
        stream: field(chat, "stream")
            .map(|s| {
                s.as_bool()
                    .ok_or_else(|| invalid("stream", "must be a boolean"))
            })
            .transpose()?,
        // A tool choice without tools is meaningless, and Anthropic rejects it.
        tool_choice: if tools.is_empty() { None } else { tool_choice },
        tools,
        metadata: user(chat)?,
    };
    let body = serde_json::to_vec(&request)
        .map_err(|e| invalid("messages", format!("cannot be encoded: {e}")))?;
    Ok(UpstreamCall {
        path: "/messages".to_string(),
        body,
        headers: vec![("anthropic-version", ANTHROPIC_VERSION.to_string())],
    })
}

/// `chat[key]`, with `null` read as absent (as OpenAI reads it).
fn field<'a>(chat: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    chat.get(key).filter(|v| !v.is_null())
}

fn max_tokens(chat: &Map<String, Value>) -> Result<u64, TranslateError> {
    for key in ["max_completion_tokens", "max_tokens"] {
        if let Some(value) = field(chat, key) {
            return match value.as_u64() {
                Some(n) if n > 0 => Ok(n),
                _ => Err(invalid(key, "must be a positive integer")),
            };
        }
    }
    Ok(DEFAULT_MAX_TOKENS)
}

fn number(chat: &Map<String, Value>, key: &str) -> Result<Option<Number>, TranslateError> {
    match field(chat, key) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(Some(n.clone())),
        Some(_) => Err(invalid(key, "must be a number")),
    }
}

fn temperature(chat: &Map<String, Value>) -> Result<Option<Number>, TranslateError> {
    let temperature = number(chat, "temperature")?;
    if temperature.as_ref().and_then(Number::as_f64).unwrap_or(0.0) > 1.0 {
        return Err(unsupported("`temperature` above 1 (its range is 0 to 1)"));
    }
    Ok(temperature)
}

/// `stop`: one string or an array of them.
fn stop_sequences(stop: Option<&Value>) -> Result<Vec<String>, TranslateError> {
    match stop {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(k, item)| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid(format!("stop[{k}]"), "must be a string"))
            })
            .collect(),
        Some(_) => Err(invalid("stop", "must be a string or an array of strings")),
    }
}

/// OpenAI function tools → Anthropic tools (the JSON Schema crosses unchanged).
fn tools(tools: Option<&Value>) -> Result<Vec<Tool>, TranslateError> {
    let items = match tools {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid("tools", "must be an array")),
    };
    let mut out = Vec::with_capacity(items.len());
    for (k, tool) in items.iter().enumerate() {
        match tool.get("type").and_then(Value::as_str) {
            None | Some("function") => {}
            Some(other) => return Err(unsupported(format!("`{other}` tools"))),
        }
        let field = format!("tools[{k}].function");
        let function = tool
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid(&field, "must be an object"))?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{field}.name"), "must be a string"))?;
        let description = match function.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) => Some(d.clone()),
            Some(_) => return Err(invalid(format!("{field}.description"), "must be a string")),
        };
        // Anthropic requires a schema; OpenAI allows none for a parameterless function.
        let input_schema = match function.get("parameters") {
            None | Some(Value::Null) => serde_json::json!({"type": "object", "properties": {}}),
            Some(schema @ Value::Object(_)) => schema.clone(),
            Some(_) => return Err(invalid(format!("{field}.parameters"), "must be an object")),
        };
        out.push(Tool {
            name: name.to_string(),
            description,
            input_schema,
        });
    }
    Ok(out)
}

/// `tool_choice` and `parallel_tool_calls` → Anthropic's `tool_choice`, which carries
/// both (`none` cannot disable parallel calls: there are no calls).
fn tool_choice(
    choice: Option<&Value>,
    parallel: Option<&Value>,
) -> Result<Option<ToolChoice>, TranslateError> {
    let disable_parallel_tool_use = match parallel {
        None => false,
        Some(Value::Bool(parallel)) => !parallel,
        Some(_) => return Err(invalid("parallel_tool_calls", "must be a boolean")),
    };
    let choice = match choice {
        None if disable_parallel_tool_use => ToolChoice::Auto {
            disable_parallel_tool_use,
        },
        None => return Ok(None),
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => ToolChoice::Auto {
                disable_parallel_tool_use,
            },
            "required" => ToolChoice::Any {
                disable_parallel_tool_use,
            },
            "none" => ToolChoice::None,
            other => {
                return Err(invalid(
                    "tool_choice",
                    format!("unknown mode `{other}` (expected auto, required or none)"),
                ))
            }
        },
        Some(Value::Object(o)) => match o.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("tool_choice.function.name", "must be a string"))?;
                ToolChoice::Tool {
                    name: name.to_string(),
                    disable_parallel_tool_use,
                }
            }
            Some(other) => return Err(unsupported(format!("`{other}` tool choices"))),
            None => return Err(invalid("tool_choice.type", "must be a string")),
        },
        Some(_) => return Err(invalid("tool_choice", "must be a string or an object")),
    };
    Ok(Some(choice))
}

/// `response_format` → an instruction for the system prompt.
///
/// Anthropic has no JSON mode and no schema-constrained decoding, so JSON output is
/// asked for in words (with the schema, for `json_schema`). Claude follows such
/// instructions reliably, but unlike OpenAI's structured outputs it is a request,
/// not a guarantee: clients should still validate what they parse.
fn json_mode_instruction(format: Option<&Value>) -> Result<Option<String>, TranslateError> {
    let Some(format) = format else {
        return Ok(None);
    };
    let kind = format
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("response_format.type", "must be a string"))?;
    const PLAIN: &str = "Do not wrap it in Markdown code fences and do not write anything \
                         before or after it.";
    match kind {
        "text" => Ok(None),
        "json_object" => Ok(Some(format!(
            "Respond with a single valid JSON object and nothing else. {PLAIN}"
        ))),
        "json_schema" => {
            let spec = format.get("json_schema");
            let schema = spec
                .and_then(|s| s.get("schema"))
                .filter(|s| s.is_object())
                .ok_or_else(|| {
                    invalid("response_format.json_schema.schema", "must be an object")
                })?;
            let named = match spec.and_then(|s| s.get("name")).and_then(Value::as_str) {
                Some(name) => format!(" (`{name}`)"),
                None => String::new(),
            };
            Ok(Some(format!(
                "Respond with a single valid JSON value that conforms to this JSON Schema{named}, \
                 and nothing else. {PLAIN}\n{schema}"
            )))
        }
        other => Err(unsupported(format!("`{other}` response formats"))),
    }
}

fn user(chat: &Map<String, Value>) -> Result<Option<Metadata>, TranslateError> {
    match field(chat, "user") {
        None => Ok(None),
        Some(Value::String(u)) if u.is_empty() => Ok(None),
        Some(Value::String(u)) => Ok(Some(Metadata { user_id: u.clone() })),
        Some(_) => Err(invalid("user", "must be a string")),
    }
}
