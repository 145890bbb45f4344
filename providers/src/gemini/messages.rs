//! The conversation: OpenAI `messages` → Gemini `contents` and `systemInstruction`.

use serde_json::{Map, Value};

use super::request::{invalid, item_str, str_of};
use super::wire::{Blob, Content, FileData, FunctionCall, FunctionResponse, Part};
use crate::TranslateError;

type Object = Map<String, Value>;

/// The system instruction and the conversation, consecutive same-role turns merged
/// (Gemini wants user and model turns to alternate, and all the function responses
/// answering one model turn in one user turn).
pub(super) fn contents(chat: &Object) -> Result<(Option<Content>, Vec<Content>), TranslateError> {
    let Some(Value::Array(messages)) = chat.get("messages") else {
        return Err(invalid("messages", "must be an array"));
    };
    let mut system: Vec<Part> = Vec::new();
    let mut contents: Vec<Content> = Vec::new();
    // (tool_call_id, function name) of every assistant tool call so far, in order.
    let mut calls: Vec<(String, String)> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let field = format!("messages[{i}]");
        let Value::Object(message) = message else {
            return Err(invalid(&field, "must be an object"));
        };
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (role, parts) = match role {
            "system" | "developer" => {
                system.extend(text_parts(message.get("content"), &field)?);
                continue;
            }
            "user" => ("user", user_parts(message.get("content"), &field)?),
            "assistant" => ("model", assistant_parts(message, &field, &mut calls)?),
            "tool" => {
                let id_field = format!("{field}.tool_call_id");
                let id = str_of(message, "tool_call_id", &id_field)?;
                let name = calls
                    .iter()
                    .rev()
                    .find(|(call_id, _)| call_id == id)
                    .map(|(_, name)| name.clone())
                    .ok_or_else(|| invalid(&id_field, "matches no earlier assistant tool call"))?;
                ("user", vec![function_response(name, message, &field)?])
            }
            // The pre-`tools` spelling of a tool result.
            "function" => {
                let name = str_of(message, "name", &format!("{field}.name"))?.to_string();
                ("user", vec![function_response(name, message, &field)?])
            }
            other => {
                return Err(invalid(
                    format!("{field}.role"),
                    format!("unknown role {other:?}"),
                ))
            }
        };
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
            _ => contents.push(Content {
                role: Some(role.to_string()),
                parts,
            }),
        }
    }
    if contents.is_empty() {
        return Err(invalid("messages", "hold no user or assistant content"));
    }
    let system = (!system.is_empty()).then_some(Content {
        role: None,
        parts: system,
    });
    Ok((system, contents))
}

/// Content that may only hold text (system, developer, assistant, tool).
fn text_parts(content: Option<&Value>, field: &str) -> Result<Vec<Part>, TranslateError> {
    Ok(texts(content, field)?
        .into_iter()
        .filter(|t| !t.is_empty()) // Gemini refuses empty text parts
        .map(Part::text)
        .collect())
}

fn texts(content: Option<&Value>, field: &str) -> Result<Vec<String>, TranslateError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(j, item)| {
                let field = format!("{field}.content[{j}]");
                match item.get("type").and_then(Value::as_str) {
                    Some("text") => item_str(item, "text", &field),
                    Some("refusal") => item_str(item, "refusal", &field),
                    _ => Err(invalid(
                        format!("{field}.type"),
                        "only text parts may appear here",
                    )),
                }
            })
            .collect(),
        Some(_) => Err(invalid(
            format!("{field}.content"),
            "must be a string or an array of parts",
        )),
    }
}

fn user_parts(content: Option<&Value>, field: &str) -> Result<Vec<Part>, TranslateError> {
    let items = match content {
        Some(Value::Array(items)) => items,
        other => return text_parts(other, field),
    };
    let mut parts = Vec::with_capacity(items.len());
    for (j, item) in items.iter().enumerate() {
        let field = format!("{field}.content[{j}]");
        let part = match item.get("type").and_then(Value::as_str) {
            Some("text") => {
                let text = item_str(item, "text", &field)?;
                if text.is_empty() {
                    continue;
                }
                Part::text(text)
            }
            Some("image_url") => {
                // `{"url": ..., "detail": ...}`, or (some clients) the URL alone.
                let url = match item.get("image_url") {
                    Some(Value::String(url)) => url.as_str(),
                    Some(obj) => obj.get("url").and_then(Value::as_str).ok_or_else(|| {
                        invalid(format!("{field}.image_url.url"), "must be a string")
                    })?,
                    None => return Err(invalid(format!("{field}.image_url"), "is missing")),
                };
                image_part(url, &format!("{field}.image_url.url"))?
            }
            Some("input_audio") => {
                let audio = item.get("input_audio").unwrap_or(&Value::Null);
                let field = format!("{field}.input_audio");
                let data = item_str(audio, "data", &field)?;
                let format = item_str(audio, "format", &field)?;
                inline(format!("audio/{format}"), data)
            }
            Some("file") => {
                let file = item.get("file").unwrap_or(&Value::Null);
                match file.get("file_data").and_then(Value::as_str) {
                    Some(data_url) => data_url_part(data_url, &format!("{field}.file.file_data"))?,
                    None => {
                        return Err(TranslateError::Unsupported {
                            provider: super::PROVIDER,
                            what: "files by `file_id` (send `file_data`)".into(),
                        })
                    }
                }
            }
            other => {
                return Err(TranslateError::Unsupported {
                    provider: super::PROVIDER,
                    what: format!("content parts of type {:?}", other.unwrap_or("(none)")),
                })
            }
        };
        parts.push(part);
    }
    Ok(parts)
}

