//! JSON Schema (as OpenAI clients write it) → Gemini's `Schema`, an OpenAPI 3.0 subset.
//!
//! Gemini answers 400 to any key it does not know, and clients routinely send
//! `additionalProperties`, `$schema`, `strict`, `$defs`/`$ref` (pydantic), `const`,
//! `oneOf`, `type: ["string", "null"]`… So the schema is rebuilt from an allowlist,
//! recursively (through `properties`, `items` and `anyOf`), and what can be expressed
//! differently is rewritten rather than lost:
//!
//! - local `$ref`s (`#/$defs/X`, `#/definitions/X`) are inlined; a recursive schema
//!   cannot be inlined and is refused once [`MAX_DEPTH`] or [`MAX_NODES`] is reached;
//! - `allOf` members are merged into the schema (the schema's own keys win);
//! - `oneOf` becomes `anyOf`; a `{"type": "null"}` member of it becomes `nullable`;
//! - `type: [T, "null"]` becomes `type: T, nullable: true`;
//! - `const: v` becomes `enum: [v]`;
//! - `format` is kept only for the values Gemini knows (`enum`, `date-time`, `int32`,
//!   `int64`, `float`, `double`).
//!
//! Everything else outside [`KEPT`] is dropped: `additionalProperties`, `$schema`, `$id`,
//! `strict`, `examples`, `not`, `patternProperties`, `if`/`then`/`else`, …

use serde_json::{json, Map, Value};

use crate::TranslateError;

/// Keys of Gemini's `Schema` copied as they are.
const KEPT: &[&str] = &[
    "type",
    "title",
    "description",
    "nullable",
    "enum",
    "required",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "propertyOrdering",
    "default",
    "example",
];

const FORMATS: &[&str] = &["enum", "date-time", "int32", "int64", "float", "double"];

/// Nesting allowed after `$ref`s are inlined (a recursive schema hits it).
const MAX_DEPTH: usize = 48;
/// Schema objects allowed in the result: inlining the same `$ref` many times over can
/// grow a small schema exponentially.
const MAX_NODES: usize = 20_000;

/// Rewrites `schema` for Gemini; `field` names it in errors.
pub(super) fn clean(schema: &Value, field: &str) -> Result<Value, TranslateError> {
    let mut cx = Cleaner {
        root: schema,
        nodes: 0,
        field,
    };
    cx.clean(schema, 0)
}

struct Cleaner<'a> {
    root: &'a Value,
    nodes: usize,
    field: &'a str,
}

