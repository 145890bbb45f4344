//! Usage events and their ledger debits, written in batches.

use std::collections::{HashMap, HashSet};

use sqlx::any::AnyRow;
use sqlx::Row;
use tokenroute_domain::{NanoUsd, UsageEvent};

use crate::ledger::{add_to_balances, LedgerKind};
use crate::{new_id, Backend, Store, StoreError};

/// Columns of [`USAGE_COLUMNS`] and the row's `debit_id`, each a parameter of an insert.
const PARAMS_PER_ROW: usize = 19;
/// Rows per SQLite statement: 512 × 19 parameters stay well below SQLite's limit
/// (32,766). The parameters are anonymous (`?`, see [`placeholders`]).
const ROWS_PER_STATEMENT: usize = 512;

/// Rows per SQLite statement in a batch of at most [`ROWS_PER_STATEMENT`] events: the
/// usage writer keeping up, its batch what arrived in the last commit interval.
///
/// Small on purpose. SQLite runs a statement on its driver's worker thread, and a
/// statement of a few hundred rows is one run of a millisecond or more, which the
/// scheduler (EEVDF protects a running thread's time slice) does not interrupt for a
/// data plane that wakes up on the same core: the requests then wait. Between two
/// statements the writer's threads hand over and sleep, and a waiting data plane runs
/// first (the writer is `usage.writer-nice` below it). Measured at 3,000 req/s with the
/// writer on the data plane's core (benchmarks/README, "The usage writer's statements
/// in pieces"): the data plane's waits over 1 ms 3.5× fewer than at 512 rows.
///
/// A larger batch means the writer has fallen behind, and then it writes as much as it
/// can: in pieces this small it gave way so often that at saturation ten times as much
/// usage waited in the spool.
const ROWS_PER_STATEMENT_KEEPING_UP: usize = 32;

/// Rows per SQLite insert of `events`.
fn rows_per_statement(events: usize) -> usize {
    if events <= ROWS_PER_STATEMENT {
        ROWS_PER_STATEMENT_KEEPING_UP
    } else {
        ROWS_PER_STATEMENT
    }
}

/// What [`Store::record_usage`] did.
#[derive(Debug, Clone, Default)]
pub struct RecordedUsage {
    /// Events that were new (the rest were already stored and changed nothing).
    pub inserted: usize,
    /// Each account of the batch, with its balance after the batch.
    pub balances: HashMap<String, NanoUsd>,
    /// Each account's balance version after the batch (see [`Versioned`]).
    pub versions: HashMap<String, i64>,
}

pub(crate) const USAGE_COLUMNS: &str =
    "request_id, account_id, key_id, created_at, model, provider, upstream_model,
     input_tokens, output_tokens, cost_nanos, status, streamed, estimated, cancelled, duration_ms,
     cached_input_tokens, route, attempts";

/// Below this many events a Postgres batch is written in one transaction.
const PARALLEL_FROM: usize = 256;

/// Concurrent transactions a large Postgres batch is split into (see `record_usage`).
const PARTS: usize = 4;

/// The ledger debit each account's new rows of one write are charged by: a fresh
/// (time-ordered) ledger id per account. One debit per account per batch instead of
/// one per request is what keeps the writer fast (the ledger's four index inserts
/// happen once per account, not once per event); each usage row names its debit
/// (`usage_events.debit_id`), so `ledger verify` still checks every row. A retried
/// write gets new ids, but only rows that were not stored yet point at them (stored
/// rows are skipped whole), so nothing is charged twice and nothing goes uncharged.
pub(crate) fn debit_ids(events: &[UsageEvent]) -> HashMap<&str, String> {
    let mut ids = HashMap::new();
    for e in events {
        if e.cost.is_positive() {
            ids.entry(e.account_id.as_str()).or_insert_with(new_id);
        }
    }
    ids
}

/// The debit an event is charged by (none when it costs nothing).
pub(crate) fn debit_of<'a>(ids: &'a HashMap<&str, String>, e: &UsageEvent) -> Option<&'a str> {
    if e.cost.is_positive() {
        ids.get(e.account_id.as_str()).map(String::as_str)
    } else {
        None
    }
}

