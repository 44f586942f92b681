//! An experiment's status and timestamps: `created → running ⇄ paused → completed`, changed only by
//! actions, with every timestamp set here rather than by callers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{DomainError, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExperimentStatus {
    /// Defined, not started: everyone gets the pinned version.
    Created,
    /// Splitting traffic and recording exposures.
    Running,
    /// Everyone gets the control; no exposures are recorded.
    Paused,
    /// Over for good; results stay readable.
    Completed,
}

impl ExperimentStatus {
    pub const ALL: [ExperimentStatus; 4] = [Self::Created, Self::Running, Self::Paused, Self::Completed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
        }
    }

    /// Whether users are split between variants (and exposures recorded).
    pub fn splits_traffic(self) -> bool {
        self == Self::Running
    }

    /// Whether the experiment still holds its (artifact, environment): at most one may.
    pub fn is_active(self) -> bool {
        self != Self::Completed
    }

    /// The status `action` leads to from this one, or `None` when it is not allowed here.
    ///
    /// A created experiment cannot be completed: it has nothing to conclude (delete it instead).
    pub fn after(self, action: ExperimentAction) -> Option<ExperimentStatus> {
        use ExperimentAction::*;
        use ExperimentStatus::*;
        match (self, action) {
            (Created, Start) => Some(Running),
            (Running, Pause) => Some(Paused),
            (Paused, Resume) => Some(Running),
            (Running | Paused, Complete) => Some(Completed),
            _ => None,
        }
    }
}

impl fmt::Display for ExperimentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExperimentStatus {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
            DomainError::invalid("status", format!("{s:?} is not one of created, running, paused, completed"))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExperimentAction {
    Start,
    Pause,
    Resume,
    Complete,
}

impl ExperimentAction {
    pub const ALL: [ExperimentAction; 4] = [Self::Start, Self::Pause, Self::Resume, Self::Complete];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Complete => "complete",
        }
    }
}

impl fmt::Display for ExperimentAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExperimentAction {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
            DomainError::invalid("action", format!("{s:?} is not one of start, pause, resume, complete"))
        })
    }
}

/// An action that the experiment's current status does not allow: a conflict (409), not bad input,
/// which is why it is not a [`DomainError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} an experiment that is {status}")]
pub struct IllegalTransition {
    pub action: ExperimentAction,
    pub status: ExperimentStatus,
}

/// Where an experiment is in its life, and when each step happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Lifecycle {
    status: ExperimentStatus,
    created_at: Timestamp,
    updated_at: Timestamp,
    started_at: Option<Timestamp>,
    ended_at: Option<Timestamp>,
}

impl Lifecycle {
    /// A new experiment, created at `at`.
    pub fn new(at: Timestamp) -> Self {
        Self { status: ExperimentStatus::Created, created_at: at, updated_at: at, started_at: None, ended_at: None }
    }

    /// Reads a lifecycle back from the store, where only [`Lifecycle::apply`] ever wrote it.
    pub fn from_stored(
        status: ExperimentStatus,
        created_at: Timestamp,
        updated_at: Timestamp,
        started_at: Option<Timestamp>,
        ended_at: Option<Timestamp>,
    ) -> Self {
        Self { status, created_at, updated_at, started_at, ended_at }
    }

    /// The lifecycle after `action` taken at `at`, or why it is not allowed.
    ///
    /// `updated_at` moves on every action, `started_at` is set by the first (and only) start,
    /// `ended_at` by completion. Timestamps never go backwards: an `at` earlier than the last
    /// update (another replica's clock a little behind) counts as the time of that update.
    pub fn apply(self, action: ExperimentAction, at: Timestamp) -> Result<Self, IllegalTransition> {
        let status = self.status.after(action).ok_or(IllegalTransition { action, status: self.status })?;
        let at = at.max(self.updated_at);
        Ok(Self {
            status,
            updated_at: at,
            started_at: self.started_at.or((action == ExperimentAction::Start).then_some(at)),
            ended_at: (status == ExperimentStatus::Completed).then_some(at),
            ..self
        })
    }

    /// Marks an edit of the name or hypothesis, which any status allows.
    pub fn touch(self, at: Timestamp) -> Self {
        Self { updated_at: at.max(self.updated_at), ..self }
    }

