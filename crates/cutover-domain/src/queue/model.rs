//! What the planner reads: a queue's live requests, batches and checks, and what has landed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::state::{BatchState, RequestState};
use crate::Timestamp;

/// A change request's id. Ids grow with submission: within a lane, queue order is id order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId(pub u64);

/// A batch's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BatchId(pub u64);

/// A check's id (one per attempt: the executor's idempotency key is derived from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CheckId(pub u64);

/// The lane a request waits in: hotfixes go ahead of every normal batch that is not landing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    Hotfix,
    Normal,
}

/// Where a batch stands in the queue: its lane, then the order batches were formed in, then the
/// index of its first request in the batch it was formed as, so that the parts of a split batch
/// keep their parent's place and their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub lane: Lane,
    pub seq: u64,
    pub offset: u32,
}

impl Position {
    /// The place of the part of a batch at `self` that starts with its `index`-th request.
    pub fn part(self, index: usize) -> Position {
        Position { offset: self.offset + u32::try_from(index).unwrap_or(u32::MAX), ..self }
    }
}

/// The artifacts a request (or a batch) changes, sorted and without repeats.
///
/// Generic over the key so that the server plans with [`crate::ArtifactKey`]s and the simulator
/// with small integers, through the same code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Footprint<K>(Vec<K>);

impl<K: Ord> Footprint<K> {
    pub fn new(keys: impl IntoIterator<Item = K>) -> Self {
        let mut keys: Vec<K> = keys.into_iter().collect();
        keys.sort();
        keys.dedup();
        Self(keys)
    }

    pub fn keys(&self) -> &[K] {
        &self.0
    }

    pub fn contains(&self, key: &K) -> bool {
        self.0.binary_search(key).is_ok()
    }

    /// Whether the two footprints share an artifact (a merge of two sorted lists).
    pub fn overlaps(&self, other: &Footprint<K>) -> bool {
        let (mut a, mut b) = (self.0.iter().peekable(), other.0.iter().peekable());
        while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
            match x.cmp(y) {
                std::cmp::Ordering::Less => _ = a.next(),
                std::cmp::Ordering::Greater => _ = b.next(),
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }
}

impl<K: Ord + Clone> Footprint<K> {
    /// The union of several footprints.
    pub fn union<'a>(parts: impl IntoIterator<Item = &'a Footprint<K>>) -> Self
    where
        K: 'a,
    {
        Self::new(parts.into_iter().flat_map(|f| f.0.iter().cloned()))
    }
}

/// A live change request, as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<K> {
    pub lane: Lane,
    pub footprint: Footprint<K>,
    pub state: RequestState,
    /// Since when it has waited to be batched (its validation), for `max_wait`.
    pub waiting_since: Timestamp,
}

/// A live batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub position: Position,
    /// Its requests, in queue order. Never changes: a split or a cancel makes new batches.
    pub requests: Vec<RequestId>,
    pub state: BatchState,
    /// Made by splitting a failed batch: it may hold the culprit. Until it passes, the batches
    /// that depend on it are not checked: speculating on its fate is a coin toss that costs a
    /// check at every level of a bisection.
    pub suspect: bool,
}

/// A check's result so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckStatus {
    Running,
    Passed,
    Failed {
        output: String,
    },
    /// Stopped by the planner: its base went stale. Kept so that attempts keep counting up.
    Abandoned,
}

/// What part of the environment a base line covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope<K> {
    /// The whole environment: strategies that do not look at footprints.
    Environment,
    /// One artifact of the batch's footprint.
    Artifact(K),
}

/// The identity of what the queue landed in a scope: a hash chain of the landed requests, in
/// order. Two scopes with the same lineage had the same requests land in the same order (but for a
/// collision, about 2^-64). The last landed request alone would not do: a request ahead that was
/// refused while the ones after it landed leaves the same last request, not the same state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Lineage(pub u64);

impl Lineage {
    /// Nothing landed yet.
    pub const EMPTY: Lineage = Lineage(0);

    /// The lineage after `request` lands.
    #[must_use]
    pub fn then(self, request: RequestId) -> Lineage {
        // A 64-bit mix (the finaliser of MurmurHash3) of the previous value and the id.
        let mut z = self.0.rotate_left(5) ^ request.0.wrapping_add(0x2545_f491_4f6c_dd1d);
        z ^= z >> 33;
        z = z.wrapping_mul(0xff51_afd7_ed55_8ccd);
        z ^= z >> 33;
        z = z.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        Lineage(z ^ (z >> 33))
    }
}

