use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{DomainError, limits};

/// What an artifact's versions contain. Resolve returns content typed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    String,
    Json,
    Boolean,
    Number,
}

impl ValueType {
    pub const ALL: [ValueType; 4] = [Self::String, Self::Json, Self::Boolean, Self::Number];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Json => "json",
            Self::Boolean => "boolean",
            Self::Number => "number",
        }
    }

    fn accepts(self, value: &Value) -> bool {
        match self {
            Self::String => value.is_string(),
            Self::Boolean => value.is_boolean(),
            Self::Number => value.is_number(),
            Self::Json => true,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ValueType {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| {
            DomainError::invalid("value_type", format!("{s:?} is not one of string, json, boolean, number"))
        })
    }
}

/// A version's content, checked against its artifact's value type.
///
/// It is stored as compact JSON text. Its sha256 is taken over the raw UTF-8 text for `string`
/// artifacts (so it matches `sha256sum` of the prompt or template file) and over the compact JSON
/// serialisation (object keys sorted) for every other type.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    value: Value,
    json: String,
}

impl Content {
    pub fn parse(value_type: ValueType, value: Value) -> Result<Self, DomainError> {
        if !value_type.accepts(&value) {
            return Err(DomainError::invalid(
                "content",
                format!("must be a {value_type} value for this artifact, got {}", kind_of(&value)),
            ));
        }
        let json = value.to_string();
        if json.len() > limits::MAX_CONTENT_BYTES {
            return Err(DomainError::invalid(
                "content",
                format!("must be at most {} bytes serialised", limits::MAX_CONTENT_BYTES),
            ));
        }
        Ok(Self { value, json })
    }

    /// Rebuilds content read back from the store, where it was checked on the way in.
    pub fn from_stored(json: String) -> Result<Self, serde_json::Error> {
        Ok(Self { value: serde_json::from_str(&json)?, json })
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    pub fn as_json(&self) -> &str {
        &self.json
    }

    pub fn sha256(&self) -> String {
        let bytes = match &self.value {
            Value::String(text) => text.as_bytes(),
            _ => self.json.as_bytes(),
        };
        hex::encode(Sha256::digest(bytes))
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn content_must_match_the_value_type() {
        assert!(Content::parse(ValueType::String, json!("hello")).is_ok());
        assert!(Content::parse(ValueType::Boolean, json!(true)).is_ok());
        assert!(Content::parse(ValueType::Number, json!(1.5)).is_ok());
        assert!(Content::parse(ValueType::Json, json!({"a": [1, null]})).is_ok());
        assert!(Content::parse(ValueType::Json, json!(null)).is_ok());

        let err = Content::parse(ValueType::String, json!(3)).unwrap_err();
        assert_eq!(err.to_string(), "content: must be a string value for this artifact, got a number");
        assert!(Content::parse(ValueType::Boolean, json!("true")).is_err());
        assert!(Content::parse(ValueType::Number, json!(null)).is_err());
    }

    #[test]
    fn string_content_hashes_like_sha256sum_of_the_text() {
        let content = Content::parse(ValueType::String, json!("hello")).unwrap();
        // printf hello | sha256sum
        assert_eq!(content.sha256(), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    }

    #[test]
    fn json_content_hash_does_not_depend_on_key_order() {
        let a = Content::parse(ValueType::Json, serde_json::from_str(r#"{"b":1,"a":2}"#).unwrap()).unwrap();
        let b = Content::parse(ValueType::Json, serde_json::from_str(r#"{"a":2,"b":1}"#).unwrap()).unwrap();
        assert_eq!(a.sha256(), b.sha256());
        assert_eq!(a.as_json(), r#"{"a":2,"b":1}"#);
    }

    #[test]
    fn oversized_content_is_refused() {
        let big = "x".repeat(limits::MAX_CONTENT_BYTES);
        assert!(Content::parse(ValueType::String, json!(big)).is_err());
    }

    #[test]
    fn value_types_parse_from_their_names_only() {
        for t in ValueType::ALL {
            assert_eq!(t.as_str().parse::<ValueType>().unwrap(), t);
        }
        assert!("String".parse::<ValueType>().is_err());
    }
}
