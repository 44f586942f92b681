//! `cutover rollout watch`: follows a rollout until it ends or waits for a person.
//!
//! The rollout is read every half second. On a terminal: a line for the rollout and one bar per
//! target (steps done out of steps, and what it is at). Otherwise, for logs and CI: a plain line
//! each time a target's status or the rollout's state changes (`t-0 running apply`, `rollout
//! completed`). With `--output json`: only the rollout as the watch ends.
//!
//! The watch ends when the rollout is `completed` (exit 0), `failed` or `cancelled` (exit 1), or
//! `stopped` or `paused` (exit 4): from those nothing happens until a person resumes, releases,
//! retries or cancels it, so waiting on would hang a script.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use cutover_api::{Rollout, RolloutOperation};
use cutover_client::ClientError;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::super::Context;
use super::show::{first_error, progress, sorted, status, steps_done};
use crate::failure::WaitingError;
use crate::output::{self, OutputFormat};

const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long the server may not answer (a restart, a failover) before the watch gives up.
const UNREACHABLE_GRACE: Duration = Duration::from_secs(30);

pub async fn watch(context: &Context, id: &str) -> anyhow::Result<()> {
    let mut display = match context.output {
        OutputFormat::Json => Display::Quiet,
        OutputFormat::Table if std::io::stdout().is_terminal() => Display::Bars(Bars::new()),
        OutputFormat::Table => Display::Lines(Lines::default()),
    };
    let followed = follow(context, id, &mut display).await;
    display.finish();
    let rollout = followed?;
    if context.output == OutputFormat::Json {
        output::json(&rollout)?;
    }
    outcome(&rollout)
}