/// One line of a check's base: in `scope`, the lineage when the check started, then the requests
/// ahead that the check assumed would land, in order. The checked state of the scope is that
/// lineage, then those requests, then the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseLine<K> {
    pub scope: Scope<K>,
    pub head: Lineage,
    pub ahead: Vec<RequestId>,
}

impl<K: PartialEq> BaseLine<K> {
    /// Whether the state this line predicted is still what will be live under the batch: what
    /// landed since is exactly a prefix of the requests ahead (the lineages agree), and exactly the
    /// rest of them are still to land.
    pub fn still_holds(&self, now: &BaseLine<K>) -> bool {
        if self.scope != now.scope {
            return false;
        }
        let (mut lineage, mut rest) = (self.head, self.ahead.as_slice());
        loop {
            if lineage == now.head {
                return rest == now.ahead.as_slice();
            }
            let Some((first, tail)) = rest.split_first() else {
                return false;
            };
            lineage = lineage.then(*first);
            rest = tail;
        }
    }

    /// Whether the state this line predicted can still come true: what landed since is a prefix of
    /// the requests ahead, and the rest of them are still to land, in order, with only requests
    /// that may still fail (`uncertain`) in between. A check on such a base (an alternative, which
    /// assumed one of those would fail) is worth finishing.
    pub fn may_still_hold(&self, now: &BaseLine<K>, uncertain: impl Fn(RequestId) -> bool) -> bool {
        if self.scope != now.scope {
            return false;
        }
        let (mut lineage, mut rest) = (self.head, self.ahead.as_slice());
        while lineage != now.head {
            let Some((first, tail)) = rest.split_first() else {
                return false;
            };
            lineage = lineage.then(*first);
            rest = tail;
        }
        let mut rest = rest.iter().peekable();
        for &pending in &now.ahead {
            if rest.peek() == Some(&&pending) {
                rest.next();
            } else if !uncertain(pending) {
                return false;
            }
        }
        rest.next().is_none()
    }
}

/// What a check ran on: every request ahead it assumed would land (their content is given to the
/// executor with the batch's), and per scope the exact sequence it checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckBase<K> {
    pub requests: Vec<RequestId>,
    pub lines: Vec<BaseLine<K>>,
}

impl<K: PartialEq> CheckBase<K> {
    /// Whether a check run on `self` still checks the state the batch would land on, which is
    /// `now` (same scopes, in the same order: the batch's requests never change).
    pub fn still_holds(&self, now: &CheckBase<K>) -> bool {
        self.lines.len() == now.lines.len() && self.lines.iter().zip(&now.lines).all(|(a, b)| a.still_holds(b))
    }

    /// Whether a check run on `self` may still turn out to check the state the batch lands on.
    pub fn may_still_hold(&self, now: &CheckBase<K>, uncertain: impl Fn(RequestId) -> bool) -> bool {
        self.lines.len() == now.lines.len()
            && self.lines.iter().zip(&now.lines).all(|(a, b)| a.may_still_hold(b, &uncertain))
    }
}

/// A check of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check<K> {
    pub batch: BatchId,
    pub base: CheckBase<K>,
    pub status: CheckStatus,
}

/// A queue as the planner sees it: what is live, and what has landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueView<K> {
    /// Frozen: nothing new is batched, checked or landed; cancels still take effect.
    pub paused: bool,
    /// Every request that is not terminal.
    pub requests: BTreeMap<RequestId, Request<K>>,
    /// Every batch that is not terminal.
    pub batches: BTreeMap<BatchId, Batch>,
    /// The checks of those batches (all of them, running or finished).
    pub checks: BTreeMap<CheckId, Check<K>>,
    /// Per artifact, the lineage of the requests the queue landed on it (absent: none yet).
    pub heads: BTreeMap<K, Lineage>,
    /// The lineage of every request the queue landed.
    pub environment: Lineage,
    /// The `seq` the next batch formed gets.
    pub next_seq: u64,
    /// How the queue's last changes ended, to size batches by (see [`BatchSizing`]).
    pub recent: Outcomes,
}

