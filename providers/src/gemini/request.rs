//! OpenAI chat request → Gemini `generateContent` request.
//!
//! The mapping (and what is dropped) is listed in the module docs of [`super`].

use serde_json::{Map, Value};

use super::messages::contents;
use super::schema;
use super::wire::{
    FunctionCallingConfig, FunctionDeclaration, GenerateContentRequest, GenerationConfig, Tool,
    ToolConfig,
};
use crate::{TranslateError, UpstreamCall};

type Object = Map<String, Value>;

pub(super) fn to_upstream(
    chat: &Object,
    upstream_model: &str,
) -> Result<UpstreamCall, TranslateError> {
    refuse_unsupported(chat)?;
    let (system_instruction, contents) = contents(chat)?;
    let request = GenerateContentRequest {
        contents,
        system_instruction,
        tools: tools(chat)?,
        tool_config: tool_config(chat)?,
        generation_config: generation_config(chat)?,
    };
    let model = super::model_id(upstream_model);
    let path = if opt_bool(chat, "stream")?.unwrap_or(false) {
        format!("/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/models/{model}:generateContent")
    };
    let body = serde_json::to_vec(&request).map_err(|e| invalid("request", e))?;
    Ok(UpstreamCall {
        path,
        body,
        headers: Vec::new(),
    })
}

/// Features whose loss would change the shape of the answer the client expects.
fn refuse_unsupported(chat: &Object) -> Result<(), TranslateError> {
    let unsupported = |what: &str| TranslateError::Unsupported {
        provider: super::PROVIDER,
        what: what.to_string(),
    };
    if present(chat, "functions") || present(chat, "function_call") {
        return Err(unsupported(
            "the legacy `functions` / `function_call` parameters (use `tools`)",
        ));
    }
    let wants_audio = chat
        .get("modalities")
        .and_then(Value::as_array)
        .is_some_and(|m| m.iter().any(|x| x.as_str() == Some("audio")));
    if wants_audio || present(chat, "audio") {
        return Err(unsupported("audio output"));
    }
    Ok(())
}

// ---- tools ----

fn tools(chat: &Object) -> Result<Vec<Tool>, TranslateError> {
    let tools = match chat.get("tools") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(invalid("tools", "must be an array")),
    };
    let mut declarations = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let field = format!("tools[{i}]");
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {}
            other => {
                return Err(TranslateError::Unsupported {
                    provider: super::PROVIDER,
                    what: format!("tools of type {:?}", other.unwrap_or("(none)")),
                })
            }
        }
        let function = tool.get("function").unwrap_or(&Value::Null);
        let field = format!("{field}.function");
        let name = item_str(function, "name", &field)?;
        let description = match function.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) => Some(d.clone()),
            Some(_) => return Err(invalid(format!("{field}.description"), "must be a string")),
        };
        let parameters = match function.get("parameters") {
            None | Some(Value::Null) => None,
            Some(p @ Value::Object(_)) => Some(schema::clean(p, &format!("{field}.parameters"))?)
                .filter(|p| !schema::is_empty_object(p)),
            Some(_) => return Err(invalid(format!("{field}.parameters"), "must be an object")),
        };
        declarations.push(FunctionDeclaration {
            name,
            description,
            parameters,
        });
    }
    if declarations.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![Tool {
        function_declarations: declarations,
    }])
}

fn tool_config(chat: &Object) -> Result<Option<ToolConfig>, TranslateError> {
    let config = |mode, names| {
        Some(ToolConfig {
            function_calling_config: FunctionCallingConfig {
                mode,
                allowed_function_names: names,
            },
        })
    };
    match chat.get("tool_choice") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(choice)) => match choice.as_str() {
            "auto" => Ok(config("AUTO", None)),
            "none" => Ok(config("NONE", None)),
            "required" => Ok(config("ANY", None)),
            other => Err(invalid("tool_choice", format!("unknown choice {other:?}"))),
        },
        Some(choice @ Value::Object(_)) => {
            let function = choice.get("function").unwrap_or(&Value::Null);
            let name = item_str(function, "name", "tool_choice.function")?;
            Ok(config("ANY", Some(vec![name])))
        }
        Some(_) => Err(invalid("tool_choice", "must be a string or an object")),
    }
}

// ---- generation settings ----

fn generation_config(chat: &Object) -> Result<GenerationConfig, TranslateError> {
    let max_output_tokens = match opt_u64(chat, "max_completion_tokens")? {
        Some(max) => Some(max),
        None => opt_u64(chat, "max_tokens")?,
    };
    let stop_sequences = match chat.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("stop", "must be a string or an array of strings"))?,
        Some(_) => return Err(invalid("stop", "must be a string or an array of strings")),
    };
    let seed = match chat.get("seed") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| invalid("seed", "must be an integer"))?,
        ),
    };
    let (response_mime_type, response_schema) = response_format(chat)?;
    Ok(GenerationConfig {
        max_output_tokens,
        temperature: opt_f64(chat, "temperature")?,
        top_p: opt_f64(chat, "top_p")?,
        stop_sequences,
        seed,
        candidate_count: opt_u64(chat, "n")?,
        presence_penalty: opt_f64(chat, "presence_penalty")?,
        frequency_penalty: opt_f64(chat, "frequency_penalty")?,
        response_mime_type,
        response_schema,
    })
}

type ResponseFormat = (Option<&'static str>, Option<Value>);

fn response_format(chat: &Object) -> Result<ResponseFormat, TranslateError> {
    let format = match chat.get("response_format") {
        None | Some(Value::Null) => return Ok((None, None)),
        Some(format) => format,
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok((None, None)),
        Some("json_object") => Ok((Some("application/json"), None)),
        Some("json_schema") => {
            let schema = match format.get("json_schema").and_then(|s| s.get("schema")) {
                None | Some(Value::Null) => None,
                Some(s @ Value::Object(_)) => {
                    Some(schema::clean(s, "response_format.json_schema.schema")?)
                }
                Some(_) => {
                    return Err(invalid(
                        "response_format.json_schema.schema",
                        "must be an object",
                    ))
                }
            };
            Ok((Some("application/json"), schema))
        }
        _ => Err(invalid(
            "response_format.type",
            "must be `text`, `json_object` or `json_schema`",
        )),
    }
}

// ---- field helpers ----

pub(super) fn invalid(field: impl Into<String>, reason: impl ToString) -> TranslateError {
    TranslateError::Invalid {
        field: field.into(),
        reason: reason.to_string(),
    }
}

fn present(obj: &Object, key: &str) -> bool {
    obj.get(key).is_some_and(|v| !v.is_null())
}

pub(super) fn str_of<'a>(
    obj: &'a Object,
    key: &str,
    field: &str,
) -> Result<&'a str, TranslateError> {
    obj.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(field, "must be a string"))
}

/// `item.key` as a string; `field` names `item`.
pub(super) fn item_str(item: &Value, key: &str, field: &str) -> Result<String, TranslateError> {
    item.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| invalid(format!("{field}.{key}"), "must be a string"))
}

fn opt_f64(obj: &Object, key: &str) -> Result<Option<f64>, TranslateError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| invalid(key, "must be a number")),
    }
}

pub(super) fn opt_u64(obj: &Object, key: &str) -> Result<Option<u64>, TranslateError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(key, "must be a non-negative integer")),
    }
}

fn opt_bool(obj: &Object, key: &str) -> Result<Option<bool>, TranslateError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| invalid(key, "must be a boolean")),
    }
}
