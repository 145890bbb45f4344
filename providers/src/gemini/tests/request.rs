//! OpenAI chat request → Gemini request.

use serde_json::{json, Value};

use super::{object, parse};
use crate::gemini::to_upstream;
use crate::TranslateError;

fn rich_request() -> Value {
    json!({
        "model": "gpt-4o",
        "stream": true,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this image, and what's the weather there?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/paris.webp?size=large"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_a", "content": "{\"temp_c\":21}"},
            {"role": "tool", "tool_call_id": "call_b", "content": "noon"},
            {"role": "user", "content": "Thanks. Summarise as JSON."}
        ],
        "tools": [
            {"type": "function", "strict": true, "function": {
                "name": "get_weather",
                "description": "Current weather",
                "parameters": {
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "properties": {
                        "location": {"type": "string", "description": "City"},
                        "unit": {"type": ["string", "null"], "enum": ["c", "f"]}
                    },
                    "required": ["location"],
                    "additionalProperties": false
                }
            }},
            {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "summary",
            "strict": true,
            "schema": {
                "type": "object",
                "properties": {
                    "city": {"$ref": "#/$defs/City"},
                    "tags": {"type": "array", "items": {"type": "string", "format": "uri"}}
                },
                "required": ["city", "tags"],
                "additionalProperties": false,
                "$defs": {"City": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "population": {"anyOf": [{"type": "integer"}, {"type": "null"}]}
                    },
                    "required": ["name"],
                    "additionalProperties": false
                }}
            }
        }},
        "stop": "END",
        "max_tokens": 300,
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "n": 1,
        "parallel_tool_calls": false,
        "stream_options": {"include_usage": true},
        "user": "u-1"
    })
}

#[test]
fn translates_a_rich_request() {
    let call = to_upstream(&object(rich_request()), "gemini-2.0-flash").unwrap();
    assert_eq!(
        call.path,
        "/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    );
    assert!(call.headers.is_empty());
    let expected = json!({
        "contents": [
            {"role": "user", "parts": [
                {"text": "What is in this image, and what's the weather there?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/paris.webp?size=large"}}
            ]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {}}}
            ]},
            // Both tool results and the next user message: one user turn.
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"result": {"temp_c": 21}}}},
                {"functionResponse": {"name": "get_time", "response": {"result": "noon"}}},
                {"text": "Thanks. Summarise as JSON."}
            ]}
        ],
        "systemInstruction": {"parts": [{"text": "You are terse."}, {"text": "Answer in French."}]},
        "tools": [{"functionDeclarations": [
            {"name": "get_weather", "description": "Current weather", "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "City"},
                    "unit": {"type": "string", "nullable": true, "enum": ["c", "f"]}
                },
                "required": ["location"]
            }},
            {"name": "get_time"}
        ]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        "generationConfig": {
            "maxOutputTokens": 300,
            "temperature": 0.2,
            "topP": 0.9,
            "stopSequences": ["END"],
            "seed": 7,
            "candidateCount": 1,
            "responseMimeType": "application/json",
            "responseSchema": {
                "type": "object",
                "properties": {
                    "city": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "population": {"type": "integer", "nullable": true}
                        },
                        "required": ["name"]
                    },
                    "tags": {"type": "array", "items": {"type": "string"}}
                },
                "required": ["city", "tags"]
            }
        }
    });
    assert_eq!(parse(&call.body), expected);
}

fn with(changes: Value) -> serde_json::Map<String, Value> {
    let mut request = object(rich_request());
    for (key, value) in object(changes) {
        if value.is_null() {
            request.remove(&key);
        } else {
            request.insert(key, value);
        }
    }
    request
}

fn body_of(request: &serde_json::Map<String, Value>) -> Value {
    parse(&to_upstream(request, "gemini-2.0-flash").unwrap().body)
}

