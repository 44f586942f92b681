//! What changed between two contents of an artifact: a line diff for text, a field diff for JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;
use similar::TextDiff;

/// Lines of context around each change in a line diff.
const CONTEXT_LINES: usize = 3;

/// One field that differs; `from` is absent for an added field, `to` for a removed one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    /// `a.b[2].c`; empty for a value that is not an object or array.
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Value>,
}

/// A unified line diff of two texts, headed by their labels; empty when they are equal.
pub fn lines(from: &str, to: &str, from_label: &str, to_label: &str) -> String {
    if from == to {
        return String::new();
    }
    TextDiff::from_lines(from, to)
        .unified_diff()
        .context_radius(CONTEXT_LINES)
        .missing_newline_hint(false)
        .header(from_label, to_label)
        .to_string()
}

/// How a line of a side-by-side diff relates the two texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LineTag {
    Same,
    Removed,
    Added,
}

/// One line of a line diff, for a page to colour: the whole of both texts, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffLine {
    pub tag: LineTag,
    pub text: String,
}

/// Every line of both texts, tagged: unchanged, removed from `from`, or added in `to`.
pub fn tagged_lines(from: &str, to: &str) -> Vec<DiffLine> {
    TextDiff::from_lines(from, to)
        .iter_all_changes()
        .map(|change| DiffLine {
            tag: match change.tag() {
                similar::ChangeTag::Equal => LineTag::Same,
                similar::ChangeTag::Delete => LineTag::Removed,
                similar::ChangeTag::Insert => LineTag::Added,
            },
            text: change.value().trim_end_matches(['\n', '\r']).to_owned(),
        })
        .collect()
}

/// Every leaf of two JSON values that differs, in path order.
pub fn fields(from: &Value, to: &Value) -> Vec<FieldChange> {
    let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
    flatten(from, String::new(), &mut before);
    flatten(to, String::new(), &mut after);
    let paths: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    paths
        .into_iter()
        .filter_map(|path| {
            let (old, new) = (before.get(path), after.get(path));
            (old != new).then(|| FieldChange { path: path.clone(), from: old.cloned(), to: new.cloned() })
        })
        .collect()
}

/// The leaves of `value` by path; an empty object or array is a leaf of its own.
fn flatten(value: &Value, path: String, leaves: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (name, field) in fields {
                let child = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                flatten(field, child, leaves);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (index, item) in items.iter().enumerate() {
                flatten(item, format!("{path}[{index}]"), leaves);
            }
        }
        leaf => {
            leaves.insert(path, leaf.clone());
        }
    }
}

/// One line per change: `~ path: old → new`, `+ path: new`, `- path: old`.
pub fn render_fields(changes: &[FieldChange]) -> String {
    let mut text = String::new();
    for change in changes {
        let path = if change.path.is_empty() { "(value)" } else { &change.path };
        // Writing to a String cannot fail.
        let _ = match (&change.from, &change.to) {
            (Some(from), Some(to)) => writeln!(text, "~ {path}: {from} → {to}"),
            (None, Some(to)) => writeln!(text, "+ {path}: {to}"),
            (Some(from), None) => writeln!(text, "- {path}: {from}"),
            (None, None) => Ok(()),
        };
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{DiffLine, FieldChange, LineTag, fields, lines, render_fields, tagged_lines};

    #[test]
    fn tagged_lines_keep_both_texts_in_order() {
        let line = |tag, text: &str| DiffLine { tag, text: text.to_owned() };
        assert_eq!(
            tagged_lines("a\nb\nc\n", "a\nB\nc\nd"),
            [
                line(LineTag::Same, "a"),
                line(LineTag::Removed, "b"),
                line(LineTag::Added, "B"),
                line(LineTag::Same, "c"),
                line(LineTag::Added, "d"),
            ]
        );
    }

    #[test]
    fn texts_differ_by_lines_with_context() {
        let diff = lines("Hello.\nBe brief.\nSign off.\n", "Hello.\nBe very brief.\nSign off.\n", "v1", "v2");
        assert_eq!(diff, "--- v1\n+++ v2\n@@ -1,3 +1,3 @@\n Hello.\n-Be brief.\n+Be very brief.\n Sign off.\n");
        assert_eq!(lines("same", "same", "v1", "v2"), "");
    }

    #[test]
    fn json_differs_by_fields_added_removed_and_changed() {
        let from = json!({"model": "small", "temperature": 0.2, "stop": ["\n"], "top_p": 0.9});
        let to = json!({"model": "small", "temperature": 0.7, "stop": ["\n", "###"], "tools": {}});
        let changes = fields(&from, &to);
        assert_eq!(
            changes,
            [
                FieldChange { path: "stop[1]".into(), from: None, to: Some(json!("###")) },
                FieldChange { path: "temperature".into(), from: Some(json!(0.2)), to: Some(json!(0.7)) },
                FieldChange { path: "tools".into(), from: None, to: Some(json!({})) },
                FieldChange { path: "top_p".into(), from: Some(json!(0.9)), to: None },
            ]
        );
        assert_eq!(
            render_fields(&changes),
            "+ stop[1]: \"###\"\n~ temperature: 0.2 → 0.7\n+ tools: {}\n- top_p: 0.9\n"
        );
    }

    #[test]
    fn plain_values_differ_as_one_field() {
        assert_eq!(render_fields(&fields(&json!(3), &json!(4))), "~ (value): 3 → 4\n");
        assert!(fields(&json!({"a": [1]}), &json!({"a": [1]})).is_empty());
    }
}
