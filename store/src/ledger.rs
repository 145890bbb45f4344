//! The credit ledger: append-only entries whose sum is the balance.

use tokenroute_domain::clock::now_ms;
use tokenroute_domain::NanoUsd;

use crate::changes::Change;
use crate::{new_id, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerKind {
    TopUp,
    Usage,
    Adjustment,
    /// A Stripe refund of a top-up (negative), referenced by the refund id.
    Refund,
    /// A card dispute's withdrawn funds (negative), referenced by the dispute id.
    Dispute,
    /// A dispute won: the withdrawn funds come back, referenced by the dispute id.
    DisputeReversal,
    /// The sum of an account's entries removed after 7 years ([P15]).
    CarriedForward,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::TopUp => "topup",
            LedgerKind::Usage => "usage",
            LedgerKind::Adjustment => "adjustment",
            LedgerKind::Refund => "refund",
            LedgerKind::Dispute => "dispute",
            LedgerKind::DisputeReversal => "dispute_reversal",
            LedgerKind::CarriedForward => "carried_forward",
        }
    }
}

/// A balance and its version in the projection (`account_balances.version`), which
/// every change advances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versioned {
    pub balance: NanoUsd,
    pub version: i64,
}

/// Adds `delta` to the account's balance projection (inside the caller's transaction)
/// and returns the new balance.
pub(crate) async fn add_to_balance(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    account_id: &str,
    delta: NanoUsd,
) -> Result<NanoUsd, StoreError> {
    let balance: i64 = sqlx::query_scalar(
        "INSERT INTO account_balances (account_id, balance_nanos, version) VALUES ($1, $2, 1)
         ON CONFLICT (account_id) DO UPDATE SET balance_nanos = account_balances.balance_nanos + $2,
             version = account_balances.version + 1
         RETURNING balance_nanos",
    )
    .bind(account_id)
    .bind(delta.nanos())
    .fetch_one(&mut **tx)
    .await?;
    Ok(NanoUsd(balance))
}

/// Adds each delta to its account's balance projection in one statement (inside the
/// caller's transaction) and returns the new balances.
pub(crate) async fn add_to_balances(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    deltas: &[(&str, NanoUsd)],
) -> Result<Vec<(String, Versioned)>, StoreError> {
    use sqlx::Row;
    if deltas.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "INSERT INTO account_balances (account_id, balance_nanos, version) VALUES {}
         ON CONFLICT (account_id) DO UPDATE
             SET balance_nanos = account_balances.balance_nanos + excluded.balance_nanos,
                 version = account_balances.version + 1
         RETURNING account_id, balance_nanos, version",
        crate::usage::placeholders(deltas.len(), 3)
    );
    let mut query = sqlx::query(&sql);
    for (account_id, delta) in deltas {
        query = query.bind(*account_id).bind(delta.nanos()).bind(1_i64);
    }
    query
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("account_id")?,
                Versioned {
                    balance: NanoUsd(r.try_get("balance_nanos")?),
                    version: r.try_get("version")?,
                },
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// One ledger row as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub kind: String,
    pub amount: NanoUsd,
    pub reference: String,
    pub note: Option<String>,
    pub created_at_ms: i64,
}

impl Store {
    /// Books an entry once: `(kind, reference)` is unique, so booking the same top-up
    /// or request twice is a no-op. Returns whether this call booked it.
    pub async fn book(
        &self,
        account_id: &str,
        kind: LedgerKind,
        amount: NanoUsd,
        reference: &str,
        note: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO ledger_entries (id, account_id, kind, amount_nanos, reference, note, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (kind, reference) DO NOTHING",
        )
        .bind(new_id())
        .bind(account_id)
        .bind(kind.as_str())
        .bind(amount.nanos())
        .bind(reference)
        .bind(note)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let booked = done.rows_affected() == 1;
        if booked {
            add_to_balance(&mut tx, account_id, amount).await?;
        }
        tx.commit().await?;
        if booked {
            self.announce(Change::Balance {
                account_id: account_id.to_string(),
            })
            .await;
        }
        Ok(booked)
    }

