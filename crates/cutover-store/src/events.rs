//! Experiment events: exposures (which variant each user saw) and metric events
//! (`POST /api/v1/events`), kept as running totals so that results read a handful of rows whatever the traffic.
//!
//! Every total moves in the same transaction as the rows it counts, so a crash or a failed batch
//! leaves the totals exactly consistent with the rows: never half a batch.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::db::{Conn, Link, q, read, transaction};
use crate::{
    EventsOutcome, Experiment, ExperimentTotals, Exposure, MetricEvent, MetricSums, Result, Store, StoreError,
};

/// Rows per multi-row `INSERT` of exposures on SQLite. A statement binds its experiment and variant
/// once and two parameters per row (user, time): 1,000 rows bind 2,002, well under the 32,766
/// bound parameters the bundled SQLite allows in one statement. PostgreSQL binds the users and
/// times as two arrays (`UNNEST`), one statement whatever the number of rows.
const SQLITE_EXPOSURE_ROWS: usize = 1_000;

/// An experiment that may count an event: tracks its metric and ran at its time.
#[derive(sqlx::FromRow)]
struct Candidate {
    id: String,
    environment: String,
    primary_metric: String,
    guardrail_metrics: String,
    started_at: i64,
    ended_at: Option<i64>,
}

impl Candidate {
    fn counts(&self, event: &MetricEvent) -> bool {
        let at = event.at.as_micros();
        let metric = event.metric.as_str();
        at >= self.started_at
            && self.ended_at.is_none_or(|end| at <= end)
            && (self.primary_metric == metric || self.tracks_guardrail(metric))
    }

    fn tracks_guardrail(&self, metric: &str) -> bool {
        serde_json::from_str::<Vec<String>>(&self.guardrail_metrics).is_ok_and(|g| g.iter().any(|m| m == metric))
    }
}

#[derive(sqlx::FromRow)]
struct MetricRow {
    metric: String,
    variant: i32,
    conversions: i64,
    events: i64,
    valued_events: i64,
    sum: f64,
    sum_of_squares: f64,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

/// What [`Store::flush_exposures`] did with a batch.
#[derive(Debug, Default)]
pub struct ExposureFlush {
    /// First exposures written.
    pub recorded: u64,
    /// Rows the database refused on their own (a value it cannot hold), with why: set aside for
    /// good, so that they never hold the others up.
    pub rejected: Vec<(Exposure, StoreError)>,
    /// Rows not written because the database could not be reached: to try again later.
    pub retry: Vec<Exposure>,
    /// Why `retry` is not empty.
    pub error: Option<StoreError>,
}

impl Store {
    /// Records a batch of exposures like [`Store::record_exposures`], but a row the database
    /// refuses does not sink the batch: a refused batch is split in halves until the refused rows
    /// stand alone, and those are set aside. When the database cannot be reached, what is not
    /// yet written is handed back to retry.
    pub async fn flush_exposures(&self, batch: Vec<Exposure>) -> ExposureFlush {
        let mut flush = ExposureFlush::default();
        let mut parts = vec![batch];
        while let Some(mut part) = parts.pop() {
            if part.is_empty() {
                continue;
            }
            match self.record_exposures(&part).await {
                Ok(new) => flush.recorded += new,
                Err(e) if e.is_unavailable() => {
                    flush.retry = parts.into_iter().flatten().chain(part).collect();
                    flush.error = Some(e);
                    break;
                }
                Err(e) if part.len() == 1 => flush.rejected.extend(part.pop().map(|row| (row, e))),
                Err(_) => {
                    let second = part.split_off(part.len() / 2);
                    parts.push(second);
                    parts.push(part);
                }
            }
        }
        flush
    }

