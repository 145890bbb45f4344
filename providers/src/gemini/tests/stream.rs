//! Gemini SSE → OpenAI `chat.completion.chunk` events.

use serde_json::{json, Value};

use super::{fixture, parse};
use crate::gemini::StreamTranslator;
use crate::sse::SseSplitter;

/// Runs `input` through a translator in `piece`-byte pieces; the output's events, each
/// `Some(json)` or `None` for `[DONE]`.
fn run(input: &[u8], piece: usize) -> Vec<Option<Value>> {
    let mut translator = StreamTranslator::new("my-gemini");
    let mut out = Vec::new();
    for chunk in input.chunks(piece.max(1)) {
        out.extend(translator.push(chunk));
    }
    out.extend(translator.finish());
    assert!(
        translator.finish().is_empty(),
        "finish() twice adds nothing"
    );
    assert!(
        translator.push(b"data: {}\r\n\r\n").is_empty(),
        "nothing after the end"
    );
    events(&out)
}

fn events(out: &[u8]) -> Vec<Option<Value>> {
    let mut splitter = SseSplitter::new();
    let mut events = splitter.push(out);
    assert!(
        splitter.finish().is_none(),
        "output ends on an event boundary"
    );
    events
        .drain(..)
        .map(|e| {
            assert!(e.raw.starts_with(b"data: ") && e.raw.ends_with(b"\n\n"));
            (e.data != "[DONE]").then(|| parse(e.data.as_bytes()))
        })
        .collect()
}

fn text_of(events: &[Option<Value>]) -> String {
    events
        .iter()
        .flatten()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect()
}

fn usage_of(events: &[Option<Value>]) -> Option<Value> {
    let usage: Vec<&Value> = events
        .iter()
        .flatten()
        .filter(|e| e.get("usage").is_some())
        .collect();
    assert!(usage.len() <= 1, "one usage chunk at most");
    let chunk = usage.first()?;
    assert_eq!(chunk["choices"], json!([]));
    Some(chunk["usage"].clone())
}

