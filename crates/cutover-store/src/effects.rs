//! What a committed write changed, for whoever must act on it: the resolve view of a workspace,
//! its tokens, or the engine's work. A write declares its effects on the transaction's
//! connection as it makes the change (`conn.effects.resolve(workspace)`), so a new write path
//! cannot forget them; the transaction then
//!
//! - on PostgreSQL, sends one `NOTIFY` per effect **inside** the transaction: PostgreSQL delivers
//!   it to every replica exactly at commit, and never for a rollback (the engine's on a channel of
//!   its own, [`ENGINE_CHANNEL`]);
//! - after the commit, awaits the commit hooks of this process (the server refreshes its resolve
//!   view before the write's caller answers, so a client reads its own writes, forgets or
//!   re-checks tokens, wakes the engine).
//!
//! A dry run or a failed write has no effects: its transaction rolled back.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

/// The channel effects are announced on, between replicas.
pub const CHANNEL: &str = "cutover_changes";

/// The channel work for the engine is announced on: apart from [`CHANNEL`], so that the engine's
/// listener and the resolve view's each hear only their own notices.
pub const ENGINE_CHANNEL: &str = "cutover_engine";

/// One thing a write changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Something resolve returns in this workspace: pins, artifacts, environments, experiments.
    Resolve(String),
    /// Tokens of this workspace: created or revoked.
    Tokens(String),
    /// Work for the engine: a rollout created, controlled, or a task's result reported.
    Engine,
}

impl Effect {
    /// The channel the notice is sent on.
    pub fn channel(&self) -> &'static str {
        match self {
            Self::Resolve(_) | Self::Tokens(_) => CHANNEL,
            Self::Engine => ENGINE_CHANNEL,
        }
    }

    /// The notice's payload on its [`Effect::channel`].
    pub fn payload(&self) -> String {
        match self {
            Self::Resolve(workspace) => format!("resolve:{workspace}"),
            Self::Tokens(workspace) => format!("tokens:{workspace}"),
            Self::Engine => "engine:".to_owned(),
        }
    }

    /// Reads a notice's payload.
    pub fn parse(payload: &str) -> Option<Self> {
        let (kind, workspace) = payload.split_once(':')?;
        match kind {
            "resolve" if !workspace.is_empty() => Some(Self::Resolve(workspace.to_owned())),
            "tokens" if !workspace.is_empty() => Some(Self::Tokens(workspace.to_owned())),
            "engine" => Some(Self::Engine),
            _ => None,
        }
    }
}

/// The effects of one transaction, each once, in the order first declared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects(Vec<Effect>);

impl Effects {
    pub fn add(&mut self, effect: Effect) {
        if !self.0.contains(&effect) {
            self.0.push(effect);
        }
    }

    pub fn resolve(&mut self, workspace_id: &str) {
        self.add(Effect::Resolve(workspace_id.to_owned()));
    }

    pub fn tokens(&mut self, workspace_id: &str) {
        self.add(Effect::Tokens(workspace_id.to_owned()));
    }

    pub fn engine(&mut self) {
        self.add(Effect::Engine);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Effect> {
        self.0.iter()
    }
}

/// Acts on the effects of a committed transaction, in this process.
pub trait CommitHook: Send + Sync + 'static {
    fn committed<'a>(&'a self, effects: &'a Effects) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// The hooks registered on a store (and its clones).
#[derive(Default)]
pub(crate) struct Hooks(RwLock<Vec<Arc<dyn CommitHook>>>);

impl Hooks {
    pub(crate) fn add(&self, hook: Arc<dyn CommitHook>) {
        self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner).push(hook);
    }

    pub(crate) async fn run(&self, effects: &Effects) {
        if effects.is_empty() {
            return;
        }
        let hooks: Vec<Arc<dyn CommitHook>> =
            self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect();
        for hook in hooks {
            hook.committed(effects).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_are_kept_once_and_round_trip_as_notices() {
        let mut effects = Effects::default();
        effects.resolve("w1");
        effects.engine();
        effects.resolve("w1");
        effects.tokens("w1");
        let all: Vec<&Effect> = effects.iter().collect();
        assert_eq!(all, [&Effect::Resolve("w1".into()), &Effect::Engine, &Effect::Tokens("w1".into())]);
        for effect in effects.iter() {
            assert_eq!(Effect::parse(&effect.payload()).as_ref(), Some(effect));
        }
        // The engine listens apart from the resolve view.
        assert_eq!(Effect::Engine.channel(), ENGINE_CHANNEL);
        assert_eq!(Effect::Resolve("w1".into()).channel(), CHANNEL);
        assert_eq!(Effect::Tokens("w1".into()).channel(), CHANNEL);
        assert_eq!(Effect::parse("resolve:"), None);
        assert_eq!(Effect::parse("other:x"), None);
        assert_eq!(Effect::parse("nonsense"), None);
    }
}
