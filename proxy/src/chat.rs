//! The OpenAI Chat Completions request as the data plane needs it: validated, with
//! the fields that drive routing and reservation pulled out, and rewritten for the
//! provider. Fields TokenRoute does not know pass through untouched.

use serde_json::{Map, Value};

use crate::error::ApiError;

#[derive(Debug)]
pub struct ChatRequest {
    body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    /// `max_completion_tokens`, else `max_tokens`, when the client set one.
    pub max_output_tokens: Option<u64>,
}

impl ChatRequest {
    pub fn parse(bytes: &[u8]) -> Result<ChatRequest, ApiError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        let Value::Object(body) = value else {
            return Err(ApiError::invalid(
                "The request body must be a JSON object.",
                None,
            ));
        };
        Self::from_map(body)
    }

    /// The request as a JSON object (e.g. translated from another client surface).
    pub fn from_map(body: Map<String, Value>) -> Result<ChatRequest, ApiError> {
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            Some(_) => {
                return Err(ApiError::invalid(
                    "`model` must be a non-empty string.",
                    Some("model"),
                ))
            }
            None => {
                return Err(ApiError::invalid(
                    "You must provide a model parameter.",
                    Some("model"),
                ))
            }
        };
        match body.get("messages") {
            Some(Value::Array(m)) if !m.is_empty() => {}
            Some(Value::Array(_)) => {
                return Err(ApiError::invalid(
                    "`messages` must not be empty.",
                    Some("messages"),
                ))
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    "`messages` must be an array.",
                    Some("messages"),
                ))
            }
            None => {
                return Err(ApiError::invalid(
                    "Missing required parameter: `messages`.",
                    Some("messages"),
                ))
            }
        }
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(ApiError::invalid(
                    "`stream` must be a boolean.",
                    Some("stream"),
                ))
            }
        };
        let max_output_tokens = match (body.get("max_completion_tokens"), body.get("max_tokens")) {
            (Some(v), _) if !v.is_null() => Some(positive_int(v, "max_completion_tokens")?),
            (_, Some(v)) if !v.is_null() => Some(positive_int(v, "max_tokens")?),
            _ => None,
        };
        Ok(ChatRequest {
            body,
            model,
            stream,
            max_output_tokens,
        })
    }

    /// The request as parsed, for translation into other dialects.
    pub fn body(&self) -> &Map<String, Value> {
        &self.body
    }

    /// Refuses more than `max` messages (400).
    pub fn check_messages(&self, max: usize) -> Result<(), ApiError> {
        let n = self
            .body
            .get("messages")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if n > max {
            return Err(ApiError::invalid(
                format!("`messages` holds {n} messages; at most {max} are accepted."),
                Some("messages"),
            ));
        }
        Ok(())
    }

    /// Takes the client's routing preferences (`models`, `provider`) out of the body,
    /// so that no provider sees them.
    pub fn take_steering(&mut self) -> Result<crate::route::Steering, ApiError> {
        crate::route::Steering::take(&mut self.body)
            .map_err(|(param, message)| ApiError::invalid(message, Some(param)))
    }

    /// The body for an OpenAI-compatible provider: the provider's model name, and for
    /// streams `stream_options.include_usage` so that the stream reports its usage.
    pub fn to_openai_upstream(&self, upstream_model: &str) -> Vec<u8> {
        let mut body = self.body.clone();
        body.insert("model".into(), Value::String(upstream_model.to_string()));
        if self.stream {
            let options = body
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if !options.is_object() {
                *options = Value::Object(Map::new());
            }
            if let Value::Object(options) = options {
                options.insert("include_usage".into(), Value::Bool(true));
            }
        }
        Value::Object(body).to_string().into_bytes()
    }
}

fn positive_int(value: &Value, name: &'static str) -> Result<u64, ApiError> {
    value.as_u64().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::invalid(format!("`{name}` must be a positive integer."), Some(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_what_routing_and_reservation_need() {
        let r = ChatRequest::parse(
            br#"{"messages":[{"role":"user","content":"hi"}],"model":"mock/echo","stream":true,"max_tokens":50,"seed":7}"#,
        )
        .unwrap();
        assert_eq!(r.model, "mock/echo");
        assert!(r.stream);
        assert_eq!(r.max_output_tokens, Some(50));
        let up: Value = serde_json::from_slice(&r.to_openai_upstream("echo")).unwrap();
        assert_eq!(up["model"], "echo");
        assert_eq!(up["stream_options"]["include_usage"], true);
        assert_eq!(up["seed"], 7, "unknown fields pass through");
    }

    #[test]
    fn refuses_malformed_requests_with_the_parameter_named() {
        let cases: &[(&[u8], &str)] = &[
            (b"{not json", "invalid_json"),
            (b"[1,2]", "invalid_request"),
            (br#"{"messages":[{"role":"user","content":"x"}]}"#, "model"),
            (br#"{"model":"m"}"#, "messages"),
            (br#"{"model":"m","messages":[]}"#, "messages"),
            (br#"{"model":"m","messages":[{}],"stream":"yes"}"#, "stream"),
            (
                br#"{"model":"m","messages":[{}],"max_tokens":-1}"#,
                "max_tokens",
            ),
        ];
        for (body, expect) in cases {
            let e = ChatRequest::parse(body).unwrap_err();
            assert_eq!(e.status(), 400);
            let v: Value = serde_json::from_slice(&e.body()).unwrap();
            let got = v["error"]["param"]
                .as_str()
                .or(v["error"]["code"].as_str())
                .unwrap();
            assert_eq!(got, *expect, "{}", String::from_utf8_lossy(body));
        }
    }
}
