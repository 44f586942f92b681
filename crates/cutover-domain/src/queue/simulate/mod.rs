//! A deterministic discrete-event simulation of a queue: seeded randomness, a virtual clock, and
//! the same [`plan`] the server runs, with faked checks.
//!
//! The workload (arrival times, footprints, which changes are broken, hotfixes, cancels) is drawn
//! once from the seed, so every strategy sees the same changes; check times and flakes are drawn
//! from a second stream seeded the same way for every strategy. Changes arrive as a Poisson
//! process at λ per hour until `hours`, then the queue drains: the run ends when every request is
//! terminal. A change is broken with probability `p` (every check containing it fails); a check
//! with no broken change fails anyway with probability `f` (a flake). Check times are lognormal.
//! Each change touches 1 to `max_footprint` artifacts drawn from a Zipf distribution.
//!
//! The simulator checks the planner as it goes: every transition goes through the state machines
//! (an illegal one is counted), and every landing is compared with what its check ran on, per
//! artifact, as a hash of the exact sequence of changes (an invariant violation when they differ).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal, Zipf};
use serde::Serialize;

use super::model::{
    Batch, BatchId, BatchSizing, Check, CheckBase, CheckId, CheckStatus, Conflicts, Footprint, Grouping, Lane,
    Outcomes, QueuePolicy, QueueView, Request, RequestId, Split,
};
use super::plan::{Action, NewBatch, plan};
use super::state::{BatchEvent, BatchState, RequestEvent, RequestState};
use crate::{DomainError, Timestamp};

const MICROS_PER_SECOND: f64 = 1_000_000.0;
const MICROS_PER_HOUR: f64 = 3_600.0 * MICROS_PER_SECOND;

/// The workload and the queue's settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimConfig {
    /// λ: changes submitted per hour (Poisson arrivals).
    pub lambda_per_hour: f64,
    /// p: probability that a change is broken.
    pub failure_rate: f64,
    /// f: probability that a check of good changes fails anyway.
    pub flake_rate: f64,
    /// W: checks running at once (strategies that speculate).
    pub budget: u32,
    /// Requests per batch (strategies that batch).
    pub max_batch_size: u32,
    /// How long a request may wait for its batch to fill when a check could start.
    pub max_wait_seconds: f64,
    /// Mean check time (lognormal).
    pub check_mean_seconds: f64,
    /// σ of the logarithm of the check time; 0 makes every check take exactly the mean.
    pub check_sigma: f64,
    /// N: the artifacts footprints are drawn from.
    pub artifacts: u32,
    /// Zipf exponent of the artifact popularity (0 is uniform).
    pub zipf_exponent: f64,
    /// A change touches 1 to this many artifacts (uniformly).
    pub max_footprint: u32,
    /// Share of changes submitted as hotfixes.
    pub hotfix_rate: f64,
    /// Share of changes cancelled by their author, after an exponential time of mean one check.
    pub cancel_rate: f64,
    /// How many times a failed check of a single change is retried (flakes).
    pub max_flake_retries: u32,
    /// How long changes arrive; the queue then drains.
    pub hours: f64,
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            lambda_per_hour: 100.0,
            failure_rate: 0.05,
            flake_rate: 0.01,
            budget: 16,
            max_batch_size: 8,
            max_wait_seconds: 0.0,
            check_mean_seconds: 300.0,
            check_sigma: 0.5,
            artifacts: 100,
            zipf_exponent: 1.0,
            max_footprint: 2,
            hotfix_rate: 0.0,
            cancel_rate: 0.0,
            max_flake_retries: 1,
            hours: 8.0,
            seed: 1,
        }
    }
}

