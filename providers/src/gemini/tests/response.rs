//! Gemini answer → OpenAI `chat.completion`; error bodies.

use serde_json::{json, Value};

use super::{fixture, parse};
use crate::gemini::{error_message, from_response};
use crate::TranslateError;

fn translate(answer: &Value) -> Value {
    parse(&from_response(answer.to_string().as_bytes(), "gemini-flash").unwrap())
}

#[test]
fn translates_the_fixture_answer() {
    let out = parse(&from_response(&fixture!("generate.json"), "my-gemini").unwrap());
    assert_eq!(out["id"], "chatcmpl-mJfTZ4ajJ7-Hz7IPl_bZmAE");
    assert_eq!(out["object"], "chat.completion");
    assert_eq!(out["model"], "my-gemini");
    assert!(out["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(
        out["choices"],
        json!([{
            "index": 0,
            "message": {"role": "assistant", "content": "The capital of France is Paris.\n"},
            "logprobs": null,
            "finish_reason": "stop"
        }])
    );
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 9, "completion_tokens": 8, "total_tokens": 17})
    );
}

#[test]
fn translates_function_calls_thinking_and_cache_counts() {
    let out = translate(&json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "thinking about it", "thought": true},
                {"text": "Let me check. "},
                {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}},
                {"functionCall": {"name": "get_time"}},
                {"functionCall": {"name": "own_id", "args": {}, "id": "g-1"}}
            ]},
            "finishReason": "STOP"
        }],
        "usageMetadata": {
            "promptTokenCount": 100, "candidatesTokenCount": 20, "thoughtsTokenCount": 30,
            "cachedContentTokenCount": 64, "totalTokenCount": 150
        },
        "responseId": "r1"
    }));
    let choice = &out["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "Let me check. ");
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([
            {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
            {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            {"id": "g-1", "type": "function", "function": {"name": "own_id", "arguments": "{}"}}
        ])
    );
    assert_eq!(
        out["usage"],
        json!({
            "prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 64},
            "completion_tokens_details": {"reasoning_tokens": 30}
        })
    );
}

#[test]
fn maps_finish_reasons() {
    for (gemini, openai) in [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("OTHER", "stop"),
        ("SOMETHING_NEW", "stop"),
    ] {
        let out = translate(&json!({"candidates": [{"finishReason": gemini}]}));
        assert_eq!(out["choices"][0]["finish_reason"], openai, "{gemini}");
        assert_eq!(
            out["choices"][0]["message"]["content"],
            Value::Null,
            "{gemini}"
        );
        assert!(out.get("usage").is_none());
    }
}

#[test]
fn turns_every_candidate_into_a_choice_and_a_blocked_prompt_into_a_filtered_one() {
    let out = translate(&json!({"candidates": [
        {"index": 0, "content": {"parts": [{"text": "a"}]}, "finishReason": "STOP"},
        {"index": 1, "content": {"parts": [{"text": "b"}]}, "finishReason": "MAX_TOKENS"}
    ]}));
    assert_eq!(out["choices"][1]["index"], 1);
    assert_eq!(out["choices"][1]["message"]["content"], "b");
    assert_eq!(out["choices"][1]["finish_reason"], "length");

    let out = translate(&json!({
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}
    }));
    assert_eq!(out["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(out["usage"]["prompt_tokens"], 5);
    assert_eq!(out["usage"]["completion_tokens"], 0);
}

#[test]
fn refuses_malformed_answers_without_panicking() {
    for body in [
        &b""[..],
        b"not json",
        b"[]",
        b"null",
        b"{}",
        b"{\"candidates\": \"x\"}",
        b"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": 5}]}}]}",
        b"{\"candidates\": [], \"usageMetadata\": {\"promptTokenCount\": -1}}",
    ] {
        assert!(
            matches!(
                from_response(body, "m"),
                Err(TranslateError::BadAnswer {
                    provider: "gemini",
                    ..
                })
            ),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let error = from_response(&fixture!("error-429.json"), "m").unwrap_err();
    assert!(
        error.to_string().contains("Resource has been exhausted"),
        "{error}"
    );
    let whole = fixture!("generate.json");
    for cut in 0..whole.len() - 2 {
        assert!(from_response(&whole[..cut], "m").is_err(), "cut at {cut}");
    }
}

#[test]
fn reads_error_messages() {
    assert_eq!(
        error_message(&fixture!("error-429.json")).as_deref(),
        Some("Resource has been exhausted (e.g. check quota).")
    );
    assert_eq!(
        error_message(
            br#"[{"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}]"#
        )
        .as_deref(),
        Some("bad")
    );
    for body in [
        &b"nope"[..],
        b"{}",
        b"{\"error\": {}}",
        b"{\"error\": {\"message\": \"\"}}",
        b"[]",
        b"{\"error\": 5}",
    ] {
        assert_eq!(
            error_message(body),
            None,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}