impl Cleaner<'_> {
    fn clean(&mut self, schema: &Value, depth: usize) -> Result<Value, TranslateError> {
        self.nodes += 1;
        if depth > MAX_DEPTH || self.nodes > MAX_NODES {
            return Err(self.too_deep());
        }
        let Value::Object(schema) = schema else {
            // `true` / `{}`-like leaves: anything goes, which Gemini spells as no constraint.
            return Ok(Value::Object(Map::new()));
        };
        let schema = self.flatten(schema, 0)?;
        let mut out = Map::new();
        for (key, value) in &schema {
            match key.as_str() {
                "properties" => {
                    if let Value::Object(props) = value {
                        let mut cleaned = Map::new();
                        for (name, sub) in props {
                            cleaned.insert(name.clone(), self.clean(sub, depth + 1)?);
                        }
                        out.insert(key.clone(), Value::Object(cleaned));
                    }
                }
                "items" => {
                    out.insert(key.clone(), self.clean(value, depth + 1)?);
                }
                // After the loop, so the schema's own keys win over a merged member's.
                "anyOf" | "oneOf" => {}
                "type" => type_of(value, &mut out),
                "const" if !schema.contains_key("enum") => {
                    out.insert("enum".into(), json!([value]));
                }
                "format" if value.as_str().is_some_and(|f| FORMATS.contains(&f)) => {
                    out.insert(key.clone(), value.clone());
                }
                k if KEPT.contains(&k) => {
                    // `type` from a `[T, "null"]` may already have set `nullable`.
                    out.entry(key.clone()).or_insert_with(|| value.clone());
                }
                _ => {}
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(members) = schema.get(key) {
                self.any_of(members, depth, &mut out)?;
            }
        }
        Ok(Value::Object(out))
    }

    /// Inlines a `$ref` and merges `allOf` members, so the caller sees one plain object.
    /// `hops` counts the references followed, which ends `$ref` cycles.
    fn flatten(
        &mut self,
        schema: &Map<String, Value>,
        hops: usize,
    ) -> Result<Map<String, Value>, TranslateError> {
        if hops > MAX_DEPTH {
            return Err(self.too_deep());
        }
        let mut merged = schema.clone();
        if let Some(Value::String(reference)) = merged.remove("$ref") {
            if let Value::Object(target) = self.resolve(&reference)? {
                for (k, v) in target {
                    merged.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            // The target may itself be a `$ref` or hold an `allOf`.
            return self.flatten(&merged, hops + 1);
        }
        if let Some(Value::Array(members)) = merged.remove("allOf") {
            for member in &members {
                if let Value::Object(member) = member {
                    for (k, v) in self.flatten(member, hops + 1)? {
                        merged.entry(k).or_insert(v);
                    }
                }
            }
        }
        Ok(merged)
    }

    fn too_deep(&self) -> TranslateError {
        TranslateError::Unsupported {
            provider: super::PROVIDER,
            what: format!(
                "`{}`: schemas this deep or large (recursive `$ref`s cannot be inlined)",
                self.field
            ),
        }
    }

    fn resolve(&self, reference: &str) -> Result<&Value, TranslateError> {
        let found = reference
            .strip_prefix('#')
            .and_then(|pointer| self.root.pointer(pointer));
        found.ok_or_else(|| TranslateError::Invalid {
            field: self.field.to_string(),
            reason: format!("`$ref` {reference:?} points nowhere in the schema (only local references are supported)"),
        })
    }

    /// `anyOf` / `oneOf` → `anyOf`, with a `null` member turned into `nullable` and a
    /// single remaining member merged into the schema itself.
    fn any_of(
        &mut self,
        value: &Value,
        depth: usize,
        out: &mut Map<String, Value>,
    ) -> Result<(), TranslateError> {
        let Value::Array(members) = value else {
            return Ok(());
        };
        let mut kept = Vec::new();
        for member in members {
            if member.get("type").and_then(Value::as_str) == Some("null") {
                out.insert("nullable".into(), Value::Bool(true));
            } else {
                kept.push(self.clean(member, depth + 1)?);
            }
        }
        match kept.len() {
            0 => {}
            1 => {
                if let Some(Value::Object(only)) = kept.pop() {
                    for (k, v) in only {
                        out.entry(k).or_insert(v);
                    }
                }
            }
            _ => {
                out.insert("anyOf".into(), Value::Array(kept));
            }
        }
        Ok(())
    }
}

/// `type` as a string is kept; `[T, "null"]` becomes `T` + `nullable`; several
/// non-null types become an `anyOf` of them.
fn type_of(value: &Value, out: &mut Map<String, Value>) {
    let Value::Array(types) = value else {
        out.insert("type".into(), value.clone());
        return;
    };
    let mut named: Vec<&Value> = Vec::new();
    for t in types {
        if t.as_str() == Some("null") {
            out.insert("nullable".into(), Value::Bool(true));
        } else {
            named.push(t);
        }
    }
    match named.as_slice() {
        [] => {}
        [only] => {
            out.insert("type".into(), (*only).clone());
        }
        many => {
            let any: Vec<Value> = many.iter().map(|t| json!({ "type": t })).collect();
            out.insert("anyOf".into(), Value::Array(any));
        }
    }
}

/// True for an object schema with no properties, which Gemini refuses as function
/// parameters ("properties: should be non-empty for OBJECT type"); such a declaration
/// is sent without `parameters`.
pub(super) fn is_empty_object(schema: &Value) -> bool {
    let no_props = match schema.get("properties") {
        None => true,
        Some(Value::Object(p)) => p.is_empty(),
        Some(_) => false,
    };
    let object_type = schema
        .get("type")
        .and_then(Value::as_str)
        .is_none_or(|t| t.eq_ignore_ascii_case("object"));
    no_props && object_type && schema.get("anyOf").is_none()
}