impl SimConfig {
    /// Checks every setting, naming the field (as the CLI's flag) that is wrong.
    pub fn validate(&self) -> Result<(), DomainError> {
        let positive = |field: &'static str, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(DomainError::invalid(field, "must be a positive number"))
            }
        };
        let share = |field: &'static str, value: f64, max: f64| {
            if (0.0..=max).contains(&value) {
                Ok(())
            } else {
                Err(DomainError::invalid(field, format!("must be between 0 and {max}")))
            }
        };
        positive("lambda", self.lambda_per_hour)?;
        positive("check-mean-seconds", self.check_mean_seconds)?;
        positive("hours", self.hours)?;
        share("failure-rate", self.failure_rate, 1.0)?;
        share("flake-rate", self.flake_rate, 0.99)?;
        share("hotfix-rate", self.hotfix_rate, 1.0)?;
        share("cancel-rate", self.cancel_rate, 1.0)?;
        share("check-sigma", self.check_sigma, 5.0)?;
        share("zipf-exponent", self.zipf_exponent, 10.0)?;
        share("max-wait-seconds", self.max_wait_seconds, 86_400.0)?;
        let count = |field: &'static str, value: u32, max: u32| {
            if (1..=max).contains(&value) {
                Ok(())
            } else {
                Err(DomainError::invalid(field, format!("must be between 1 and {max}")))
            }
        };
        count("budget", self.budget, 10_000)?;
        count("max-batch-size", self.max_batch_size, 1_000)?;
        count("artifacts", self.artifacts, 1_000_000)?;
        count("max-footprint", self.max_footprint, 100)?;
        if self.max_flake_retries > 100 {
            return Err(DomainError::invalid("max-flake-retries", "must be at most 100"));
        }
        if self.lambda_per_hour * self.hours > 1_000_000.0 {
            return Err(DomainError::invalid("hours", "λ × hours must be at most 1,000,000 changes"));
        }
        Ok(())
    }
}

/// A way to run the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// One change at a time, each checked on everything landed.
    Serial,
    /// One change per check, up to W checks down the queue, each on top of all the changes ahead;
    /// a failure restarts everything behind it.
    OptimisticPrefix,
    /// One batch at a time (every change waiting, up to the batch size); a failed batch is
    /// bisected.
    BatchBisect,
    /// As batch + bisect, but a failed batch is split into single changes at once: Dorfman's
    /// two-stage group testing, whose expected checks have a closed form.
    BatchDorfman,
    /// Ours: batches formed when a check can start, checked on top of only the batches they
    /// conflict with, up to W at once; failures bisected.
    Speculative,
    /// Ours run by someone who knows every outcome: broken changes are refused when submitted and
    /// no check flakes. A lower bound on what scheduling can achieve with the same budget.
    Oracle,
}

impl Strategy {
    pub const ALL: [Strategy; 6] =
        [Self::Serial, Self::OptimisticPrefix, Self::BatchBisect, Self::BatchDorfman, Self::Speculative, Self::Oracle];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Serial => "serial",
            Self::OptimisticPrefix => "optimistic-prefix",
            Self::BatchBisect => "batch-bisect",
            Self::BatchDorfman => "batch-dorfman",
            Self::Speculative => "speculative",
            Self::Oracle => "oracle",
        }
    }

    /// The planner's policy for this strategy under `config`.
    pub fn policy(self, config: &SimConfig) -> QueuePolicy {
        let max_wait = Duration::from_secs_f64(config.max_wait_seconds);
        let policy = |budget, max_batch_size, conflicts, split| QueuePolicy {
            budget,
            max_batch_size,
            max_wait,
            conflicts,
            split,
            max_flake_retries: config.max_flake_retries,
            // Measured: hedging spends the budget the queue needs under load (docs/queue.md).
            hedge: false,
            batch_sizing: BatchSizing::Fixed,
            grouping: Grouping::Oldest,
        };
        match self {
            Self::Serial => policy(1, 1, Conflicts::Everything, Split::Halves),
            Self::OptimisticPrefix => policy(config.budget, 1, Conflicts::Everything, Split::Halves),
            Self::BatchBisect => policy(1, config.max_batch_size, Conflicts::Everything, Split::Halves),
            Self::BatchDorfman => policy(1, config.max_batch_size, Conflicts::Everything, Split::Singles),
            // The server's policy (`QueueSettings::policy`).
            Self::Speculative => QueuePolicy {
                batch_sizing: BatchSizing::FollowFailures,
                grouping: Grouping::Related,
                ..policy(config.budget, config.max_batch_size, Conflicts::Footprint, Split::Singles)
            },
            // It never sees a failure: the largest batches cost it least.
            Self::Oracle => policy(config.budget, config.max_batch_size, Conflicts::Footprint, Split::Halves),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
            let names = Self::ALL.map(Self::as_str).join(", ");
            DomainError::invalid("strategy", format!("{s:?} is not one of {names}"))
        })
    }
}

