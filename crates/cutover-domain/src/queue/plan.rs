//! The planner: from a queue's state and the time, the actions to take next.
//!
//! [`plan`] is a pure function. Whoever drives a queue (the server's reconciler, the simulator)
//! reads a [`QueueView`], asks for a [`Plan`], applies its actions, and asks again until the plan
//! is empty; then it waits for a check to finish, a request to arrive or be cancelled, or the
//! plan's `wake_at`. The actions of one plan never contradict each other; the planner returns the
//! actions of one phase at a time (cancels; verdicts; batching; checks), so each phase sees the
//! previous one applied.

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::{
    BaseLine, Batch, BatchId, Check, CheckBase, CheckId, CheckStatus, Conflicts, Footprint, Lane, Position,
    QueuePolicy, QueueView, RequestId, Scope, Split,
};
use super::state::{BatchState, RequestState};
use crate::Timestamp;

/// A batch to be written: its place and its requests, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewBatch {
    pub position: Position,
    pub requests: Vec<RequestId>,
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action<K> {
    /// Cancel a request marked `cancelling`. When it is in a batch, that batch is cancelled (its
    /// running checks with it) and the other requests go into `rest`, at the same place.
    Cancel { request: RequestId, batch: Option<BatchId>, rest: Option<NewBatch> },
    /// Stop a running check whose base no longer predicts what the batch would land on; it frees
    /// its place in the budget.
    Abandon { check: CheckId },
    /// Publish and pin the batch's requests, in order, in one transaction: `check` passed on
    /// exactly the state that is live now.
    Land { batch: BatchId, check: CheckId },
    /// `check` failed the batch: the batch fails and its requests go into `parts`, at its place.
    Split { batch: BatchId, check: CheckId, parts: Vec<NewBatch> },
    /// `check` failed the batch's single request on the state that is live now (and retries, if
    /// any, failed too): the batch fails and the request gets `error` with the check's output.
    Reject { batch: BatchId, request: RequestId, check: CheckId },
    /// Put waiting requests in a new batch; `depends_on` is what it depends on when created.
    Form { batch: NewBatch, depends_on: Vec<BatchId> },
    /// Start a check of the batch on `base` (the batch's `attempt`-th check).
    Check { batch: BatchId, base: CheckBase<K>, attempt: u32 },
}

/// What to do now, and when to plan again if nothing happens before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<K> {
    pub actions: Vec<Action<K>>,
    /// Set only when `actions` is empty: the time a waiting request's `max_wait` runs out.
    pub wake_at: Option<Timestamp>,
}

/// What the checks of a batch say on its current base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// No check on the current base yet (or only abandoned ones).
    Unchecked {
        attempt: u32,
    },
    Running,
    Passed(CheckId),
    /// A single request failed, with retries left.
    Retry {
        attempt: u32,
    },
    /// Failed for good (every retry too).
    Failed(CheckId),
}

/// A schedulable batch, evaluated in queue order.
struct Evaluated<'a, K> {
    id: BatchId,
    batch: &'a Batch,
    footprint: Footprint<K>,
    /// Indexes (into the evaluated list) of the batches it depends on.
    deps: Vec<usize>,
    base: CheckBase<K>,
    checks: Vec<(CheckId, &'a Check<K>)>,
    verdict: Verdict,
    /// Its checks say it will fail: the batches behind are checked without it.
    predicted_to_fail: bool,
}

/// The actions to take on `view` at `now` under `policy`.
pub fn plan<K: Ord + Clone>(view: &QueueView<K>, policy: &QueuePolicy, now: Timestamp) -> Plan<K> {
    let cancels = cancels(view);
    if !cancels.is_empty() {
        return Plan { actions: cancels, wake_at: None };
    }
    let evaluated = evaluate(view, policy);
    let verdicts = verdict_actions(view, policy, &evaluated);
    if !verdicts.is_empty() || view.paused {
        return Plan { actions: verdicts, wake_at: None };
    }
    let running = view.checks.values().filter(|c| c.status == CheckStatus::Running).count();
    let awaiting =
        evaluated.iter().filter(|e| matches!(e.verdict, Verdict::Unchecked { .. } | Verdict::Retry { .. })).count();
    let budget = policy.budget as usize;
    let mut wake_at = None;
    if running + awaiting < budget {
        match form(view, policy, &evaluated, now) {
            Ok(action) => return Plan { actions: vec![action], wake_at: None },
            Err(wake) => wake_at = wake,
        }
    }
    let actions: Vec<Action<K>> = evaluated
        .iter()
        .filter_map(|e| match e.verdict {
            Verdict::Unchecked { attempt } | Verdict::Retry { attempt } => {
                Some(Action::Check { batch: e.id, base: e.base.clone(), attempt })
            }
            _ => None,
        })
        .take(budget.saturating_sub(running))
        .collect();
    if !actions.is_empty() {
        wake_at = None;
    }
    Plan { actions, wake_at }
}