#[test]
fn maps_every_tool_choice() {
    for (choice, expected) in [
        (json!("auto"), json!({"mode": "AUTO"})),
        (json!("none"), json!({"mode": "NONE"})),
        (json!("required"), json!({"mode": "ANY"})),
        (
            json!({"type": "function", "function": {"name": "get_time"}}),
            json!({"mode": "ANY", "allowedFunctionNames": ["get_time"]}),
        ),
    ] {
        let body = body_of(&with(json!({ "tool_choice": choice })));
        assert_eq!(
            body["toolConfig"]["functionCallingConfig"], expected,
            "{choice}"
        );
    }
    let body = body_of(&with(json!({"tool_choice": null})));
    assert!(body.get("toolConfig").is_none());
}

#[test]
fn maps_the_other_generation_settings() {
    let body = body_of(&with(json!({
        "stream": false,
        "stop": ["a", "b"],
        "max_completion_tokens": 50,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "response_format": {"type": "json_object"},
    })));
    let config = &body["generationConfig"];
    assert_eq!(config["stopSequences"], json!(["a", "b"]));
    assert_eq!(config["maxOutputTokens"], 50, "max_completion_tokens wins");
    assert_eq!(config["presencePenalty"], 0.5);
    assert_eq!(config["frequencyPenalty"], -0.5);
    assert_eq!(config["responseMimeType"], "application/json");
    assert!(config.get("responseSchema").is_none());

    let plain = object(json!({"messages": [{"role": "user", "content": "hi"}]}));
    let call = to_upstream(&plain, "models/gemini-2.5-pro").unwrap();
    assert_eq!(call.path, "/models/gemini-2.5-pro:generateContent");
    assert_eq!(
        parse(&call.body),
        json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
        "nothing unasked for is sent"
    );
}

#[test]
fn guesses_the_type_of_fetched_images_and_reads_other_inline_media() {
    let message = json!([{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://x.test/a/photo"}},
        {"type": "image_url", "image_url": {"url": "http://x.test/pic.PNG#frag"}},
        {"type": "image_url", "image_url": "https://x.test/doc.pdf"},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
        {"type": "text", "text": ""}
    ]}]);
    let body = body_of(&with(json!({ "messages": message })));
    assert_eq!(
        body["contents"][0]["parts"],
        json!([
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/a/photo"}},
            {"fileData": {"mimeType": "image/png", "fileUri": "http://x.test/pic.PNG#frag"}},
            {"fileData": {"mimeType": "application/pdf", "fileUri": "https://x.test/doc.pdf"}},
            {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
            {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}
        ])
    );
}

