//! Experiment and rollout ids as people type them: any unique prefix of at least
//! [`MIN_PREFIX`] characters, resolved through the list endpoints; and short ids for tables.

use std::collections::HashSet;

use super::Context;
use crate::failure::usage;

/// The fewest characters of an id the CLI accepts.
pub const MIN_PREFIX: usize = 8;

/// How much of an id tables show at least: `0193a4b2-7c1e`, the twelve hex digits that are a
/// UUIDv7's creation time in milliseconds. Eight would be shared by everything made within the
/// same minute or so, and a short id shown in one list should still name one thing elsewhere.
const SHORT_ID: usize = 13;

/// The length of a whole id (a UUID with its dashes).
const FULL_ID: usize = 36;

/// How many rollouts, newest first, a prefix is looked up among (the list's largest page).
const ROLLOUTS_SEARCHED: u32 = 200;

/// A thing with an id, and how a person would recognise it in a list of candidates.
pub struct Candidate {
    pub id: String,
    pub label: String,
}

/// The whole id of the experiment `given` names: itself when whole, else the one experiment (not
/// deleted, in any environment) whose id starts with it.
pub async fn experiment(context: &Context, given: &str) -> anyhow::Result<String> {
    if let Some(id) = whole(given)? {
        return Ok(id);
    }
    let mut candidates = Vec::new();
    for environment in context.client.list_environments().await?.items {
        for experiment in context.client.list_experiments(&environment.name, None).await?.items {
            let label = format!(
                "{} on {} in {}, {}",
                experiment.name, experiment.artifact, experiment.environment, experiment.status
            );
            candidates.push(Candidate { id: experiment.id, label });
        }
    }
    pick("experiment", given, candidates, "experiments that are not deleted, in every environment")
}

/// The whole id of the rollout `given` names: itself when whole, else the one rollout among the
/// newest [`ROLLOUTS_SEARCHED`] whose id starts with it.
pub async fn rollout(context: &Context, given: &str) -> anyhow::Result<String> {
    if let Some(id) = whole(given)? {
        return Ok(id);
    }
    let page = context.client.list_rollouts(None, None, Some(ROLLOUTS_SEARCHED)).await?;
    let candidates = page.items.into_iter().map(|rollout| {
        let label = format!(
            "version {} of {} to {}, {}, {}",
            rollout.version, rollout.artifact, rollout.environment, rollout.state, rollout.created_at
        );
        Candidate { id: rollout.id, label }
    });
    pick("rollout", given, candidates, &format!("the {ROLLOUTS_SEARCHED} newest rollouts"))
}

/// `Some(id)` when `given` is a whole id; an error when it is too short to be a prefix.
fn whole(given: &str) -> anyhow::Result<Option<String>> {
    let given = given.trim();
    if given.len() >= FULL_ID {
        return Ok(Some(given.to_owned()));
    }
    if given.chars().count() < MIN_PREFIX {
        return Err(usage(format!(
            "{given:?} is too short to name one: give the whole id or its first {MIN_PREFIX} characters or more"
        )));
    }
    Ok(None)
}

/// The one candidate whose id starts with `given` (ignoring case).
pub fn pick(
    kind: &str,
    given: &str,
    candidates: impl IntoIterator<Item = Candidate>,
    searched: &str,
) -> anyhow::Result<String> {
    let prefix = given.trim().to_ascii_lowercase();
    let mut found: Vec<Candidate> =
        candidates.into_iter().filter(|candidate| candidate.id.to_ascii_lowercase().starts_with(&prefix)).collect();
    match found.len() {
        0 => Err(anyhow::anyhow!("no {kind} id starts with {given:?} (searched {searched}); give the whole id")),
        1 => Ok(found.remove(0).id),
        count => {
            let lines: Vec<String> =
                found.iter().map(|candidate| format!("  {}  {}", candidate.id, candidate.label)).collect();
            Err(usage(format!(
                "{count} {kind}s have an id starting with {given:?}; give more of the id:\n{}",
                lines.join("\n")
            )))
        }
    }
}

/// Each id cut to its first [`SHORT_ID`] characters, or more where that would not tell it
/// from another id in `ids`: what a table shows, and what the commands take back.
pub fn short_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let ids: Vec<&str> = ids.into_iter().collect();
    let distinct: HashSet<&str> = ids.iter().copied().collect();
    ids.iter()
        .map(|id| {
            let mut length = SHORT_ID.min(id.len());
            while length < id.len()
                && distinct.iter().any(|other| other != id && other.get(..length) == id.get(..length))
            {
                length += 1;
            }
            id.get(..length).unwrap_or(id).to_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{Candidate, pick, short_ids, whole};

    fn candidates() -> Vec<Candidate> {
        ["0193a4b2-7c1e-7000-8000-000000000001", "0193a4b2-7c1e-7000-8000-000000000002", "0193ffff-0000-7000-8000-0"]
            .into_iter()
            .map(|id| Candidate { id: id.to_owned(), label: format!("label of {id}") })
            .collect()
    }

    #[test]
    fn a_unique_prefix_names_its_id() {
        assert_eq!(pick("rollout", "0193FFFF", candidates(), "all").unwrap(), "0193ffff-0000-7000-8000-0");
        assert_eq!(
            pick("rollout", "0193a4b2-7c1e-7000-8000-000000000002", candidates(), "all").unwrap(),
            "0193a4b2-7c1e-7000-8000-000000000002"
        );
    }

    #[test]
    fn an_ambiguous_prefix_lists_the_candidates() {
        let err = pick("rollout", "0193a4b2", candidates(), "all").unwrap_err();
        assert_eq!(
            err.to_string(),
            "2 rollouts have an id starting with \"0193a4b2\"; give more of the id:\n  \
             0193a4b2-7c1e-7000-8000-000000000001  label of 0193a4b2-7c1e-7000-8000-000000000001\n  \
             0193a4b2-7c1e-7000-8000-000000000002  label of 0193a4b2-7c1e-7000-8000-000000000002"
        );
    }

    #[test]
    fn an_unknown_prefix_says_where_it_looked() {
        let err = pick("experiment", "deadbeef", candidates(), "every environment").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no experiment id starts with \"deadbeef\" (searched every environment); give the whole id"
        );
    }

    #[test]
    fn fewer_than_eight_characters_are_refused_and_whole_ids_pass_untouched() {
        assert!(whole("0193a4b").is_err());
        assert_eq!(whole("0193a4b2").unwrap(), None);
        let id = "0193a4b2-7c1e-7000-8000-000000000001";
        assert_eq!(whole(id).unwrap().as_deref(), Some(id));
    }

    #[test]
    fn short_ids_are_the_creation_time_or_as_much_as_tells_them_apart() {
        let apart = ["0193a4b2-7c1e-7000-8000-000000000001", "0193a4b2-7c1f-7000-8000-000000000001"];
        assert_eq!(short_ids(apart), ["0193a4b2-7c1e", "0193a4b2-7c1f"]);
        let same_millisecond = ["0193a4b2-7c1e-7a00-8000-000000000001", "0193a4b2-7c1e-7b00-8000-000000000002"];
        assert_eq!(short_ids(same_millisecond), ["0193a4b2-7c1e-7a", "0193a4b2-7c1e-7b"]);
        assert_eq!(short_ids(["abc"]), ["abc"]);
    }
}