/// Cancels asked for: at most one per batch per plan (the rest of the batch changes with each).
/// A request in a merging batch is not cancelled: its landing wins.
fn cancels<K>(view: &QueueView<K>) -> Vec<Action<K>> {
    let holder: BTreeMap<RequestId, BatchId> = view
        .batches
        .iter()
        .filter(|(_, b)| !b.state.is_terminal())
        .flat_map(|(&id, b)| b.requests.iter().map(move |&r| (r, id)))
        .collect();
    let mut touched = Vec::new();
    let mut actions = Vec::new();
    for (&request, r) in &view.requests {
        if r.state != RequestState::Cancelling {
            continue;
        }
        let Some(&batch_id) = holder.get(&request) else {
            actions.push(Action::Cancel { request, batch: None, rest: None });
            continue;
        };
        let batch = &view.batches[&batch_id];
        // A landing under way wins; a batch already being cancelled finishes that first.
        if matches!(batch.state, BatchState::Merging | BatchState::Cancelling) || touched.contains(&batch_id) {
            continue;
        }
        touched.push(batch_id);
        let start = batch.requests.iter().position(|&r| r != request);
        let rest = start.map(|start| NewBatch {
            position: batch.position.part(start),
            requests: batch.requests.iter().copied().filter(|&r| r != request).collect(),
        });
        actions.push(Action::Cancel { request, batch: Some(batch_id), rest });
    }
    actions
}

/// Every schedulable batch in queue order (merging ones first: they are landing), with its
/// dependencies, the base it would be checked on now, and what its checks say.
fn evaluate<'a, K: Ord + Clone>(view: &'a QueueView<K>, policy: &QueuePolicy) -> Vec<Evaluated<'a, K>> {
    let mut order: Vec<(BatchId, &Batch)> =
        view.batches.iter().filter(|(_, b)| b.state.is_schedulable()).map(|(&id, b)| (id, b)).collect();
    order.sort_by_key(|(id, b)| (b.state != BatchState::Merging, b.position, *id));
    let mut checks: BTreeMap<BatchId, Vec<(CheckId, &Check<K>)>> = BTreeMap::new();
    for (&id, check) in &view.checks {
        checks.entry(check.batch).or_default().push((id, check));
    }
    let mut evaluated: Vec<Evaluated<'a, K>> = Vec::with_capacity(order.len());
    for (id, batch) in order {
        let footprint =
            Footprint::union(batch.requests.iter().filter_map(|r| view.requests.get(r)).map(|r| &r.footprint));
        let deps: Vec<usize> = if batch.state == BatchState::Merging {
            Vec::new()
        } else {
            (0..evaluated.len())
                .filter(|&j| policy.conflicts == Conflicts::Everything || evaluated[j].footprint.overlaps(&footprint))
                .collect()
        };
        let base = base_now(view, policy, &evaluated, &deps, &footprint);
        let own = checks.remove(&id).unwrap_or_default();
        let current = || own.iter().filter(|(_, c)| c.base.still_holds(&base));
        let passed = current().find(|(_, c)| c.status == CheckStatus::Passed).map(|(id, _)| *id);
        let failed: Vec<CheckId> =
            current().filter(|(_, c)| matches!(c.status, CheckStatus::Failed { .. })).map(|(id, _)| *id).collect();
        let running = current().any(|(_, c)| c.status == CheckStatus::Running);
        let attempt = u32::try_from(own.len()).unwrap_or(u32::MAX).saturating_add(1);
        let verdict = match (passed, failed.last()) {
            (Some(check), _) => Verdict::Passed(check),
            (None, _) if running => Verdict::Running,
            (None, Some(&check)) if batch.requests.len() > 1 || failed.len() > policy.max_flake_retries as usize => {
                Verdict::Failed(check)
            }
            (None, Some(_)) => Verdict::Retry { attempt },
            (None, None) => Verdict::Unchecked { attempt },
        };
        let predicted_to_fail = passed.is_none() && !failed.is_empty();
        evaluated.push(Evaluated { id, batch, footprint, deps, base, checks: own, verdict, predicted_to_fail });
    }
    evaluated
}