    /// The account's ledger, newest first.
    pub async fn ledger(
        &self,
        account_id: &str,
        limit: i64,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, amount_nanos, reference, note, created_at FROM ledger_entries
             WHERE account_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(account_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(entry_from_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// The usage debit that charged a request (its account's debit for the batch the
    /// request was written in), if the request is stored and cost something.
    pub async fn debit_of_request(
        &self,
        request_id: &str,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        let row = sqlx::query(
            "SELECT l.kind, l.amount_nanos, l.reference, l.note, l.created_at
             FROM usage_events u JOIN ledger_entries l ON l.id = u.debit_id
             WHERE u.request_id = $1",
        )
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(entry_from_row).transpose()?)
    }
}

fn entry_from_row(r: &sqlx::any::AnyRow) -> Result<LedgerEntry, sqlx::Error> {
    use sqlx::Row;
    Ok(LedgerEntry {
        kind: r.try_get("kind")?,
        amount: NanoUsd(r.try_get("amount_nanos")?),
        reference: r.try_get("reference")?,
        note: r.try_get("note")?,
        created_at_ms: r.try_get("created_at")?,
    })
}

/// Something the ledger and the usage rows disagree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discrepancy {
    pub account_id: String,
    /// What it is about: a usage row's request id, or a ledger entry's id (a debit
    /// or the entry whose account is gone); empty for a balance.
    pub reference: String,
    pub problem: String,
}

/// What `tokenroute ledger verify` found.
#[derive(Debug, Clone, Default)]
pub struct LedgerReport {
    pub accounts: usize,
    pub usage_rows: i64,
    pub ledger_entries: i64,
    /// Every account's balance, recomputed from its ledger entries.
    pub balances: Vec<(String, NanoUsd)>,
    pub discrepancies: Vec<Discrepancy>,
}

impl Store {
    /// Recomputes every balance from the ledger and checks every usage debit against
    /// its usage rows: each charged row points at a usage debit of its account, and
    /// each usage debit is exactly the sum of the rows that point at it.
    pub async fn verify_ledger(&self) -> Result<LedgerReport, StoreError> {
        use sqlx::Row;
        let mut report = LedgerReport::default();
        for row in sqlx::query(
            "SELECT a.id, CAST(COALESCE(SUM(l.amount_nanos), 0) AS BIGINT) AS balance
             FROM accounts a LEFT JOIN ledger_entries l ON l.account_id = a.id
             GROUP BY a.id ORDER BY a.id",
        )
        .fetch_all(&self.pool)
        .await?
        {
            report
                .balances
                .push((row.try_get("id")?, NanoUsd(row.try_get("balance")?)));
        }
        report.accounts = report.balances.len();
        for row in sqlx::query(
            "SELECT a.id, b.balance_nanos,
                    (SELECT CAST(COALESCE(SUM(l.amount_nanos), 0) AS BIGINT)
                     FROM ledger_entries l WHERE l.account_id = a.id) AS ledger_sum
             FROM accounts a LEFT JOIN account_balances b ON b.account_id = a.id",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let projected = NanoUsd(row.try_get::<Option<i64>, _>("balance_nanos")?.unwrap_or(0));
            let sum = NanoUsd(row.try_get("ledger_sum")?);
            if projected != sum {
                report.discrepancies.push(Discrepancy {
                    account_id: row.try_get("id")?,
                    reference: String::new(),
                    problem: format!(
                        "balance projection {projected} differs from the ledger sum {sum}"
                    ),
                });
            }
        }
        report.usage_rows = sqlx::query_scalar("SELECT COUNT(*) FROM usage_events")
            .fetch_one(&self.pool)
            .await?;
        report.ledger_entries = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_entries")
            .fetch_one(&self.pool)
            .await?;

        for row in sqlx::query(
            "SELECT u.account_id, u.request_id FROM usage_events u
             LEFT JOIN accounts a ON a.id = u.account_id WHERE a.id IS NULL
             UNION ALL
             SELECT l.account_id, l.reference FROM ledger_entries l
             LEFT JOIN accounts a ON a.id = l.account_id WHERE a.id IS NULL",
        )
        .fetch_all(&self.pool)
        .await?
        {
            report.discrepancies.push(Discrepancy {
                account_id: row.try_get(0)?,
                reference: row.try_get(1)?,
                problem: "usage row or ledger entry of an account that does not exist".into(),
            });
        }
        for row in sqlx::query(
            "SELECT u.account_id, u.request_id, u.cost_nanos FROM usage_events u
             LEFT JOIN ledger_entries l
                 ON l.id = u.debit_id AND l.kind = 'usage' AND l.account_id = u.account_id
             WHERE u.cost_nanos > 0 AND l.id IS NULL",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let cost: i64 = row.try_get("cost_nanos")?;
            report.discrepancies.push(Discrepancy {
                account_id: row.try_get("account_id")?,
                reference: row.try_get("request_id")?,
                problem: format!("usage row costs {} but has no ledger debit", NanoUsd(cost)),
            });
        }
        for row in sqlx::query(
            "SELECT l.account_id, l.id, l.amount_nanos, CAST(u.cost AS BIGINT) AS cost
             FROM ledger_entries l
             LEFT JOIN (SELECT debit_id, account_id, SUM(cost_nanos) AS cost FROM usage_events
                        WHERE debit_id IS NOT NULL GROUP BY debit_id, account_id) u
                 ON u.debit_id = l.id AND u.account_id = l.account_id
             WHERE l.kind = 'usage' AND (u.cost IS NULL OR l.amount_nanos <> -u.cost)",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let amount = NanoUsd(row.try_get("amount_nanos")?);
            let problem = match row.try_get::<Option<i64>, _>("cost")? {
                None => format!("usage debit of {amount} charges no usage row of its account"),
                Some(cost) => format!(
                    "usage debit of {amount} does not match its rows' cost {}",
                    NanoUsd(cost)
                ),
            };
            report.discrepancies.push(Discrepancy {
                account_id: row.try_get("account_id")?,
                reference: row.try_get("id")?,
                problem,
            });
        }
        Ok(report)
    }
}
