//! What routing reads of a request: the features eligibility depends on, and the
//! fingerprint that makes the choice deterministic.

use serde_json::{Map, Value};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The header a client sets to choose its own routing key.
pub const ROUTE_KEY_HEADER: &str = "x-tokenroute-route-key";

/// What a request needs of a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// It offers tools (function calling).
    pub tools: bool,
    /// A message carries an image.
    pub images: bool,
    /// It asks for JSON output (`response_format` json_object or json_schema).
    pub json: bool,
    pub stream: bool,
    /// Estimated prompt tokens.
    pub prompt_tokens: u64,
    /// The most output it asks for, when it says.
    pub max_output: Option<u64>,
}

impl Features {
    /// Reads an OpenAI Chat Completions body.
    pub fn of(body: &Map<String, Value>, prompt_tokens: u64, max_output: Option<u64>) -> Features {
        let non_empty = |key: &str| match body.get(key) {
            Some(Value::Array(a)) => !a.is_empty(),
            _ => false,
        };
        let images = body
            .get("messages")
            .and_then(Value::as_array)
            .is_some_and(|messages| {
                messages.iter().any(|m| match m.get("content") {
                    Some(Value::Array(parts)) => parts.iter().any(|p| {
                        matches!(
                            p.get("type").and_then(Value::as_str),
                            Some("image_url" | "input_image" | "image")
                        )
                    }),
                    _ => false,
                })
            });
        let json = matches!(
            body.get("response_format")
                .and_then(|f| f.get("type"))
                .and_then(Value::as_str),
            Some("json_object" | "json_schema")
        );
        Features {
            tools: non_empty("tools") || non_empty("functions"),
            images,
            json,
            stream: matches!(body.get("stream"), Some(Value::Bool(true))),
            prompt_tokens,
            max_output,
        }
    }
}

/// Where a request's fingerprint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FingerprintSource {
    /// The `x-tokenroute-route-key` header.
    RouteKey,
    /// The request's `user` field.
    User,
    /// The account and the conversation's stable prefix (system messages and the
    /// first user message): every turn of a conversation has the same one.
    Conversation,
}

impl FingerprintSource {
    pub fn as_str(self) -> &'static str {
        match self {
            FingerprintSource::RouteKey => "route-key",
            FingerprintSource::User => "user",
            FingerprintSource::Conversation => "conversation",
        }
    }
}

/// The 64-bit value rendezvous hashing ranks candidates by, for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub source: FingerprintSource,
    pub hash: u64,
}

/// Fixed seeds keep the three sources apart (a user named like a route key does not
/// collide with it). Changing them would move every request: never do.
const SEED_ROUTE_KEY: u64 = 0x7472_2d72_6f75_7465;
const SEED_USER: u64 = 0x7472_2d75_7365_7200;
const SEED_CONVERSATION: u64 = 0x7472_2d63_6f6e_7600;

impl Fingerprint {
    /// The route key header if given, else `user`, else account + stable prefix.
    pub fn of(route_key: Option<&str>, body: &Map<String, Value>, account_id: &str) -> Fingerprint {
        if let Some(key) = route_key.filter(|k| !k.is_empty()) {
            return Fingerprint {
                source: FingerprintSource::RouteKey,
                hash: xxh3_64_with_seed(key.as_bytes(), SEED_ROUTE_KEY),
            };
        }
        if let Some(Value::String(user)) = body.get("user") {
            if !user.is_empty() {
                return Fingerprint {
                    source: FingerprintSource::User,
                    hash: xxh3_64_with_seed(user.as_bytes(), SEED_USER),
                };
            }
        }
        let mut prefix = Vec::with_capacity(256);
        prefix.extend_from_slice(account_id.as_bytes());
        prefix.push(0);
        if let Some(Value::Array(messages)) = body.get("messages") {
            for m in messages {
                let role = m.get("role").and_then(Value::as_str).unwrap_or("");
                prefix.extend_from_slice(role.as_bytes());
                prefix.push(0);
                if let Some(content) = m.get("content") {
                    // Serialized as received (key order preserved): the same client
                    // sends the same bytes on every turn.
                    if let Ok(bytes) = serde_json::to_vec(content) {
                        prefix.extend_from_slice(&bytes);
                    }
                }
                prefix.push(0);
                if role == "user" {
                    break;
                }
            }
        }
        Fingerprint {
            source: FingerprintSource::Conversation,
            hash: xxh3_64_with_seed(&prefix, SEED_CONVERSATION),
        }
    }

    /// A uniform draw in [0, 1) for `name` (a candidate, an endpoint or a rule),
    /// fixed for this fingerprint.
    pub fn draw(&self, name: &str) -> f64 {
        let h = xxh3_64_with_seed(name.as_bytes(), self.hash);
        (h >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The weighted rendezvous score of `name`: the highest score wins, and `name`
    /// wins with probability weight / total weight.
    pub fn score(&self, name: &str, weight: u32) -> f64 {
        if weight == 0 {
            return 0.0;
        }
        // u in (0, 1): -ln(u) is exponentially distributed, and weight / Exp(1) is
        // the weighted rendezvous score (Schindelhauer & Schomaker).
        let u = self.draw(name) + 0.5 / (1u64 << 53) as f64;
        f64::from(weight) / -u.ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn every_turn_of_a_conversation_has_one_fingerprint() {
        let first = body(
            r#"{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}"#,
        );
        let later = body(
            r#"{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"more"}]}"#,
        );
        let other = body(
            r#"{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"bye"}]}"#,
        );
        let a = Fingerprint::of(None, &first, "acc");
        assert_eq!(a.source, FingerprintSource::Conversation);
        assert_eq!(a, Fingerprint::of(None, &later, "acc"));
        assert_ne!(a, Fingerprint::of(None, &other, "acc"));
        assert_ne!(a, Fingerprint::of(None, &first, "another account"));
    }

    #[test]
    fn route_key_then_user_take_precedence() {
        let b = body(r#"{"user":"u1","messages":[{"role":"user","content":"x"}]}"#);
        let by_key = Fingerprint::of(Some("k"), &b, "acc");
        assert_eq!(by_key.source, FingerprintSource::RouteKey);
        let by_user = Fingerprint::of(None, &b, "acc");
        assert_eq!(by_user.source, FingerprintSource::User);
        assert_eq!(by_user, Fingerprint::of(None, &b, "another account"));
    }

    #[test]
    fn features_are_read_from_the_body() {
        let f = Features::of(
            &body(
                r#"{"stream":true,"tools":[{"type":"function"}],"response_format":{"type":"json_schema"},
                 "messages":[{"role":"user","content":[{"type":"text","text":"?"},{"type":"image_url","image_url":{"url":"x"}}]}]}"#,
            ),
            10,
            Some(5),
        );
        assert!(f.tools && f.images && f.json && f.stream);
        let plain = Features::of(
            &body(r#"{"messages":[{"role":"user","content":"x"}],"tools":[]}"#),
            1,
            None,
        );
        assert!(!plain.tools && !plain.images && !plain.json && !plain.stream);
    }
}