/// How many of a queue's most recent finished changes landed and how many were refused (at most
/// [`Outcomes::WINDOW`] in all; cancelled ones do not count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    pub landed: u32,
    pub refused: u32,
}

impl Outcomes {
    /// How many recent changes the estimate looks at.
    pub const WINDOW: u32 = 100;
    /// The prior the estimate starts from, as if that many changes had been seen ...
    const PRIOR_CHANGES: f64 = 20.0;
    /// ... and that many of them refused: p = 0.05 until the queue has a history.
    const PRIOR_REFUSED: f64 = 1.0;

    /// The estimated probability that a change fails its check: the refused share of the recent
    /// changes, pulled towards 5% while there are few (a Beta prior worth 20 changes).
    pub fn failure_rate(self) -> f64 {
        (f64::from(self.refused) + Self::PRIOR_REFUSED)
            / (f64::from(self.landed) + f64::from(self.refused) + Self::PRIOR_CHANGES)
    }
}

impl<K> Default for QueueView<K> {
    fn default() -> Self {
        Self {
            paused: false,
            requests: BTreeMap::new(),
            batches: BTreeMap::new(),
            checks: BTreeMap::new(),
            heads: BTreeMap::new(),
            environment: Lineage::EMPTY,
            next_seq: 0,
            recent: Outcomes::default(),
        }
    }
}

/// Which batches ahead a batch depends on (must land before it, and is checked on top of).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Conflicts {
    /// Those whose footprint overlaps its own; the others check and land in parallel.
    Footprint,
    /// All of them: the environment is one thing (serial, optimistic prefix, batch + bisect).
    Everything,
}

/// How a failed batch of several requests is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// In two halves, again and again until the culprit is alone (bisection).
    Halves,
    /// Into single requests at once: Dorfman's two-stage group testing.
    Singles,
}

/// How a queue schedules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuePolicy {
    /// W: at most this many checks run at once.
    pub budget: u32,
    /// At most this many requests per batch.
    pub max_batch_size: u32,
    /// A request waits at most this long for its batch to fill when a check could start.
    pub max_wait: Duration,
    pub conflicts: Conflicts,
    pub split: Split,
    /// A single request's check that failed is run again up to this many times before the
    /// request is refused: a flaky check fails good changes now and then. (A failed batch of
    /// several is split instead, and its parts are checked again anyway.)
    pub max_flake_retries: u32,
    /// With budget left, also check batches on the base without their nearest dependency that may
    /// still fail, so that its failure costs them no extra round.
    pub hedge: bool,
    /// How many requests a batch takes, up to `max_batch_size`.
    pub batch_sizing: BatchSizing,
    /// Which waiting requests a batch takes.
    pub grouping: Grouping,
}

/// How many requests a batch takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchSizing {
    /// Always up to `max_batch_size`.
    Fixed,
    /// Dorfman's optimal group size for the failure rate the queue's recent changes show (about
    /// 1/√p: 5 at p = 0.05, 3 at p = 0.2, 1 above p ≈ 0.31), at most `max_batch_size`.
    FollowFailures,
}

impl BatchSizing {
    /// The most requests a new batch takes now.
    pub fn size(self, max_batch_size: u32, recent: Outcomes) -> usize {
        let max = max_batch_size.max(1);
        match self {
            Self::Fixed => max as usize,
            Self::FollowFailures => dorfman_group_size(recent.failure_rate(), max) as usize,
        }
    }
}

/// The group size n ≤ `max` that minimises Dorfman's expected checks per item,
/// 1/n + 1 − (1 − p)^n (for n > 1; testing alone costs 1).
pub fn dorfman_group_size(p: f64, max: u32) -> u32 {
    let cost = |n: u32| if n == 1 { 1.0 } else { 1.0 / f64::from(n) + 1.0 - (1.0 - p).powi(n as i32) };
    (1..=max.max(1)).min_by(|&a, &b| cost(a).total_cmp(&cost(b))).unwrap_or(1)
}

/// Which waiting requests a new batch takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grouping {
    /// The oldest, whatever they change.
    Oldest,
    /// The oldest, then the next ones that share an artifact with what the batch holds so far
    /// (passing over a request only when no request taken after it shares an artifact with it:
    /// order on every artifact is kept). A batch then joins only the line of changes its
    /// requests were in anyway, instead of tying unrelated lines into one.
    Related,
}