/// The base a batch would be checked on now: its dependencies that are not predicted to fail,
/// assumed to land, on top of what has landed.
fn base_now<K: Ord + Clone>(
    view: &QueueView<K>,
    policy: &QueuePolicy,
    evaluated: &[Evaluated<'_, K>],
    deps: &[usize],
    footprint: &Footprint<K>,
) -> CheckBase<K> {
    let ahead: Vec<RequestId> = deps
        .iter()
        .map(|&j| &evaluated[j])
        .filter(|e| !e.predicted_to_fail)
        .flat_map(|e| e.batch.requests.iter().copied())
        .collect();
    let lines = match policy.conflicts {
        Conflicts::Everything => {
            vec![BaseLine { scope: Scope::Environment, head: view.environment, ahead: ahead.clone() }]
        }
        Conflicts::Footprint => footprint
            .keys()
            .iter()
            .map(|key| BaseLine {
                scope: Scope::Artifact(key.clone()),
                head: view.heads.get(key).copied().unwrap_or_default(),
                ahead: ahead
                    .iter()
                    .copied()
                    .filter(|r| view.requests.get(r).is_some_and(|r| r.footprint.contains(key)))
                    .collect(),
            })
            .collect(),
    };
    CheckBase { requests: ahead, lines }
}

/// Abandoned checks, landings, splits and refusals (only abandons while paused).
fn verdict_actions<K: Ord + Clone>(
    view: &QueueView<K>,
    policy: &QueuePolicy,
    evaluated: &[Evaluated<'_, K>],
) -> Vec<Action<K>> {
    let mut actions = Vec::new();
    for e in evaluated {
        for (check, c) in &e.checks {
            if c.status == CheckStatus::Running && !c.base.still_holds(&e.base) {
                actions.push(Action::Abandon { check: *check });
            }
        }
        if view.paused {
            continue;
        }
        let requests = &e.batch.requests;
        match e.verdict {
            Verdict::Passed(check) if e.deps.is_empty() => actions.push(Action::Land { batch: e.id, check }),
            Verdict::Failed(check) if requests.len() > 1 => {
                let parts = split(requests.len(), policy.split)
                    .into_iter()
                    .map(|(start, end)| NewBatch {
                        position: e.batch.position.part(start),
                        requests: requests[start..end].to_vec(),
                    })
                    .collect();
                actions.push(Action::Split { batch: e.id, check, parts });
            }
            Verdict::Failed(check) if e.deps.is_empty() => {
                actions.push(Action::Reject { batch: e.id, request: requests[0], check });
            }
            _ => {}
        }
    }
    actions
}

/// The `[start, end)` ranges a failed batch of `len` requests splits into.
fn split(len: usize, how: Split) -> Vec<(usize, usize)> {
    match how {
        Split::Halves => {
            let mid = len.div_ceil(2);
            vec![(0, mid), (mid, len)]
        }
        Split::Singles => (0..len).map(|i| (i, i + 1)).collect(),
    }
}

/// A new batch of the requests waiting longest in the first lane that has any, or why not yet
/// (with the time it will be, when waiting for `max_wait`).
fn form<K: Ord + Clone>(
    view: &QueueView<K>,
    policy: &QueuePolicy,
    evaluated: &[Evaluated<'_, K>],
    now: Timestamp,
) -> Result<Action<K>, Option<Timestamp>> {
    let waiting = view.requests.iter().filter(|(_, r)| r.state == RequestState::Validated);
    let Some(lane) = waiting.clone().map(|(_, r)| r.lane).min() else {
        return Err(None);
    };
    let max = policy.max_batch_size.max(1) as usize;
    let chosen: Vec<RequestId> = waiting.filter(|(_, r)| r.lane == lane).map(|(&id, _)| id).take(max).collect();
    if lane == Lane::Normal && chosen.len() < max {
        let oldest = chosen.iter().map(|id| view.requests[id].waiting_since).min().unwrap_or(now);
        let max_wait = i64::try_from(policy.max_wait.as_micros()).unwrap_or(i64::MAX);
        let due = Timestamp::from_micros(oldest.as_micros().saturating_add(max_wait));
        if due > now {
            return Err(Some(due));
        }
    }
    let position = Position { lane, seq: view.next_seq, offset: 0 };
    let footprint = Footprint::union(chosen.iter().map(|id| &view.requests[id].footprint));
    let depends_on = evaluated
        .iter()
        .filter(|e| e.batch.state == BatchState::Merging || e.batch.position < position)
        .filter(|e| policy.conflicts == Conflicts::Everything || e.footprint.overlaps(&footprint))
        .map(|e| e.id)
        .collect();
    Ok(Action::Form { batch: NewBatch { position, requests: chosen }, depends_on })
}
