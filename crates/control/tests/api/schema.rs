//! A validator for the subset of JSON Schema the OpenAPI document uses: `$ref`, `type` (one or
//! several, `null` among them), `enum`, `properties`, `required`, `additionalProperties: false`,
//! `items`, `minItems`, `maxItems` and `maxLength`.

use serde_json::Value;

/// Checks `value` against `schema` (resolving `$ref`s in `document`); the error names the
/// place (`$.certificate_authorities[0].id`) and the rule broken.
pub fn validate(document: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(document, schema)?;
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            other => return Err(format!("{at}: the schema's type {other} is not understood")),
        };
        if !types.iter().any(|kind| is_of(kind, value)) {
            return Err(format!("{at}: {value} is not of type {types:?}"));
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let (Some(limit), Value::String(text)) = (schema.get("maxLength"), value) {
        let limit = limit.as_u64().unwrap_or(u64::MAX) as usize;
        if text.chars().count() > limit {
            return Err(format!("{at}: longer than {limit}"));
        }
    }
    if let Value::Object(fields) = value {
        let properties = schema.get("properties").and_then(Value::as_object);
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !fields.contains_key(required) {
                return Err(format!("{at}: the required field {required:?} is missing"));
            }
        }
        for (name, field) in fields {
            match properties.and_then(|properties| properties.get(name)) {
                Some(property) => validate(document, property, field, &format!("{at}.{name}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: the field {name:?} is not in the schema"));
                }
                None => {}
            }
        }
    }
    if let Value::Array(items) = value {
        let count = items.len() as u64;
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && count < min
        {
            return Err(format!("{at}: {count} items, fewer than {min}"));
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && count > max
        {
            return Err(format!("{at}: {count} items, more than {max}"));
        }
        if let Some(item) = schema.get("items") {
            for (index, element) in items.iter().enumerate() {
                validate(document, item, element, &format!("{at}[{index}]"))?;
            }
        }
    }
    Ok(())
}

/// `schema`, or what its `$ref` (`#/components/...`) points at, followed to the end.
pub fn resolve<'a>(document: &'a Value, mut schema: &'a Value) -> Result<&'a Value, String> {
    while let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let pointer = reference
            .strip_prefix('#')
            .ok_or_else(|| format!("{reference}: only references within the document"))?;
        schema = document
            .pointer(pointer)
            .ok_or_else(|| format!("{reference} points at nothing"))?;
    }
    Ok(schema)
}

fn is_of(kind: &str, value: &Value) -> bool {
    match kind {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}

#[test]
fn the_validator_finds_what_breaks_a_schema() {
    let document = serde_json::json!({"components": {"schemas": {"Thing": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "when": {"type": ["string", "null"]},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}
        },
        "required": ["id"],
        "additionalProperties": false
    }}}});
    let thing = serde_json::json!({"$ref": "#/components/schemas/Thing"});
    let check = |value: Value| validate(&document, &thing, &value, "$");
    assert_eq!(
        check(serde_json::json!({"id": "x", "when": null, "kind": "a", "tags": ["t"]})),
        Ok(())
    );
    for (value, broken) in [
        (serde_json::json!({}), "required field \"id\""),
        (serde_json::json!({"id": 1}), "$.id: 1 is not of type"),
        (
            serde_json::json!({"id": "x", "extra": 1}),
            "\"extra\" is not in the schema",
        ),
        (serde_json::json!({"id": "x", "kind": "c"}), "not one of"),
        (serde_json::json!({"id": "x", "tags": [1]}), "$.tags[0]"),
        (
            serde_json::json!({"id": "x", "tags": ["a", "b", "c"]}),
            "more than 2",
        ),
    ] {
        let error = check(value.clone()).unwrap_err();
        assert!(error.contains(broken), "{value}: {error}");
    }
}