/// Time to land (submission to landing) of the landed changes, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Latency {
    /// Nearest-rank quantiles of `seconds` (0 for an empty list).
    pub fn of(seconds: &[f64]) -> Self {
        let mut sorted = seconds.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            if sorted.is_empty() {
                return 0.0;
            }
            let index = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[index]
        };
        let mean = if sorted.is_empty() { 0.0 } else { sorted.iter().sum::<f64>() / sorted.len() as f64 };
        Self { mean, p50: rank(0.50), p95: rank(0.95), p99: rank(0.99) }
    }
}

/// What one strategy did with the workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrategyReport {
    pub strategy: Strategy,
    pub submitted: u64,
    pub landed: u64,
    /// Refused: broken changes, and good ones a flaky check failed more than the retries allow.
    pub rejected: u64,
    /// Good changes among the refused (flakes).
    pub good_rejected: u64,
    pub cancelled: u64,
    pub time_to_land_seconds: Latency,
    /// Landed changes per hour, over the time until the last landing.
    pub landed_per_hour: f64,
    /// Checks started (including abandoned and retried ones).
    pub checks: u64,
    pub checks_per_landed: f64,
    /// Landings whose state differs from what their check ran on, plus broken changes landed,
    /// plus illegal state transitions, plus landings out of queue order on an artifact. Must be 0.
    pub invariant_violations: u64,
    /// When the last request became terminal, in hours.
    pub drained_after_hours: f64,
    /// Time to land of each landed change, in submission order (for tests); not serialised.
    #[serde(skip)]
    pub times_to_land: Vec<f64>,
}

/// The comparison of several strategies on one workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    pub config: SimConfig,
    pub strategies: Vec<StrategyReport>,
}

/// Runs every strategy of `strategies` on the workload of `config`.
pub fn compare(config: &SimConfig, strategies: &[Strategy]) -> Result<SimReport, DomainError> {
    config.validate()?;
    let workload = Workload::draw(config)?;
    let strategies = strategies.iter().map(|&s| run(config, &workload, s)).collect::<Result<_, _>>()?;
    Ok(SimReport { config: config.clone(), strategies })
}

/// Runs one strategy.
pub fn simulate(config: &SimConfig, strategy: Strategy) -> Result<StrategyReport, DomainError> {
    config.validate()?;
    run(config, &Workload::draw(config)?, strategy)
}

/// One submitted change.
#[derive(Debug, Clone)]
struct Change {
    at: i64,
    footprint: Footprint<u32>,
    broken: bool,
    lane: Lane,
    cancel_at: Option<i64>,
}

struct Workload {
    changes: Vec<Change>,
}

fn distribution_error(field: &'static str, err: impl fmt::Display) -> DomainError {
    DomainError::invalid(field, err.to_string())
}