/// Polls until the watch ends; the rollout as it ended.
async fn follow(context: &Context, id: &str, display: &mut Display) -> anyhow::Result<Rollout> {
    let mut answered = Instant::now();
    loop {
        match context.client.get_rollout(id).await {
            Ok(rollout) => {
                answered = Instant::now();
                display.show(&rollout)?;
                if matches!(rollout.state.as_str(), "completed" | "failed" | "cancelled" | "stopped" | "paused") {
                    return Ok(rollout);
                }
            }
            Err(ClientError::Transport { .. }) if answered.elapsed() < UNREACHABLE_GRACE => {}
            Err(err) => return Err(err.into()),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Success only for a completed rollout; the error says what a person can do.
fn outcome(rollout: &Rollout) -> anyhow::Result<()> {
    let id = &rollout.id;
    let why = sorted(rollout)
        .into_iter()
        .find_map(|operation| first_error(operation).map(|(task, error)| (operation, task, error)))
        .map_or_else(String::new, |(operation, task, error)| format!(" ({}/{}: {error})", operation.target, task.step));
    match rollout.state.as_str() {
        "completed" => Ok(()),
        "stopped" => Err(WaitingError(format!(
            "rollout {id} is stopped: `cutover rollout resume {id}` continues it, `cancel` ends it"
        ))
        .into()),
        "paused" => Err(WaitingError(format!(
            "rollout {id} is paused by a failure{why}: `cutover rollout release {id}` lets the other targets go \
             on, `retry` runs the failed ones again, `cancel` ends it"
        ))
        .into()),
        state => Err(anyhow::anyhow!("rollout {id} {state}{why}")),
    }
}

enum Display {
    Bars(Bars),
    Lines(Lines),
    Quiet,
}

impl Display {
    fn show(&mut self, rollout: &Rollout) -> anyhow::Result<()> {
        match self {
            Self::Bars(bars) => bars.show(rollout),
            Self::Lines(lines) => lines.changes(rollout).iter().try_for_each(|line| output::emit(line)),
            Self::Quiet => Ok(()),
        }
    }

    fn finish(&self) {
        if let Self::Bars(bars) = self {
            bars.finish();
        }
    }
}

/// Plain lines: what changed since the last read.
#[derive(Debug, Default)]
struct Lines {
    rollout: Option<String>,
    /// Each target's last status, by operation id; absent ones were `pending`.
    targets: HashMap<String, String>,
}

impl Lines {
    fn changes(&mut self, rollout: &Rollout) -> Vec<String> {
        let mut lines = Vec::new();
        for operation in sorted(rollout) {
            let now = status(operation);
            let before = self.targets.insert(operation.id.clone(), now.clone());
            if before.as_deref().unwrap_or("pending") != now {
                lines.push(format!("{} {now}", operation.target));
            }
        }
        if self.rollout.as_deref() != Some(rollout.state.as_str()) {
            lines.push(format!("rollout {}", rollout.state));
            self.rollout = Some(rollout.state.clone());
        }
        lines
    }
}

/// The rollout on a line of its own, then a bar per target, drawn on stdout and fitted to the
/// terminal's width at every read (it may be resized while the watch runs).
struct Bars {
    multi: MultiProgress,
    header: ProgressBar,
    /// By operation id; made at the first read (a rollout's targets are fixed at its start). Each
    /// is drawn by [`target_line`]: indicatif's own bar would be drawn full when it finishes,
    /// also for a target that never ran.
    targets: HashMap<String, ProgressBar>,
}

/// Columns assumed when the terminal does not say.
const DEFAULT_COLUMNS: usize = 80;

impl Bars {
    fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let header = multi.add(ProgressBar::new_spinner());
        header.enable_steady_tick(Duration::from_millis(120));
        Self { multi, header, targets: HashMap::new() }
    }

    fn show(&mut self, rollout: &Rollout) -> anyhow::Result<()> {
        // The terminal's width as the table printer sees it (it asks the terminal).
        let columns = comfy_table::Table::new().width().map_or(DEFAULT_COLUMNS, usize::from);
        let operations = sorted(rollout);
        // The spinner and its space come before the first line.
        self.header.set_message(header(rollout, &operations, columns.saturating_sub(2)).join("\n"));
        if self.targets.is_empty() {
            let style = ProgressStyle::with_template("{msg}")?;
            for operation in &operations {
                let bar = ProgressBar::new(0).with_style(style.clone());
                self.targets.insert(operation.id.clone(), self.multi.add(bar));
            }
        }
        let name_width = operations.iter().map(|operation| operation.target.chars().count()).max().unwrap_or(0);
        for operation in operations {
            if let Some(bar) = self.targets.get(&operation.id) {
                bar.set_message(target_line(operation, name_width, columns));
            }
        }
        Ok(())
    }

    /// Leaves the last state drawn, as it is.
    fn finish(&self) {
        for bar in self.targets.values() {
            bar.abandon();
        }
        self.header.abandon();
    }
}

/// The rollout's header, wrapped at spaces to lines of at most `columns` characters (a word
/// longer than a line is cut, never a word that fits).
fn header(rollout: &Rollout, operations: &[&RolloutOperation], columns: usize) -> Vec<String> {
    let text = format!(
        "rollout {}: version {} of {} to {}: {}; targets: {}",
        rollout.id,
        rollout.version,
        rollout.artifact,
        rollout.environment,
        rollout.state,
        progress(operations)
    );
    let columns = columns.max(1);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        let used = line.chars().count();
        if used > 0 && used + 1 + word.len() > columns {
            lines.push(std::mem::take(&mut line));
        }
        while word.len() > columns {
            lines.push(word.drain(..columns).collect());
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.extend(word);
    }
    lines.push(line);
    lines
}

/// One target: its name, a bar of the steps it completed, the count and what it is at, cut to
/// `columns` characters. A target that never ran has an empty bar, whatever the rollout's state.
fn target_line(operation: &RolloutOperation, name_width: usize, columns: usize) -> String {
    let (done, total) = (steps_done(operation), operation.tasks.len());
    let width = (columns / 4).clamp(5, 30);
    let filled = (done * width).checked_div(total).unwrap_or(0);
    let head = usize::from(filled < width && done > 0);
    let bar = format!("{}{}{}", "=".repeat(filled), ">".repeat(head), " ".repeat(width - filled - head));
    let line = format!("{:name_width$} [{bar}] {done}/{total} {}", operation.target, status(operation));
    cut(&line, columns)
}

/// `text` in at most `columns` characters, ending in `…` when it was cut.
fn cut(text: &str, columns: usize) -> String {
    if text.chars().count() <= columns {
        return text.to_owned();
    }
    let mut kept: String = text.chars().take(columns.saturating_sub(1)).collect();
    kept.push('…');
    kept
}

#[cfg(test)]
mod tests {
    use cutover_api::{Rollout, RolloutOperation};

    use super::super::show::tests::{operation, task};
    use super::{Lines, header, outcome, target_line};
    use crate::failure::WaitingError;

    fn rollout(state: &str, operations: Vec<RolloutOperation>) -> Rollout {
        Rollout {
            id: "r1".into(),
            artifact: "greeting".into(),
            environment: "production".into(),
            version: 2,
            state: state.into(),
            max_parallel: 2,
            on_failure: "halt".into(),
            failure_budget: None,
            steps: vec!["apply".into()],
            progress: None,
            pinned_revision: None,
            created_at: String::new(),
            updated_at: String::new(),
            ended_at: None,
            created_by: "owner".into(),
            operations: Some(operations),
        }
    }

    #[test]
    fn plain_lines_are_printed_only_for_what_changed() {
        let mut lines = Lines::default();
        let pending = || operation("t-0", "pending", vec![task("apply", "pending", None)]);
        assert_eq!(lines.changes(&rollout("pending", vec![pending()])), ["rollout pending"]);
        let running = || operation("t-0", "running", vec![task("apply", "running", None)]);
        assert_eq!(lines.changes(&rollout("running", vec![running()])), ["t-0 running apply", "rollout running"]);
        assert!(lines.changes(&rollout("running", vec![running()])).is_empty());
        let done = operation("t-0", "completed", vec![task("apply", "completed", None)]);
        assert_eq!(lines.changes(&rollout("completed", vec![done])), ["t-0 completed", "rollout completed"]);
    }

    #[test]
    fn only_a_completed_rollout_ends_the_watch_successfully() {
        assert!(outcome(&rollout("completed", vec![])).is_ok());
        let failed = operation("t-1", "failed", vec![task("apply", "failed", Some("exited with status 1"))]);
        let err = outcome(&rollout("failed", vec![failed.clone()])).unwrap_err();
        assert_eq!(err.to_string(), "rollout r1 failed (t-1/apply: exited with status 1)");
        assert!(!err.is::<WaitingError>());
        let err = outcome(&rollout("paused", vec![failed])).unwrap_err();
        assert!(err.is::<WaitingError>(), "{err}");
        assert!(err.to_string().starts_with("rollout r1 is paused by a failure (t-1/apply"), "{err}");
        assert!(outcome(&rollout("stopped", vec![])).unwrap_err().is::<WaitingError>());
    }

    #[test]
    fn a_target_that_never_ran_has_an_empty_bar_and_a_finished_one_a_full_bar() {
        let steps = |state| vec![task("drain", state, None), task("apply", state, None)];
        let never_ran = operation("t-2", "cancelled", steps("cancelled"));
        assert_eq!(target_line(&never_ran, 4, 120), "t-2  [                              ] 0/2 cancelled");
        let done = operation("t-0", "completed", steps("completed"));
        assert_eq!(target_line(&done, 4, 120), "t-0  [==============================] 2/2 completed");
        let half = operation("t-1", "running", vec![task("drain", "completed", None), task("apply", "running", None)]);
        assert_eq!(target_line(&half, 3, 40), "t-1 [=====>    ] 1/2 running apply");
    }

    #[test]
    fn a_target_line_is_cut_to_the_terminal_width() {
        let error = "exited with status 1 after printing a very long explanation of what went wrong";
        let failed = operation("t-1", "failed", vec![task("apply", "failed", Some(error))]);
        let line = target_line(&failed, 3, 60);
        assert_eq!(line.chars().count(), 60, "{line}");
        assert!(
            line.starts_with("t-1 [               ] 0/1 failed apply: exited with") && line.ends_with('…'),
            "{line}"
        );
    }

    #[test]
    fn the_header_wraps_between_words_to_fit_the_terminal() {
        let mut long = rollout("running_degraded", vec![]);
        long.id = "0193f3a2-7c1d-7b4e-9f00-5a8d2c6e1b47".into();
        long.artifact = "prompts/customer-support/greeting".into();
        long.environment = "production-eu-west".into();
        let operations = [
            operation("a", "completed", vec![]),
            operation("b", "failed", vec![]),
            operation("c", "cancelled", vec![]),
            operation("d", "running", vec![]),
        ];
        let operations: Vec<_> = operations.iter().collect();
        let lines = header(&long, &operations, 118);
        assert_eq!(
            lines,
            [
                "rollout 0193f3a2-7c1d-7b4e-9f00-5a8d2c6e1b47: version 2 of prompts/customer-support/greeting to \
                 production-eu-west:",
                "running_degraded; targets: 1 of 4 completed, 1 failed, 1 cancelled, 1 running",
            ]
        );
        assert!(lines.iter().all(|line| line.chars().count() <= 118));
        assert_eq!(
            header(&rollout("running", vec![]), &[], 200),
            ["rollout r1: version 2 of greeting to production: \
             running; targets: 0 of 0 completed"]
        );
        assert_eq!(header(&rollout("running", vec![]), &[], 4)[0], "roll", "a word longer than a line is cut");
    }
}
