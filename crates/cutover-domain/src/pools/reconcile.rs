//! The pool reconciler's decision, from one snapshot of a pool: what to create, delete and
//! cancel. Pure, so that every rule is a table test and the invariants are properties.
//!
//! Counts are of the instances of the *current* version (the one pinned to the pool's
//! environment) unless said otherwise:
//!
//! - `expired`: running instances older than the TTL, deleted;
//! - `extraneous`: running, not expired, beyond the desired count: deleted, those not ready
//!   yet first, then the oldest;
//! - `create = desired − (running − expired) − starting`, unless blocked by the backoff
//!   (`last_build_at + failures × interval`) or the hard failure limit;
//! - instances of a superseded version are replaced: new ones become ready first, and only then
//!   are old ones deleted (not ready ones first, then the oldest) so that ready instances never
//!   drop below the desired count; their pending creates are cancelled;
//! - instances whose last build failed are deleted (they can serve no one);
//! - **pre-warm**: each *incoming* version (one an active rollout or experiment in the pool's
//!   environment targets, not pinned yet) is kept at up to the desired count of its own
//!   instances, counted apart (`prewarming`), never replaced nor cancelled as superseded, with
//!   its own backoff and failure limit, and at most [`MAX_INSTANCES`] pre-warmed instances in
//!   all. When the pin moves to it, its instances are current, and the replacement above makes
//!   them take over from the old version's. A version no longer incoming (the rollout was
//!   cancelled) is superseded like any other.

use serde::Serialize;

use super::{MAX_INSTANCES, PoolSettings};
use crate::Timestamp;

/// What an instance's latest build says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum InstancePhase {
    /// Its latest build is a start not finished yet; `pending` when no provisioner took it.
    Starting {
        /// Not picked up yet: may still be cancelled.
        pending: bool,
    },
    /// Its latest build is a succeeded start; `ready` when every agent reports ready.
    Running {
        /// Every non-deleted top-level agent of that build reports `ready`.
        ready: bool,
    },
    /// Its latest build failed (or was cancelled, or stopped it): it serves no one.
    Failed,
    /// Its latest build is a stop or a delete under way: left alone.
    Deleting,
}

/// One pool-owned, not deleted, not claimed instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSnapshot {
    /// The instance's id (UUIDv7: ordered by creation).
    pub id: String,
    /// The version of its preset.
    pub version: i64,
    /// When it was created.
    pub created_at: Timestamp,
    /// What its latest build says.
    pub phase: InstancePhase,
}

/// The pool's recent start builds, for the backoff and the failure limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailureRecord {
    /// Start builds of the current preset that failed in a row, newest first, since the last
    /// success or resume.
    pub failed_in_a_row: u32,
    /// When the newest build of the pool was created.
    pub last_build_at: Option<Timestamp>,
}

/// A version an active rollout or experiment in the pool's environment targets, not pinned yet:
/// the pool warms instances of it before the pin moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingVersion {
    /// The targeted version.
    pub version: i64,
    /// Its own failure record (its starts only).
    pub failures: FailureRecord,
}

/// Everything one pass decides from, read in one transaction.
#[derive(Debug, Clone)]
pub struct PoolSnapshot {
    /// The time of the read.
    pub now: Timestamp,
    /// What the schedule (or static count) asks for now.
    pub desired: u32,
    /// The version pinned to the pool's environment; `None`: nothing is pinned.
    pub version: Option<i64>,
    /// TTL, backoff and failure limit.
    pub settings: PoolSettings,
    /// A paused pool is left as it is.
    pub paused: bool,
    /// Recent failures.
    pub failures: FailureRecord,
    /// The pool's instances.
    pub instances: Vec<InstanceSnapshot>,
    /// Versions to pre-warm (the pinned one, if listed, is ignored).
    pub incoming: Vec<IncomingVersion>,
}