#[test]
fn names_tool_results_after_the_latest_call_with_their_id() {
    // Ids like `call_0` repeat across turns (this adapter generates them): the latest wins.
    let messages = json!([
        {"role": "user", "content": "one"},
        {"role": "assistant", "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "first", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "[1, 2]"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "two"},
        {"role": "assistant", "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "second", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": [{"type": "text", "text": "done"}]}
    ]);
    let body = body_of(&with(json!({ "messages": messages })));
    let contents = body["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 7);
    assert_eq!(
        contents[2]["parts"][0]["functionResponse"],
        json!({"name": "first", "response": {"result": [1, 2]}})
    );
    assert_eq!(
        contents[3],
        json!({"role": "model", "parts": [{"text": "ok"}]})
    );
    assert_eq!(
        contents[6]["parts"][0]["functionResponse"],
        json!({"name": "second", "response": {"result": "done"}})
    );
}

fn error_of(changes: Value) -> TranslateError {
    to_upstream(&with(changes), "gemini-2.0-flash").unwrap_err()
}

fn assert_invalid(changes: Value, field: &str) {
    match error_of(changes.clone()) {
        TranslateError::Invalid { field: f, .. } => assert_eq!(f, field, "{changes}"),
        other => panic!("{changes}: {other:?}"),
    }
}

#[test]
fn names_the_field_of_a_malformed_request() {
    let bad_args = json!([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"loc"}}]}]);
    assert_invalid(
        json!({ "messages": bad_args }),
        "messages[1].tool_calls[0].function.arguments",
    );
    let array_args = json!([{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]);
    assert_invalid(
        json!({ "messages": array_args }),
        "messages[0].tool_calls[0].function.arguments",
    );
    let orphan = json!([{"role": "tool", "tool_call_id": "nope", "content": "x"}]);
    assert_invalid(json!({ "messages": orphan }), "messages[0].tool_call_id");

    assert_invalid(json!({"messages": null}), "messages");
    assert_invalid(json!({"messages": "hi"}), "messages");
    assert_invalid(json!({"messages": []}), "messages");
    assert_invalid(
        json!({"messages": [{"role": "system", "content": "only"}]}),
        "messages",
    );
    assert_invalid(json!({"messages": [7]}), "messages[0]");
    assert_invalid(
        json!({"messages": [{"role": "robot", "content": "x"}]}),
        "messages[0].role",
    );
    assert_invalid(
        json!({"messages": [{"role": "user", "content": 7}]}),
        "messages[0].content",
    );
    assert_invalid(
        json!({"messages": [{"role": "system", "content": [{"type": "image_url"}]}]}),
        "messages[0].content[0].type",
    );
    for url in [
        "ftp://x/y.png",
        "data:image/png,raw",
        "data:;base64,AAAA",
        "data:image/png;base64",
    ] {
        assert_invalid(
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}),
            "messages[0].content[0].image_url.url",
        );
    }
    assert_invalid(json!({"temperature": "hot"}), "temperature");
    assert_invalid(json!({"max_tokens": -1}), "max_tokens");
    assert_invalid(json!({"n": 1.5}), "n");
    assert_invalid(json!({"seed": "x"}), "seed");
    assert_invalid(json!({"stop": 3}), "stop");
    assert_invalid(json!({"stop": ["a", 3]}), "stop");
    assert_invalid(json!({"stream": "yes"}), "stream");
    assert_invalid(json!({"tools": {}}), "tools");
    assert_invalid(
        json!({"tools": [{"type": "function", "function": {}}]}),
        "tools[0].function.name",
    );
    assert_invalid(json!({"tool_choice": "sometimes"}), "tool_choice");
    assert_invalid(
        json!({"tool_choice": {"type": "function"}}),
        "tool_choice.function.name",
    );
    assert_invalid(
        json!({"response_format": {"type": "yaml"}}),
        "response_format.type",
    );
    assert_invalid(
        json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {"$ref": "#/$defs/Nope"}}}}),
        "response_format.json_schema.schema",
    );
}

#[test]
fn refuses_what_gemini_cannot_do() {
    for changes in [
        json!({"functions": [{"name": "f"}]}),
        json!({"modalities": ["text", "audio"]}),
        json!({"tools": [{"type": "web_search"}]}),
        json!({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]}),
        json!({"messages": [{"role": "user", "content": [{"type": "video"}]}]}),
    ] {
        assert!(
            matches!(
                error_of(changes.clone()),
                TranslateError::Unsupported {
                    provider: "gemini",
                    ..
                }
            ),
            "{changes}"
        );
    }
}

#[test]
fn never_panics_on_odd_shapes() {
    let odd = [
        json!(null),
        json!(1),
        json!("x"),
        json!([]),
        json!({}),
        json!([null]),
        json!({"type": 1}),
        json!([{"type": "text"}]),
        json!([{"type": "image_url", "image_url": 5}]),
    ];
    for value in &odd {
        for key in [
            "messages",
            "tools",
            "tool_choice",
            "response_format",
            "stop",
            "max_tokens",
            "n",
        ] {
            let _ = to_upstream(&with(json!({ key: value.clone() })), "m");
        }
        for key in ["content", "tool_calls", "role", "tool_call_id"] {
            let mut message = object(json!({"role": "assistant", "content": "x"}));
            message.insert(key.into(), value.clone());
            let _ = to_upstream(&with(json!({"messages": [message]})), "m");
        }
    }
}
