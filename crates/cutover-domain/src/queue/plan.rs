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
    BaseLine, Batch, BatchId, Check, CheckBase, CheckId, CheckStatus, Conflicts, Footprint, Grouping, Lane, Position,
    QueuePolicy, QueueView, Request, RequestId, Scope, Split,
};
use super::state::{BatchState, RequestState};
use crate::Timestamp;

/// A batch to be written: its place and its requests, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewBatch {
    pub position: Position,
    pub requests: Vec<RequestId>,
    /// See [`Batch::suspect`].
    pub suspect: bool,
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
    /// What will land of it is unknown (a failed batch, or a suspect part not passed yet).
    in_doubt: bool,
    /// It depends on a batch in doubt: it waits rather than be checked on a guess.
    blocked: bool,
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
    let actions = checks(view, policy, &evaluated, budget.saturating_sub(running));
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
            suspect: batch.suspect,
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
        // A failed batch of several is split: its parts may still land (all but the culprit, most
        // often), so the batches behind keep assuming it until its parts say otherwise.
        let predicted_to_fail = passed.is_none() && !failed.is_empty() && batch.requests.len() == 1;
        let in_doubt = passed.is_none() && (batch.suspect || (batch.requests.len() > 1 && !failed.is_empty()));
        let blocked = deps.iter().any(|&j| evaluated[j].in_doubt);
        evaluated.push(Evaluated {
            id,
            batch,
            footprint,
            deps,
            base,
            checks: own,
            verdict,
            predicted_to_fail,
            in_doubt,
            blocked,
        });
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

/// Checks to start in `slots`: first the batches that wait for one, in queue order, those behind a
/// batch in doubt last; then, when the policy hedges, alternatives: a batch checked on the base
/// without its nearest dependency that may still fail, so that if it fails no round is lost.
fn checks<K: Ord + Clone>(
    view: &QueueView<K>,
    policy: &QueuePolicy,
    evaluated: &[Evaluated<'_, K>],
    slots: usize,
) -> Vec<Action<K>> {
    let waiting = |blocked: bool| {
        evaluated.iter().filter(move |e| e.blocked == blocked).filter_map(|e| match e.verdict {
            Verdict::Unchecked { attempt } | Verdict::Retry { attempt } => {
                Some(Action::Check { batch: e.id, base: e.base.clone(), attempt })
            }
            _ => None,
        })
    };
    let mut actions: Vec<Action<K>> = waiting(false).chain(waiting(true)).take(slots).collect();
    if !policy.hedge {
        return actions;
    }
    for e in evaluated {
        if actions.len() >= slots {
            break;
        }
        if e.in_doubt || e.predicted_to_fail || !matches!(e.verdict, Verdict::Running | Verdict::Passed(_)) {
            continue;
        }
        let uncertain = |d: &Evaluated<'_, K>| {
            d.batch.requests.len() == 1
                && !d.predicted_to_fail
                && !d.in_doubt
                && !matches!(d.verdict, Verdict::Passed(_))
        };
        let Some(&nearest) = e.deps.iter().rev().find(|&&j| uncertain(&evaluated[j])) else {
            continue;
        };
        let deps: Vec<usize> = e.deps.iter().copied().filter(|&j| j != nearest).collect();
        let base = base_now(view, policy, evaluated, &deps, &e.footprint);
        if e.checks.iter().any(|(_, c)| c.status != CheckStatus::Abandoned && c.base.still_holds(&base)) {
            continue;
        }
        let attempt = u32::try_from(e.checks.len()).unwrap_or(u32::MAX).saturating_add(1);
        actions.push(Action::Check { batch: e.id, base, attempt });
    }
    actions
}

