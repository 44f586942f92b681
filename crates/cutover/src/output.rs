//! Printing results: tables (comfy-table) for people, the API's JSON for scripts.
//!
//! Everything goes through [`emit`], so that a closed pipe (`cutover env list | head -1`) ends
//! the output quietly instead of panicking like `println!` would.

use std::io::{self, Write};

use clap::ValueEnum;
use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// Writes `text` and a newline to stdout.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(err) if err.kind() != io::ErrorKind::BrokenPipe => Err(err.into()),
        _ => Ok(()),
    }
}

/// Writes `text` to stdout exactly, with no newline added (content for pipes).
pub fn emit_raw(text: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(err) if err.kind() != io::ErrorKind::BrokenPipe => Err(err.into()),
        _ => Ok(()),
    }
}

/// Writes a remark for people to stderr, ignoring failure: there is nowhere left to report it.
pub fn note(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// Writes `value` as pretty JSON.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    emit(&serde_json::to_string_pretty(value)?)
}

/// A borderless table with a header row, wrapped to the terminal's width when there is one.
pub fn table<const N: usize>(header: [&str; N], rows: impl IntoIterator<Item = [String; N]>) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header)
        .add_rows(rows);
    trim_lines(&table.to_string())
}

/// [`table`] with a number of columns known only at run time.
pub fn table_of(header: Vec<String>, rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header)
        .add_rows(rows);
    trim_lines(&table.to_string())
}

/// One object as `field  value` lines.
pub fn fields(rows: &[(&str, String)]) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .add_rows(rows.iter().map(|(name, value)| [(*name).to_owned(), value.clone()]));
    trim_lines(&table.to_string())
}

/// comfy-table pads every cell, leaving a margin on the left and spaces on the right.
fn trim_lines(text: &str) -> String {
    text.lines().map(|line| line.strip_prefix(' ').unwrap_or(line).trim_end()).collect::<Vec<_>>().join("\n")
}

/// `yes` / `no` in tables.
pub fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

/// A list in one cell, or `-` when empty.
pub fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() { "-".to_owned() } else { items.join(", ") }
}

/// A free-text cell, or `-` when empty.
pub fn or_dash(text: &str) -> String {
    if text.is_empty() { "-".to_owned() } else { text.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::{fields, table};

    #[test]
    fn tables_have_a_header_and_no_borders_or_trailing_spaces() {
        let text = table(
            ["NAME", "PROTECTED"],
            [["production".to_owned(), "yes".to_owned()], ["dev".to_owned(), "no".to_owned()]],
        );
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("NAME"), "{text}");
        assert!(lines[1].starts_with("production") && lines[1].ends_with("yes"), "{text}");
        assert!(lines.iter().all(|line| !line.ends_with(' ')), "{text}");
    }

    #[test]
    fn fields_are_name_then_value() {
        let text = fields(&[("name", "production".into()), ("protected", "no".into())]);
        assert!(text.starts_with("name"), "{text}");
        assert!(text.lines().nth(1).is_some_and(|line| line.ends_with(" no")), "{text}");
    }
}
