//! Streams → `chat.completion.chunk` events.

use serde_json::{json, Value};

use super::{fixture, json};
use crate::anthropic::StreamTranslator;
use crate::sse::SseSplitter;

/// Feeds `input` in `piece`-byte pieces, then finishes.
fn translate(input: &[u8], piece: usize) -> Vec<u8> {
    let mut translator = StreamTranslator::new("claude-haiku");
    let mut out = Vec::new();
    for chunk in input.chunks(piece) {
        out.extend(translator.push(chunk));
    }
    out.extend(translator.finish());
    out
}

/// The `data` of each OpenAI event; `[DONE]` as `Value::Null`.
fn events(out: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(out).unwrap();
    assert!(text.is_empty() || text.ends_with("\n\n"), "{text:?}");
    text.split_terminator("\n\n")
        .map(|event| {
            let data = event.strip_prefix("data: ").unwrap();
            if data == "[DONE]" {
                Value::Null
            } else {
                json(data.as_bytes())
            }
        })
        .collect()
}

/// What a client reassembles from the chunks.
#[derive(Debug, Default, PartialEq)]
struct Answer {
    text: String,
    /// (id, name, arguments) per tool-call index.
    tool_calls: Vec<(String, String, String)>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    done: bool,
}

fn reassemble(events: &[Value]) -> Answer {
    let mut answer = Answer::default();
    for event in events {
        if event.is_null() {
            answer.done = true;
            continue;
        }
        assert_eq!(event["object"], "chat.completion.chunk");
        assert_eq!(event["model"], "claude-haiku");
        assert!(event["id"].as_str().unwrap().starts_with("msg_"));
        assert!(event["created"].is_u64());
        if !event["usage"].is_null() {
            assert_eq!(event["choices"], json!([]));
            answer.usage = Some(event["usage"].clone());
        }
        for choice in event["choices"].as_array().unwrap() {
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str() {
                answer.text.push_str(text);
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let index = call["index"].as_u64().unwrap() as usize;
                if let Some(id) = call["id"].as_str() {
                    assert_eq!(index, answer.tool_calls.len(), "tool calls count from 0");
                    let name = call["function"]["name"].as_str().unwrap().to_string();
                    answer
                        .tool_calls
                        .push((id.to_string(), name, String::new()));
                }
                let arguments = call["function"]["arguments"].as_str().unwrap();
                answer.tool_calls[index].2.push_str(arguments);
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                assert_eq!(delta, &json!({}));
                answer.finish_reason = Some(reason.to_string());
            }
        }
    }
    answer
}

