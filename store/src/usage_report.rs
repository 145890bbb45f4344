//! Usage as the dashboard reads it: filtered pages of requests, and totals by day,
//! model and key. Metadata only — the store holds no prompt or completion text ([P3]).

use sqlx::Row;
use tokenroute_domain::usage::UsageEvent;
use tokenroute_domain::NanoUsd;

use crate::usage::{usage_from_row, USAGE_COLUMNS};
use crate::{Store, StoreError};

/// Which requests: all of an account's, narrowed by any of these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    pub key_id: Option<String>,
    pub model: Option<String>,
    /// Inclusive lower bound, Unix ms.
    pub from_ms: Option<i64>,
    /// Exclusive upper bound, Unix ms.
    pub to_ms: Option<i64>,
}

/// Totals of a group of requests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsageTotals {
    /// The group: a day (its first millisecond, as text), a model id or a key id.
    pub group: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost: NanoUsd,
}

const DAY_MS: i64 = 86_400_000;

/// The WHERE clause and its values, numbered from `$2` (`$1` is the account).
fn conditions(filter: &UsageFilter) -> (String, Vec<Value>) {
    let mut sql = String::from("account_id = $1");
    let mut values = Vec::new();
    let mut add = |column: &str, op: &str, v: Value| {
        values.push(v);
        sql.push_str(&format!(" AND {column} {op} ${}", values.len() + 1));
    };
    if let Some(k) = &filter.key_id {
        add("key_id", "=", Value::Text(k.clone()));
    }
    if let Some(m) = &filter.model {
        add("model", "=", Value::Text(m.clone()));
    }
    if let Some(from) = filter.from_ms {
        add("created_at", ">=", Value::Int(from));
    }
    if let Some(to) = filter.to_ms {
        add("created_at", "<", Value::Int(to));
    }
    (sql, values)
}

enum Value {
    Text(String),
    Int(i64),
}

fn bind<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    values: &'q [Value],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for v in values {
        query = match v {
            Value::Text(t) => query.bind(t.as_str()),
            Value::Int(i) => query.bind(*i),
        };
    }
    query
}

impl Store {
    /// One page of the account's requests, newest first.
    pub async fn usage_page(
        &self,
        account_id: &str,
        filter: &UsageFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<UsageEvent>, StoreError> {
        let (cond, values) = conditions(filter);
        let n = values.len();
        let sql = format!(
            "SELECT {USAGE_COLUMNS} FROM usage_events WHERE {cond}
             ORDER BY created_at DESC, request_id DESC LIMIT ${} OFFSET ${}",
            n + 2,
            n + 3
        );
        let query = bind(sqlx::query(&sql).bind(account_id), &values)
            .bind(limit)
            .bind(offset);
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(usage_from_row)
            .collect::<Result<_, _>>()
            .map_err(StoreError::from)
    }

    /// The totals of the filtered requests, all together (`group` empty).
    pub async fn usage_total(
        &self,
        account_id: &str,
        filter: &UsageFilter,
    ) -> Result<UsageTotals, StoreError> {
        Ok(self
            .usage_grouped(account_id, filter, "''")
            .await?
            .pop()
            .unwrap_or_default())
    }

    /// Totals per UTC day (group = the day's first millisecond), oldest first.
    pub async fn usage_by_day(
        &self,
        account_id: &str,
        filter: &UsageFilter,
    ) -> Result<Vec<UsageTotals>, StoreError> {
        let mut days = self
            .usage_grouped(
                account_id,
                filter,
                &format!("CAST((created_at / {DAY_MS}) * {DAY_MS} AS TEXT)"),
            )
            .await?;
        days.sort_by_key(|d| d.group.parse::<i64>().unwrap_or(0));
        Ok(days)
    }

    /// Totals per model, most expensive first.
    pub async fn usage_by_model(
        &self,
        account_id: &str,
        filter: &UsageFilter,
    ) -> Result<Vec<UsageTotals>, StoreError> {
        self.usage_grouped(account_id, filter, "model").await
    }

    /// Totals per key id, most expensive first.
    pub async fn usage_by_key(
        &self,
        account_id: &str,
        filter: &UsageFilter,
    ) -> Result<Vec<UsageTotals>, StoreError> {
        self.usage_grouped(account_id, filter, "key_id").await
    }

    async fn usage_grouped(
        &self,
        account_id: &str,
        filter: &UsageFilter,
        group: &str,
    ) -> Result<Vec<UsageTotals>, StoreError> {
        let (cond, values) = conditions(filter);
        let sql = format!(
            "SELECT {group} AS grp, COUNT(*) AS requests,
                    CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens,
                    CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens,
                    CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) AS cost
             FROM usage_events WHERE {cond} GROUP BY grp ORDER BY cost DESC, grp"
        );
        let rows = bind(sqlx::query(&sql).bind(account_id), &values)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(UsageTotals {
                    group: r.try_get("grp")?,
                    requests: r.try_get("requests")?,
                    input_tokens: r.try_get("input_tokens")?,
                    output_tokens: r.try_get("output_tokens")?,
                    cost: NanoUsd(r.try_get("cost")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}

/// Traffic of one provider and model over a period, across all accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    pub provider: String,
    pub model: String,
    pub requests: i64,
    /// Requests the provider failed (status 5xx).
    pub upstream_errors: i64,
}

impl Store {
    /// Requests per provider and model since `since_ms` (the admin's routing view).
    pub async fn traffic_since(&self, since_ms: i64) -> Result<Vec<Traffic>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, model, COUNT(*) AS requests,
                    CAST(COALESCE(SUM(CASE WHEN status >= 500 THEN 1 ELSE 0 END), 0) AS BIGINT) AS errors
             FROM usage_events WHERE created_at >= $1 GROUP BY provider, model ORDER BY provider, model",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Traffic {
                    provider: r.try_get("provider")?,
                    model: r.try_get("model")?,
                    requests: r.try_get("requests")?,
                    upstream_errors: r.try_get("errors")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