fn finishes_of(events: &[Option<Value>]) -> Vec<String> {
    events
        .iter()
        .flatten()
        .filter_map(|e| {
            e["choices"][0]["finish_reason"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

/// Events without `created` (a clock reading), to compare runs.
fn timeless(events: Vec<Option<Value>>) -> Vec<Option<Value>> {
    events
        .into_iter()
        .map(|e| {
            e.map(|mut e| {
                e.as_object_mut().unwrap().remove("created");
                e
            })
        })
        .collect()
}

#[test]
fn translates_the_fixture_stream_whatever_the_chunking() {
    let input = fixture!("generate-stream.sse");
    let whole = run(&input, input.len());
    for piece in [1, 7, input.len()] {
        let events = run(&input, piece);
        assert_eq!(
            text_of(&events),
            "The capital of France is Paris.\n",
            "piece {piece}"
        );
        assert_eq!(
            usage_of(&events),
            Some(json!({"prompt_tokens": 9, "completion_tokens": 8, "total_tokens": 17})),
            "the last usageMetadata counts, piece {piece}"
        );
        assert_eq!(finishes_of(&events), ["stop"], "piece {piece}");
        assert_eq!(
            events.last(),
            Some(&None),
            "ends with [DONE], piece {piece}"
        );
        assert_eq!(timeless(events), timeless(whole.clone()), "piece {piece}");
    }
    let first = whole[0].as_ref().unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["model"], "my-gemini");
    assert_eq!(
        first["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    for event in whole.iter().flatten() {
        assert_eq!(event["id"], "chatcmpl-nJfTZ5WxKc");
    }
    // role, two text pieces, finish, usage, [DONE]
    assert_eq!(whole.len(), 6);
}

#[test]
fn a_stream_cut_short_gets_its_usage_but_no_done() {
    let input = fixture!("generate-stream.sse");
    let second = input.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    // Cut anywhere inside the second event's JSON: its half does not count.
    let json_end = input.len() - 4;
    for cut in second..json_end {
        let events = run(&input[..cut], 7);
        assert_eq!(text_of(&events), "The capital", "cut at {cut}");
        assert!(finishes_of(&events).is_empty(), "cut at {cut}");
        assert_eq!(
            usage_of(&events),
            Some(json!({"prompt_tokens": 9, "completion_tokens": 0, "total_tokens": 9})),
            "cut at {cut}"
        );
        assert!(
            events.last().unwrap().is_some(),
            "no [DONE] when cut at {cut}"
        );
    }
    // The last event is whole even if its blank line never came.
    let events = run(&input[..json_end], 7);
    assert_eq!(events.last(), Some(&None));
    // Nothing received at all, or no usage ever: nothing to add.
    assert!(run(b"", 1).is_empty());
    let no_usage = b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"hi\"}]}, \"finishReason\": \"STOP\"}]}\r\n\r\n";
    let events = run(no_usage, 3);
    assert_eq!(text_of(&events), "hi");
    assert_eq!(finishes_of(&events), ["stop"]);
    assert_eq!(usage_of(&events), None);
    assert!(
        events.last().unwrap().is_some(),
        "no usage, no extra events"
    );
}

#[test]
fn an_error_event_ends_the_stream() {
    let input = fixture!("generate-stream.sse");
    let first_end = input.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut stream = input[..first_end].to_vec();
    stream.extend_from_slice(b"data: {\"error\": {\"code\": 429, \"message\": \"Resource has been exhausted (e.g. check quota).\", \"status\": \"RESOURCE_EXHAUSTED\"}}\r\n\r\n");
    stream.extend_from_slice(&input[first_end..]);
    for piece in [1, 7, stream.len()] {
        let events = run(&stream, piece);
        assert_eq!(text_of(&events), "The capital", "piece {piece}");
        assert_eq!(events.len(), 3, "role, text, error; piece {piece}");
        assert_eq!(
            events[2],
            Some(json!({"error": {
                "message": "Resource has been exhausted (e.g. check quota).",
                "type": "RESOURCE_EXHAUSTED",
                "code": 429
            }}))
        );
    }
}

#[test]
fn a_garbled_event_is_an_error_too() {
    let events = run(b"data: {\"candidates\": [}\r\n\r\ndata: {}\r\n\r\n", 5);
    assert_eq!(events.len(), 1);
    let error = events[0].as_ref().unwrap();
    assert_eq!(error["error"]["type"], "upstream_error");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("gemini"));
}

#[test]
fn streams_function_calls_and_keeps_only_the_latest_usage() {
    let input = concat!(
        "data: {\"candidates\": [{\"content\": {\"role\": \"model\", \"parts\": [{\"text\": \"thinking\", \"thought\": true}]}}], \"usageMetadata\": {\"promptTokenCount\": 40, \"thoughtsTokenCount\": 10}, \"responseId\": \"r-1\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"role\": \"model\", \"parts\": [{\"functionCall\": {\"name\": \"get_weather\", \"args\": {\"location\": \"Paris\"}}}]}}], \"usageMetadata\": {\"promptTokenCount\": 40, \"candidatesTokenCount\": 5, \"thoughtsTokenCount\": 12}}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"role\": \"model\", \"parts\": [{\"functionCall\": {\"name\": \"get_time\", \"args\": {}}}]}, \"finishReason\": \"STOP\"}], \"usageMetadata\": {\"promptTokenCount\": 40, \"candidatesTokenCount\": 9, \"thoughtsTokenCount\": 12, \"cachedContentTokenCount\": 32}}\r\n\r\n",
    );
    let events = run(input.as_bytes(), 11);
    assert_eq!(text_of(&events), "", "thoughts are not content");
    let calls: Vec<&Value> = events
        .iter()
        .flatten()
        .filter_map(|e| e["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(
        calls,
        [
            &json!([{"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}, "index": 0}]),
            &json!([{"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}, "index": 1}]),
        ]
    );
    assert_eq!(finishes_of(&events), ["tool_calls"]);
    assert_eq!(
        usage_of(&events),
        Some(json!({
            "prompt_tokens": 40, "completion_tokens": 21, "total_tokens": 61,
            "prompt_tokens_details": {"cached_tokens": 32},
            "completion_tokens_details": {"reasoning_tokens": 12}
        }))
    );
    assert_eq!(events.last(), Some(&None));
    assert!(events
        .iter()
        .flatten()
        .all(|e| e.get("error").is_some() || e["id"] == "chatcmpl-r-1"));
}

#[test]
fn a_blocked_prompt_finishes_with_content_filter() {
    let input = b"data: {\"promptFeedback\": {\"blockReason\": \"PROHIBITED_CONTENT\"}, \"usageMetadata\": {\"promptTokenCount\": 7}}\r\n\r\n";
    let events = run(input, 4);
    assert_eq!(finishes_of(&events), ["content_filter"]);
    assert_eq!(usage_of(&events).unwrap()["prompt_tokens"], 7);
    assert_eq!(events.last(), Some(&None));
}

#[test]
fn never_panics_on_mangled_streams() {
    let input = fixture!("generate-stream.sse");
    for at in 0..input.len() {
        for byte in [b'{', b'"', b'\n', b'\r', 0xff, b'9'] {
            let mut mangled = input.clone();
            mangled[at] = byte;
            let mut translator = StreamTranslator::new("m");
            let mut out = translator.push(&mangled[..at.min(mangled.len())]);
            out.extend(translator.push(&mangled[at..]));
            out.extend(translator.finish());
            let _ = events(&out);
        }
    }
}