/// Why a pool creates nothing this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Blocked {
    /// Paused by a person.
    Paused,
    /// No version of the artifact is pinned to the environment.
    NoVersion,
    /// Failed recently: the next create waits until then.
    Backoff {
        /// When creating may start again.
        until: Timestamp,
    },
    /// The last `failures` starts all failed: creating stops until resumed or a new version.
    FailureLimit {
        /// Failed starts in a row.
        failures: u32,
    },
}

/// Counts the API, metrics and audit show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PoolCounts {
    /// The desired count now (0 without a pinned version).
    pub desired: u32,
    /// Running instances, of any version.
    pub running: u32,
    /// Running and ready, of any version.
    pub ready: u32,
    /// Starting, of the current version.
    pub starting: u32,
    /// Running instances of the current version past their TTL.
    pub expired: u32,
    /// Starting or running instances of incoming versions (pre-warmed, not handed out).
    pub prewarming: u32,
}

/// What one pass does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Instances of the current version to create.
    pub create: u32,
    /// Instances to delete, by id: expired and extraneous first (oldest first), then replaced
    /// ones, then failed ones.
    pub delete: Vec<String>,
    /// Instances whose pending start (of a superseded version) is cancelled.
    pub cancel: Vec<String>,
    /// Instances of incoming versions to create: (version, how many), by version.
    pub prewarm: Vec<(i64, u32)>,
    /// Why nothing is created, if so.
    pub blocked: Option<Blocked>,
    /// What the snapshot counts.
    pub counts: PoolCounts,
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The hard failure limit, then the backoff, of one version's failure record.
fn failing(failures: &FailureRecord, settings: &PoolSettings, now: Timestamp) -> Option<Blocked> {
    let failed = failures.failed_in_a_row;
    if failed >= settings.failure_limit {
        return Some(Blocked::FailureLimit { failures: failed });
    }
    let until = failures.last_build_at.map(|at| {
        let wait = i64::from(failed) * i64::from(settings.backoff_seconds) * 1_000_000;
        Timestamp::from_micros(at.as_micros().saturating_add(wait))
    });
    until.filter(|until| failed > 0 && now < *until).map(|until| Blocked::Backoff { until })
}

/// How warm a pool is for `version` before a rollout moves the pin to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Warmth {
    /// Running, ready instances of the version.
    pub ready: u32,
    /// How many the pool wants of it: what it keeps of the pinned version now.
    pub wanted: u32,
    /// It will not get warmer by waiting: paused, or the version's starts hit the failure limit.
    pub stuck: bool,
}

impl Warmth {
    /// Whether a rollout should wait for this pool before moving the pin.
    pub fn worth_waiting(&self) -> bool {
        !self.stuck && self.ready < self.wanted
    }
}

/// How warm the pool of `snapshot` is for `version` (the version a rollout is about to pin).
pub fn warmth(snapshot: &PoolSnapshot, version: i64) -> Warmth {
    let ready = snapshot
        .instances
        .iter()
        .filter(|i| i.version == version && i.phase == InstancePhase::Running { ready: true })
        .count();
    let failures = snapshot.incoming.iter().find(|v| v.version == version).map(|v| v.failures).unwrap_or_default();
    let stuck =
        snapshot.paused || snapshot.version.is_none() || failures.failed_in_a_row >= snapshot.settings.failure_limit;
    Warmth { ready: count(ready), wanted: snapshot.desired.min(MAX_INSTANCES), stuck }
}

