//! `cutover event send`: metric events (conversions, values), as applications post them; each
//! counts in the experiments that exposed its user.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use cutover_api::{MetricEventIn, PostEvents};
use serde_json::Value;

use super::{Context, read_file};
use crate::failure::usage;
use crate::output::{self, OutputFormat};

#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// Records one event, or a file of them (all recorded, or none when one is invalid).
    Send(SendArgs),
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The metric, as experiments name it (--primary-metric, --guardrail).
    #[arg(long, value_name = "METRIC", required_unless_present = "file", conflicts_with = "file")]
    metric: Option<String>,
    /// Who did it: the targeting key resolve assigned the user by.
    #[arg(long, value_name = "KEY", required_unless_present = "file", conflicts_with = "file")]
    targeting_key: Option<String>,
    /// What it is worth (revenue, latency...); without one the event is a conversion.
    #[arg(long, value_name = "NUMBER", allow_negative_numbers = true, conflicts_with = "file")]
    value: Option<f64>,
    /// When it happened, RFC 3339 [default: when the server receives it].
    #[arg(long, value_name = "RFC3339", conflicts_with = "file")]
    timestamp: Option<String>,
    /// A JSON file of events (`-` for stdin), at most 1,000: an array of
    /// `{"metric", "targeting_key", "value"?, "timestamp"?}`, or `{"events": [...]}`.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
}

pub async fn run(context: &Context, command: EventCommand) -> anyhow::Result<()> {
    let EventCommand::Send(args) = command;
    let events = match (&args.file, args.metric, args.targeting_key) {
        (Some(path), _, _) => {
            let text = read_file(path)?;
            parse_events(&text).map_err(|reason| usage(format!("{}: {reason}", path.display())))?
        }
        (None, Some(metric), Some(targeting_key)) => {
            vec![MetricEventIn { metric, targeting_key, value: args.value, timestamp: args.timestamp }]
        }
        // clap requires both without --file.
        _ => return Err(usage("give --metric and --targeting-key, or --file")),
    };
    let accepted = context.client.post_events(&PostEvents { events }).await?;
    if context.output == OutputFormat::Json {
        return output::json(&accepted);
    }
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    output::emit(&format!(
        "recorded {}, counted {} in experiments",
        plural(accepted.received, "event", "events"),
        plural(accepted.attributed, "time", "times")
    ))?;
    if accepted.received > 0 && accepted.attributed == 0 {
        output::note(
            "(an event counts only in a running experiment that tracks its metric and exposed its user, e.g. \
             through `cutover resolve --targeting-key`)",
        );
    }
    Ok(())
}

/// The events of a file in either of the API's shapes.
fn parse_events(text: &str) -> Result<Vec<MetricEventIn>, String> {
    let value: Value = serde_json::from_str(text).map_err(|err| format!("not valid JSON ({err})"))?;
    let events = match value {
        Value::Array(_) => serde_json::from_value(value),
        Value::Object(_) => serde_json::from_value::<PostEvents>(value).map(|batch| batch.events),
        _ => return Err("expected an array of events or {\"events\": [...]}".to_owned()),
    };
    events.map_err(|err| format!("not a list of events ({err})"))
}

#[cfg(test)]
mod tests {
    use super::parse_events;

    #[test]
    fn a_file_holds_a_bare_array_or_the_batch_object() {
        let bare = parse_events(r#"[{"metric": "checkout", "targeting_key": "u1", "value": 2.5}]"#).unwrap();
        assert_eq!((bare[0].metric.as_str(), bare[0].value), ("checkout", Some(2.5)));
        let batch = parse_events(
            r#"{"events": [{"metric": "m", "targeting_key": "u1"}, {"metric": "m", "targeting_key": "u2"}]}"#,
        )
        .unwrap();
        assert_eq!(batch.len(), 2);
    }

    #[test]
    fn a_file_that_is_not_events_says_why() {
        assert!(parse_events("[").unwrap_err().starts_with("not valid JSON"));
        assert!(parse_events("42").unwrap_err().starts_with("expected an array"));
        let unknown = parse_events(r#"[{"metric": "m", "targeting_key": "u", "user": "x"}]"#).unwrap_err();
        assert!(unknown.contains("unknown field `user`"), "{unknown}");
    }
}