impl Workload {
    fn draw(config: &SimConfig) -> Result<Self, DomainError> {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let gap = Exp::new(config.lambda_per_hour / MICROS_PER_HOUR).map_err(|e| distribution_error("lambda", e))?;
        let zipf = Zipf::new(f64::from(config.artifacts), config.zipf_exponent)
            .map_err(|e| distribution_error("zipf-exponent", e))?;
        let cancel_delay = Exp::new(1.0 / (config.check_mean_seconds * MICROS_PER_SECOND))
            .map_err(|e| distribution_error("cancel-rate", e))?;
        let end = config.hours * MICROS_PER_HOUR;
        let mut changes = Vec::new();
        let mut t = 0.0;
        loop {
            t += gap.sample(&mut rng);
            if t >= end {
                break;
            }
            let at = t as i64;
            let touched = rng.random_range(1..=config.max_footprint);
            let footprint = Footprint::new((0..touched).map(|_| zipf.sample(&mut rng) as u32 - 1));
            let broken = rng.random_bool(config.failure_rate);
            let lane = if rng.random_bool(config.hotfix_rate) { Lane::Hotfix } else { Lane::Normal };
            let cancelled = rng.random_bool(config.cancel_rate);
            let delay = cancel_delay.sample(&mut rng) as i64;
            changes.push(Change { at, footprint, broken, lane, cancel_at: cancelled.then_some(at + delay) });
        }
        Ok(Self { changes })
    }
}

/// A request's fate, kept outside the planner's view (which forgets terminal requests).
struct Tracked {
    state: RequestState,
    landed_at: Option<i64>,
}

/// A started check: when it ends, whether it passes, and per artifact the hash of the exact
/// sequence of changes it checked.
struct Started {
    passes: bool,
    checked: Vec<(u32, ArtifactState)>,
}

/// An artifact's landed history as a hash chain and a length: equal states have equal chains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct ArtifactState {
    hash: u64,
    len: u64,
}

impl ArtifactState {
    fn then(self, request: RequestId) -> Self {
        // splitmix64 of the previous hash mixed with the id: a different sequence collides with
        // probability about 2^-64.
        let mut z = self.hash ^ request.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self { hash: z ^ (z >> 31), len: self.len + 1 }
    }
}

struct Sim<'a> {
    config: &'a SimConfig,
    policy: QueuePolicy,
    oracle: bool,
    workload: &'a Workload,
    view: QueueView<u32>,
    now: i64,
    rng: StdRng,
    check_time: LogNormal<f64>,
    tracked: Vec<Tracked>,
    next_batch: u64,
    next_check: u64,
    /// Checks running, by end time.
    ends: BinaryHeap<Reverse<(i64, CheckId)>>,
    started: BTreeMap<CheckId, Started>,
    cancels: BinaryHeap<Reverse<(i64, RequestId)>>,
    artifacts: Vec<ArtifactState>,
    /// Per artifact and lane, the last request landed on it (queue order within a lane).
    last_on_artifact: BTreeMap<(u32, Lane), RequestId>,
    checks: u64,
    violations: u64,
    last_terminal: i64,
    /// Whether each of the last [`Outcomes::WINDOW`] changes to finish landed or was refused,
    /// oldest first: the view's `recent` (the server counts the last ones submitted that finished;
    /// the two differ only in the order changes finish).
    outcomes: VecDeque<bool>,
}

fn run(config: &SimConfig, workload: &Workload, strategy: Strategy) -> Result<StrategyReport, DomainError> {
    let sigma = config.check_sigma;
    let mu = (config.check_mean_seconds * MICROS_PER_SECOND).ln() - sigma * sigma / 2.0;
    let check_time = LogNormal::new(mu, sigma).map_err(|e| distribution_error("check-sigma", e))?;
    let mut sim = Sim {
        config,
        policy: strategy.policy(config),
        oracle: strategy == Strategy::Oracle,
        workload,
        view: QueueView::default(),
        now: 0,
        rng: StdRng::seed_from_u64(config.seed.rotate_left(32) ^ 0x5eed),
        check_time,
        tracked: Vec::with_capacity(workload.changes.len()),
        next_batch: 0,
        next_check: 0,
        ends: BinaryHeap::new(),
        started: BTreeMap::new(),
        cancels: BinaryHeap::new(),
        artifacts: vec![ArtifactState::default(); config.artifacts as usize],
        last_on_artifact: BTreeMap::new(),
        checks: 0,
        violations: 0,
        last_terminal: 0,
        outcomes: VecDeque::new(),
    };
    sim.run();
    Ok(sim.report(strategy))
}

