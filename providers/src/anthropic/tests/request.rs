//! OpenAI chat requests → Anthropic Messages requests.

use serde_json::{json, Map, Value};

use super::json;
use crate::anthropic::to_upstream;
use crate::TranslateError;

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(o) => o,
        other => panic!("not an object: {other}"),
    }
}

/// The Anthropic body for `chat`.
fn translate(chat: Value) -> Value {
    let call = to_upstream(&object(chat), "claude-3-5-haiku-20241022").unwrap();
    json(&call.body)
}

fn error(chat: Value) -> TranslateError {
    to_upstream(&object(chat), "claude").unwrap_err()
}

fn invalid_field(chat: Value) -> String {
    match error(chat) {
        TranslateError::Invalid { field, .. } => field,
        other => panic!("{other:?}"),
    }
}

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk";

#[test]
fn translates_a_rich_conversation() {
    let chat = json!({
        "model": "claude-haiku",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [
                {"type": "text", "text": "Use metric units."},
                {"type": "text", "text": "Never guess."},
            ]},
            {"role": "user", "name": "ann", "content": [
                {"type": "text", "text": "What is in these pictures, and the weather?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}"), "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
                {"id": "call_2", "type": "function",
                 "function": {"name": "get_time", "arguments": ""}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "14:02"}]},
            {"role": "user", "content": "Thanks. Summarise."},
        ],
        "tools": [
            {"type": "function", "function": {
                "name": "get_weather",
                "description": "Weather at a place",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
                "strict": true,
            }},
            {"type": "function", "function": {"name": "get_time"}},
        ],
        "tool_choice": "required",
        "parallel_tool_calls": false,
        "stop": "END",
        "temperature": 0.2,
        "top_p": 0.9,
        "stream": true,
        "stream_options": {"include_usage": true},
        "seed": 7,
        "logprobs": false,
        "frequency_penalty": 0.5,
        "user": "user-42",
    });
    let call = to_upstream(&object(chat), "claude-3-5-haiku-20241022").unwrap();
    assert_eq!(call.path, "/messages");
    assert_eq!(
        call.headers,
        vec![("anthropic-version", "2023-06-01".to_string())]
    );
    assert!(
        !call.headers.iter().any(|(name, _)| name.contains("key")),
        "authentication is the caller's"
    );
    let expected = json!({
        "model": "claude-3-5-haiku-20241022",
        "max_tokens": 4096,
        "system": "You are terse.\n\nUse metric units.\nNever guess.",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these pictures, and the weather?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "18 C, sunny"}]},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "14:02"}]},
                {"type": "text", "text": "Thanks. Summarise."},
            ]},
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "stream": true,
        "tools": [
            {"name": "get_weather", "description": "Weather at a place",
             "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}},
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "metadata": {"user_id": "user-42"},
    });
    assert_eq!(json(&call.body), expected);
}

#[test]
fn a_plain_request_stays_plain() {
    let body = translate(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
    }));
    assert_eq!(
        body,
        json!({
            "model": "claude-3-5-haiku-20241022",
            "max_tokens": 4096,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        })
    );
}

#[test]
fn takes_max_completion_tokens_then_max_tokens_then_4096() {
    let messages = json!([{"role": "user", "content": "Hi"}]);
    for (limits, expected) in [
        (
            json!({"max_completion_tokens": 100, "max_tokens": 200}),
            100,
        ),
        (json!({"max_tokens": 200}), 200),
        (
            json!({"max_completion_tokens": null, "max_tokens": 300}),
            300,
        ),
        (json!({}), 4096),
    ] {
        let mut chat = object(limits.clone());
        chat.insert("messages".into(), messages.clone());
        assert_eq!(
            translate(Value::Object(chat))["max_tokens"],
            expected,
            "{limits}"
        );
    }
    for bad in [json!(0), json!(-1), json!(1.5), json!("100")] {
        let chat = json!({"messages": messages, "max_tokens": bad});
        assert_eq!(invalid_field(chat), "max_tokens", "{bad}");
    }
}