    /// Records first exposures. A user already recorded for an experiment is skipped (the same
    /// user always lands in the same variant). Returns how many were new.
    ///
    /// One statement per (experiment, variant) in the batch (on SQLite, per 1,000 rows of it):
    /// the database's unique key decides what is new, and the statement's count of rows written
    /// moves that variant's total, with no row sent back.
    pub async fn record_exposures(&self, exposures: &[Exposure]) -> Result<u64> {
        if exposures.is_empty() {
            return Ok(0);
        }
        // One order for every batch on every replica (experiment, variant, user; a user's variant
        // is fixed), so that concurrent flushes take the unique index's locks, then the totals'
        // rows, in one order and cannot deadlock.
        let mut sorted: Vec<&Exposure> = exposures.iter().collect();
        sorted.sort_unstable_by(|a, b| {
            (&a.experiment_id, a.variant, &a.targeting_key).cmp(&(&b.experiment_id, b.variant, &b.targeting_key))
        });
        sorted.dedup_by(|a, b| a.experiment_id == b.experiment_id && a.targeting_key == b.targeting_key);
        transaction!(self, |tx| {
            let mut added: Vec<(&str, i32, u64)> = Vec::new();
            for group in sorted.chunk_by(|a, b| a.experiment_id == b.experiment_id && a.variant == b.variant) {
                let (experiment_id, variant) = (group[0].experiment_id.as_str(), variant_column(group[0].variant));
                let new = insert_exposures(tx, experiment_id, variant, group).await?;
                if new > 0 {
                    added.push((experiment_id, variant, new));
                }
            }
            for (experiment_id, variant, new) in &added {
                q!(
                    tx,
                    execute,
                    sqlx::query(
                        "INSERT INTO exposure_totals (experiment_id, variant, exposures) VALUES ($1, $2, $3)
                         ON CONFLICT (experiment_id, variant)
                         DO UPDATE SET exposures = exposure_totals.exposures + excluded.exposures"
                    )
                    .bind(*experiment_id)
                    .bind(*variant)
                    .bind(i64::try_from(*new).unwrap_or(i64::MAX))
                )?;
            }
            added.iter().map(|(_, _, new)| new).sum::<u64>()
        })
    }

    /// Counts metric events in the experiments of the workspace that track their metric, exposed
    /// their user, and were running at their time (between start and completion). `environments`
    /// limits the experiments to those environments (a token scoped to some); `None` is all.
    pub async fn record_events(
        &self,
        workspace_id: &str,
        environments: Option<&[String]>,
        events: &[MetricEvent],
    ) -> Result<EventsOutcome> {
        let mut outcome = EventsOutcome { received: events.len() as u64, attributed: 0 };
        let Some(earliest) = events.iter().map(|e| e.at.as_micros()).min() else { return Ok(outcome) };
        // One order for every batch: users, then metrics, then experiments; then totals by key.
        let mut order: Vec<&MetricEvent> = events.iter().collect();
        order.sort_by(|a, b| (&a.targeting_key, a.metric.as_str()).cmp(&(&b.targeting_key, b.metric.as_str())));
        transaction!(self, |tx| {
            let candidates: Vec<Candidate> = q!(
                tx,
                fetch_all,
                sqlx::query_as(
                    "SELECT x.id, e.name AS environment, x.primary_metric, x.guardrail_metrics,
                            x.started_at, x.ended_at
                     FROM experiments x JOIN environments e ON e.id = x.environment_id
                     WHERE x.workspace_id = $1 AND x.deleted_at IS NULL AND x.started_at IS NOT NULL
                       AND (x.ended_at IS NULL OR x.ended_at >= $2)
                     ORDER BY x.id"
                )
                .bind(workspace_id)
                .bind(earliest)
            )?;
            let candidates: Vec<Candidate> = candidates
                .into_iter()
                .filter(|c| environments.is_none_or(|allowed| allowed.contains(&c.environment)))
                .collect();
            let mut totals: BTreeMap<(String, String, i32), MetricSums> = BTreeMap::new();
            for event in order {
                for candidate in candidates.iter().filter(|c| c.counts(event)) {
                    let variant: Option<(i32,)> = q!(
                        tx,
                        fetch_optional,
                        sqlx::query_as("SELECT variant FROM exposures WHERE experiment_id = $1 AND targeting_key = $2")
                            .bind(&candidate.id)
                            .bind(&event.targeting_key)
                    )?;
                    let Some((variant,)) = variant else { continue };
                    let value = event.value.unwrap_or(1.0);
                    let (events, total): (i64, f64) = q!(
                        tx,
                        fetch_one,
                        sqlx::query_as(
                            "INSERT INTO metric_users (experiment_id, metric, targeting_key, variant, events, total)
                             VALUES ($1, $2, $3, $4, 1, $5)
                             ON CONFLICT (experiment_id, metric, targeting_key)
                             DO UPDATE SET events = metric_users.events + 1, total = metric_users.total + excluded.total
                             RETURNING events, total"
                        )
                        .bind(&candidate.id)
                        .bind(event.metric.as_str())
                        .bind(&event.targeting_key)
                        .bind(variant)
                        .bind(value)
                    )?;
                    let sums =
                        totals.entry((candidate.id.clone(), event.metric.as_str().to_owned(), variant)).or_default();
                    sums.conversions += u64::from(events == 1);
                    sums.events += 1;
                    sums.valued_events += u64::from(event.value.is_some());
                    sums.sum += value;
                    // (old + value)² − old², with old = total − value.
                    sums.sum_of_squares += value * (2.0 * total - value);
                    outcome.attributed += 1;
                }
            }
            for ((experiment_id, metric, variant), sums) in &totals {
                add_metric_sums(tx, experiment_id, metric, *variant, sums).await?;
            }
            outcome
        })
    }

