//! Executors: what runs one task of a rollout.
//!
//! - `command`: runs a program the operator declared (`[executors.<name>]`, not through a shell)
//!   with a clean environment: the task described in `CUTOVER_*` variables, the version's content
//!   in a file, and only the server's variables the declaration lists. Exit code 0 completes the
//!   task, anything else or the timeout fails it. Output (stdout then stderr) is kept, bounded, in
//!   the task's log.
//! - `webhook` ([`super::webhook`]): a signed POST; the receiver reports the result through the
//!   task's callback endpoint.
//! - `manual`: nothing runs; a person reports the result through the API.
//!
//! Every run of a task carries the task's idempotency key, the same on every attempt, so that a
//! program re-run after a crash can tell it has done the work already.

use std::process::Stdio;
use std::time::Duration;

use cutover_domain::rollouts::TaskLog;
use cutover_store::TaskOutcome;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

use crate::config::ExecutorConfig;

/// Everything a task run is told about its task.
#[derive(Debug, Clone)]
pub struct TaskContext {
    pub rollout_id: String,
    pub task_id: String,
    pub artifact: String,
    pub environment: String,
    pub target: String,
    pub target_config: Map<String, Value>,
    pub version: i64,
    pub step: String,
    pub idempotency_key: String,
    pub attempt: u32,
    pub value_type: String,
    pub content: Value,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    /// It ran to a result (success, failure, or timeout).
    Finished(TaskOutcome),
    /// It was asked to stop and did; the task has no result.
    Stopped { log: String },
}

/// The content as the program reads it: a string artifact's text as is, anything else as JSON.
fn content_bytes(context: &TaskContext) -> Vec<u8> {
    match &context.content {
        Value::String(text) => text.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

/// A stream's output, bounded as it arrives (a program may print far more than is kept).
async fn capture(mut stream: impl AsyncRead + Unpin) -> TaskLog {
    let mut log = TaskLog::default();
    let mut chunk = [0_u8; 8192];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => log.push(&chunk[..n]),
        }
    }
    log
}

/// How one run of a declared program ended, with its output (stdout then stderr, bounded).
pub enum ProgramEnd {
    /// It exited (successfully or not).
    Exited { status: std::process::ExitStatus, log: String },
    /// It could not run, or did not end in time: why.
    Failed { error: String, log: String },
    /// `stop` turned true and it was killed.
    Stopped { log: String },
}

/// Runs the operator's declared program with a clean environment: only the server variables
/// the declaration lists, plus what `describe` adds (the run's `CUTOVER_*` variables), in the
/// declared working directory or a new empty one (`describe` may write files into it). The
/// program gets its own process group, killed on timeout or when `stop` turns true. Every
/// executor that runs a program (rollout tasks, pool provisioners) goes through here.
pub async fn run_declared(
    declared: &ExecutorConfig,
    timeout: Duration,
    describe: impl FnOnce(&std::path::Path, &mut tokio::process::Command) -> Result<(), String>,
    mut stop: watch::Receiver<bool>,
) -> ProgramEnd {
    let failed = |error: String| ProgramEnd::Failed { error, log: String::new() };
    let Some((name, args)) = declared.program.split_first() else {
        return failed("the executor names no program".into());
    };
    // A directory of the run's own: files the run is handed, and the working directory unless
    // the operator set one. Removed when the run ends.
    let scratch = match tempfile::Builder::new().prefix("cutover-run-").tempdir() {
        Ok(dir) => dir,
        Err(e) => return failed(format!("could not make the run's directory: {e}")),
    };
    // Nothing of the server's environment (its database URL, its secret key) unless listed.
    let env: Vec<(&String, std::ffi::OsString)> =
        declared.env.iter().filter_map(|variable| Some((variable, std::env::var_os(variable)?))).collect();
    let search = env.iter().find(|(variable, _)| *variable == "PATH").map(|(_, value)| value.as_os_str());
    let mut command = tokio::process::Command::new(program_path(name, search));
    command.env_clear().envs(env.iter().map(|(variable, value)| (variable.as_str(), value)));
    command.current_dir(declared.working_dir.as_deref().unwrap_or(scratch.path())).args(args);
    if let Err(error) = describe(scratch.path(), &mut command) {
        return failed(error);
    }
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    // Its own process group: stopping the run kills everything it started, not only the program.
    #[cfg(unix)]
    command.process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return failed(format!("could not start {name:?}: {e}")),
    };
    let stdout = child.stdout.take().map(|s| tokio::spawn(capture(s)));
    let stderr = child.stderr.take().map(|s| tokio::spawn(capture(s)));
    // Stdout then stderr, bounded together: one marker however much either printed.
    let log = |mut out: TaskLog, err: TaskLog| {
        if !err.is_empty() && !out.is_empty() && !out.ends_with(b'\n') {
            out.push(b"\n");
        }
        out.append(err);
        out.into_string()
    };
    enum Ended {
        Exited(std::io::Result<std::process::ExitStatus>),
        TimedOut,
        Stopped,
    }
    let ended = tokio::select! {
        status = child.wait() => Ended::Exited(status),
        () = tokio::time::sleep(timeout) => Ended::TimedOut,
        _ = stop.wait_for(|stop| *stop) => Ended::Stopped,
    };
    if !matches!(ended, Ended::Exited(_)) {
        kill_group(&child);
        let _ = child.kill().await;
    }
    // Output left in the pipes is read; a grandchild holding them open is not waited for long.
    let drain = |handle: Option<tokio::task::JoinHandle<TaskLog>>| async move {
        let Some(handle) = handle else { return TaskLog::default() };
        let abort = handle.abort_handle();
        match tokio::time::timeout(Duration::from_secs(2), handle).await {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(_) => {
                abort.abort();
                let mut log = TaskLog::default();
                log.push(b"[output still open after the program ended: not read]");
                log
            }
        }
    };
    let out = drain(stdout).await;
    let err = drain(stderr).await;
    let log = log(out, err);
    match ended {
        Ended::Exited(Ok(status)) => ProgramEnd::Exited { status, log },
        Ended::Exited(Err(e)) => ProgramEnd::Failed { error: format!("could not wait for {name:?}: {e}"), log },
        Ended::TimedOut => ProgramEnd::Failed { error: format!("timed out after {} s", timeout.as_secs()), log },
        Ended::Stopped => ProgramEnd::Stopped { log },
    }
}

