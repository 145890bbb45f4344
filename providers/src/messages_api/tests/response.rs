use serde_json::json;

use super::{fixture, json};
use crate::messages_api::from_openai_response;
use crate::TranslateError;

#[test]
fn the_openai_chat_fixture_becomes_an_anthropic_message() {
    let answer =
        from_openai_response(&fixture("openai/chat.json"), "claude-via-tokenroute").unwrap();
    assert_eq!(
        json(&answer),
        json!({
            "id": "msg_chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
            "type": "message",
            "role": "assistant",
            "model": "claude-via-tokenroute",
            "content": [{"type": "text", "text": "The capital of France is Paris."}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 24, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 8}
        })
    );
}

#[test]
fn tool_calls_become_tool_use_blocks_with_cached_tokens_and_cost() {
    let openai = json!({
        "id": "chatcmpl-T1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Checking both.", "refusal": null,
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}},
                {"id": "call_c", "type": "function", "function": {"name": "broken", "arguments": "{\"unterminated"}}
            ]}}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 40, "total_tokens": 1040,
                  "prompt_tokens_details": {"cached_tokens": 768}, "cost": 0.000123}
    });
    let answer = from_openai_response(openai.to_string().as_bytes(), "claude-3-5-haiku").unwrap();
    assert_eq!(
        json(&answer),
        json!({
            "id": "msg_chatcmpl-T1",
            "type": "message",
            "role": "assistant",
            "model": "claude-3-5-haiku",
            "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"location": "Paris"}},
                {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}},
                {"type": "tool_use", "id": "call_c", "name": "broken", "input": "{\"unterminated"}
            ],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": {"input_tokens": 232, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 768, "output_tokens": 40, "cost": 0.000123}
        })
    );
}

#[test]
fn finish_reasons_map_to_stop_reasons() {
    for (finish, tool_calls, stop) in [
        (json!("stop"), false, "end_turn"),
        (json!("length"), false, "max_tokens"),
        (json!("tool_calls"), true, "tool_use"),
        (json!("content_filter"), false, "refusal"),
        (json!(null), false, "end_turn"),
        // Some OpenAI-compatible providers end tool calls with `stop`.
        (json!("stop"), true, "tool_use"),
    ] {
        let mut message = json!({"role": "assistant", "content": "x"});
        if tool_calls {
            message["tool_calls"] =
                json!([{"id": "c", "function": {"name": "f", "arguments": "{}"}}]);
        }
        let openai = json!({"id": "msg_kept", "choices": [{"index": 0, "message": message, "finish_reason": finish}]});
        let answer = json(&from_openai_response(openai.to_string().as_bytes(), "m").unwrap());
        assert_eq!(answer["stop_reason"], stop, "{finish}");
        assert_eq!(answer["id"], "msg_kept");
        // No usage reported: zeros, in Anthropic's shape.
        assert_eq!(answer["usage"]["output_tokens"], 0);
    }
}

#[test]
fn refusals_and_empty_answers() {
    let refusal = json!({"id": "x", "choices": [{"message": {"content": null, "refusal": "I can't help with that."}, "finish_reason": "stop"}]});
    let answer = json(&from_openai_response(refusal.to_string().as_bytes(), "m").unwrap());
    assert_eq!(
        answer["content"],
        json!([{"type": "text", "text": "I can't help with that."}])
    );
    let empty =
        json!({"id": "x", "choices": [{"message": {"content": ""}, "finish_reason": "stop"}]});
    let answer = json(&from_openai_response(empty.to_string().as_bytes(), "m").unwrap());
    assert_eq!(answer["content"], json!([]));
}

#[test]
fn malformed_answers_are_errors_not_panics() {
    for body in [
        &b""[..],
        b"null",
        b"[]",
        b"{}",
        b"{\"choices\": []}",
        b"{\"choices\": [{\"index\": 0}]}",
        b"{\"choices\": \"many\"}",
        b"{\"error\": {\"message\": \"boom\"}}",
    ] {
        assert!(
            matches!(
                from_openai_response(body, "m"),
                Err(TranslateError::BadAnswer { .. })
            ),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let body = fixture("openai/chat.json");
    for end in 0..body.len() {
        let _ = from_openai_response(&body[..end], "m");
    }
    for at in 0..body.len() {
        for replacement in [b'0', b'"', b'[', b'}', b'n'] {
            let mut mangled = body.clone();
            mangled[at] = replacement;
            let _ = from_openai_response(&mangled, "m");
        }
    }
}