fn inline(mime_type: String, data: String) -> Part {
    Part {
        inline_data: Some(Blob { mime_type, data }),
        ..Part::default()
    }
}

/// `data:` URLs travel inline; http(s) URLs are handed to Gemini to fetch.
fn image_part(url: &str, field: &str) -> Result<Part, TranslateError> {
    if url.starts_with("data:") {
        return data_url_part(url, field);
    }
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return Err(invalid(field, "must be a data: URL or an http(s) URL"));
    }
    Ok(Part {
        file_data: Some(FileData {
            mime_type: guess_mime(&lower).to_string(),
            file_uri: url.to_string(),
        }),
        ..Part::default()
    })
}

/// `data:<mime>[;param…];base64,<data>` → `inlineData` (Gemini takes base64 only).
fn data_url_part(url: &str, field: &str) -> Result<Part, TranslateError> {
    let (meta, data) = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(','))
        .ok_or_else(|| invalid(field, "must be a `data:<type>;base64,<data>` URL"))?;
    let mut fields = meta.split(';');
    let mime = fields.next().unwrap_or_default();
    if mime.is_empty() || !fields.any(|f| f.eq_ignore_ascii_case("base64")) {
        return Err(invalid(field, "must be a `data:<type>;base64,<data>` URL"));
    }
    Ok(inline(mime.to_string(), data.to_string()))
}

/// Gemini needs a MIME type for fetched files; the URL's extension is all we have.
fn guess_mime(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let name = path.rsplit('/').next().unwrap_or_default();
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("heic") => "image/heic",
        Some("heif") => "image/heif",
        Some("pdf") => "application/pdf",
        _ => "image/jpeg",
    }
}

fn assistant_parts(
    message: &Object,
    field: &str,
    calls: &mut Vec<(String, String)>,
) -> Result<Vec<Part>, TranslateError> {
    let mut parts = text_parts(message.get("content"), field)?;
    let tool_calls = match message.get("tool_calls") {
        None | Some(Value::Null) => return Ok(parts),
        Some(Value::Array(tool_calls)) => tool_calls,
        Some(_) => return Err(invalid(format!("{field}.tool_calls"), "must be an array")),
    };
    for (j, call) in tool_calls.iter().enumerate() {
        let field = format!("{field}.tool_calls[{j}]");
        let id = item_str(call, "id", &field)?;
        let function = call.get("function").unwrap_or(&Value::Null);
        let name = item_str(function, "name", &format!("{field}.function"))?;
        let args_field = format!("{field}.function.arguments");
        let args = match function.get("arguments") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Map::new()),
            Some(Value::String(s)) => match serde_json::from_str(s) {
                Ok(Value::Object(args)) => Value::Object(args),
                Ok(_) => return Err(invalid(args_field, "must encode a JSON object")),
                Err(e) => return Err(invalid(args_field, format!("is not JSON: {e}"))),
            },
            Some(_) => return Err(invalid(args_field, "must be a string")),
        };
        calls.push((id, name.clone()));
        parts.push(Part {
            function_call: Some(FunctionCall {
                name,
                args: Some(args),
                id: None,
            }),
            ..Part::default()
        });
    }
    Ok(parts)
}

/// A tool result: its content, parsed as JSON when it is JSON, under `result`.
fn function_response(name: String, message: &Object, field: &str) -> Result<Part, TranslateError> {
    let text = texts(message.get("content"), field)?.concat();
    let result = serde_json::from_str(&text).unwrap_or(Value::String(text));
    let mut response = Map::new();
    response.insert("result".into(), result);
    Ok(Part {
        function_response: Some(FunctionResponse {
            name,
            response: Value::Object(response),
        }),
        ..Part::default()
    })
}
