//! Usage in OpenAI's Chat Completions wire format, whole responses and streams.

use bytes::Bytes;
use serde::Deserialize;
use tokenroute_domain::{NanoUsd, Price};

use super::sse::SseEvent;
use super::Tokens;

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl Usage {
    fn tokens(&self) -> Tokens {
        Tokens {
            input: self.prompt_tokens,
            output: self.completion_tokens,
            cached: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
        }
    }
}

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<Usage>,
}

/// The usage of a non-streaming response body, if it reports one.
pub fn usage_of_response(body: &[u8]) -> Option<Tokens> {
    let parsed: WithUsage = serde_json::from_slice(body).ok()?;
    parsed.usage.map(|u| u.tokens())
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    delta: Option<Delta>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<serde_json::Value>,
}

/// `body` with `usage.cost` (USD) added, as OpenRouter-style clients read it; `None`
/// when the body has no `usage` object to add it to.
///
/// Only the top level and `usage` are parsed: every other member (the choices, the
/// text) is copied through as the provider wrote it — a whole answer is not turned
/// into a tree of values and back on every request (measured: 6% of the data plane's
/// CPU under load before).
pub fn with_cost(body: &[u8], cost: NanoUsd) -> Option<Vec<u8>> {
    let Ok(Members(members)) = serde_json::from_slice::<Members<'_>>(body) else {
        return with_cost_parsed(body, cost);
    };
    let mut out = Vec::with_capacity(body.len() + 32);
    out.push(b'{');
    let mut found = false;
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, key).ok()?;
        out.push(b':');
        if *key == "usage" {
            let mut usage: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(value.get()).ok()?;
            usage.insert("cost".into(), serde_json::json!(cost.as_usd_f64()));
            serde_json::to_writer(&mut out, &usage).ok()?;
            found = true;
        } else {
            out.extend_from_slice(value.get().as_bytes());
        }
    }
    out.push(b'}');
    found.then_some(out)
}

/// [`with_cost`] by parsing the whole body (for the rare body the fast path cannot
/// borrow from: a key written with escapes).
fn with_cost_parsed(body: &[u8], cost: NanoUsd) -> Option<Vec<u8>> {
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let usage = value.get_mut("usage")?.as_object_mut()?;
    usage.insert("cost".into(), serde_json::json!(cost.as_usd_f64()));
    serde_json::to_vec(&value).ok()
}

/// A JSON object's members in order, each value left unparsed.
struct Members<'a>(Vec<(&'a str, &'a serde_json::value::RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::with_capacity(8);
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Follows an OpenAI chat stream event by event: the usage when it arrives, and the
/// amount of generated text for an estimate when it never does.
#[derive(Debug)]
pub struct StreamMeter {
    price: Price,
    pub usage: Option<Tokens>,
    /// Bytes of generated content (text and tool-call arguments) seen so far.
    pub generated_bytes: usize,
    pub done: bool,
}

/// What to do with one event of the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Disposition {
    Forward,
    /// Send these bytes instead: the usage chunk, with its cost added.
    Replace(Bytes),
    /// `data: [DONE]`: sent only once the usage is recorded on disk.
    Hold,
}

impl StreamMeter {
    pub fn new(price: Price) -> StreamMeter {
        StreamMeter {
            price,
            usage: None,
            generated_bytes: 0,
            done: false,
        }
    }