    /// The totals an experiment's results are computed from. Deleted experiments stay readable.
    pub async fn experiment_totals(&self, workspace_id: &str, id: &str) -> Result<ExperimentTotals> {
        let experiment = self.get_experiment(workspace_id, id).await?;
        read!(self, |conn| {
            let rows: Vec<(i32, i64)> = q!(
                conn,
                fetch_all,
                sqlx::query_as("SELECT variant, exposures FROM exposure_totals WHERE experiment_id = $1").bind(id)
            )?;
            let variants = experiment.variants.len();
            let mut exposures = vec![0; variants];
            for (variant, n) in rows {
                if let Some(slot) = usize::try_from(variant).ok().and_then(|v| exposures.get_mut(v)) {
                    *slot = count(n);
                }
            }
            let rows: Vec<MetricRow> = q!(
                conn,
                fetch_all,
                sqlx::query_as(
                    "SELECT metric, variant, conversions, events, valued_events, sum, sum_of_squares
                     FROM metric_totals WHERE experiment_id = $1"
                )
                .bind(id)
            )?;
            Ok(ExperimentTotals { metrics: metric_sums(&experiment, variants, rows), exposures, experiment })
        })
    }
}

fn variant_column(variant: u32) -> i32 {
    i32::try_from(variant).unwrap_or(i32::MAX)
}

/// Inserts the exposures of one experiment and variant, skipping users already recorded; returns
/// how many were new.
async fn insert_exposures(tx: &mut Conn<'_>, experiment_id: &str, variant: i32, rows: &[&Exposure]) -> Result<u64> {
    match &mut tx.link {
        Link::Postgres(c) => {
            let users: Vec<&str> = rows.iter().map(|row| row.targeting_key.as_str()).collect();
            let times: Vec<i64> = rows.iter().map(|row| row.at.as_micros()).collect();
            let done = sqlx::query(
                "INSERT INTO exposures (experiment_id, targeting_key, variant, exposed_at)
                 SELECT $1, batch.targeting_key, $2, batch.exposed_at
                 FROM UNNEST($3::text[], $4::bigint[]) AS batch (targeting_key, exposed_at)
                 ON CONFLICT (experiment_id, targeting_key) DO NOTHING",
            )
            .bind(experiment_id)
            .bind(variant)
            .bind(users)
            .bind(times)
            .execute(&mut **c)
            .await?;
            Ok(done.rows_affected())
        }
        Link::Sqlite(c) => {
            static FULL: std::sync::LazyLock<String> =
                std::sync::LazyLock::new(|| sqlite_insert_exposures(SQLITE_EXPOSURE_ROWS));
            let mut new = 0;
            for chunk in rows.chunks(SQLITE_EXPOSURE_ROWS) {
                let full = chunk.len() == SQLITE_EXPOSURE_ROWS;
                let sql = if full {
                    std::borrow::Cow::Borrowed(FULL.as_str())
                } else {
                    sqlite_insert_exposures(chunk.len()).into()
                };
                let mut query = sqlx::query(&sql).bind(experiment_id).bind(variant);
                for row in chunk {
                    query = query.bind(row.targeting_key.as_str()).bind(row.at.as_micros());
                }
                // A shorter tail's statement is used once: kept out of the statement cache.
                new += query.persistent(full).execute(&mut **c).await?.rows_affected();
            }
            Ok(new)
        }
    }
}

/// `INSERT … VALUES ($1, $3, $2, $4), ($1, $5, $2, $6), …` for `rows` rows of one experiment
/// (`$1`) and variant (`$2`).
fn sqlite_insert_exposures(rows: usize) -> String {
    let mut sql = String::from("INSERT INTO exposures (experiment_id, targeting_key, variant, exposed_at) VALUES ");
    for i in 0..rows {
        let separator = if i == 0 { "" } else { ", " };
        let _ = write!(sql, "{separator}($1, ${}, $2, ${})", 2 * i + 3, 2 * i + 4);
    }
    sql.push_str(" ON CONFLICT (experiment_id, targeting_key) DO NOTHING");
    sql
}

async fn add_metric_sums(
    tx: &mut Conn<'_>,
    experiment_id: &str,
    metric: &str,
    variant: i32,
    sums: &MetricSums,
) -> Result<()> {
    q!(
        tx,
        execute,
        sqlx::query(
            "INSERT INTO metric_totals
                 (experiment_id, metric, variant, conversions, events, valued_events, sum, sum_of_squares)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (experiment_id, metric, variant) DO UPDATE SET
                 conversions = metric_totals.conversions + excluded.conversions,
                 events = metric_totals.events + excluded.events,
                 valued_events = metric_totals.valued_events + excluded.valued_events,
                 sum = metric_totals.sum + excluded.sum,
                 sum_of_squares = metric_totals.sum_of_squares + excluded.sum_of_squares"
        )
        .bind(experiment_id)
        .bind(metric)
        .bind(variant)
        .bind(i64::try_from(sums.conversions).unwrap_or(i64::MAX))
        .bind(i64::try_from(sums.events).unwrap_or(i64::MAX))
        .bind(i64::try_from(sums.valued_events).unwrap_or(i64::MAX))
        .bind(sums.sum)
        .bind(sums.sum_of_squares)
    )?;
    Ok(())
}

/// The tracked metrics in order (primary, then guardrails), each with one entry per variant.
fn metric_sums(experiment: &Experiment, variants: usize, rows: Vec<MetricRow>) -> Vec<(String, Vec<MetricSums>)> {
    let mut metrics: Vec<(String, Vec<MetricSums>)> = std::iter::once(experiment.primary_metric.clone())
        .chain(experiment.guardrail_metrics.iter().filter(|m| **m != experiment.primary_metric).cloned())
        .map(|m| (m, vec![MetricSums::default(); variants]))
        .collect();
    for row in rows {
        let Some((_, per_variant)) = metrics.iter_mut().find(|(m, _)| *m == row.metric) else { continue };
        let Some(slot) = usize::try_from(row.variant).ok().and_then(|v| per_variant.get_mut(v)) else { continue };
        *slot = MetricSums {
            conversions: count(row.conversions),
            events: count(row.events),
            valued_events: count(row.valued_events),
            sum: row.sum,
            sum_of_squares: row.sum_of_squares,
        };
    }
    metrics
}