#[test]
fn maps_every_tool_choice() {
    let tools =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    for (choice, parallel, expected) in [
        (json!("auto"), json!(null), json!({"type": "auto"})),
        (json!("required"), json!(true), json!({"type": "any"})),
        (json!("none"), json!(false), json!({"type": "none"})),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            json!(null),
            json!({"type": "tool", "name": "f"}),
        ),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            json!(false),
            json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true}),
        ),
        (
            json!("auto"),
            json!(false),
            json!({"type": "auto", "disable_parallel_tool_use": true}),
        ),
        (
            json!(null),
            json!(false),
            json!({"type": "auto", "disable_parallel_tool_use": true}),
        ),
    ] {
        let body = translate(json!({
            "messages": [{"role": "user", "content": "Hi"}],
            "tools": tools,
            "tool_choice": choice,
            "parallel_tool_calls": parallel,
        }));
        assert_eq!(body["tool_choice"], expected, "{choice} / {parallel}");
    }
    let body = translate(json!({
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": tools,
    }));
    assert!(body.get("tool_choice").is_none());
    let body = translate(json!({
        "messages": [{"role": "user", "content": "Hi"}],
        "tool_choice": "required",
    }));
    assert!(
        body.get("tool_choice").is_none() && body.get("tools").is_none(),
        "no tool choice without tools"
    );
}

#[test]
fn stop_may_be_an_array() {
    let body = translate(json!({
        "messages": [{"role": "user", "content": "Hi"}],
        "stop": ["a", "b"],
    }));
    assert_eq!(body["stop_sequences"], json!(["a", "b"]));
}

#[test]
fn json_modes_become_system_instructions() {
    let body = translate(json!({
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "response_format": {"type": "json_object"},
    }));
    let system = body["system"].as_str().unwrap();
    assert!(system.starts_with("Be brief.\n\n"), "{system}");
    assert!(system.contains("single valid JSON object"), "{system}");

    let schema =
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
    let body = translate(json!({
        "messages": [{"role": "user", "content": "Hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": true}},
    }));
    let system = body["system"].as_str().unwrap();
    assert!(system.contains("JSON Schema (`place`)"), "{system}");
    assert!(system.contains(&schema.to_string()), "{system}");

    let body = translate(json!({
        "messages": [{"role": "user", "content": "Hi"}],
        "response_format": {"type": "text"},
    }));
    assert!(body.get("system").is_none());
}

#[test]
fn merges_consecutive_turns_of_one_side_and_skips_empty_ones() {
    let body = translate(json!({
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "assistant", "content": ""},
            {"role": "system", "content": "late system"},
            {"role": "user", "content": "c"},
            {"role": "assistant", "content": "d"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ]},
        ],
    }));
    assert_eq!(body["system"], "late system");
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [
                {"type": "text", "text": "a"},
                {"type": "text", "text": "b"},
                {"type": "text", "text": "c"},
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "d"},
                {"type": "tool_use", "id": "t", "name": "f", "input": {}},
            ]},
        ])
    );
}

#[test]
fn refuses_several_choices_and_hot_temperatures() {
    let messages = json!([{"role": "user", "content": "Hi"}]);
    assert!(matches!(
        error(json!({"messages": messages, "n": 2})),
        TranslateError::Unsupported {
            provider: "Anthropic",
            ..
        }
    ));
    assert!(matches!(
        error(json!({"messages": messages, "temperature": 1.5})),
        TranslateError::Unsupported { .. }
    ));
    let body = translate(json!({"messages": messages, "n": 1, "temperature": 1}));
    assert_eq!(body["temperature"], 1);
    assert!(body.get("n").is_none());
}

#[test]
fn invalid_tool_call_arguments_name_their_field() {
    let chat = json!({"messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{\"a\": "}}
        ]},
    ]});
    let err = error(chat);
    assert_eq!(
        err.to_string().split(':').next().unwrap(),
        "invalid `messages[1].tool_calls[0].function.arguments`"
    );
    let chat = json!({"messages": [
        {"role": "assistant", "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
        ]},
    ]});
    assert_eq!(
        invalid_field(chat),
        "messages[0].tool_calls[0].function.arguments"
    );
}

#[test]
fn rejects_images_it_cannot_send() {
    for (url, field) in [
        (
            "data:image/png,rawbytes",
            "messages[0].content[0].image_url.url",
        ),
        ("data:;base64,AAAA", "messages[0].content[0].image_url.url"),
        (
            "data:image/png;base64",
            "messages[0].content[0].image_url.url",
        ),
        (
            "ftp://example.com/a.png",
            "messages[0].content[0].image_url.url",
        ),
    ] {
        let chat = json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}
        ]}]});
        assert_eq!(invalid_field(chat), field, "{url}");
    }
    let chat = json!({"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}
    ]}]});
    assert!(matches!(error(chat), TranslateError::Unsupported { .. }));
}