/// Decides one pass. See the module's rules.
pub fn plan(snapshot: &PoolSnapshot) -> Plan {
    let desired = if snapshot.version.is_some() { snapshot.desired.min(MAX_INSTANCES) } else { 0 };
    let is_current = |i: &&InstanceSnapshot| Some(i.version) == snapshot.version;
    // Incoming versions, each once, never the pinned one; none while nothing is pinned.
    let mut incoming: Vec<&IncomingVersion> = Vec::new();
    for v in &snapshot.incoming {
        if snapshot.version.is_some_and(|pinned| pinned != v.version)
            && !incoming.iter().any(|w| w.version == v.version)
        {
            incoming.push(v);
        }
    }
    incoming.sort_by_key(|v| v.version);
    let is_incoming = |i: &&InstanceSnapshot| incoming.iter().any(|v| v.version == i.version);
    let superseded = |i: &&InstanceSnapshot| !is_current(i) && !is_incoming(i);
    let running = |i: &&InstanceSnapshot| matches!(i.phase, InstancePhase::Running { .. });
    let ready = |i: &&InstanceSnapshot| i.phase == InstancePhase::Running { ready: true };
    // The order instances go in: those not ready yet first, then the oldest.
    let first_to_go = |a: &&InstanceSnapshot, b: &&InstanceSnapshot| {
        (ready(a), a.created_at, &a.id).cmp(&(ready(b), b.created_at, &b.id))
    };
    let expired = |i: &&InstanceSnapshot| {
        snapshot.settings.ttl_seconds.is_some_and(|ttl| {
            i.created_at.as_micros().saturating_add(i64::from(ttl) * 1_000_000) <= snapshot.now.as_micros()
        })
    };

    let mut current: Vec<&InstanceSnapshot> = snapshot.instances.iter().filter(is_current).filter(running).collect();
    current.sort_by(first_to_go);
    let (expired_now, live): (Vec<_>, Vec<_>) = current.into_iter().partition(expired);
    let starting = count(
        snapshot
            .instances
            .iter()
            .filter(is_current)
            .filter(|i| matches!(i.phase, InstancePhase::Starting { .. }))
            .count(),
    );
    let counts = PoolCounts {
        desired,
        running: count(snapshot.instances.iter().filter(running).count()),
        ready: count(snapshot.instances.iter().filter(ready).count()),
        starting,
        expired: count(expired_now.len()),
        prewarming: count(
            snapshot
                .instances
                .iter()
                .filter(is_incoming)
                .filter(|i| matches!(i.phase, InstancePhase::Starting { .. } | InstancePhase::Running { .. }))
                .count(),
        ),
    };
    if snapshot.paused {
        return Plan { blocked: Some(Blocked::Paused), counts, ..Plan::default() };
    }

    let mut delete: Vec<String> = expired_now.iter().map(|i| i.id.clone()).collect();
    let extraneous = live.len().saturating_sub(desired as usize);
    delete.extend(live[..extraneous].iter().map(|i| i.id.clone()));
    let kept = &live[extraneous..];

    // Replacement: old instances go only as new ones are ready to take their place.
    let ready_kept = count(kept.iter().copied().filter(ready).count());
    let mut outdated: Vec<&InstanceSnapshot> = snapshot.instances.iter().filter(superseded).filter(running).collect();
    outdated.sort_by(first_to_go);
    let may_stay = desired.saturating_sub(ready_kept) as usize;
    let replaced = outdated.len().saturating_sub(may_stay);
    delete.extend(outdated[..replaced].iter().map(|i| i.id.clone()));
    let cancel = snapshot
        .instances
        .iter()
        .filter(|i| superseded(i) && i.phase == InstancePhase::Starting { pending: true })
        .map(|i| i.id.clone())
        .collect();
    delete.extend(snapshot.instances.iter().filter(|i| i.phase == InstancePhase::Failed).map(|i| i.id.clone()));

    // Pre-warm: each incoming version up to the desired count, extraneous ones deleted (those
    // not ready first, then the oldest), at most MAX_INSTANCES pre-warmed in all.
    let mut prewarm = Vec::new();
    let mut budget = MAX_INSTANCES;
    for v in &incoming {
        let of_v = |i: &&InstanceSnapshot| i.version == v.version;
        let mut warm: Vec<&InstanceSnapshot> = snapshot.instances.iter().filter(of_v).filter(running).collect();
        warm.sort_by(first_to_go);
        let extraneous = warm.len().saturating_sub(desired as usize);
        delete.extend(warm[..extraneous].iter().map(|i| i.id.clone()));
        let starting_v = count(
            snapshot
                .instances
                .iter()
                .filter(of_v)
                .filter(|i| matches!(i.phase, InstancePhase::Starting { .. }))
                .count(),
        );
        let held = count(warm.len() - extraneous).saturating_add(starting_v);
        let wanted = desired.saturating_sub(held).min(budget.saturating_sub(held));
        budget = budget.saturating_sub(held.saturating_add(wanted));
        if wanted > 0 && failing(&v.failures, &snapshot.settings, snapshot.now).is_none() {
            prewarm.push((v.version, wanted));
        }
    }

    let wanted = desired.saturating_sub(count(kept.len()).saturating_add(starting));
    let blocked = if snapshot.version.is_none() {
        Some(Blocked::NoVersion)
    } else {
        failing(&snapshot.failures, &snapshot.settings, snapshot.now)
    };
    let create = if blocked.is_some() { 0 } else { wanted };
    Plan { create, delete, cancel, prewarm, blocked, counts }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::InstancePhase::*;
    use super::*;

    const NOW: i64 = 1_000_000_000_000_000;
    const MINUTE: i64 = 60_000_000;

    fn instance(id: &str, version: i64, age_minutes: i64, phase: InstancePhase) -> InstanceSnapshot {
        InstanceSnapshot {
            id: id.into(),
            version,
            created_at: Timestamp::from_micros(NOW - age_minutes * MINUTE),
            phase,
        }
    }

    fn pool(desired: u32, instances: Vec<InstanceSnapshot>) -> PoolSnapshot {
        PoolSnapshot {
            now: Timestamp::from_micros(NOW),
            desired,
            version: Some(2),
            settings: PoolSettings::default(),
            paused: false,
            failures: FailureRecord::default(),
            instances,
            incoming: Vec::new(),
        }
    }

    const READY: InstancePhase = Running { ready: true };
    const BOOTING: InstancePhase = Running { ready: false };

    #[test]
    fn an_empty_pool_creates_the_desired_count() {
        let plan = plan(&pool(3, vec![]));
        assert_eq!((plan.create, plan.delete.len(), plan.blocked), (3, 0, None));
    }

    #[test]
    fn starting_and_running_instances_count_towards_the_desired_count() {
        let p = pool(
            4,
            vec![
                instance("a", 2, 5, READY),
                instance("b", 2, 4, BOOTING),
                instance("c", 2, 1, Starting { pending: false }),
            ],
        );
        let plan = plan(&p);
        assert_eq!(plan.create, 1);
        assert!(plan.delete.is_empty());
        assert_eq!(
            plan.counts,
            PoolCounts { desired: 4, running: 2, ready: 1, starting: 1, expired: 0, prewarming: 0 }
        );
    }

    #[test]
    fn the_oldest_extraneous_instances_are_deleted() {
        let p = pool(1, vec![instance("b", 2, 5, READY), instance("a", 2, 9, READY), instance("c", 2, 1, READY)]);
        let plan = plan(&p);
        assert_eq!(plan.delete, ["a", "b"]);
        assert_eq!(plan.create, 0);
    }

    #[test]
    fn expired_instances_are_deleted_and_replaced_in_the_same_pass() {
        let mut p = pool(2, vec![instance("old", 2, 120, READY), instance("new", 2, 10, READY)]);
        p.settings.ttl_seconds = Some(3600);
        let plan = plan(&p);
        assert_eq!(plan.delete, ["old"]);
        assert_eq!(plan.create, 1);
        assert_eq!(plan.counts.expired, 1);
    }

    #[test]
    fn failures_back_off_by_their_number_times_the_interval() {
        let mut p = pool(2, vec![]);
        p.failures = FailureRecord { failed_in_a_row: 2, last_build_at: Some(Timestamp::from_micros(NOW - MINUTE)) };
        // 2 × 60 s after the last build: one more minute to wait.
        let blocked = plan(&p);
        assert_eq!(blocked.create, 0);
        assert_eq!(blocked.blocked, Some(Blocked::Backoff { until: Timestamp::from_micros(NOW + MINUTE) }));
        p.now = Timestamp::from_micros(NOW + MINUTE);
        assert_eq!(plan(&p).create, 2, "the backoff is over");
    }

    #[test]
    fn the_failure_limit_stops_creating_but_not_deleting() {
        let mut p = pool(
            2,
            vec![
                instance("broken", 2, 1, Failed),
                instance("a", 2, 9, READY),
                instance("b", 2, 8, READY),
                instance("c", 2, 7, READY),
            ],
        );
        p.failures =
            FailureRecord { failed_in_a_row: 3, last_build_at: Some(Timestamp::from_micros(NOW - 3600 * 1_000_000)) };
        let plan = plan(&p);
        assert_eq!(plan.blocked, Some(Blocked::FailureLimit { failures: 3 }));
        assert_eq!(plan.create, 0);
        assert_eq!(plan.delete, ["a", "broken"]);
    }

    #[test]
    fn a_new_version_replaces_old_instances_only_as_new_ones_are_ready() {
        let old = |id: &str, age| instance(id, 1, age, READY);
        // Nothing of the new version yet: create two, delete nothing, cancel the old pending one.
        let p = pool(2, vec![old("o1", 30), old("o2", 20), instance("o3", 1, 1, Starting { pending: true })]);
        let first = plan(&p);
        assert_eq!((first.create, first.delete.clone(), first.cancel.clone()), (2, vec![], vec!["o3".to_owned()]));
        // One new one ready, one still booting: the oldest old one goes.
        let p = pool(2, vec![old("o1", 30), old("o2", 20), instance("n1", 2, 3, READY), instance("n2", 2, 3, BOOTING)]);
        let second = plan(&p);
        assert_eq!((second.create, second.delete), (0, vec!["o1".to_owned()]));
        // Both ready: the last old one goes.
        let p = pool(2, vec![old("o2", 20), instance("n1", 2, 3, READY), instance("n2", 2, 2, READY)]);
        assert_eq!(plan(&p).delete, ["o2"]);
    }

    #[test]
    fn a_paused_pool_is_left_alone() {
        let mut p = pool(5, vec![instance("x", 1, 100, READY), instance("f", 2, 1, Failed)]);
        p.paused = true;
        let plan = plan(&p);
        assert_eq!(plan.blocked, Some(Blocked::Paused));
        assert_eq!((plan.create, plan.delete.len(), plan.cancel.len()), (0, 0, 0));
    }

    #[test]
    fn without_a_pinned_version_the_pool_drains() {
        let mut p = pool(5, vec![instance("x", 1, 100, READY)]);
        p.version = None;
        let plan = plan(&p);
        assert_eq!(plan.blocked, Some(Blocked::NoVersion));
        assert_eq!((plan.create, plan.delete.clone()), (0, vec!["x".to_owned()]));
    }

    #[test]
    fn the_desired_count_is_clamped_and_deleting_instances_are_left_alone() {
        let plan = plan(&pool(1_000, vec![instance("d", 2, 1, Deleting)]));
        assert_eq!(plan.create, MAX_INSTANCES);
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn a_pool_is_warm_for_a_version_when_it_has_the_desired_count_ready_and_stuck_when_it_cannot_get_there() {
        let mut p = pool(4, vec![instance("a", 3, 1, READY), instance("b", 3, 1, BOOTING), instance("c", 2, 9, READY)]);
        p.incoming = incoming(&[3]);
        assert_eq!(warmth(&p, 3), Warmth { ready: 1, wanted: 4, stuck: false });
        assert!(warmth(&p, 3).worth_waiting());
        p.desired = 1;
        assert!(!warmth(&p, 3).worth_waiting(), "one ready of one wanted");
        p.desired = 4;
        p.paused = true;
        assert!(!warmth(&p, 3).worth_waiting(), "a paused pool warms nothing");
        p.paused = false;
        p.incoming[0].failures.failed_in_a_row = p.settings.failure_limit;
        assert!(warmth(&p, 3).stuck, "the version's starts keep failing");
    }

    fn incoming(versions: &[i64]) -> Vec<IncomingVersion> {
        versions.iter().map(|&version| IncomingVersion { version, failures: FailureRecord::default() }).collect()
    }

    #[test]
    fn an_incoming_version_is_warmed_up_to_the_desired_count_beside_the_pinned_one() {
        let mut p = pool(2, vec![instance("a", 2, 9, READY), instance("b", 2, 8, READY)]);
        p.incoming = incoming(&[3, 2]);
        let plan = plan(&p);
        assert_eq!((plan.create, plan.prewarm.clone(), plan.delete.len()), (0, vec![(3, 2)], 0));
        // Half warm: one ready, one starting; neither replaced nor cancelled as superseded.
        p.instances.extend([instance("w1", 3, 2, READY), instance("w2", 3, 1, Starting { pending: true })]);
        let plan = super::plan(&p);
        assert_eq!((plan.create, plan.prewarm, plan.delete, plan.cancel), (0, vec![], vec![], vec![]));
        assert_eq!((plan.counts.prewarming, plan.counts.running, plan.counts.ready), (2, 3, 3));
    }

    #[test]
    fn when_the_pin_moves_to_the_warmed_version_it_takes_over_at_once() {
        let mut p = pool(
            2,
            vec![
                instance("a", 2, 9, READY),
                instance("b", 2, 8, READY),
                instance("w1", 3, 2, READY),
                instance("w2", 3, 1, READY),
            ],
        );
        p.version = Some(3);
        let plan = plan(&p);
        assert_eq!((plan.create, plan.delete, plan.prewarm), (0, vec!["a".to_owned(), "b".to_owned()], vec![]));
        assert_eq!(plan.counts.prewarming, 0);
    }

    #[test]
    fn a_version_no_longer_incoming_is_superseded() {
        // The rollout to v3 was cancelled: its warm instances go, its pending start is cancelled.
        let p = pool(
            1,
            vec![
                instance("a", 2, 9, READY),
                instance("w1", 3, 2, READY),
                instance("w2", 3, 1, Starting { pending: true }),
            ],
        );
        let plan = plan(&p);
        assert_eq!((plan.delete, plan.cancel), (vec!["w1".to_owned()], vec!["w2".to_owned()]));
    }

    #[test]
    fn pre_warming_deletes_extraneous_warm_instances_and_honours_its_own_failures() {
        let mut p = pool(
            1,
            vec![
                instance("a", 2, 9, READY),
                instance("w1", 3, 5, READY),
                instance("w2", 3, 4, BOOTING),
                instance("w3", 3, 3, READY),
            ],
        );
        p.incoming = incoming(&[3]);
        assert_eq!(plan(&p).delete, ["w2", "w1"], "not ready first, then the oldest");
        let mut p = pool(2, vec![]);
        p.incoming = vec![IncomingVersion {
            version: 3,
            failures: FailureRecord { failed_in_a_row: 3, last_build_at: Some(Timestamp::from_micros(NOW - MINUTE)) },
        }];
        let plan = plan(&p);
        assert_eq!((plan.create, plan.prewarm), (2, vec![]), "the failing version alone stops");
    }

    #[test]
    fn nothing_is_pre_warmed_without_a_pin_nor_when_paused() {
        let mut p = pool(2, vec![]);
        p.incoming = incoming(&[3]);
        p.version = None;
        assert!(plan(&p).prewarm.is_empty());
        p.version = Some(2);
        p.paused = true;
        assert!(plan(&p).prewarm.is_empty());
    }

    fn phase() -> impl Strategy<Value = InstancePhase> {
        prop_oneof![
            any::<bool>().prop_map(|pending| Starting { pending }),
            any::<bool>().prop_map(|ready| Running { ready }),
            Just(Failed),
            Just(Deleting),
        ]
    }

    fn snapshot() -> impl Strategy<Value = PoolSnapshot> {
        let instances = prop::collection::vec((1_i64..=3, 0_i64..200, phase()), 0..30);
        (0_u32..120, instances, proptest::option::of(60_u32..20_000), 0_u32..6, any::<bool>(), any::<bool>()).prop_map(
            |(desired, rows, ttl, failures, unpinned, rollout)| {
                let mut p = pool(
                    desired,
                    rows.into_iter()
                        .enumerate()
                        .map(|(n, (v, age, ph))| instance(&format!("i{n:03}"), v, age, ph))
                        .collect(),
                );
                p.settings.ttl_seconds = ttl;
                p.failures = FailureRecord {
                    failed_in_a_row: failures,
                    last_build_at: Some(Timestamp::from_micros(NOW - 3_600 * 1_000_000)),
                };
                if unpinned {
                    p.version = None;
                }
                if rollout {
                    p.incoming = incoming(&[3]);
                }
                p
            },
        )
    }

    proptest! {
        #[test]
        fn a_plan_never_overshoots_nor_leaves_the_pool_short(p in snapshot()) {
            let plan = plan(&p);
            let deleted = |i: &&InstanceSnapshot| plan.delete.contains(&i.id);
            let current = |i: &&InstanceSnapshot| Some(i.version) == p.version;
            let kept_running = p.instances.iter().filter(current).filter(|i| matches!(i.phase, Running { .. })).filter(|i| !deleted(i)).count() as u32;
            let starting = p.instances.iter().filter(current).filter(|i| matches!(i.phase, Starting { .. })).count() as u32;
            let desired = plan.counts.desired;
            prop_assert!(desired <= MAX_INSTANCES);
            prop_assert!(kept_running <= desired, "no more running than desired are kept");
            if plan.create > 0 {
                prop_assert_eq!(kept_running + starting + plan.create, desired);
            }
            if plan.blocked.is_none() {
                prop_assert!(kept_running + starting + plan.create >= desired);
            }
        }

        #[test]
        fn a_plan_deletes_only_instances_that_can_go_each_once(p in snapshot()) {
            let plan = plan(&p);
            let mut seen = std::collections::HashSet::new();
            for id in &plan.delete {
                prop_assert!(seen.insert(id), "{} twice", id);
                let instance = p.instances.iter().find(|i| &i.id == id).unwrap();
                prop_assert!(matches!(instance.phase, Running { .. } | Failed), "{:?}", instance);
            }
            for id in &plan.cancel {
                let instance = p.instances.iter().find(|i| &i.id == id).unwrap();
                prop_assert_eq!(instance.phase, Starting { pending: true });
                prop_assert!(Some(instance.version) != p.version);
            }
            if p.paused {
                prop_assert!(plan.delete.is_empty() && plan.create == 0);
            }
        }

        #[test]
        fn an_incoming_version_never_holds_more_than_the_desired_count(p in snapshot()) {
            let plan = plan(&p);
            for (version, create) in &plan.prewarm {
                prop_assert!(Some(*version) != p.version);
                let held = p.instances.iter()
                    .filter(|i| i.version == *version && !plan.delete.contains(&i.id))
                    .filter(|i| matches!(i.phase, Starting { .. } | Running { .. }))
                    .count() as u32;
                prop_assert!(held + create <= plan.counts.desired, "{} held, {} created", held, create);
            }
        }

        #[test]
        fn replacing_a_version_never_drops_ready_instances_below_the_desired_count(mut p in snapshot()) {
            p.settings.ttl_seconds = None;
            let plan = plan(&p);
            let ready = |i: &&InstanceSnapshot| i.phase == Running { ready: true };
            let before = p.instances.iter().filter(ready).count() as u32;
            let after = p.instances.iter().filter(ready).filter(|i| !plan.delete.contains(&i.id)).count() as u32;
            prop_assert!(after >= before.min(plan.counts.desired), "{} ready before, {} after, desired {}", before, after, plan.counts.desired);
        }
    }
}