/// Abandoned checks, landings, splits and refusals (only abandons while paused).
fn verdict_actions<K: Ord + Clone>(
    view: &QueueView<K>,
    policy: &QueuePolicy,
    evaluated: &[Evaluated<'_, K>],
) -> Vec<Action<K>> {
    // Requests whose landing is not certain yet: a check that assumed one of them fails may still
    // turn out right.
    let uncertain: std::collections::BTreeSet<RequestId> = evaluated
        .iter()
        .filter(|e| !matches!(e.verdict, Verdict::Passed(_)) && e.batch.state != BatchState::Merging)
        .flat_map(|e| e.batch.requests.iter().copied())
        .collect();
    let mut actions = Vec::new();
    let failure_rate = view.recent.failure_rate();
    for e in evaluated {
        let likely = holds_after_failures_ahead(view, evaluated, e, failure_rate) >= KEEP_BEHIND_A_FAILED_BATCH;
        for (check, c) in &e.checks {
            if c.status == CheckStatus::Running
                && (!likely || !c.base.may_still_hold(&e.base, |r| uncertain.contains(&r)))
            {
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
                        suspect: true,
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

/// A running check of a batch behind a failed batch of several is kept while the chance that its
/// base still holds, once the parts are checked, is at least this. Abandoning it frees its place in
/// the budget, but checking the batch again costs a whole check and a round.
const KEEP_BEHIND_A_FAILED_BATCH: f64 = 0.25;

/// The chance that the base of `e` survives the failed batches of several it depends on: each of
/// their requests that shares an artifact with `e` is the culprit with probability
/// q = p / (1 − (1 − p)^n) (given that a batch of n failed, at failure rate p), and only those
/// are on the lines `e` was checked on. 1 when no batch it depends on has failed.
fn holds_after_failures_ahead<K: Ord + Clone>(
    view: &QueueView<K>,
    evaluated: &[Evaluated<'_, K>],
    e: &Evaluated<'_, K>,
    p: f64,
) -> f64 {
    e.deps
        .iter()
        .map(|&j| &evaluated[j])
        .filter(|d| matches!(d.verdict, Verdict::Failed(_)) && d.batch.requests.len() > 1)
        .map(|d| {
            let n = i32::try_from(d.batch.requests.len()).unwrap_or(i32::MAX);
            let culprit = (p / (1.0 - (1.0 - p).powi(n))).min(1.0);
            let shared = d
                .batch
                .requests
                .iter()
                .filter(|r| view.requests.get(r).is_some_and(|r| r.footprint.overlaps(&e.footprint)))
                .count();
            (1.0 - culprit).powi(i32::try_from(shared).unwrap_or(i32::MAX))
        })
        .product()
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

/// The requests a new batch takes from `waiting` (one lane, in queue order), at most `max`.
fn choose<'a, K: Ord + Clone + 'a>(
    waiting: impl Iterator<Item = (&'a RequestId, &'a Request<K>)>,
    grouping: Grouping,
    max: usize,
) -> Vec<RequestId> {
    match grouping {
        Grouping::Oldest => waiting.map(|(&id, _)| id).take(max).collect(),
        Grouping::Related => {
            let mut chosen = Vec::new();
            // What the batch changes, and what the requests passed over change: a request that
            // shares an artifact with one passed over must wait behind it.
            let (mut taken, mut passed): (Vec<K>, Vec<K>) = (Vec::new(), Vec::new());
            let shares = |keys: &[K], r: &Request<K>| r.footprint.keys().iter().any(|k| keys.binary_search(k).is_ok());
            let add = |keys: &mut Vec<K>, r: &Request<K>| {
                keys.extend(r.footprint.keys().iter().cloned());
                keys.sort();
                keys.dedup();
            };
            for (&id, r) in waiting {
                if chosen.len() >= max {
                    break;
                }
                if chosen.is_empty() || (!shares(&passed, r) && shares(&taken, r)) {
                    chosen.push(id);
                    add(&mut taken, r);
                } else {
                    add(&mut passed, r);
                }
            }
            chosen
        }
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
    let max = policy.batch_sizing.size(policy.max_batch_size, view.recent);
    let chosen = choose(waiting.filter(|(_, r)| r.lane == lane), policy.grouping, max);
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
    Ok(Action::Form { batch: NewBatch { position, requests: chosen, suspect: false }, depends_on })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::queue::model::{BatchSizing, Check, Lineage, Outcomes, dorfman_group_size};

    fn policy() -> QueuePolicy {
        QueuePolicy {
            budget: 4,
            max_batch_size: 2,
            max_wait: Duration::from_secs(60),
            conflicts: Conflicts::Footprint,
            split: Split::Halves,
            max_flake_retries: 0,
            hedge: false,
            batch_sizing: BatchSizing::Fixed,
            grouping: Grouping::Oldest,
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_micros(seconds * 1_000_000)
    }

    fn r(id: u64) -> RequestId {
        RequestId(id)
    }

    fn b(id: u64) -> BatchId {
        BatchId(id)
    }

    /// A queue view built by hand.
    struct Queue(QueueView<&'static str>);

    impl Queue {
        fn new() -> Self {
            Self(QueueView::default())
        }

        fn submit(mut self, id: u64, keys: &[&'static str], lane: Lane) -> Self {
            let request = Request {
                lane,
                footprint: Footprint::new(keys.iter().copied()),
                state: RequestState::Validated,
                waiting_since: at(0),
            };
            self.0.requests.insert(r(id), request);
            self
        }

        /// A batch at `seq` of requests already submitted, `created`.
        fn batch(mut self, id: u64, seq: u64, requests: &[u64]) -> Self {
            for &id in requests {
                self.0.requests.get_mut(&r(id)).unwrap().state = RequestState::Batched;
            }
            let batch = Batch {
                position: Position { lane: Lane::Normal, seq, offset: 0 },
                requests: requests.iter().copied().map(r).collect(),
                state: BatchState::Created,
                suspect: false,
            };
            self.0.batches.insert(b(id), batch);
            self.0.next_seq = self.0.next_seq.max(seq + 1);
            self
        }

        /// A check of `batch` on the base the planner would choose now.
        fn checked(mut self, id: u64, batch: u64, status: CheckStatus) -> Self {
            let base = self.base_of(batch);
            self.0.batches.get_mut(&b(batch)).unwrap().state = BatchState::Speculating;
            self.0.checks.insert(CheckId(id), Check { batch: b(batch), base, status });
            self
        }

        fn base_of(&self, batch: u64) -> CheckBase<&'static str> {
            let evaluated = evaluate(&self.0, &policy());
            evaluated.into_iter().find(|e| e.id == b(batch)).expect("a schedulable batch").base
        }

        /// What landing batch `id` does to the view.
        fn land(mut self, id: u64) -> Self {
            let batch = self.0.batches.remove(&b(id)).unwrap();
            self.0.checks.retain(|_, c| c.batch != b(id));
            for request in batch.requests {
                let landed = self.0.requests.remove(&request).unwrap();
                for key in landed.footprint.keys() {
                    let head = self.0.heads.entry(*key).or_default();
                    *head = head.then(request);
                }
                self.0.environment = self.0.environment.then(request);
            }
            self
        }

        fn plan(&self, now: Timestamp) -> Plan<&'static str> {
            plan(&self.0, &policy(), now)
        }
    }

    fn failed() -> CheckStatus {
        CheckStatus::Failed { output: "boom".into() }
    }

    #[test]
    fn waiting_requests_form_a_batch_when_it_is_full_or_the_oldest_waited_max_wait() {
        let queue = Queue::new().submit(1, &["x"], Lane::Normal);
        assert_eq!(queue.plan(at(10)), Plan { actions: vec![], wake_at: Some(at(60)) });
        let formed = Action::Form {
            batch: NewBatch {
                position: Position { lane: Lane::Normal, seq: 0, offset: 0 },
                requests: vec![r(1)],
                suspect: false,
            },
            depends_on: vec![],
        };
        assert_eq!(queue.plan(at(60)).actions, [formed]);
        let full = Queue::new().submit(1, &["x"], Lane::Normal).submit(2, &["y"], Lane::Normal).submit(
            3,
            &["z"],
            Lane::Normal,
        );
        let Action::Form { batch, .. } = &full.plan(at(1)).actions[0] else { panic!("a batch forms") };
        assert_eq!(batch.requests, [r(1), r(2)], "the oldest, up to max_batch_size");
    }

    #[test]
    fn a_related_batch_takes_requests_sharing_its_artifacts_and_never_one_behind_a_request_passed_over() {
        let queue = Queue::new()
            .submit(1, &["x"], Lane::Normal)
            .submit(2, &["y"], Lane::Normal)
            .submit(3, &["x", "z"], Lane::Normal)
            .submit(4, &["z"], Lane::Normal)
            .submit(5, &["x", "y"], Lane::Normal)
            .submit(6, &["x"], Lane::Normal);
        let related = QueuePolicy { max_batch_size: 8, grouping: Grouping::Related, ..policy() };
        let Action::Form { batch, .. } = &plan(&queue.0, &related, at(60)).actions[0] else { panic!("a batch forms") };
        // 2 is passed over (nothing in common with 1); 3 shares x, 4 shares z with 3; 5 shares x
        // but also y with 2, so it waits behind 2; and 6, sharing x with 5, waits behind 5.
        assert_eq!(batch.requests, [r(1), r(3), r(4)]);
        let oldest = QueuePolicy { max_batch_size: 8, ..policy() };
        let Action::Form { batch, .. } = &plan(&queue.0, &oldest, at(60)).actions[0] else { panic!("a batch forms") };
        assert_eq!(batch.requests, [r(1), r(2), r(3), r(4), r(5), r(6)], "Grouping::Oldest takes them all in order");
    }

    #[test]
    fn batches_follow_the_failure_rate_of_the_recent_changes() {
        let mut queue = Queue::new();
        for id in 1..=20 {
            queue = queue.submit(id, &["x"], Lane::Normal);
        }
        let following = QueuePolicy { max_batch_size: 8, batch_sizing: BatchSizing::FollowFailures, ..policy() };
        let size = |queue: &Queue| match &plan(&queue.0, &following, at(60)).actions[0] {
            Action::Form { batch, .. } => batch.requests.len(),
            other => panic!("a batch forms: {other:?}"),
        };
        // No history yet: the prior, p = 0.05, whose Dorfman group size is 5.
        assert_eq!(size(&queue), 5);
        queue.0.recent = Outcomes { landed: 80, refused: 20 };
        assert_eq!(size(&queue), 3, "p ≈ 0.18");
        queue.0.recent = Outcomes { landed: 60, refused: 40 };
        assert_eq!(size(&queue), 1, "p ≈ 0.34: checking alone is cheaper than any group");
        queue.0.recent = Outcomes { landed: 100, refused: 0 };
        assert_eq!(size(&queue), 8, "p ≈ 0.008: the largest batch allowed");
    }

    #[test]
    fn dorfmans_group_size_minimises_his_expected_checks_per_change() {
        assert_eq!([0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5].map(|p| dorfman_group_size(p, 100)), [100, 11, 5, 4, 3, 3, 1]);
        assert_eq!(dorfman_group_size(0.01, 8), 8, "at most the maximum");
    }

    #[test]
    fn a_hotfix_is_batched_first_at_once_and_ahead_of_normal_batches() {
        let queue = Queue::new()
            .submit(1, &["x"], Lane::Normal)
            .batch(7, 0, &[1])
            .submit(2, &["y"], Lane::Normal)
            .submit(3, &["x"], Lane::Hotfix);
        let actions = queue.plan(at(1)).actions;
        let Action::Form { batch, depends_on } = &actions[0] else { panic!("a batch forms: {actions:?}") };
        assert_eq!((batch.requests.as_slice(), batch.position.lane), ([r(3)].as_slice(), Lane::Hotfix));
        assert!(depends_on.is_empty(), "nothing is ahead of a hotfix but landings under way");
        assert!(batch.position < queue.0.batches[&b(7)].position);
    }

    #[test]
    fn batches_sharing_no_artifact_are_checked_in_parallel_and_overlapping_ones_on_top_of_each_other() {
        let queue = Queue::new()
            .submit(1, &["x"], Lane::Normal)
            .submit(2, &["y"], Lane::Normal)
            .submit(3, &["x", "z"], Lane::Normal)
            .batch(1, 0, &[1])
            .batch(2, 1, &[2])
            .batch(3, 2, &[3]);
        let bases: Vec<_> = queue
            .plan(at(0))
            .actions
            .into_iter()
            .map(|a| match a {
                Action::Check { batch, base, attempt: 1 } => (batch, base),
                other => panic!("only first checks: {other:?}"),
            })
            .collect();
        let line = |key, ahead: &[u64]| BaseLine {
            scope: Scope::Artifact(key),
            head: Lineage::EMPTY,
            ahead: ahead.iter().copied().map(r).collect(),
        };
        assert_eq!(
            bases,
            [
                (b(1), CheckBase { requests: vec![], lines: vec![line("x", &[])] }),
                (b(2), CheckBase { requests: vec![], lines: vec![line("y", &[])] }),
                (b(3), CheckBase { requests: vec![r(1)], lines: vec![line("x", &[1]), line("z", &[])] }),
            ]
        );
    }

    #[test]
    fn a_batch_lands_only_once_what_it_depends_on_has_landed() {
        let queue = Queue::new()
            .submit(1, &["x"], Lane::Normal)
            .submit(2, &["x"], Lane::Normal)
            .batch(1, 0, &[1])
            .batch(2, 1, &[2])
            .checked(10, 1, CheckStatus::Passed)
            .checked(20, 2, CheckStatus::Passed);
        assert_eq!(queue.plan(at(0)).actions, [Action::Land { batch: b(1), check: CheckId(10) }]);
        let queue = queue.land(1);
        assert_eq!(queue.plan(at(0)).actions, [Action::Land { batch: b(2), check: CheckId(20) }]);
    }

    #[test]
    fn a_failure_ahead_abandons_the_checks_that_assumed_it_would_pass_and_checks_them_again_without_it() {
        let queue = Queue::new()
            .submit(1, &["x"], Lane::Normal)
            .submit(2, &["x"], Lane::Normal)
            .batch(1, 0, &[1])
            .batch(2, 1, &[2])
            .checked(10, 1, CheckStatus::Running)
            .checked(20, 2, CheckStatus::Running);
        let mut queue = queue;
        queue.0.checks.get_mut(&CheckId(10)).unwrap().status = failed();
        assert_eq!(
            queue.plan(at(0)).actions,
            [Action::Reject { batch: b(1), request: r(1), check: CheckId(10) }, Action::Abandon { check: CheckId(20) }]
        );
        queue.0.checks.get_mut(&CheckId(20)).unwrap().status = CheckStatus::Abandoned;
        queue.0.batches.remove(&b(1));
        queue.0.checks.remove(&CheckId(10));
        queue.0.requests.remove(&r(1));
        let Action::Check { batch, base, attempt } = &queue.plan(at(0)).actions[0] else { panic!("a check starts") };
        assert_eq!((*batch, *attempt), (b(2), 2), "attempts keep counting");
        assert!(base.requests.is_empty(), "checked without the change predicted to fail");
    }

    #[test]
    fn behind_a_failed_batch_of_several_a_check_is_kept_while_it_likely_holds_once_the_culprit_is_found() {
        let mut queue = Queue::new()
            .submit(1, &["x"], Lane::Normal)
            .submit(2, &["y"], Lane::Normal)
            .submit(3, &["z"], Lane::Normal)
            .submit(4, &["x"], Lane::Normal)
            .submit(5, &["x", "y", "z"], Lane::Normal)
            .batch(1, 0, &[1, 2, 3])
            .batch(2, 1, &[4])
            .batch(3, 2, &[5])
            .checked(10, 1, CheckStatus::Running)
            .checked(20, 2, CheckStatus::Running)
            .checked(30, 3, CheckStatus::Running);
        queue.0.checks.get_mut(&CheckId(10)).unwrap().status = failed();
        let part = |offset, requests: &[u64]| NewBatch {
            position: Position { lane: Lane::Normal, seq: 0, offset },
            requests: requests.iter().copied().map(r).collect(),
            suspect: true,
        };
        let split = Action::Split { batch: b(1), check: CheckId(10), parts: vec![part(0, &[1, 2]), part(2, &[3])] };
        // At p = 0.05 a request of the failed batch is its culprit with probability
        // 0.05 / (1 - 0.95^3) = 0.35: batch 2 (one request in common) holds with 0.65, batch 3
        // (three) with 0.27. Both keep their checks: the parts land on the same base.
        assert_eq!(queue.plan(at(0)).actions, std::slice::from_ref(&split));
        // At p = 0.34 (q = 0.48) batch 3 holds with 0.14 only: its check is abandoned.
        queue.0.recent = Outcomes { landed: 60, refused: 40 };
        assert_eq!(queue.plan(at(0)).actions, [split, Action::Abandon { check: CheckId(30) }]);
        // Once split, the parts assume what batch 1 did: the kept check of batch 2 is current.
        queue.0.batches.remove(&b(1));
        queue.0.checks.remove(&CheckId(10));
        queue.0.checks.get_mut(&CheckId(30)).unwrap().status = CheckStatus::Abandoned;
        for (id, (offset, requests)) in [(0u32, &[1u64, 2][..]), (2, &[3][..])].into_iter().enumerate() {
            let batch = Batch {
                position: Position { lane: Lane::Normal, seq: 0, offset },
                requests: requests.iter().copied().map(r).collect(),
                state: BatchState::Created,
                suspect: true,
            };
            queue.0.batches.insert(b(10 + id as u64), batch);
        }
        let started: Vec<BatchId> = queue
            .plan(at(0))
            .actions
            .into_iter()
            .map(|a| match a {
                Action::Check { batch, .. } => batch,
                other => panic!("only checks: {other:?}"),
            })
            .collect();
        assert_eq!(started, [b(10), b(11), b(3)], "the parts, then batch 3 again; batch 2's check runs on");
    }

    #[test]
    fn a_refusal_waits_for_the_base_it_failed_on_to_land() {
        let queue = Queue::new()
            .submit(1, &["x"], Lane::Normal)
            .submit(2, &["x"], Lane::Normal)
            .batch(1, 0, &[1])
            .batch(2, 1, &[2])
            .checked(10, 1, CheckStatus::Running)
            .checked(20, 2, failed());
        assert!(queue.plan(at(0)).actions.is_empty(), "the culprit may be the change ahead");
        let mut queue = queue;
        queue.0.checks.get_mut(&CheckId(10)).unwrap().status = CheckStatus::Passed;
        let queue = queue.land(1);
        assert_eq!(queue.plan(at(0)).actions, [Action::Reject { batch: b(2), request: r(2), check: CheckId(20) }]);
    }

    #[test]
    fn a_flaky_failure_of_a_single_change_is_retried_before_it_is_refused() {
        let queue = Queue::new().submit(1, &["x"], Lane::Normal).batch(1, 0, &[1]).checked(10, 1, failed());
        let retrying = plan(&queue.0, &QueuePolicy { max_flake_retries: 1, ..policy() }, at(0));
        assert!(matches!(retrying.actions.as_slice(), [Action::Check { attempt: 2, .. }]), "{retrying:?}");
        let queue = queue.checked(11, 1, failed());
        let refused = plan(&queue.0, &QueuePolicy { max_flake_retries: 1, ..policy() }, at(0));
        assert_eq!(refused.actions, [Action::Reject { batch: b(1), request: r(1), check: CheckId(11) }]);
    }

    #[test]
    fn a_failed_batch_is_split_in_halves_that_keep_its_place_or_into_singles() {
        let mut queue = Queue::new().submit(1, &["x"], Lane::Normal).submit(2, &["y"], Lane::Normal).submit(
            3,
            &["z"],
            Lane::Normal,
        );
        queue = queue.batch(1, 5, &[1, 2, 3]).checked(10, 1, failed());
        let part = |offset, requests: &[u64]| NewBatch {
            position: Position { lane: Lane::Normal, seq: 5, offset },
            requests: requests.iter().copied().map(r).collect(),
            suspect: true,
        };
        let halves = vec![part(0, &[1, 2]), part(2, &[3])];
        assert_eq!(queue.plan(at(0)).actions, [Action::Split { batch: b(1), check: CheckId(10), parts: halves }]);
        let singles = plan(&queue.0, &QueuePolicy { split: Split::Singles, ..policy() }, at(0));
        let parts = vec![part(0, &[1]), part(1, &[2]), part(2, &[3])];
        assert_eq!(singles.actions, [Action::Split { batch: b(1), check: CheckId(10), parts }]);
    }

    #[test]
    fn a_paused_queue_forms_checks_and_lands_nothing_but_cancels_still_happen() {
        let mut queue = Queue::new()
            .submit(1, &["x"], Lane::Normal)
            .batch(1, 0, &[1])
            .checked(10, 1, CheckStatus::Passed)
            .submit(2, &["y"], Lane::Normal)
            .submit(3, &["z"], Lane::Normal);
        queue.0.paused = true;
        assert_eq!(queue.plan(at(100)), Plan { actions: vec![], wake_at: None });
        queue.0.requests.get_mut(&r(2)).unwrap().state = RequestState::Cancelling;
        assert_eq!(queue.plan(at(100)).actions, [Action::Cancel { request: r(2), batch: None, rest: None }]);
    }

    #[test]
    fn a_cancel_takes_the_request_out_of_its_batch_unless_the_batch_is_landing() {
        let mut queue = Queue::new()
            .submit(1, &["x"], Lane::Normal)
            .submit(2, &["y"], Lane::Normal)
            .batch(1, 3, &[1, 2])
            .checked(10, 1, CheckStatus::Running);
        queue.0.requests.get_mut(&r(1)).unwrap().state = RequestState::Cancelling;
        let rest = NewBatch {
            position: Position { lane: Lane::Normal, seq: 3, offset: 1 },
            requests: vec![r(2)],
            suspect: false,
        };
        assert_eq!(queue.plan(at(0)).actions, [Action::Cancel { request: r(1), batch: Some(b(1)), rest: Some(rest) }]);
        queue.0.batches.get_mut(&b(1)).unwrap().state = BatchState::Merging;
        queue.0.checks.get_mut(&CheckId(10)).unwrap().status = CheckStatus::Passed;
        assert_eq!(queue.plan(at(0)).actions, [Action::Land { batch: b(1), check: CheckId(10) }], "the landing wins");
    }

    #[test]
    fn a_base_holds_only_while_what_landed_is_exactly_a_prefix_of_what_it_assumed() {
        let line = |head: Lineage, ahead: &[u64]| BaseLine {
            scope: Scope::<&str>::Environment,
            head,
            ahead: ahead.iter().copied().map(r).collect(),
        };
        let predicted = line(Lineage::EMPTY, &[1, 2]);
        assert!(predicted.still_holds(&line(Lineage::EMPTY, &[1, 2])));
        assert!(predicted.still_holds(&line(Lineage::EMPTY.then(r(1)), &[2])));
        assert!(predicted.still_holds(&line(Lineage::EMPTY.then(r(1)).then(r(2)), &[])));
        // 1 was refused and 2 landed: the last landed request is the same, the state is not.
        assert!(!predicted.still_holds(&line(Lineage::EMPTY.then(r(2)), &[])));
        assert!(!predicted.still_holds(&line(Lineage::EMPTY, &[2])), "1 is gone");
        assert!(!predicted.still_holds(&line(Lineage::EMPTY, &[0, 1, 2])), "a hotfix went ahead");
        // A check that assumed 1 fails may still be right while 1 is uncertain, not once it passed.
        let without_one = line(Lineage::EMPTY, &[2]);
        assert!(without_one.may_still_hold(&line(Lineage::EMPTY, &[1, 2]), |id| id == r(1)));
        assert!(!without_one.may_still_hold(&line(Lineage::EMPTY, &[1, 2]), |_| false));
        assert!(!without_one.may_still_hold(&line(Lineage::EMPTY.then(r(1)), &[2]), |_| true));
    }

    #[test]
    fn with_budget_left_a_hedging_policy_also_checks_a_batch_without_its_uncertain_dependency() {
        let queue = Queue::new()
            .submit(1, &["x"], Lane::Normal)
            .submit(2, &["x"], Lane::Normal)
            .batch(1, 0, &[1])
            .batch(2, 1, &[2])
            .checked(10, 1, CheckStatus::Running)
            .checked(20, 2, CheckStatus::Running);
        assert!(queue.plan(at(0)).actions.is_empty());
        let hedging = QueuePolicy { hedge: true, ..policy() };
        let actions = plan(&queue.0, &hedging, at(0)).actions;
        let [Action::Check { batch, base, attempt: 2 }] = actions.as_slice() else { panic!("{actions:?}") };
        assert_eq!((*batch, base.requests.as_slice()), (b(2), [].as_slice()));
        // Running, that alternative is kept while batch 1 may still fail.
        let mut queue = queue;
        queue.0.checks.insert(CheckId(21), Check { batch: b(2), base: base.clone(), status: CheckStatus::Running });
        assert!(plan(&queue.0, &hedging, at(0)).actions.is_empty());
    }
}
