use serde_json::{json, Map, Value};

use crate::messages_api::to_openai_chat;
use crate::TranslateError;

fn translate(request: &Value) -> Result<(Map<String, Value>, bool), TranslateError> {
    to_openai_chat(request.to_string().as_bytes())
}

fn chat(request: &Value) -> Value {
    Value::Object(translate(request).unwrap().0)
}

fn invalid_field(request: &Value) -> String {
    match translate(request) {
        Err(TranslateError::Invalid { field, .. }) => field,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn minimal() -> Value {
    json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 64,
           "messages": [{"role": "user", "content": "Hi"}]})
}

#[test]
fn a_rich_request_becomes_the_equivalent_openai_chat_request() {
    let request = json!({
        "model": "claude-3-5-haiku-20241022",
        "max_tokens": 1024,
        "system": [
            {"type": "text", "text": "You are a weather bot."},
            {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in Paris and Rome? Here is a map."},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/map.jpg"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Two cities: two calls.", "signature": "sig"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"location": "Rome"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C, sunny"},
                {"type": "text", "text": "And bring an umbrella?"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
                 "content": [{"type": "text", "text": "station offline"}, {"type": "text", "text": "retry later"}]}
            ]},
            {"role": "assistant", "content": "Paris: 18°C and sunny; Rome: unknown."},
            {"role": "user", "content": "Thanks"}
        ],
        "tools": [
            {"name": "get_weather", "description": "Current weather",
             "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
             "cache_control": {"type": "ephemeral"}},
            {"type": "custom", "name": "noop", "input_schema": {"type": "object"}}
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "stop_sequences": ["\n\nHuman:", "END"],
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "metadata": {"user_id": "user-42"},
        "stream": true
    });
    let (chat, stream) = translate(&request).unwrap();
    assert!(stream);
    let expected = json!({
        "model": "claude-3-5-haiku-20241022",
        "messages": [
            {"role": "system", "content": "You are a weather bot.\nBe brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in Paris and Rome? Here is a map."},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/map.jpg"}}
            ]},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Rome\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C, sunny"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: station offline\nretry later"},
            {"role": "user", "content": [{"type": "text", "text": "And bring an umbrella?"}]},
            {"role": "assistant", "content": "Paris: 18°C and sunny; Rome: unknown."},
            {"role": "user", "content": "Thanks"}
        ],
        "max_tokens": 1024,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\nHuman:", "END"],
        "stream": true,
        "stream_options": {"include_usage": true},
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Current weather",
             "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}},
            {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}}
        ],
        "tool_choice": "required",
        "parallel_tool_calls": false,
        "user": "user-42"
    });
    assert_eq!(Value::Object(chat), expected);
}