/// The program to start: a bare name is looked up here, in the `PATH` the program gets (none:
/// `/bin:/usr/bin`, as `execvp` would), where the program would find it itself. Given a path, the
/// standard library starts the program with `posix_spawn`; given a bare name after the
/// environment was cleared, it falls back to `fork`, which copies the server's page tables for
/// every run (most of a no-op task's cost in a large process). A name not found stays as it is,
/// so that the start fails with the usual error.
fn program_path(name: &str, search: Option<&std::ffi::OsStr>) -> std::ffi::OsString {
    if name.contains('/') {
        return name.into();
    }
    let search = search.unwrap_or_else(|| std::ffi::OsStr::new("/bin:/usr/bin"));
    // Only absolute directories: a relative entry would be relative to the program's working
    // directory, not the server's.
    let absolute = std::env::join_paths(std::env::split_paths(search).filter(|dir| dir.is_absolute()));
    let cwd = std::path::Path::new("/");
    match absolute.ok().and_then(|paths| which::which_in(name, Some(paths), cwd).ok()) {
        Some(found) => found.into_os_string(),
        None => name.into(),
    }
}

/// Why a program that exited did not succeed.
pub fn exit_error(status: std::process::ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => "killed by a signal".to_owned(),
    }
}

/// Runs a `command` task with the declared executor. `stop` turning true kills the program and
/// ends the run as stopped.
pub async fn run_command(
    declared: &ExecutorConfig,
    timeout: Duration,
    context: &TaskContext,
    stop: watch::Receiver<bool>,
) -> RunEnd {
    let describe = |scratch: &std::path::Path, command: &mut tokio::process::Command| {
        let content_file = scratch.join("content");
        std::fs::write(&content_file, content_bytes(context))
            .map_err(|e| format!("could not write the content file: {e}"))?;
        command
            .env("CUTOVER_ROLLOUT_ID", &context.rollout_id)
            .env("CUTOVER_TASK_ID", &context.task_id)
            .env("CUTOVER_ARTIFACT", &context.artifact)
            .env("CUTOVER_ENVIRONMENT", &context.environment)
            .env("CUTOVER_TARGET", &context.target)
            .env("CUTOVER_TARGET_CONFIG", Value::Object(context.target_config.clone()).to_string())
            .env("CUTOVER_VERSION", context.version.to_string())
            .env("CUTOVER_STEP", &context.step)
            .env("CUTOVER_IDEMPOTENCY_KEY", &context.idempotency_key)
            .env("CUTOVER_ATTEMPT", context.attempt.to_string())
            .env("CUTOVER_VALUE_TYPE", &context.value_type)
            .env("CUTOVER_CONTENT_FILE", &content_file);
        Ok(())
    };
    let failed = |error: String, log: String| {
        RunEnd::Finished(TaskOutcome { succeeded: false, exit_code: None, error: Some(error), log })
    };
    match run_declared(declared, timeout, describe, stop).await {
        ProgramEnd::Exited { status, log } if status.success() => {
            RunEnd::Finished(TaskOutcome { succeeded: true, exit_code: status.code(), error: None, log })
        }
        ProgramEnd::Exited { status, log } => RunEnd::Finished(TaskOutcome {
            succeeded: false,
            exit_code: status.code(),
            error: Some(exit_error(status)),
            log,
        }),
        ProgramEnd::Failed { error, log } => failed(error, log),
        ProgramEnd::Stopped { log } => RunEnd::Stopped { log },
    }
}

/// Kills the program's process group (it was started as its own group).
fn kill_group(child: &tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    #[cfg(not(unix))]
    let _ = child;
}

#[cfg(all(test, unix))]
mod tests {
    use std::ffi::{OsStr, OsString};
    use std::os::unix::fs::PermissionsExt;

    use super::program_path;

    #[test]
    fn a_bare_name_is_found_in_the_path_the_program_gets() {
        let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let tool = second.path().join("deploy");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Not executable: skipped, as execvp skips it.
        std::fs::write(first.path().join("deploy"), "").unwrap();
        let search = std::env::join_paths([first.path(), second.path()]).unwrap();
        assert_eq!(program_path("deploy", Some(&search)), tool.into_os_string());
        // Relative entries would be relative to the program's own working directory: not used.
        let relative = std::env::join_paths([OsStr::new("bin"), first.path().as_os_str()]).unwrap();
        assert_eq!(program_path("deploy", Some(&relative)), OsString::from("deploy"));
        // Not found anywhere, or a path already: as given.
        assert_eq!(program_path("no-such-tool", Some(&search)), OsString::from("no-such-tool"));
        assert_eq!(program_path("./deploy", Some(&search)), OsString::from("./deploy"));
    }

    #[test]
    fn without_a_path_the_default_directories_are_searched() {
        let found = program_path("sh", None);
        assert!(found == "/bin/sh" || found == "/usr/bin/sh", "{found:?}");
    }
}
