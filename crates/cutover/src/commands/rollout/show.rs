//! A rollout for people: its fields, one row per target, and the one-line status of a target
//! that `watch` prints.

use cutover_api::{Rollout, RolloutOperation, RolloutTask};

use super::super::Context;
use crate::output::{self, OutputFormat};

/// `cutover rollout show`: the rollout's fields, then its operations.
pub fn rollout(context: &Context, rollout: &Rollout) -> anyhow::Result<()> {
    if context.output == OutputFormat::Json {
        return output::json(rollout);
    }
    let dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
    let operations = sorted(rollout);
    let mut fields = vec![
        ("id", rollout.id.clone()),
        ("artifact", rollout.artifact.clone()),
        ("environment", rollout.environment.clone()),
        ("version", rollout.version.to_string()),
        ("state", rollout.state.clone()),
        ("targets", progress(&operations)),
        ("max parallel", rollout.max_parallel.to_string()),
        ("on failure", rollout.on_failure.clone()),
        ("failure budget", dash(rollout.failure_budget.map(|k| format!("{k} failed targets")))),
        ("steps", rollout.steps.join(", ")),
        ("executor", dash(operations.first().map(|operation| operation.executor.clone()))),
    ];
    if let Some(revision) = rollout.pinned_revision {
        fields.push(("pinned", format!("revision {revision}")));
    }
    fields.extend([
        ("created", format!("{} by {}", rollout.created_at, rollout.created_by)),
        ("updated", rollout.updated_at.clone()),
        ("ended", dash(rollout.ended_at.clone())),
    ]);
    output::emit(&output::fields(&fields))?;
    if operations.is_empty() {
        return Ok(());
    }
    let rows = operations.iter().map(|operation| {
        [
            operation.target.clone(),
            operation.wave.to_string(),
            operation_state(operation),
            operation.tasks.iter().map(|task| format!("{} {}", task.step, task.state)).collect::<Vec<_>>().join(", "),
            attempts(operation),
            first_error(operation).map_or_else(|| "-".to_owned(), |(task, error)| format!("{}: {error}", task.step)),
        ]
    });
    output::emit("")?;
    output::emit(&output::table(["TARGET", "WAVE", "STATE", "STEPS", "ATTEMPTS", "ERROR"], rows))
}

/// Each step's attempts, in the order of the steps (`1, 2`: the first step ran once, the second
/// twice); `-` for a step that never ran. A sum across steps would read as retries that never
/// happened.
pub fn attempts(operation: &RolloutOperation) -> String {
    let each = operation.tasks.iter().map(|task| match task.attempts {
        0 => "-".to_owned(),
        n => n.to_string(),
    });
    each.collect::<Vec<_>>().join(", ")
}

/// The rollout's operations in target order (`None` in lists: none).
pub fn sorted(rollout: &Rollout) -> Vec<&RolloutOperation> {
    let mut operations: Vec<_> = rollout.operations.iter().flatten().collect();
    operations.sort_by_key(|operation| operation.position);
    operations
}

