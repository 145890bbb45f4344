//! OpenAI embeddings ↔ Gemini `batchEmbedContents`.

use serde_json::json;

use super::{object, parse};
use crate::gemini::{embeddings_from_response, embeddings_input_bytes, embeddings_to_upstream};
use crate::TranslateError;

#[test]
fn round_trips_an_embeddings_request() {
    let request = object(json!({
        "model": "text-embedding-3-small",
        "input": ["hello", "wörld"],
        "dimensions": 256,
        "encoding_format": "float",
        "user": "u-1"
    }));
    let call = embeddings_to_upstream(&request, "gemini-embedding-001").unwrap();
    assert_eq!(call.path, "/models/gemini-embedding-001:batchEmbedContents");
    assert!(call.headers.is_empty());
    assert_eq!(
        parse(&call.body),
        json!({"requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 256},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "wörld"}]}, "outputDimensionality": 256}
        ]})
    );

    let input_bytes = embeddings_input_bytes(&request);
    assert_eq!(input_bytes, 11, "bytes, not characters");
    let answer = br#"{"embeddings": [{"values": [-0.006929283, 0.5]}, {"values": [0.25, -1e-7]}]}"#;
    let out =
        parse(&embeddings_from_response(answer, "text-embedding-3-small", input_bytes).unwrap());
    assert_eq!(
        out,
        json!({
            "object": "list",
            "data": [
                {"object": "embedding", "index": 0, "embedding": [-0.006929283, 0.5]},
                {"object": "embedding", "index": 1, "embedding": [0.25, -1e-7]}
            ],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 3, "total_tokens": 3}
        })
    );
}

#[test]
fn takes_a_single_string_and_a_prefixed_model() {
    let request = object(json!({"input": "one", "encoding_format": "base64"}));
    let call = embeddings_to_upstream(&request, "models/text-embedding-004").unwrap();
    assert_eq!(call.path, "/models/text-embedding-004:batchEmbedContents");
    assert_eq!(
        parse(&call.body),
        json!({"requests": [{"model": "models/text-embedding-004", "content": {"parts": [{"text": "one"}]}}]})
    );
    let out = parse(&embeddings_from_response(br#"{"embeddings": []}"#, "e", 0).unwrap());
    assert_eq!(out["usage"], json!({"prompt_tokens": 0, "total_tokens": 0}));
}

#[test]
fn refuses_malformed_embeddings_requests_and_answers() {
    for (request, field) in [
        (json!({}), "input"),
        (json!({"input": []}), "input"),
        (json!({"input": 5}), "input"),
        (json!({"input": ["a", null]}), "input"),
        (json!({"input": "a", "dimensions": -3}), "dimensions"),
        (
            json!({"input": "a", "encoding_format": "int8"}),
            "encoding_format",
        ),
    ] {
        match embeddings_to_upstream(&object(request.clone()), "m") {
            Err(TranslateError::Invalid { field: f, .. }) => assert_eq!(f, field, "{request}"),
            other => panic!("{request}: {other:?}"),
        }
    }
    for tokens in [json!([1, 2, 3]), json!([[1, 2], [3]])] {
        let request = object(json!({ "input": tokens }));
        assert!(matches!(
            embeddings_to_upstream(&request, "m"),
            Err(TranslateError::Unsupported { .. })
        ));
        assert_eq!(embeddings_input_bytes(&request), 0);
    }
    for body in [
        &b""[..],
        b"{}",
        b"[]",
        b"{\"embeddings\": [{\"values\": [\"x\"]}]}",
        b"{\"error\": {\"code\": 429}}",
    ] {
        assert!(
            matches!(
                embeddings_from_response(body, "m", 4),
                Err(TranslateError::BadAnswer { .. })
            ),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}