    pub fn observe(&mut self, event: &SseEvent) -> Disposition {
        if event.data == "[DONE]" {
            self.done = true;
            return Disposition::Hold;
        }
        let Ok(chunk) = serde_json::from_str::<Chunk>(&event.data) else {
            return Disposition::Forward;
        };
        for choice in &chunk.choices {
            if let Some(delta) = &choice.delta {
                self.generated_bytes += delta.content.as_deref().map_or(0, str::len);
                for call in &delta.tool_calls {
                    if let Some(args) = call["function"]["arguments"].as_str() {
                        self.generated_bytes += args.len();
                    }
                }
            }
        }
        let Some(u) = chunk.usage else {
            return Disposition::Forward;
        };
        let tokens = u.tokens();
        self.usage = Some(tokens);
        let cost = self
            .price
            .cost_with_cache(tokens.input, tokens.cached, tokens.output);
        match with_cost(event.data.as_bytes(), cost) {
            Some(json) => {
                let mut out = Vec::with_capacity(json.len() + 8);
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&json);
                out.extend_from_slice(b"\n\n");
                Disposition::Replace(Bytes::from(out))
            }
            None => Disposition::Forward,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::sse::SseSplitter;
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../fixtures/providers/openai/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).unwrap()
    }

    #[test]
    fn reads_usage_of_a_whole_response() {
        assert_eq!(
            usage_of_response(&fixture("chat.json")),
            Some(Tokens {
                input: 24,
                output: 8,
                cached: 0
            })
        );
        assert_eq!(usage_of_response(b"{\"choices\":[]}"), None);
        assert_eq!(usage_of_response(b"not json"), None);
    }

    fn price() -> Price {
        Price {
            input_per_mtok: NanoUsd(150_000_000),
            output_per_mtok: NanoUsd(600_000_000),
            cached_input_per_mtok: None,
        }
    }

    fn meter(file: &str) -> (StreamMeter, Vec<Disposition>) {
        let mut splitter = SseSplitter::new();
        let mut m = StreamMeter::new(price());
        let out = splitter
            .push(&fixture(file))
            .iter()
            .map(|e| m.observe(e))
            .collect();
        (m, out)
    }

    #[test]
    fn reads_stream_usage_from_the_last_chunk_and_adds_its_cost() {
        let (m, out) = meter("chat-stream.sse");
        assert!(m.done);
        assert_eq!(
            m.usage,
            Some(Tokens {
                input: 24,
                output: 8,
                cached: 0
            })
        );
        assert!(m.generated_bytes > 0);
        assert_eq!(
            out.last(),
            Some(&Disposition::Hold),
            "[DONE] waits for the usage record"
        );
        let replaced: Vec<&Bytes> = out
            .iter()
            .filter_map(|d| match d {
                Disposition::Replace(b) => Some(b),
                _ => None,
            })
            .collect();
        assert_eq!(replaced.len(), 1, "only the usage chunk changes");
        let text = std::str::from_utf8(replaced[0]).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(text.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(json["usage"]["prompt_tokens"], 24);
        assert_eq!(json["usage"]["cost"], 0.0000084);
        assert!(text.ends_with("\n\n"));
    }

    #[test]
    fn adds_cost_to_whole_responses() {
        let body = with_cost(&fixture("chat.json"), NanoUsd(8_400)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["usage"]["cost"], 0.0000084);
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "The capital of France is Paris."
        );
        assert_eq!(with_cost(b"{\"choices\":[]}", NanoUsd(1)), None);
    }

    #[test]
    fn adding_cost_keeps_every_other_member_as_it_was() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"a \"b\" \u00e9"}}],"usage":{"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":1}},"z":[1, 2.50]}"#;
        let out = String::from_utf8(with_cost(body, NanoUsd(1_500)).unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"id":"x","choices":[{"message":{"content":"a \"b\" \u00e9"}}],"usage":{"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":1},"cost":1.5e-6},"z":[1, 2.50]}"#
        );
        // A key written with escapes: the whole body is parsed instead.
        let escaped = br#"{"\u0075sage":{"prompt_tokens":3}}"#;
        let v: serde_json::Value =
            serde_json::from_slice(&with_cost(escaped, NanoUsd(1_500)).unwrap()).unwrap();
        assert_eq!(v["usage"]["cost"], 0.0000015);
        assert_eq!(with_cost(br#"{"usage":null}"#, NanoUsd(1)), None);
        assert_eq!(with_cost(b"[1]", NanoUsd(1)), None);
    }

    #[test]
    fn counts_tool_call_arguments_as_generated() {
        let (m, _) = meter("chat-tools-stream.sse");
        assert!(m.generated_bytes > 10);
        assert!(m.usage.is_some());
    }
}