/// The note on a usage debit: how many requests it charges.
pub(crate) fn requests_note(count: usize) -> String {
    match count {
        1 => "1 request".to_string(),
        n => format!("{n} requests"),
    }
}

/// A stable split of accounts into [`PARTS`] parts (FNV-1a of the id).
fn part_of(account_id: &str) -> usize {
    let hash = account_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % PARTS as u64) as usize
}

impl Store {
    /// Writes a batch of usage events and their ledger debits (one per account).
    ///
    /// Idempotent by request id: an event already stored is skipped and adds nothing
    /// to a debit, so replaying a batch after a crash or a retry charges nothing twice.
    /// Multi-row statements keep this fast (one round trip per 256 events per table).
    /// On Postgres a large batch is written as [`PARTS`] concurrent transactions, each
    /// for its own share of the accounts: they touch disjoint balance, key and ledger
    /// rows, so they never wait for each other, and a retry after one of them failed
    /// skips what the others wrote; each part is one statement (`usage_pg`). Returns
    /// how many events were new, and the balance of every account in the batch after it
    /// (so a cache can take the store's exact figure).
    pub async fn record_usage(&self, events: &[UsageEvent]) -> Result<RecordedUsage, StoreError> {
        if self.backend != Backend::Postgres {
            return self.record_usage_sqlite(events).await;
        }
        if events.len() < PARALLEL_FROM {
            return self.record_usage_pg(events).await;
        }
        let mut parts: Vec<Vec<UsageEvent>> = vec![Vec::new(); PARTS];
        for e in events {
            parts[part_of(&e.account_id)].push(e.clone());
        }
        let written = futures_util::future::try_join_all(
            parts
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| self.record_usage_pg(p)),
        )
        .await?;
        let mut total = RecordedUsage::default();
        for recorded in written {
            total.inserted += recorded.inserted;
            total.balances.extend(recorded.balances);
            total.versions.extend(recorded.versions);
        }
        Ok(total)
    }

    /// [`Store::record_usage`] on SQLite, in one transaction.
    async fn record_usage_sqlite(
        &self,
        events: &[UsageEvent],
    ) -> Result<RecordedUsage, StoreError> {
        if events.is_empty() {
            return Ok(RecordedUsage::default());
        }
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        let mut debited: HashMap<&str, NanoUsd> = HashMap::new();
        for e in events {
            debited.entry(&e.account_id).or_default();
        }
        let debit_ids = debit_ids(events);
        // Per debit: what its new rows cost, how many they are, the newest row's time.
        let mut debits: HashMap<&str, (NanoUsd, usize, i64)> = HashMap::new();
        for chunk in events.chunks(rows_per_statement(events.len())) {
            let sql = format!(
                "INSERT INTO usage_events ({USAGE_COLUMNS}, debit_id) VALUES {}
                 ON CONFLICT (request_id) DO NOTHING",
                placeholders(chunk.len(), PARAMS_PER_ROW)
            );
            let mut query = sqlx::query(&sql);
            for e in chunk {
                query = query
                    .bind(&e.request_id)
                    .bind(&e.account_id)
                    .bind(&e.key_id)
                    .bind(e.created_at_ms)
                    .bind(&e.model)
                    .bind(&e.provider)
                    .bind(&e.upstream_model)
                    .bind(e.input_tokens)
                    .bind(e.output_tokens)
                    .bind(e.cost.nanos())
                    .bind(i64::from(e.status))
                    .bind(i64::from(e.streamed))
                    .bind(i64::from(e.estimated))
                    .bind(i64::from(e.cancelled))
                    .bind(e.duration_ms)
                    .bind(e.cached_input_tokens)
                    .bind(&e.route)
                    .bind(i64::from(e.attempts))
                    .bind(debit_of(&debit_ids, e));
            }
            let new = usize::try_from(query.execute(&mut *tx).await?.rows_affected())
                .unwrap_or(usize::MAX);
            inserted += new;
            // Which rows are new. Not by `RETURNING`: SQLite's driver hands each
            // returned row from its worker thread to the writer's task one at a time,
            // two thread wake-ups a row, and a batch's hundreds of wake-ups crowd out
            // the data plane when they share a core (2–20 ms stalls every commit,
            // the p99 at 3,000 req/s). Usually every row is new; only a replay reads.
            let stored_before = if new == chunk.len() {
                HashSet::new()
            } else {
                stored_by_earlier_writes(&mut tx, chunk, &debit_ids).await?
            };
            for e in chunk
                .iter()
                .filter(|e| !stored_before.contains(e.request_id.as_str()))
            {
                if let Some(id) = debit_of(&debit_ids, e) {
                    let (amount, count, at) = debits.entry(id).or_insert((NanoUsd(0), 0, 0));
                    *amount += e.cost;
                    *count += 1;
                    *at = (*at).max(e.created_at_ms);
                    *debited.entry(&e.account_id).or_default() -= e.cost;
                }
            }
        }
        let debits: Vec<(&str, &str, NanoUsd, usize, i64)> = events
            .iter()
            .filter_map(|e| {
                let id = debit_of(&debit_ids, e)?;
                let (amount, count, at) = debits.remove(id)?;
                Some((id, e.account_id.as_str(), amount, count, at))
            })
            .collect();
        for chunk in debits.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO ledger_entries (id, account_id, kind, amount_nanos, reference, note, created_at)
                 VALUES {}",
                placeholders(chunk.len(), 7)
            );
            let mut query = sqlx::query(&sql);
            for (id, account, amount, count, at) in chunk {
                query = query
                    .bind(*id)
                    .bind(*account)
                    .bind(LedgerKind::Usage.as_str())
                    .bind((-*amount).nanos())
                    .bind(*id)
                    .bind(requests_note(*count))
                    .bind(*at);
            }
            query.execute(&mut *tx).await?;
        }
        // last_used_at: one statement for the batch's keys.
        let mut last_used: HashMap<&str, i64> = HashMap::new();
        for e in events {
            let at = last_used.entry(&e.key_id).or_insert(e.created_at_ms);
            *at = (*at).max(e.created_at_ms);
        }
        let last_used: Vec<(&str, i64)> = last_used.into_iter().collect();
        for chunk in last_used.chunks(ROWS_PER_STATEMENT) {
            touch_keys(&mut tx, chunk).await?;
        }
        let debited: Vec<(&str, NanoUsd)> = debited.into_iter().collect();
        let mut balances = HashMap::with_capacity(debited.len());
        let mut versions = HashMap::with_capacity(debited.len());
        for chunk in debited.chunks(ROWS_PER_STATEMENT) {
            for (account, now) in add_to_balances(&mut tx, chunk).await? {
                versions.insert(account.clone(), now.version);
                balances.insert(account, now.balance);
            }
        }
        tx.commit().await?;
        Ok(RecordedUsage {
            inserted,
            balances,
            versions,
        })
    }

    /// The account's usage, newest first.
    pub async fn usage_of_account(
        &self,
        account_id: &str,
        limit: i64,
    ) -> Result<Vec<UsageEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {USAGE_COLUMNS} FROM usage_events WHERE account_id = $1
             ORDER BY created_at DESC, request_id DESC LIMIT $2"
        ))
        .bind(account_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(usage_from_row)
            .collect::<Result<_, _>>()
            .map_err(StoreError::from)
    }

    /// One metered request of the account, by its request (generation) id.
    pub async fn usage_by_request_id(
        &self,
        account_id: &str,
        request_id: &str,
    ) -> Result<Option<UsageEvent>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USAGE_COLUMNS} FROM usage_events WHERE request_id = $1 AND account_id = $2"
        ))
        .bind(request_id)
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(usage_from_row).transpose()?)
    }

    /// What a key spent since `since_ms` (inclusive).
    pub async fn key_spend_since(
        &self,
        key_id: &str,
        since_ms: i64,
    ) -> Result<NanoUsd, StoreError> {
        let nanos: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) FROM usage_events
             WHERE key_id = $1 AND created_at >= $2",
        )
        .bind(key_id)
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(NanoUsd(nanos))
    }

    /// What an account spent on usage, ever.
    pub async fn account_spend(&self, account_id: &str) -> Result<NanoUsd, StoreError> {
        let nanos: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) FROM usage_events WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(NanoUsd(nanos))
    }
}