    pub fn status(&self) -> ExperimentStatus {
        self.status
    }

    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }

    pub fn started_at(&self) -> Option<Timestamp> {
        self.started_at
    }

    pub fn ended_at(&self) -> Option<Timestamp> {
        self.ended_at
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::ExperimentAction::*;
    use super::ExperimentStatus::*;
    use super::*;

    fn at(micros: i64) -> Timestamp {
        Timestamp::from_micros(micros)
    }

    /// Every (status, action) pair and what it leads to: the whole transition table.
    const TABLE: [(ExperimentStatus, ExperimentAction, Option<ExperimentStatus>); 16] = [
        (Created, Start, Some(Running)),
        (Created, Pause, None),
        (Created, Resume, None),
        (Created, Complete, None),
        (Running, Start, None),
        (Running, Pause, Some(Paused)),
        (Running, Resume, None),
        (Running, Complete, Some(Completed)),
        (Paused, Start, None),
        (Paused, Pause, None),
        (Paused, Resume, Some(Running)),
        (Paused, Complete, Some(Completed)),
        (Completed, Start, None),
        (Completed, Pause, None),
        (Completed, Resume, None),
        (Completed, Complete, None),
    ];

    /// A lifecycle in `status`, reached through legal actions at times 1, 2, 3.
    fn reach(status: ExperimentStatus) -> Lifecycle {
        let path: &[ExperimentAction] = match status {
            Created => &[],
            Running => &[Start],
            Paused => &[Start, Pause],
            Completed => &[Start, Complete],
        };
        path.iter().zip(1..).fold(Lifecycle::new(at(0)), |l, (&a, t)| l.apply(a, at(t)).unwrap())
    }

    #[test]
    fn the_transition_table_is_exactly_the_documented_one() {
        for (status, action, expected) in TABLE {
            assert_eq!(status.after(action), expected, "{action} from {status}");
            let result = reach(status).apply(action, at(100));
            match expected {
                Some(next) => assert_eq!(result.unwrap().status(), next, "{action} from {status}"),
                None => assert_eq!(result.unwrap_err(), IllegalTransition { action, status }),
            }
        }
    }

    #[test]
    fn an_illegal_transition_names_the_current_status() {
        let err = Lifecycle::new(at(0)).apply(Pause, at(1)).unwrap_err();
        assert_eq!(err.to_string(), "cannot pause an experiment that is created");
        let err = reach(Completed).apply(Resume, at(9)).unwrap_err();
        assert_eq!(err.to_string(), "cannot resume an experiment that is completed");
    }

    #[test]
    fn a_refused_action_changes_nothing() {
        let paused = reach(Paused);
        assert!(paused.apply(Pause, at(50)).is_err());
        assert_eq!(paused, reach(Paused));
    }

    #[test]
    fn a_new_experiment_is_created_with_only_its_creation_time() {
        let l = Lifecycle::new(at(10));
        assert_eq!((l.status(), l.created_at(), l.updated_at()), (Created, at(10), at(10)));
        assert_eq!((l.started_at(), l.ended_at()), (None, None));
    }

    #[test]
    fn started_at_is_set_by_the_first_start_and_kept_through_pauses() {
        let l = Lifecycle::new(at(0)).apply(Start, at(10)).unwrap();
        assert_eq!(l.started_at(), Some(at(10)));
        let l = l.apply(Pause, at(20)).unwrap().apply(Resume, at(30)).unwrap();
        assert_eq!((l.started_at(), l.updated_at(), l.ended_at()), (Some(at(10)), at(30), None));
    }

    #[test]
    fn completion_sets_ended_at_from_running_or_paused() {
        let from_running = reach(Running).apply(Complete, at(40)).unwrap();
        let from_paused = reach(Paused).apply(Complete, at(40)).unwrap();
        for l in [from_running, from_paused] {
            assert_eq!((l.status(), l.ended_at(), l.updated_at()), (Completed, Some(at(40)), at(40)));
            assert_eq!(l.started_at(), Some(at(1)));
        }
    }

    #[test]
    fn a_clock_behind_the_last_update_does_not_move_time_backwards() {
        let l = Lifecycle::new(at(100)).apply(Start, at(90)).unwrap();
        assert_eq!((l.started_at(), l.updated_at()), (Some(at(100)), at(100)));
        assert_eq!(l.touch(at(50)).updated_at(), at(100));
        assert_eq!(l.touch(at(150)).updated_at(), at(150));
    }

    #[test]
    fn only_a_running_experiment_splits_traffic_and_only_a_completed_one_is_inactive() {
        let splits: Vec<_> = ExperimentStatus::ALL.iter().map(|s| s.splits_traffic()).collect();
        assert_eq!(splits, [false, true, false, false]);
        let active: Vec<_> = ExperimentStatus::ALL.iter().map(|s| s.is_active()).collect();
        assert_eq!(active, [true, true, true, false]);
    }

    #[test]
    fn statuses_and_actions_round_trip_through_their_names() {
        for s in ExperimentStatus::ALL {
            assert_eq!(s.as_str().parse::<ExperimentStatus>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for a in ExperimentAction::ALL {
            assert_eq!(a.as_str().parse::<ExperimentAction>().unwrap(), a);
        }
        assert_eq!("stopped".parse::<ExperimentStatus>().unwrap_err().field(), "status");
        assert_eq!("restart".parse::<ExperimentAction>().unwrap_err().field(), "action");
    }

    proptest! {
        #[test]
        fn any_sequence_of_actions_keeps_the_invariants(
            steps in prop::collection::vec((0..4usize, -1_000i64..1_000), 0..30),
        ) {
            let mut l = Lifecycle::new(at(0));
            let mut ever_started = None;
            for (action, delta) in steps {
                let action = ExperimentAction::ALL[action];
                let before = l;
                match l.apply(action, at(before.updated_at().as_micros() + delta)) {
                    Ok(next) => {
                        prop_assert_eq!(Some(next.status()), before.status().after(action));
                        prop_assert!(next.updated_at() >= before.updated_at());
                        l = next;
                    }
                    Err(e) => prop_assert_eq!(e.status, before.status()),
                }
                ever_started = ever_started.or(l.started_at());
                prop_assert_eq!(l.started_at(), ever_started);
                prop_assert_eq!(l.started_at().is_some(), l.status() != Created);
                prop_assert_eq!(l.ended_at().is_some(), l.status() == Completed);
                prop_assert!(l.started_at().is_none_or(|s| s >= l.created_at() && s <= l.updated_at()));
                prop_assert!(l.ended_at().is_none_or(|e| Some(e) >= l.started_at() && e == l.updated_at()));
            }
        }
    }
}
