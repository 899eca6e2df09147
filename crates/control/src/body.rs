//! Request bodies: one JSON object whose fields are taken one by one, so every refusal names its
//! field, and a field the resource does not have is refused rather than ignored.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::api_error::ApiError;

/// The most a `description` holds, in bytes (ngrok's limit).
pub(crate) const MAX_DESCRIPTION: usize = 255;
/// The most a `metadata` holds, in bytes (ngrok's limit).
pub(crate) const MAX_METADATA: usize = 4096;

/// The fields of a request's JSON object, not yet taken.
#[derive(Debug)]
pub(crate) struct Fields {
    fields: Map<String, Value>,
}

impl Fields {
    /// Reads `body` as one JSON object whose fields are all in `known`.
    pub fn parse(body: &[u8], known: &[&str]) -> Result<Fields, ApiError> {
        let value: Value = serde_json::from_slice(body).map_err(|error| {
            ApiError::bad_json(format!(
                "the body is not JSON ({error}); send one JSON object"
            ))
        })?;
        let Value::Object(fields) = value else {
            return Err(ApiError::bad_json(format!(
                "the body is a JSON {}, not an object; send one JSON object with the fields {}",
                kind_of(&value),
                known.join(", ")
            )));
        };
        if let Some(unknown) = fields.keys().find(|name| !known.contains(&name.as_str())) {
            return Err(ApiError::invalid(
                unknown,
                format!(
                    "unknown field {unknown:?}; the fields are {}",
                    known.join(", ")
                ),
            ));
        }
        Ok(Fields { fields })
    }

    /// The field `name` as a `T`; `None` when it is absent or `null`.
    pub fn take<T: DeserializeOwned>(&mut self, name: &str) -> Result<Option<T>, ApiError> {
        match self.fields.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => {
                let kind = kind_of(&value);
                serde_json::from_value(value).map(Some).map_err(|error| {
                    ApiError::invalid(name, format!("field {name:?} ({kind}): {error}"))
                })
            }
        }
    }

    /// The field `name` as a `T`, which the request must have.
    pub fn required<T: DeserializeOwned>(&mut self, name: &str) -> Result<T, ApiError> {
        self.take(name)?
            .ok_or_else(|| ApiError::invalid(name, format!("field {name:?} is required")))
    }

    /// `description`, when given: free text of at most [`MAX_DESCRIPTION`] bytes.
    pub fn description(&mut self) -> Result<Option<String>, ApiError> {
        self.bounded_text("description", MAX_DESCRIPTION)
    }

    /// `metadata`, when given: free text of at most [`MAX_METADATA`] bytes (often JSON).
    pub fn metadata(&mut self) -> Result<Option<String>, ApiError> {
        self.bounded_text("metadata", MAX_METADATA)
    }

    fn bounded_text(&mut self, name: &str, limit: usize) -> Result<Option<String>, ApiError> {
        let text: Option<String> = self.take(name)?;
        match text {
            Some(text) if text.len() > limit => Err(ApiError::invalid(
                name,
                format!(
                    "field {name:?} has {} bytes; it holds at most {limit}",
                    text.len()
                ),
            )),
            text => Ok(text),
        }
    }
}

/// What kind of JSON value this is, for messages.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