#[test]
fn translates_the_text_stream_whatever_the_chunking() {
    let input = fixture("messages-stream.sse");
    let whole = translate(&input, input.len());
    assert_eq!(translate(&input, 1), whole, "byte by byte");
    assert_eq!(translate(&input, 7), whole, "7-byte pieces");

    let events = events(&whole);
    assert_eq!(
        events[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(events[0]["id"], "msg_01Rk5MuTf1SSkqbUV9ZzKq6h");
    assert_eq!(events.last(), Some(&Value::Null), "ends with [DONE]");
    assert_eq!(
        reassemble(&events),
        Answer {
            text: "The capital of France is Paris.".into(),
            tool_calls: Vec::new(),
            finish_reason: Some("stop".into()),
            usage: Some(json!({
                "prompt_tokens": 21,
                "completion_tokens": 10,
                "total_tokens": 31,
                "prompt_tokens_details": {"cached_tokens": 0},
            })),
            done: true,
        }
    );
    // role, two text pieces, finish, usage, [DONE]: ping and block start/stop say nothing.
    assert_eq!(events.len(), 6);
}

#[test]
fn reassembles_the_tool_call_of_the_tool_use_stream() {
    let input = fixture("tool-use-stream.sse");
    let whole = translate(&input, input.len());
    assert_eq!(translate(&input, 1), whole);
    assert_eq!(translate(&input, 7), whole);

    // The input the fixture streams, from its own input_json_delta pieces.
    let mut streamed_input = String::new();
    let mut splitter = SseSplitter::new();
    for event in splitter.push(&input) {
        let data = json(event.data.as_bytes());
        if data["delta"]["type"] == "input_json_delta" {
            streamed_input.push_str(data["delta"]["partial_json"].as_str().unwrap());
        }
    }
    let expected_input = json(streamed_input.as_bytes());
    assert_eq!(expected_input, json!({"location": "Paris, France"}));

    let answer = reassemble(&events(&whole));
    assert_eq!(answer.text, "Let me check the weather.");
    assert_eq!(answer.tool_calls.len(), 1);
    let (id, name, arguments) = &answer.tool_calls[0];
    assert_eq!(id, "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(name, "get_weather");
    assert_eq!(json(arguments.as_bytes()), expected_input);
    assert_eq!(answer.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(answer.usage.unwrap()["completion_tokens"], 89);
    assert!(answer.done);
}

#[test]
fn numbers_several_tool_calls_from_zero_apart_from_text_blocks() {
    let input = b"event: message_start
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}

data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}

data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_a\",\"name\":\"a\",\"input\":{}}}

data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"x\\\":1}\"}}

data: {\"type\":\"content_block_stop\",\"index\":1}

data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_b\",\"name\":\"b\",\"input\":{}}}

data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}

data: {\"type\":\"content_block_stop\",\"index\":2}

data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":20}}

data: {\"type\":\"message_stop\"}

";
    let answer = reassemble(&events(&translate(input, 5)));
    assert_eq!(
        answer.tool_calls,
        vec![
            ("toolu_a".into(), "a".into(), "{\"x\":1}".into()),
            ("toolu_b".into(), "b".into(), "{}".into()),
        ]
    );
}

#[test]
fn a_mid_stream_error_becomes_one_error_event_and_ends_the_stream() {
    let text = fixture("messages-stream.sse");
    let cut = find(&text, b"event: content_block_stop");
    let mut input = text[..cut].to_vec();
    input.extend_from_slice(b"event: error\ndata: ");
    input.extend_from_slice(&fixture("error-529.json"));
    input.extend_from_slice(b"\n\n");
    // Anything after the error is not part of the answer.
    input.extend_from_slice(&text[cut..]);

    for piece in [1, 7, input.len()] {
        let events = events(&translate(&input, piece));
        let last = events.last().unwrap();
        assert_eq!(
            last,
            &json!({"error": {
                "message": "Overloaded",
                "type": "upstream_error",
                "param": null,
                "code": "overloaded_error",
            }})
        );
        let answer = reassemble(&events[..events.len() - 1]);
        assert_eq!(answer.text, "The capital of France is Paris.");
        assert!(!answer.done && answer.finish_reason.is_none() && answer.usage.is_none());
    }
}

#[test]
fn an_error_event_with_an_unreadable_body_is_still_an_error() {
    let out = translate(b"event: error\ndata: <html>502</html>\n\n", 3);
    let events = events(&out);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["error"]["code"], "api_error");
    assert!(events[0]["error"]["message"].is_string());
}

#[test]
fn a_truncated_stream_is_metered_but_not_done() {
    for name in ["messages-stream.sse", "tool-use-stream.sse"] {
        let input = fixture(name);
        let half = &input[..input.len() / 2];
        for piece in [1, 7, half.len()] {
            let mut translator = StreamTranslator::new("claude-haiku");
            let mut pushed = Vec::new();
            for chunk in half.chunks(piece) {
                pushed.extend(translator.push(chunk));
            }
            let pushed = events(&pushed);
            assert!(pushed.iter().all(|e| e["usage"].is_null()), "{name}");
            let finished = events(&translator.finish());
            assert_eq!(finished.len(), 1, "{name}: only the usage chunk");
            assert_eq!(finished[0]["choices"], json!([]));
            let usage = &finished[0]["usage"];
            let input_tokens = if name == "messages-stream.sse" {
                21
            } else {
                472
            };
            assert_eq!(usage["prompt_tokens"], input_tokens, "{name}");
            assert!(!reassemble(&pushed).done);
            assert!(translator.finish().is_empty(), "finish is said once");
        }
    }
}

#[test]
fn a_stream_cut_before_any_usage_yields_nothing_at_the_end() {
    let input = fixture("messages-stream.sse");
    for cut in [0, 10, 100] {
        assert!(translate(&input[..cut], 7).is_empty(), "cut at {cut}");
    }
}

#[test]
fn a_last_event_without_its_blank_line_still_completes_the_stream() {
    let input = fixture("messages-stream.sse");
    let trimmed = input.trim_ascii_end();
    let answer = reassemble(&events(&translate(trimmed, 7)));
    assert!(answer.done);
    assert_eq!(answer.usage.unwrap()["completion_tokens"], 10);
}

#[test]
fn ignores_pings_thinking_and_unknown_events() {
    let input = b"event: message_start
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_3\",\"usage\":{\"input_tokens\":4,\"cache_creation_input_tokens\":10,\"cache_read_input_tokens\":30,\"output_tokens\":1}}}

event: ping
data: {\"type\":\"ping\"}

: a comment

event: brand_new
data: {\"type\":\"brand_new\",\"stuff\":[1,2,3]}

data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}

data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}

data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"s\"}}

data: {\"type\":\"content_block_stop\",\"index\":0}

data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}

data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}

data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{\"output_tokens\":7}}

data: {\"type\":\"message_stop\"}

";
    let events = events(&translate(input, 11));
    // role, "Hi", finish, usage, [DONE]
    assert_eq!(events.len(), 5, "{events:?}");
    let answer = reassemble(&events);
    assert_eq!(answer.text, "Hi");
    assert_eq!(answer.finish_reason.as_deref(), Some("length"));
    assert_eq!(
        answer.usage,
        Some(json!({
            "prompt_tokens": 44,
            "completion_tokens": 7,
            "total_tokens": 51,
            "prompt_tokens_details": {"cached_tokens": 30},
        }))
    );
}

#[test]
fn nothing_is_said_after_the_end() {
    let input = fixture("messages-stream.sse");
    let mut translator = StreamTranslator::new("claude-haiku");
    assert!(!translator.push(&input).is_empty());
    assert!(translator.push(&input).is_empty());
    assert!(translator.finish().is_empty());
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}
