//! A conversation through the surface: the client's request goes out as OpenAI chat,
//! the OpenAI answer comes back as an Anthropic message, and that message, sent back
//! as history, goes out as the OpenAI message it came from.

use serde_json::{json, Value};

use super::{fixture, json};
use crate::messages_api::{from_openai_response, to_openai_chat};

fn to_chat(request: &Value) -> Value {
    Value::Object(to_openai_chat(request.to_string().as_bytes()).unwrap().0)
}

#[test]
fn the_anthropic_fixture_conversation_round_trips() {
    let anthropic = json(&fixture("anthropic/messages.json"));
    let model = anthropic["model"].as_str().unwrap();

    // The answer OpenAI gives has the shape, content and stop reason of Anthropic's.
    let ours = json(&from_openai_response(&fixture("openai/chat.json"), model).unwrap());
    assert_eq!(ours["model"], anthropic["model"]);
    assert_eq!(ours["content"], anthropic["content"]);
    assert_eq!(ours["stop_reason"], anthropic["stop_reason"]);
    assert_eq!(ours["stop_sequence"], anthropic["stop_sequence"]);
    assert!(ours["id"].as_str().unwrap().starts_with("msg_"));
    same_fields(&ours, &anthropic, "message");

    // The client continues the conversation with Anthropic's answer as history.
    let request = json!({
        "model": model,
        "max_tokens": 1024,
        "messages": [
            {"role": "user", "content": "What is the capital of France?"},
            {"role": anthropic["role"], "content": anthropic["content"]},
            {"role": "user", "content": "And of Italy?"}
        ]
    });
    let chat = to_chat(&request);
    assert_eq!(chat["model"], model);
    assert_eq!(
        chat["messages"],
        json!([
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "The capital of France is Paris."},
            {"role": "user", "content": "And of Italy?"}
        ])
    );
    // What OpenAI said is what goes back to it.
    let openai = json(&fixture("openai/chat.json"));
    assert_eq!(
        chat["messages"][1]["content"],
        openai["choices"][0]["message"]["content"]
    );
}

#[test]
fn tool_calls_round_trip_to_the_same_openai_message() {
    let original = json!({
        "role": "assistant",
        "content": "Let me check.",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris, France\",\"unit\":\"c\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
        ]
    });
    let openai = json!({"id": "chatcmpl-1", "choices": [{"index": 0, "message": original, "finish_reason": "tool_calls"}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5}});
    let answer = json(&from_openai_response(openai.to_string().as_bytes(), "claude").unwrap());
    assert_eq!(answer["stop_reason"], "tool_use");

    let request = json!({
        "model": "claude", "max_tokens": 100,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}},
                  {"name": "get_time", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "Weather and time in Paris?"},
            {"role": "assistant", "content": answer["content"]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": answer["content"][1]["id"], "content": "18°C"},
                {"type": "tool_result", "tool_use_id": answer["content"][2]["id"], "content": [{"type": "text", "text": "14:00"}]}
            ]}
        ]
    });
    let messages = to_chat(&request)["messages"].clone();
    let back = &messages[1];
    assert_eq!(back["role"], original["role"]);
    assert_eq!(back["content"], original["content"]);
    for (ours, theirs) in back["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .zip(original["tool_calls"].as_array().unwrap())
    {
        assert_eq!(ours["id"], theirs["id"]);
        assert_eq!(ours["function"]["name"], theirs["function"]["name"]);
        let args = |call: &Value| -> Value {
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap()
        };
        assert_eq!(args(ours), args(theirs));
    }
    assert_eq!(
        messages[2],
        json!({"role": "tool", "tool_call_id": "call_1", "content": "18°C"})
    );
    assert_eq!(
        messages[3],
        json!({"role": "tool", "tool_call_id": "call_2", "content": "14:00"})
    );
    assert_eq!(messages.as_array().unwrap().len(), 4);
}

/// The same field names, recursively through objects (values may differ).
fn same_fields(ours: &Value, theirs: &Value, path: &str) {
    if let (Some(a), Some(b)) = (ours.as_object(), theirs.as_object()) {
        let mut ka: Vec<&String> = a.keys().collect();
        let mut kb: Vec<&String> = b.keys().collect();
        ka.sort();
        kb.sort();
        assert_eq!(ka, kb, "{path}");
        for (key, value) in a {
            same_fields(value, &b[key], &format!("{path}.{key}"));
        }
    }
}