/// `2 of 3 completed, 1 running`.
pub fn progress(operations: &[&RolloutOperation]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for operation in operations {
        match counts.iter_mut().find(|(state, _)| *state == operation.state) {
            Some((_, count)) => *count += 1,
            None => counts.push((&operation.state, 1)),
        }
    }
    let completed = counts.iter().find(|(state, _)| *state == "completed").map_or(0, |(_, count)| *count);
    let others =
        counts.iter().filter(|(state, _)| *state != "completed").map(|(state, count)| format!("{count} {state}"));
    std::iter::once(format!("{completed} of {} completed", operations.len()))
        .chain(others)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The operation's state, `released` when a person let the rollout go on past its failure.
fn operation_state(operation: &RolloutOperation) -> String {
    if operation.pause_released { format!("{} (released)", operation.state) } else { operation.state.clone() }
}

/// What an operation is at, in a few words: `pending`, `running apply`,
/// `failed apply: exited with status 1`, `completed`; with the step's attempt once it ran more
/// than once (`running apply (attempt 2)`).
pub fn status(operation: &RolloutOperation) -> String {
    let current = operation.tasks.iter().find(|task| task.state != "completed");
    match (operation.state.as_str(), current) {
        ("pending" | "completed" | "cancelled", _) | (_, None) => operation.state.clone(),
        (state, Some(task)) => {
            let attempt = if task.attempts > 1 { format!(" (attempt {})", task.attempts) } else { String::new() };
            match &task.error {
                Some(error) if task.state == "failed" => format!("{state} {}{attempt}: {error}", task.step),
                _ => format!("{state} {}{attempt}", task.step),
            }
        }
    }
}

/// Steps done: the bar's position.
pub fn steps_done(operation: &RolloutOperation) -> usize {
    operation.tasks.iter().filter(|task| task.state == "completed").count()
}

/// The first task that failed, with its error.
pub fn first_error(operation: &RolloutOperation) -> Option<(&RolloutTask, &str)> {
    operation.tasks.iter().find_map(|task| task.error.as_deref().map(|error| (task, error)))
}

#[cfg(test)]
pub(super) mod tests {
    use cutover_api::{RolloutOperation, RolloutTask};

    use super::{attempts, progress, status};

    pub fn task(step: &str, state: &str, error: Option<&str>) -> RolloutTask {
        RolloutTask {
            id: format!("task-{step}"),
            step: step.into(),
            state: state.into(),
            attempts: u32::from(state != "pending"),
            idempotency_key: String::new(),
            exit_code: None,
            error: error.map(str::to_owned),
            log_bytes: 0,
            started_at: None,
            ended_at: None,
        }
    }

    pub fn operation(target: &str, state: &str, tasks: Vec<RolloutTask>) -> RolloutOperation {
        RolloutOperation {
            id: format!("op-{target}"),
            target: target.into(),
            position: 0,
            wave: 0,
            state: state.into(),
            on_failure: "halt".into(),
            pause_released: false,
            executor: "command".into(),
            started_at: None,
            ended_at: None,
            tasks,
        }
    }

    #[test]
    fn a_target_s_status_names_the_step_it_is_at_and_why_it_failed() {
        let running =
            operation("t-0", "running", vec![task("build", "completed", None), task("apply", "running", None)]);
        assert_eq!(status(&running), "running apply");
        let failed = operation("t-1", "failed", vec![task("apply", "failed", Some("exited with status 1"))]);
        assert_eq!(status(&failed), "failed apply: exited with status 1");
        assert_eq!(status(&operation("t-2", "completed", vec![task("apply", "completed", None)])), "completed");
        assert_eq!(status(&operation("t-3", "pending", vec![task("apply", "pending", None)])), "pending");
    }

    #[test]
    fn progress_counts_completed_targets_first() {
        let done = operation("a", "completed", vec![]);
        let running = operation("b", "running", vec![]);
        assert_eq!(progress(&[&done, &running, &running]), "1 of 3 completed, 2 running");
        assert_eq!(progress(&[]), "0 of 0 completed");
    }

    #[test]
    fn attempts_are_shown_per_step_not_added_up() {
        let once_each =
            operation("t-0", "completed", vec![task("drain", "completed", None), task("apply", "completed", None)]);
        assert_eq!(attempts(&once_each), "1, 1", "a target that never retried");
        let mut retried = task("apply", "running", None);
        retried.attempts = 3;
        let operation = operation("t-1", "running", vec![task("drain", "completed", None), retried]);
        assert_eq!(attempts(&operation), "1, 3");
        assert_eq!(status(&operation), "running apply (attempt 3)");
        let never_ran = super::tests::operation("t-2", "cancelled", vec![task("drain", "pending", None)]);
        assert_eq!(attempts(&never_ran), "-");
    }
}
