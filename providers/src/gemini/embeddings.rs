//! OpenAI embeddings ↔ Gemini `batchEmbedContents`.
//!
//! Each OpenAI input string becomes one `EmbedContentRequest`; `dimensions` becomes
//! `outputDimensionality`. Token-array inputs cannot be sent (Gemini takes text only).
//! The answer is always float arrays: `encoding_format: "base64"` is accepted (the
//! OpenAI Python SDK asks for it by default and also reads floats) but not honoured.
//! `user` is dropped.

use serde_json::{json, Map, Value};

use super::request::{invalid, opt_u64};
use super::wire::{
    BatchEmbedContentsRequest, BatchEmbedContentsResponse, Content, EmbedContentRequest, Part,
};
use crate::{TranslateError, UpstreamCall};

pub(super) fn to_upstream(
    req: &Map<String, Value>,
    upstream_model: &str,
) -> Result<UpstreamCall, TranslateError> {
    let inputs = inputs(req)?;
    let output_dimensionality = opt_u64(req, "dimensions")?;
    match req.get("encoding_format") {
        None | Some(Value::Null) => {}
        Some(Value::String(f)) if f == "float" || f == "base64" => {}
        Some(_) => return Err(invalid("encoding_format", "must be `float` or `base64`")),
    }
    let model = super::model_id(upstream_model);
    let request = BatchEmbedContentsRequest {
        requests: inputs
            .into_iter()
            .map(|text| EmbedContentRequest {
                model: format!("models/{model}"),
                content: Content {
                    role: None,
                    parts: vec![Part::text(text)],
                },
                output_dimensionality,
            })
            .collect(),
    };
    let body = serde_json::to_vec(&request).map_err(|e| invalid("request", e))?;
    Ok(UpstreamCall {
        path: format!("/models/{model}:batchEmbedContents"),
        body,
        headers: Vec::new(),
    })
}

/// The input strings: `input` is one string or an array of them.
fn inputs(req: &Map<String, Value>) -> Result<Vec<&str>, TranslateError> {
    match req.get("input") {
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(items)) if items.is_empty() => Err(invalid("input", "must not be empty")),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.as_str()),
                Value::Number(_) | Value::Array(_) => Err(TranslateError::Unsupported {
                    provider: super::PROVIDER,
                    what: "token-array embedding input (send text)".into(),
                }),
                _ => Err(invalid("input", "must be a string or an array of strings")),
            })
            .collect(),
        _ => Err(invalid("input", "must be a string or an array of strings")),
    }
}

/// Bytes of text in the request's `input`, for [`from_response`]'s token estimate
/// (0 when `input` is not text).
pub(super) fn input_bytes(req: &Map<String, Value>) -> usize {
    inputs(req).map_or(0, |inputs| inputs.iter().map(|s| s.len()).sum())
}

pub(super) fn from_response(
    body: &[u8],
    client_model: &str,
    input_bytes: usize,
) -> Result<Vec<u8>, TranslateError> {
    let answer: BatchEmbedContentsResponse =
        serde_json::from_slice(body).map_err(|e| TranslateError::BadAnswer {
            provider: super::PROVIDER,
            reason: format!("not a batchEmbedContents answer: {e}"),
        })?;
    let data: Vec<Value> = answer
        .embeddings
        .into_iter()
        .enumerate()
        .map(|(index, e)| json!({"object": "embedding", "index": index, "embedding": e.values}))
        .collect();
    let tokens = input_bytes.div_ceil(4);
    let list = json!({
        "object": "list",
        "data": data,
        "model": client_model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    serde_json::to_vec(&list).map_err(|e| TranslateError::BadAnswer {
        provider: super::PROVIDER,
        reason: e.to_string(),
    })
}
