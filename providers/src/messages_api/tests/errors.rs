use serde_json::json;

use super::{fixture, json};
use crate::messages_api::error_body;

#[test]
fn the_openai_rate_limit_fixture_becomes_anthropics_rate_limit_error() {
    let body = json(&error_body(429, &fixture("openai/error-429.json")));
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Rate limit reached for gpt-4o-mini"));
    // The same fields as Anthropic's own error transcript.
    let theirs = json(&fixture("anthropic/error-529.json"));
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&body), keys(&theirs));
    assert_eq!(keys(&body["error"]), keys(&theirs["error"]));
}

#[test]
fn the_status_decides_the_type() {
    let openai = json!({"error": {"message": "m", "type": "invalid_request_error", "code": "x"}})
        .to_string();
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "api_error"),
        (529, "overloaded_error"),
        // No rule for the status: the OpenAI type decides.
        (402, "invalid_request_error"),
        (422, "invalid_request_error"),
    ] {
        let body = json(&error_body(status, openai.as_bytes()));
        assert_eq!(body["error"]["type"], kind, "{status}");
        assert_eq!(body["error"]["message"], "m");
    }
    // TokenRoute's out-of-credits error (402).
    let credits = json!({"error": {"message": "Insufficient credits", "type": "insufficient_quota", "param": null, "code": "insufficient_credits"}});
    let body = json(&error_body(402, credits.to_string().as_bytes()));
    assert_eq!(body["error"]["type"], "invalid_request_error");
    // An unknown 4xx with an unknown type is still the client's error.
    let body = json(&error_body(
        418,
        br#"{"error": {"message": "teapot", "type": "odd"}}"#,
    ));
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

#[test]
fn odd_error_bodies_still_give_a_message() {
    let body = json(&error_body(502, b"<html>Bad Gateway</html>"));
    assert_eq!(
        body,
        json!({"type": "error", "error": {"type": "api_error", "message": "<html>Bad Gateway</html>"}})
    );
    let body = json(&error_body(500, b""));
    assert_eq!(body["error"]["message"], "The request failed (HTTP 500).");
    let body = json(&error_body(400, br#"{"error": "bad thing"}"#));
    assert_eq!(body["error"]["message"], "bad thing");
    let body = json(&error_body(400, br#"{"message": "flat"}"#));
    assert_eq!(body["error"]["message"], "flat");
    let long = "x".repeat(2000);
    let body = json(&error_body(503, long.as_bytes()));
    assert_eq!(body["error"]["type"], "overloaded_error");
    assert!(body["error"]["message"].as_str().unwrap().chars().count() <= 501);
    for bytes in [&b"\xff\xfe"[..], b"null", b"[1]", b"{\"error\": 5}"] {
        let body = json(&error_body(0, bytes));
        assert_eq!(body["type"], "error");
    }
}