impl Sim<'_> {
    fn run(&mut self) {
        let mut next_arrival = 0;
        loop {
            let wake_at = self.settle();
            let arrival = self.workload.changes.get(next_arrival).map(|c| c.at);
            let end = self.ends.peek().map(|Reverse((t, _))| *t);
            let cancel = self.cancels.peek().map(|Reverse((t, _))| *t);
            let wake = wake_at.map(Timestamp::as_micros);
            let Some(t) = [arrival, end, cancel, wake].into_iter().flatten().min() else {
                break;
            };
            self.now = self.now.max(t);
            while let Some(change) = self.workload.changes.get(next_arrival).filter(|c| c.at <= self.now) {
                self.arrive(RequestId(next_arrival as u64), change);
                next_arrival += 1;
            }
            while let Some(&Reverse((_, check))) = self.ends.peek().filter(|Reverse((t, _))| *t <= self.now) {
                self.ends.pop();
                self.finish(check);
            }
            while let Some(&Reverse((_, request))) = self.cancels.peek().filter(|Reverse((t, _))| *t <= self.now) {
                self.cancels.pop();
                self.cancel(request);
            }
        }
        // Everything must have ended: a request left over is a scheduling bug.
        self.violations += self.tracked.iter().filter(|t| !t.state.is_terminal()).count() as u64;
    }

    /// Plans and applies until the plan is empty; returns when to plan again.
    fn settle(&mut self) -> Option<Timestamp> {
        for _ in 0..100_000 {
            let plan = plan(&self.view, &self.policy, Timestamp::from_micros(self.now));
            if plan.actions.is_empty() {
                return plan.wake_at;
            }
            for action in plan.actions {
                self.apply(action);
            }
        }
        // The planner does not settle: count it and stop this step rather than spin.
        self.violations += 1;
        None
    }

    fn request_event(&mut self, request: RequestId, event: RequestEvent) {
        let tracked = &mut self.tracked[request.0 as usize];
        match tracked.state.after(event) {
            Ok(next) => {
                tracked.state = next;
                if matches!(next, RequestState::Landed | RequestState::Error) {
                    self.outcomes.push_back(next == RequestState::Landed);
                    if self.outcomes.len() > Outcomes::WINDOW as usize {
                        self.outcomes.pop_front();
                    }
                    let landed = self.outcomes.iter().filter(|&&l| l).count() as u32;
                    let refused = self.outcomes.len() as u32 - landed;
                    self.view.recent = Outcomes { landed, refused };
                }
                if next.is_terminal() {
                    self.view.requests.remove(&request);
                    self.last_terminal = self.now;
                } else if let Some(r) = self.view.requests.get_mut(&request) {
                    r.state = next;
                }
            }
            Err(_) => self.violations += 1,
        }
    }

    fn batch_event(&mut self, batch: BatchId, event: BatchEvent) {
        let Some(b) = self.view.batches.get_mut(&batch) else {
            self.violations += 1;
            return;
        };
        match b.state.after(event) {
            Ok(next) if next.is_terminal() => self.drop_batch(batch),
            Ok(next) => b.state = next,
            Err(_) => self.violations += 1,
        }
    }

    /// Forgets a terminal batch and its checks; a check still running is stopped.
    fn drop_batch(&mut self, batch: BatchId) {
        self.view.batches.remove(&batch);
        let checks: Vec<CheckId> =
            self.view.checks.iter().filter(|(_, c)| c.batch == batch).map(|(&id, _)| id).collect();
        for check in checks {
            self.view.checks.remove(&check);
            self.started.remove(&check);
        }
    }

    fn arrive(&mut self, id: RequestId, change: &Change) {
        self.tracked.push(Tracked { state: RequestState::Started, landed_at: None });
        if self.oracle && change.broken {
            self.request_event(id, RequestEvent::Fail);
            return;
        }
        self.view.requests.insert(
            id,
            Request {
                lane: change.lane,
                footprint: change.footprint.clone(),
                state: RequestState::Started,
                waiting_since: Timestamp::from_micros(self.now),
            },
        );
        self.request_event(id, RequestEvent::Validate);
        if let Some(at) = change.cancel_at {
            self.cancels.push(Reverse((at, id)));
        }
    }

    fn cancel(&mut self, request: RequestId) {
        if !self.tracked[request.0 as usize].state.is_terminal() {
            self.request_event(request, RequestEvent::Cancel);
        }
    }

    fn finish(&mut self, check: CheckId) {
        let Some(started) = self.started.get(&check) else {
            return; // abandoned, or its batch ended
        };
        let status = if started.passes {
            CheckStatus::Passed
        } else {
            CheckStatus::Failed { output: "check failed".to_owned() }
        };
        if let Some(c) = self.view.checks.get_mut(&check) {
            c.status = status;
        }
    }

    fn insert_batch(&mut self, new: NewBatch, event: RequestEvent) {
        let id = BatchId(self.next_batch);
        self.next_batch += 1;
        self.view.next_seq = self.view.next_seq.max(new.position.seq + 1);
        for &r in &new.requests {
            self.request_event(r, event);
        }
        self.view.batches.insert(
            id,
            Batch { position: new.position, requests: new.requests, state: BatchState::Creating, suspect: new.suspect },
        );
        self.batch_event(id, BatchEvent::Create);
    }

    fn apply(&mut self, action: Action<u32>) {
        match action {
            Action::Cancel { request, batch, rest } => {
                if let Some(batch) = batch {
                    self.batch_event(batch, BatchEvent::Cancel);
                    self.batch_event(batch, BatchEvent::ConfirmCancel);
                }
                self.request_event(request, RequestEvent::ConfirmCancel);
                if let Some(rest) = rest {
                    self.insert_batch(rest, RequestEvent::Rebatch);
                }
            }
            Action::Abandon { check } => {
                self.started.remove(&check);
                if let Some(c) = self.view.checks.get_mut(&check) {
                    c.status = CheckStatus::Abandoned;
                }
            }
            Action::Land { batch, check } => self.land(batch, check),
            Action::Split { batch, parts, .. } => {
                self.batch_event(batch, BatchEvent::Fail);
                for part in parts {
                    self.insert_batch(part, RequestEvent::Rebatch);
                }
            }
            Action::Reject { batch, request, .. } => {
                self.batch_event(batch, BatchEvent::Fail);
                self.request_event(request, RequestEvent::Fail);
            }
            Action::Form { batch, .. } => self.insert_batch(batch, RequestEvent::Batch),
            Action::Check { batch, base, .. } => self.start_check(batch, base),
        }
    }

    fn start_check(&mut self, batch: BatchId, base: CheckBase<u32>) {
        let Some(b) = self.view.batches.get(&batch) else {
            self.violations += 1;
            return;
        };
        let requests = b.requests.clone();
        let footprint = Footprint::union(requests.iter().map(|r| &self.workload.changes[r.0 as usize].footprint));
        // What the check runs on, per artifact: what has landed, then the base, then the batch.
        let checked = footprint
            .keys()
            .iter()
            .map(|&a| {
                let state = base
                    .requests
                    .iter()
                    .chain(&requests)
                    .filter(|r| self.workload.changes[r.0 as usize].footprint.contains(&a))
                    .fold(self.artifacts[a as usize], |s, &r| s.then(r));
                (a, state)
            })
            .collect();
        let broken = requests.iter().any(|r| self.workload.changes[r.0 as usize].broken);
        let flaked = self.rng.random_bool(self.config.flake_rate) && !self.oracle;
        let duration = self.check_time.sample(&mut self.rng).max(1.0) as i64;
        let id = CheckId(self.next_check);
        self.next_check += 1;
        self.checks += 1;
        self.batch_event(batch, BatchEvent::Speculate);
        for r in requests {
            if self.tracked[r.0 as usize].state == RequestState::Batched {
                self.request_event(r, RequestEvent::Process);
            }
        }
        self.started.insert(id, Started { passes: !broken && !flaked, checked });
        self.ends.push(Reverse((self.now + duration, id)));
        self.view.checks.insert(id, Check { batch, base, status: CheckStatus::Running });
    }

    fn land(&mut self, batch: BatchId, check: CheckId) {
        let passed = self.view.checks.get(&check).is_some_and(|c| c.batch == batch && c.status == CheckStatus::Passed);
        let (Some(b), Some(started), true) = (self.view.batches.get(&batch), self.started.remove(&check), passed)
        else {
            self.violations += 1;
            return;
        };
        let requests = b.requests.clone();
        // The invariant: what lands on each artifact is exactly what the check ran on.
        for &(a, checked) in &started.checked {
            let landing = requests
                .iter()
                .filter(|r| self.workload.changes[r.0 as usize].footprint.contains(&a))
                .fold(self.artifacts[a as usize], |s, &r| s.then(r));
            if landing != checked {
                self.violations += 1;
            }
        }
        self.batch_event(batch, BatchEvent::Merge);
        for &r in &requests {
            let change = &self.workload.changes[r.0 as usize];
            if change.broken {
                self.violations += 1;
            }
            for &a in change.footprint.keys() {
                self.artifacts[a as usize] = self.artifacts[a as usize].then(r);
                let head = self.view.heads.entry(a).or_default();
                *head = head.then(r);
                if self.last_on_artifact.insert((a, change.lane), r).is_some_and(|previous| previous > r) {
                    self.violations += 1;
                }
            }
            self.view.environment = self.view.environment.then(r);
            self.tracked[r.0 as usize].landed_at = Some(self.now);
            self.request_event(r, RequestEvent::Land);
        }
        self.batch_event(batch, BatchEvent::Succeed);
    }

    fn report(&self, strategy: Strategy) -> StrategyReport {
        let count = |state| self.tracked.iter().filter(|t| t.state == state).count() as u64;
        let times: Vec<f64> = self
            .workload
            .changes
            .iter()
            .zip(&self.tracked)
            .filter_map(|(c, t)| t.landed_at.map(|at| (at - c.at) as f64 / MICROS_PER_SECOND))
            .collect();
        let last_landing = self.tracked.iter().filter_map(|t| t.landed_at).max().unwrap_or(0);
        let landed = count(RequestState::Landed);
        let good_rejected = self
            .workload
            .changes
            .iter()
            .zip(&self.tracked)
            .filter(|(c, t)| t.state == RequestState::Error && !c.broken)
            .count() as u64;
        let hours = last_landing as f64 / MICROS_PER_HOUR;
        StrategyReport {
            strategy,
            submitted: self.tracked.len() as u64,
            landed,
            rejected: count(RequestState::Error),
            good_rejected,
            cancelled: count(RequestState::Cancelled),
            time_to_land_seconds: Latency::of(&times),
            landed_per_hour: if hours > 0.0 { landed as f64 / hours } else { 0.0 },
            checks: self.checks,
            checks_per_landed: if landed > 0 { self.checks as f64 / landed as f64 } else { 0.0 },
            invariant_violations: self.violations,
            drained_after_hours: self.last_terminal as f64 / MICROS_PER_HOUR,
            times_to_land: times,
        }
    }
}

#[cfg(test)]
mod tests;