pub(crate) fn usage_from_row(r: &AnyRow) -> Result<UsageEvent, sqlx::Error> {
    Ok(UsageEvent {
        request_id: r.try_get("request_id")?,
        account_id: r.try_get("account_id")?,
        key_id: r.try_get("key_id")?,
        created_at_ms: r.try_get("created_at")?,
        model: r.try_get("model")?,
        provider: r.try_get("provider")?,
        upstream_model: r.try_get("upstream_model")?,
        input_tokens: r.try_get("input_tokens")?,
        output_tokens: r.try_get("output_tokens")?,
        cost: NanoUsd(r.try_get("cost_nanos")?),
        status: u16::try_from(r.try_get::<i64, _>("status")?).unwrap_or(0),
        streamed: r.try_get::<i64, _>("streamed")? != 0,
        estimated: r.try_get::<i64, _>("estimated")? != 0,
        cancelled: r.try_get::<i64, _>("cancelled")? != 0,
        duration_ms: r.try_get("duration_ms")?,
        cached_input_tokens: r.try_get("cached_input_tokens")?,
        route: r.try_get("route")?,
        attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(0),
    })
}

/// Sets `last_used_at` of each key to its time, unless it is already later.
async fn touch_keys(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    keys: &[(&str, i64)],
) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut case = String::from("CASE id");
    let mut ids = Vec::with_capacity(keys.len());
    for i in 0..keys.len() {
        case.push_str(&format!(" WHEN ${} THEN ${}", 2 * i + 1, 2 * i + 2));
        ids.push(format!("${}", 2 * i + 1));
    }
    case.push_str(" END");
    let sql = format!(
        "UPDATE api_keys SET last_used_at = {case}
         WHERE id IN ({}) AND (last_used_at IS NULL OR last_used_at < {case})",
        ids.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for (key_id, at) in keys {
        query = query.bind(*key_id).bind(*at);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// Of a chunk just inserted with `ON CONFLICT DO NOTHING`, the request ids that were
/// stored before it (by an earlier write: their `debit_id` is not this write's).
async fn stored_by_earlier_writes(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    chunk: &[UsageEvent],
    debit_ids: &HashMap<&str, String>,
) -> Result<HashSet<String>, StoreError> {
    let sql = format!(
        "SELECT request_id, debit_id FROM usage_events WHERE request_id IN {}",
        placeholders(1, chunk.len())
    );
    let mut query = sqlx::query(&sql);
    for e in chunk {
        query = query.bind(&e.request_id);
    }
    let ours: HashMap<&str, Option<&str>> = chunk
        .iter()
        .map(|e| (e.request_id.as_str(), debit_of(debit_ids, e)))
        .collect();
    let mut earlier = HashSet::new();
    for row in query.fetch_all(&mut **tx).await? {
        let request_id: String = row.try_get(0)?;
        let debit_id: Option<String> = row.try_get(1)?;
        if ours.get(request_id.as_str()).copied().flatten() != debit_id.as_deref() {
            earlier.insert(request_id);
        }
    }
    Ok(earlier)
}

/// `(?, ?, ...), (?, ...)` for `rows` rows of `columns` SQLite parameters, bound in
/// order. Anonymous, not numbered (`$1`): sqlx binds a numbered parameter by asking
/// SQLite its name, which SQLite finds by a linear scan — a statement's binding cost
/// then grows with the square of its parameters (measured: 60% of the SQLite
/// thread's time under load with 64-row statements, 1.5 s for one 1,024-row
/// statement).
pub(crate) fn placeholders(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_anonymous_and_one_per_value() {
        assert_eq!(super::placeholders(2, 3), "(?, ?, ?), (?, ?, ?)");
    }
}
