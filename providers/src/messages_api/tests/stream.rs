use serde_json::{json, Value};

use super::{events, fixture, fixture_events};
use crate::messages_api::StreamTranslator;

/// The whole translation of `input` fed in `piece`-byte pieces.
fn translate(input: &[u8], piece: usize) -> Vec<u8> {
    let mut translator = StreamTranslator::new("claude-via-tokenroute");
    let mut out = Vec::new();
    for chunk in input.chunks(piece.max(1)) {
        out.extend(translator.push(chunk));
    }
    out.extend(translator.finish());
    assert!(
        translator.push(b"data: [DONE]\n\n").is_empty(),
        "nothing after the end"
    );
    assert!(translator.finish().is_empty());
    out
}

/// The translation, checked to be the same whatever the chunking.
fn translate_any_chunking(input: &[u8]) -> Vec<(String, Value)> {
    let whole = translate(input, input.len());
    for piece in [1, 7] {
        assert_eq!(
            String::from_utf8_lossy(&translate(input, piece)),
            String::from_utf8_lossy(&whole),
            "{piece}-byte pieces"
        );
    }
    events(&whole)
}

fn types(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

/// The generated text of an OpenAI chunk transcript.
fn openai_text(sse: &[u8]) -> String {
    let mut splitter = crate::sse::SseSplitter::new();
    splitter
        .push(sse)
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

fn data_lines(chunks: &[Value]) -> Vec<u8> {
    let mut sse: Vec<u8> = chunks
        .iter()
        .flat_map(|c| format!("data: {c}\n\n").into_bytes())
        .collect();
    sse.extend_from_slice(b"data: [DONE]\n\n");
    sse
}

fn chunk(delta: Value, finish_reason: Value) -> Value {
    json!({"id": "chatcmpl-X", "object": "chat.completion.chunk",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})
}

#[test]
fn the_openai_text_stream_becomes_anthropic_events_whatever_the_chunking() {
    let input = fixture("openai/chat-stream.sse");
    let events = translate_any_chunking(&input);
    assert_eq!(
        types(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let start = &events[0].1["message"];
    assert_eq!(start["id"], "msg_chatcmpl-B9MJ2kLzQ");
    assert_eq!(start["model"], "claude-via-tokenroute");
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["usage"]["input_tokens"], 0);
    assert_eq!(start["usage"]["output_tokens"], 0);

    let text: String = events
        .iter()
        .filter(|(name, _)| name == "content_block_delta")
        .map(|(_, e)| e["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, openai_text(&input));
    assert_eq!(text, "The capital of France is Paris.");

    assert_eq!(
        events[5].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"input_tokens": 24, "cache_creation_input_tokens": 0,
                         "cache_read_input_tokens": 0, "output_tokens": 8}})
    );
}

#[test]
fn the_openai_tool_stream_becomes_a_tool_use_block_whose_input_reassembles() {
    let events = translate_any_chunking(&fixture("openai/chat-tools-stream.sse"));
    assert_eq!(
        types(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        events[1].1["content_block"],
        json!({"type": "tool_use", "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "name": "get_weather", "input": {}})
    );
    let input: String = events
        .iter()
        .filter(|(name, e)| name == "content_block_delta" && e["index"] == 0)
        .map(|(_, e)| e["delta"]["partial_json"].as_str().unwrap())
        .collect();
    let input: Value = serde_json::from_str(&input).unwrap();
    assert_eq!(input, json!({"location": "Paris, France"}));
    assert_eq!(events[5].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(events[5].1["usage"]["input_tokens"], 81);
    assert_eq!(events[5].1["usage"]["output_tokens"], 17);
}

#[test]
fn events_have_the_shape_of_anthropics_own() {
    // Same events, with the same fields, as Anthropic's transcripts (less its `ping`).
    for (openai, anthropic) in [
        ("openai/chat-stream.sse", "anthropic/messages-stream.sse"),
        (
            "openai/chat-tools-stream.sse",
            "anthropic/tool-use-stream.sse",
        ),
    ] {
        let ours = translate_any_chunking(&fixture(openai));
        let theirs: Vec<_> = fixture_events(anthropic)
            .into_iter()
            .filter(|(name, _)| name != "ping")
            .collect();
        for (name, data) in &ours {
            let (_, model) = theirs
                .iter()
                .find(|(n, d)| n == name && kind(d) == kind(data))
                .unwrap_or_else(|| panic!("{anthropic} has no {name} like {data}"));
            assert_eq!(keys(data), keys(model), "{name}");
            for field in ["message", "delta", "content_block"] {
                if let Some(inner) = model.get(field) {
                    assert_eq!(keys(&data[field]), keys(inner), "{name}.{field}");
                }
            }
        }
    }
}

/// What sort of delta or block an event carries.
fn kind(event: &Value) -> (&Value, &Value) {
    (&event["delta"]["type"], &event["content_block"]["type"])
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    keys
}

#[test]
fn text_then_several_tool_calls_close_each_block_before_the_next() {
    let tool = |index: u32, id: Option<&str>, name: Option<&str>, args: &str| {
        let mut call = json!({"index": index, "function": {"arguments": args}});
        if let Some(id) = id {
            call["id"] = id.into();
            call["type"] = "function".into();
        }
        if let Some(name) = name {
            call["function"]["name"] = name.into();
        }
        chunk(json!({"tool_calls": [call]}), Value::Null)
    };
    let input = data_lines(&[
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": "Checking."}), Value::Null),
        tool(0, Some("call_a"), Some("get_weather"), ""),
        tool(0, None, None, "{\"city\":"),
        tool(0, None, None, "\"Paris\"}"),
        tool(1, Some("call_b"), Some("get_time"), "{\"tz\":\"CET\"}"),
        // Usage in the same chunk as the finish reason, as some providers send it.
        json!({"id": "chatcmpl-X", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
               "usage": {"prompt_tokens": 50, "completion_tokens": 20,
                         "prompt_tokens_details": {"cached_tokens": 10}, "cost": 0.5}}),
    ]);
    let events = translate_any_chunking(&input);
    assert_eq!(
        types(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let indexes: Vec<i64> = events
        .iter()
        .filter_map(|(_, e)| e.get("index").and_then(Value::as_i64))
        .collect();
    assert_eq!(indexes, [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]);
    assert_eq!(events[8].1["content_block"]["id"], "call_b");
    assert_eq!(
        events[11].1["usage"],
        json!({"input_tokens": 40, "cache_creation_input_tokens": 0,
               "cache_read_input_tokens": 10, "output_tokens": 20, "cost": 0.5})
    );
}

#[test]
fn an_error_event_ends_the_stream_in_anthropics_error_shape() {
    let mut input = data_lines(&[chunk(json!({"content": "Hel"}), Value::Null)]);
    input.truncate(input.len() - b"data: [DONE]\n\n".len());
    input.extend_from_slice(
        b"data: {\"error\":{\"message\":\"Overloaded\",\"type\":\"server_error\",\"code\":\"overloaded\"}}\n\n",
    );
    input.extend_from_slice(&data_lines(&[chunk(
        json!({"content": "lo"}),
        json!("stop"),
    )]));
    let events = translate_any_chunking(&input);
    assert_eq!(
        types(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(
        events[3].1,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );

    // An error before anything else: just the error.
    let events =
        translate_any_chunking(b"data: {\"error\":{\"message\":\"slow down\",\"code\":429}}\n\n");
    assert_eq!(
        events,
        [(
            "error".to_owned(),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
        )]
    );
}

#[test]
fn a_stream_cut_short_ends_only_if_it_had_finished() {
    let text = chunk(json!({"content": "Hi"}), Value::Null);
    let finished = chunk(json!({}), json!("length"));
    // No finish reason: the block is closed, but no message_delta / message_stop.
    let cut = format!("data: {text}\n\n");
    let events = translate_any_chunking(cut.as_bytes());
    assert_eq!(
        types(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop"
        ]
    );
    // Finished, but the usage chunk and [DONE] never came (the last event even lacks its
    // blank line): it still ends, with what is known.
    let cut = format!("data: {text}\n\ndata: {finished}");
    let events = translate_any_chunking(cut.as_bytes());
    assert_eq!(
        types(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        events[4].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": null},
               "usage": {"output_tokens": 0}})
    );
    // Nothing at all: nothing out.
    assert!(translate(b"", 1).is_empty());
    // Only [DONE]: a complete, empty message.
    let events = translate_any_chunking(b"data: [DONE]\n\n");
    assert_eq!(
        types(&events),
        ["message_start", "message_delta", "message_stop"]
    );
}

#[test]
fn crlf_comments_other_choices_and_junk_are_tolerated() {
    let mut input =
        b": keep-alive\r\n\r\ndata: not json\r\n\r\ndata: {\"choices\": 5}\r\n\r\n".to_vec();
    let second_choice = json!({"id": "c", "choices": [{"index": 1, "delta": {"content": "other"}, "finish_reason": null}]});
    input.extend_from_slice(format!("data: {second_choice}\r\n\r\n").as_bytes());
    for c in [
        chunk(json!({"content": "only"}), Value::Null),
        chunk(json!({}), json!("stop")),
    ] {
        input.extend_from_slice(format!("data: {c}\r\n\r\n").as_bytes());
    }
    input.extend_from_slice(b"data: [DONE]\r\n\r\n");
    let events = translate_any_chunking(&input);
    let text: Vec<&str> = events
        .iter()
        .filter_map(|(_, e)| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, ["only"]);
    assert_eq!(types(&events).last(), Some(&"message_stop"));
}

#[test]
fn mangled_streams_never_panic_and_stay_well_formed() {
    for name in ["openai/chat-stream.sse", "openai/chat-tools-stream.sse"] {
        let input = fixture(name);
        for at in (0..input.len()).step_by(3) {
            for replacement in [b'\n', b'"', b'{', b'1', 0xff] {
                let mut mangled = input.clone();
                mangled[at] = replacement;
                let out = translate(&mangled, 64);
                let events = events(&out);
                if let Some((first, _)) = events.first() {
                    assert!(first == "message_start" || first == "error", "{first}");
                }
            }
        }
    }
}
