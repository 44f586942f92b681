//! Store records to wire types.

use cutover_api as api;
use cutover_store as store;

pub fn actor(actor: store::Actor) -> api::Actor {
    api::Actor { token_id: actor.token_id, name: actor.name }
}

pub fn workspace(w: store::Workspace) -> api::Workspace {
    api::Workspace {
        id: w.id,
        name: w.name,
        admin: w.admin,
        revision: w.revision,
        created_at: w.created_at.to_rfc3339(),
    }
}

pub fn token(t: store::Token) -> api::Token {
    api::Token {
        id: t.id,
        name: t.name,
        role: t.role.as_str().to_owned(),
        environments: t.environments.into_iter().map(|e| e.name.into_string()).collect(),
        created_at: t.created_at.to_rfc3339(),
        created_by: t.created_by.map(actor),
        revoked_at: t.revoked_at.map(|at| at.to_rfc3339()),
    }
}

pub fn environment(e: store::Environment) -> api::Environment {
    api::Environment {
        name: e.name.into_string(),
        description: e.description,
        protected: e.protected,
        targets: e
            .targets
            .as_slice()
            .iter()
            .map(|t| api::Target { name: t.name.to_string(), config: t.config.clone() })
            .collect(),
        position: e.position,
        created_at: e.created_at.to_rfc3339(),
        updated_at: e.updated_at.to_rfc3339(),
    }
}

pub fn artifact(a: store::Artifact) -> api::Artifact {
    api::Artifact {
        key: a.key.into_string(),
        value_type: a.value_type.as_str().to_owned(),
        kind: a.kind,
        description: a.description,
        latest_version: a.latest_version,
        created_at: a.created_at.to_rfc3339(),
        updated_at: a.updated_at.to_rfc3339(),
        archived_at: a.archived_at.map(|t| t.to_rfc3339()),
    }
}

pub fn version(v: store::Version) -> api::Version {
    api::Version {
        artifact: v.artifact.into_string(),
        number: v.number,
        content: v.content.value().clone(),
        sha256: v.sha256,
        message: v.message,
        author: actor(v.author),
        created_at: v.created_at.to_rfc3339(),
    }
}

pub fn audit_event(e: store::AuditEvent) -> api::AuditEvent {
    api::AuditEvent {
        id: e.seq,
        at: e.at.to_rfc3339(),
        actor: actor(e.actor),
        action: e.action,
        object_type: e.object_type,
        object_id: e.object_id,
        before: e.before,
        after: e.after,
    }
}

pub fn page<T, U>(page: store::Page<T>, each: impl FnMut(T) -> U) -> api::Page<U> {
    api::Page { items: page.items.into_iter().map(each).collect(), next_cursor: page.next.map(|c| c.encode()) }
}

/// A whole list as one page.
pub fn all<T, U>(items: Vec<T>, each: impl FnMut(T) -> U) -> api::Page<U> {
    api::Page { items: items.into_iter().map(each).collect(), next_cursor: None }
}

pub fn pin(p: store::Pin) -> api::Pin {
    api::Pin {
        artifact: p.artifact.into_string(),
        environment: p.environment.into_string(),
        version: p.version,
        revision: p.revision,
        reason: p.reason,
        started_at: p.started_at.to_rfc3339(),
        started_by: actor(p.started_by),
        ended_at: p.ended_at.map(|t| t.to_rfc3339()),
        ended_by: p.ended_by.map(actor),
        end_reason: p.end_reason,
    }
}

pub fn pin_change(c: store::PinChange) -> api::PinChange {
    api::PinChange {
        artifact: c.artifact.into_string(),
        environment: c.environment.into_string(),
        from: c.from,
        to: c.to,
    }
}

pub fn pin_write(w: store::PinWrite) -> api::PinWrite {
    api::PinWrite { revision: w.revision, changes: w.changes.into_iter().map(pin_change).collect() }
}

pub fn experiment(x: store::Experiment) -> api::Experiment {
    api::Experiment {
        variants: x.variants.iter().map(|v| api::ExperimentVariant { version: v.version, weight: v.weight }).collect(),
        status: x.lifecycle.status().as_str().to_owned(),
        created_at: x.lifecycle.created_at().to_rfc3339(),
        updated_at: x.lifecycle.updated_at().to_rfc3339(),
        started_at: x.lifecycle.started_at().map(|t| t.to_rfc3339()),
        ended_at: x.lifecycle.ended_at().map(|t| t.to_rfc3339()),
        deleted_at: x.deleted_at.map(|t| t.to_rfc3339()),
        id: x.id,
        artifact: x.artifact.into_string(),
        environment: x.environment.into_string(),
        name: x.name,
        hypothesis: x.hypothesis,
        coverage: x.coverage.get(),
        seed: x.seed,
        primary_metric: x.primary_metric,
        guardrail_metrics: x.guardrail_metrics,
    }
}

pub fn rollout(r: store::Rollout, operations: Option<Vec<store::RolloutOperation>>) -> api::Rollout {
    let progress = operations.as_ref().map(|ops| {
        let mut counts = std::collections::BTreeMap::new();
        for op in ops {
            *counts.entry(op.state.as_str().to_owned()).or_insert(0) += 1;
        }
        counts
    });
    api::Rollout {
        state: r.state.as_str().to_owned(),
        max_parallel: r.policy.max_parallel.get(),
        on_failure: r.policy.on_failure.as_str().to_owned(),
        failure_budget: r.policy.failure_budget.map(|b| b.get()),
        progress,
        created_at: r.created_at.to_rfc3339(),
        updated_at: r.updated_at.to_rfc3339(),
        ended_at: r.ended_at.map(|t| t.to_rfc3339()),
        created_by: r.created_by.name,
        operations: operations.map(|ops| ops.into_iter().map(rollout_operation).collect()),
        id: r.id,
        artifact: r.artifact.into_string(),
        environment: r.environment.into_string(),
        version: r.version.get(),
        steps: r.steps,
        pinned_revision: r.pinned_revision,
    }
}

pub fn rollout_detail(d: store::RolloutDetail) -> api::Rollout {
    rollout(d.rollout, Some(d.operations))
}

fn rollout_operation(o: store::RolloutOperation) -> api::RolloutOperation {
    api::RolloutOperation {
        state: o.state.as_str().to_owned(),
        on_failure: o.on_failure.as_str().to_owned(),
        executor: o.executor.kind().to_owned(),
        started_at: o.started_at.map(|t| t.to_rfc3339()),
        ended_at: o.ended_at.map(|t| t.to_rfc3339()),
        tasks: o.tasks.into_iter().map(rollout_task).collect(),
        id: o.id,
        target: o.target,
        position: o.position,
        wave: o.wave,
        pause_released: o.pause_released,
    }
}

pub fn rollout_task(t: store::RolloutTask) -> api::RolloutTask {
    api::RolloutTask {
        state: t.state.as_str().to_owned(),
        log_bytes: t.log_bytes,
        started_at: t.started_at.map(|t| t.to_rfc3339()),
        ended_at: t.ended_at.map(|t| t.to_rfc3339()),
        id: t.id,
        step: t.step,
        attempts: t.attempts,
        idempotency_key: t.idempotency_key,
        exit_code: t.exit_code,
        error: t.error,
    }
}
