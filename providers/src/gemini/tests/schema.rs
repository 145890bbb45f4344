//! JSON Schema cleanup for `responseSchema` and function parameters.

use serde_json::{json, Value};

use crate::gemini::schema::{clean, is_empty_object};
use crate::TranslateError;

fn cleaned(schema: Value) -> Value {
    clean(&schema, "s").unwrap()
}

#[test]
fn drops_keys_gemini_refuses_at_every_depth() {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "x",
        "type": "object",
        "title": "T",
        "additionalProperties": false,
        "properties": {
            // A property may be called like a keyword: it is a name, not a key.
            "additionalProperties": {"type": "boolean", "examples": [true]},
            "list": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": {"type": "string"},
                "patternProperties": {"^x": {}}, "properties": {"a": {"type": "number", "format": "double"}}
            }},
            "when": {"type": "string", "format": "date-time"},
            "mail": {"type": "string", "format": "email", "pattern": "@"},
            "kind": {"const": "fixed"},
            "either": {"oneOf": [{"type": "string"}, {"type": "integer", "not": {}}]},
            "many": {"type": ["string", "integer", "null"]}
        },
        "required": ["list"],
    });
    assert_eq!(
        cleaned(schema),
        json!({
            "type": "object",
            "title": "T",
            "properties": {
                "additionalProperties": {"type": "boolean"},
                "list": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "properties": {"a": {"type": "number", "format": "double"}}
                }},
                "when": {"type": "string", "format": "date-time"},
                "mail": {"type": "string", "pattern": "@"},
                "kind": {"enum": ["fixed"]},
                "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "many": {"nullable": true, "anyOf": [{"type": "string"}, {"type": "integer"}]}
            },
            "required": ["list"],
        })
    );
}

#[test]
fn inlines_refs_and_merges_all_of() {
    let schema = json!({
        "type": "object",
        "properties": {
            "a": {"$ref": "#/definitions/A", "description": "own words win"},
            "b": {"allOf": [{"$ref": "#/definitions/A"}], "description": "b"}
        },
        "definitions": {"A": {"type": "string", "description": "A", "enum": ["x"]}}
    });
    assert_eq!(
        cleaned(schema),
        json!({
            "type": "object",
            "properties": {
                "a": {"type": "string", "description": "own words win", "enum": ["x"]},
                "b": {"type": "string", "description": "b", "enum": ["x"]}
            }
        })
    );
}

#[test]
fn refuses_recursive_and_exploding_schemas_without_overflowing() {
    let recursive = json!({
        "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}},
        "$ref": "#/$defs/Node"
    });
    let cycle = json!({"$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"allOf": [{"$ref": "#/$defs/A"}]}}, "$ref": "#/$defs/A"});
    let itself = json!({"$ref": "#"});
    // Ten properties each referring to the next level: 10^8 nodes if inlined blindly.
    let mut defs = serde_json::Map::new();
    for level in 0..8 {
        let next = json!({ "$ref": format!("#/$defs/L{}", level + 1) });
        let props: serde_json::Map<String, Value> =
            (0..10).map(|i| (format!("p{i}"), next.clone())).collect();
        defs.insert(
            format!("L{level}"),
            json!({"type": "object", "properties": props}),
        );
    }
    defs.insert("L8".into(), json!({"type": "string"}));
    let exploding = json!({"$defs": defs, "$ref": "#/$defs/L0"});
    for schema in [recursive, cycle, itself, exploding] {
        assert!(
            matches!(clean(&schema, "s"), Err(TranslateError::Unsupported { .. })),
            "{schema}"
        );
    }
}

#[test]
fn tells_empty_object_schemas() {
    assert!(is_empty_object(
        &json!({"type": "object", "properties": {}})
    ));
    assert!(is_empty_object(&json!({"type": "object"})));
    assert!(is_empty_object(&json!({})));
    assert!(!is_empty_object(
        &json!({"type": "object", "properties": {"a": {}}})
    ));
    assert!(!is_empty_object(&json!({"type": "string"})));
}
