//! Usage in OpenAI's Chat Completions wire format, whole responses and streams.

use serde::Deserialize;

use super::sse::SseEvent;
use super::Tokens;

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<Usage>,
}

/// The usage of a non-streaming response body, if it reports one.
pub fn usage_of_response(body: &[u8]) -> Option<Tokens> {
    let parsed: WithUsage = serde_json::from_slice(body).ok()?;
    parsed.usage.map(|u| Tokens {
        input: u.prompt_tokens,
        output: u.completion_tokens,
    })
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

/// Follows an OpenAI chat stream event by event: the usage when it arrives, and the
/// amount of generated text for an estimate when it never does.
#[derive(Debug, Default)]
pub struct StreamMeter {
    pub usage: Option<Tokens>,
    /// Bytes of generated content (text and tool-call arguments) seen so far.
    pub generated_bytes: usize,
    pub done: bool,
}

/// What to do with one event of the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Disposition {
    Forward,
    /// The usage-only chunk that TokenRoute asked for on its own behalf; the client
    /// did not ask for `stream_options.include_usage`, so it is not shown.
    Drop,
}

impl StreamMeter {
    pub fn observe(&mut self, event: &SseEvent, client_wants_usage: bool) -> Disposition {
        if event.data == "[DONE]" {
            self.done = true;
            return Disposition::Forward;
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
        if let Some(u) = chunk.usage {
            self.usage = Some(Tokens {
                input: u.prompt_tokens,
                output: u.completion_tokens,
            });
            if chunk.choices.is_empty() && !client_wants_usage {
                return Disposition::Drop;
            }
        }
        Disposition::Forward
    }
}

#[cfg(test)]
mod tests {
    use super::super::sse::SseSplitter;
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../../shared/fixtures/providers/openai/{name}",
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
                output: 8
            })
        );
        assert_eq!(usage_of_response(b"{\"choices\":[]}"), None);
        assert_eq!(usage_of_response(b"not json"), None);
    }

    fn meter(file: &str, wants_usage: bool) -> (StreamMeter, usize, usize) {
        let mut splitter = SseSplitter::new();
        let mut m = StreamMeter::default();
        let (mut forwarded, mut dropped) = (0, 0);
        for e in splitter.push(&fixture(file)) {
            match m.observe(&e, wants_usage) {
                Disposition::Forward => forwarded += 1,
                Disposition::Drop => dropped += 1,
            }
        }
        (m, forwarded, dropped)
    }

    #[test]
    fn reads_stream_usage_from_the_last_chunk() {
        let (m, _, dropped) = meter("chat-stream.sse", true);
        assert!(m.done);
        assert_eq!(dropped, 0);
        let usage = m.usage.unwrap();
        assert!(usage.input > 0 && usage.output > 0);
        assert!(m.generated_bytes > 0);
    }

    #[test]
    fn drops_the_usage_chunk_only_when_the_client_did_not_ask_for_it() {
        let (with, fwd_with, _) = meter("chat-stream.sse", true);
        let (without, fwd_without, dropped) = meter("chat-stream.sse", false);
        assert_eq!(dropped, 1);
        assert_eq!(fwd_with, fwd_without + 1);
        assert_eq!(with.usage, without.usage, "usage is metered either way");
    }

    #[test]
    fn counts_tool_call_arguments_as_generated() {
        let (m, _, _) = meter("chat-tools-stream.sse", true);
        assert!(m.generated_bytes > 10);
        assert!(m.usage.is_some());
    }
}