#[test]
fn tool_choice_variants() {
    let with_choice = |choice: Value| {
        let mut request = minimal();
        request["tools"] = json!([{"name": "f", "input_schema": {"type": "object"}}]);
        request["tool_choice"] = choice;
        chat(&request)
    };
    let auto = with_choice(json!({"type": "auto"}));
    assert_eq!(auto["tool_choice"], "auto");
    assert!(auto.get("parallel_tool_calls").is_none());
    let auto = with_choice(json!({"type": "auto", "disable_parallel_tool_use": true}));
    assert_eq!(auto["parallel_tool_calls"], false);
    assert_eq!(
        with_choice(json!({"type": "any"}))["tool_choice"],
        "required"
    );
    assert_eq!(with_choice(json!({"type": "none"}))["tool_choice"], "none");
    let named =
        with_choice(json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true}));
    assert_eq!(
        named["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
    assert_eq!(named["parallel_tool_calls"], false);
    assert!(with_choice(Value::Null).get("tool_choice").is_none());

    let mut bad = minimal();
    bad["tools"] = json!([{"name": "f", "input_schema": {}}]);
    bad["tool_choice"] = json!({"type": "sometimes"});
    assert_eq!(invalid_field(&bad), "tool_choice");

    // Without tools OpenAI refuses `tool_choice`: harmless ones are dropped...
    let mut no_tools = minimal();
    no_tools["tool_choice"] = json!({"type": "auto"});
    let translated = chat(&no_tools);
    assert!(translated.get("tool_choice").is_none() && translated.get("tools").is_none());
    // ...ones that demand a tool are an error, as they are for Anthropic.
    no_tools["tool_choice"] = json!({"type": "tool", "name": "f"});
    assert_eq!(invalid_field(&no_tools), "tool_choice");
}

#[test]
fn a_plain_request_does_not_stream_and_drops_what_openai_lacks() {
    let mut request = minimal();
    request["top_k"] = json!(5);
    request["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    request["service_tier"] = json!("auto");
    request["system"] = json!("Be nice.");
    let (chat, stream) = translate(&request).unwrap();
    assert!(!stream);
    assert_eq!(
        Value::Object(chat),
        json!({"model": "claude-3-5-haiku-20241022",
               "messages": [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hi"}],
               "max_tokens": 64, "stream": false})
    );
}

#[test]
fn tool_result_images_and_documents() {
    let request = json!({"model": "m", "max_tokens": 10, "messages": [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [
                {"type": "text", "text": "captured"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}}
            ]},
            {"type": "document", "title": "spec.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
            {"type": "document", "title": "Notes", "source": {"type": "text", "media_type": "text/plain", "data": "hello"}}
        ]}
    ]});
    let messages = chat(&request)["messages"].clone();
    assert_eq!(
        messages,
        json!([
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "shot", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "captured"},
            {"role": "user", "content": [
                {"type": "text", "text": "[images returned by tool call t1]"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
                {"type": "file", "file": {"filename": "spec.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
                {"type": "text", "text": "Notes\n\nhello"}
            ]}
        ])
    );
}

#[test]
fn missing_or_malformed_fields_are_named() {
    let mut request = minimal();
    request.as_object_mut().unwrap().remove("max_tokens");
    assert_eq!(invalid_field(&request), "max_tokens");
    let err = translate(&request).unwrap_err().to_string();
    assert_eq!(err, "invalid `max_tokens`: is required");

    let cases: Vec<(Value, &str)> = vec![
        (json!({"model": "m", "max_tokens": 1}), "messages"),
        (
            json!({"model": "m", "max_tokens": 1, "messages": []}),
            "messages",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": {}}),
            "messages",
        ),
        (
            json!({"max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}),
            "model",
        ),
        (
            json!({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "max_tokens": "9", "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "stream": "yes", "messages": [{"role": "user", "content": "x"}]}),
            "stream",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "temperature": "hot", "messages": [{"role": "user", "content": "x"}]}),
            "temperature",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "stop_sequences": "END", "messages": [{"role": "user", "content": "x"}]}),
            "stop_sequences",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user"}]}),
            "messages[0].content",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": []}]}),
            "messages[0].content",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": ["hi"]}),
            "messages[0]",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"text": "x"}]}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "text"}]}]}),
            "messages[0].content[0]",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image", "source": {"type": "base64"}}]}]}),
            "messages[0].content[1]",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "x"}]}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "x", "name": "f", "input": {}}]}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "system": [{"type": "image"}], "messages": [{"role": "user", "content": "x"}]}),
            "system[0].type",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "tools": [{"name": "f"}], "messages": [{"role": "user", "content": "x"}]}),
            "tools[0].input_schema",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "metadata": {"user_id": 7}, "messages": [{"role": "user", "content": "x"}]}),
            "metadata",
        ),
    ];
    for (request, field) in cases {
        assert_eq!(invalid_field(&request), field, "{request}");
    }
    for body in [
        &b""[..],
        b"not json",
        b"[1, 2]",
        b"\"text\"",
        b"{\"model\": ",
    ] {
        assert!(matches!(
            to_openai_chat(body),
            Err(TranslateError::Invalid { field, .. }) if field == "body"
        ));
    }
}

#[test]
fn what_openai_cannot_take_is_unsupported() {
    let with = |messages: Value, tools: Value| json!({"model": "m", "max_tokens": 1, "messages": messages, "tools": tools});
    let user_says = |block: Value| json!([{"role": "user", "content": [block]}]);
    let cases = [
        with(
            user_says(json!({"type": "text", "text": "search"})),
            json!([{"type": "web_search_20250305", "name": "web_search"}]),
        ),
        with(
            user_says(json!({"type": "search_result", "source": "x", "title": "t", "content": []})),
            json!([]),
        ),
        with(
            user_says(json!({"type": "image", "source": {"type": "file", "file_id": "file_1"}})),
            json!([]),
        ),
        with(
            user_says(
                json!({"type": "document", "source": {"type": "url", "url": "https://x/y.pdf"}}),
            ),
            json!([]),
        ),
        with(
            user_says(
                json!({"type": "tool_result", "tool_use_id": "t", "content": [{"type": "document", "source": {}}]}),
            ),
            json!([]),
        ),
    ];
    for request in cases {
        assert!(
            matches!(translate(&request), Err(TranslateError::Unsupported { .. })),
            "{request}"
        );
    }
}

#[test]
fn truncated_or_mangled_requests_are_errors_not_panics() {
    let body = json!({
        "model": "m", "max_tokens": 5, "system": [{"type": "text", "text": "s"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "a"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"x": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]}
        ],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f"}
    })
    .to_string()
    .into_bytes();
    assert!(to_openai_chat(&body).is_ok());
    for end in 0..body.len() {
        assert!(to_openai_chat(&body[..end]).is_err(), "prefix {end}");
    }
    // Every byte swapped for a character that breaks structure or type: never a panic.
    for at in 0..body.len() {
        for replacement in [b'0', b'"', b'{', b']', b'n'] {
            let mut mangled = body.clone();
            mangled[at] = replacement;
            let _ = to_openai_chat(&mangled);
        }
    }
}
