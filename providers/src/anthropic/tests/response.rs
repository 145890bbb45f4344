//! Whole answers → `chat.completion`, and error bodies.

use serde_json::json;

use super::{fixture, json};
use crate::anthropic::{error_message, from_response};
use crate::TranslateError;

#[test]
fn translates_the_fixture_message() {
    let body = from_response(&fixture("messages.json"), "claude-haiku").unwrap();
    let completion = json(&body);
    assert_eq!(completion["id"], "msg_01XFDUDYJgAACzvnptvVoYEL");
    assert_eq!(completion["object"], "chat.completion");
    assert!(completion["created"].is_u64());
    assert_eq!(completion["model"], "claude-haiku", "the client's model id");
    let choice = &completion["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(
        choice["message"]["content"],
        "The capital of France is Paris."
    );
    assert!(choice["message"].get("tool_calls").is_none());
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(
        completion["usage"],
        json!({
            "prompt_tokens": 21,
            "completion_tokens": 10,
            "total_tokens": 31,
            "prompt_tokens_details": {"cached_tokens": 0},
        })
    );
}

#[test]
fn joins_text_turns_tool_use_into_tool_calls_and_counts_cached_prompt_tokens() {
    let anthropic = json!({
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Let me check "},
            {"type": "text", "text": "the weather."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"location": "Paris, France", "unit": "c"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 5, "cache_creation_input_tokens": 100,
                  "cache_read_input_tokens": 200, "output_tokens": 40},
    });
    let completion = json(&from_response(anthropic.to_string().as_bytes(), "m").unwrap());
    let message = &completion["choices"][0]["message"];
    assert_eq!(message["content"], "Let me check the weather.");
    let calls = message["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["id"], "toolu_1");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let arguments = calls[0]["function"]["arguments"].as_str().unwrap();
    assert_eq!(
        json(arguments.as_bytes()),
        json!({"location": "Paris, France", "unit": "c"})
    );
    assert_eq!(calls[1]["function"]["arguments"], "{}");
    assert_eq!(completion["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        completion["usage"],
        json!({
            "prompt_tokens": 305,
            "completion_tokens": 40,
            "total_tokens": 345,
            "prompt_tokens_details": {"cached_tokens": 200},
        })
    );
}

#[test]
fn content_is_null_beside_tool_calls_when_nothing_was_said() {
    let anthropic = json!({
        "id": "msg_1",
        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    });
    let completion = json(&from_response(anthropic.to_string().as_bytes(), "m").unwrap());
    assert!(completion["choices"][0]["message"]["content"].is_null());
}

#[test]
fn maps_every_stop_reason() {
    for (stop_reason, finish_reason) in [
        (json!("end_turn"), "stop"),
        (json!("stop_sequence"), "stop"),
        (json!("max_tokens"), "length"),
        (json!("tool_use"), "tool_calls"),
        (json!("refusal"), "content_filter"),
        (json!("pause_turn"), "stop"),
        (json!("something_new"), "stop"),
        (json!(null), "stop"),
    ] {
        let anthropic = json!({
            "id": "msg_1",
            "content": [{"type": "text", "text": "x"}],
            "stop_reason": stop_reason,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        });
        let completion = json(&from_response(anthropic.to_string().as_bytes(), "m").unwrap());
        assert_eq!(
            completion["choices"][0]["finish_reason"], finish_reason,
            "{stop_reason}"
        );
    }
}

#[test]
fn a_missing_usage_stays_missing_rather_than_zero() {
    let anthropic = json!({"id": "msg_1", "content": [], "stop_reason": "end_turn"});
    let completion = json(&from_response(anthropic.to_string().as_bytes(), "m").unwrap());
    assert!(completion.get("usage").is_none());
    assert_eq!(completion["choices"][0]["message"]["content"], "");
}

#[test]
fn an_error_body_is_a_bad_answer_that_quotes_anthropic() {
    let err = from_response(&fixture("error-529.json"), "m").unwrap_err();
    let TranslateError::BadAnswer { provider, reason } = err else {
        panic!("{err:?}");
    };
    assert_eq!(provider, "Anthropic");
    assert!(reason.contains("Overloaded"), "{reason}");
}

#[test]
fn reads_the_message_of_an_error_body() {
    assert_eq!(
        error_message(&fixture("error-529.json")).as_deref(),
        Some("Overloaded")
    );
    for body in [
        &b""[..],
        b"not json",
        b"{}",
        b"{\"error\": \"text\"}",
        b"{\"type\":\"error\",\"error\":{\"type\":\"api_error\"}}",
        b"{\"type\":\"error\",\"error\":{\"message\":\"\"}}",
        &fixture("messages.json"),
    ] {
        assert_eq!(
            error_message(body),
            None,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}
