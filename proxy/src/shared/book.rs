//! Rate limits, concurrency caps and credit holds counted across the fleet.
//!
//! The scripts in `lua/` keep, per account, the store's balance (with its version),
//! what requests in flight hold, and what settled requests hold until the store has
//! their charge; and per key, the sliding windows of requests and tokens. Available
//! credit is `ledger − held`, whichever node asks: N nodes cannot overspend more than
//! one could (by at most one request's settled excess). Every key an account uses
//! carries the hash tag `{a:<account id>}`, so each script runs on one Cluster slot.
//!
//! Exactness across the moving parts:
//! * a node commits usage to the store first, then drops those requests' holds and
//!   sets the balance the store returned, in one script — and only if that balance's
//!   version is newer than the one held (the store serializes an account's changes,
//!   so a higher version is a later balance that includes every earlier charge);
//! * a hold belongs to a request id, so replays and retries never count twice;
//! * a node that dies leaves holds that lapse: in-flight ones after
//!   `redis.hold-lease-ms` (live nodes renew theirs), settled ones after
//!   `redis.settled-lease-ms` or when the usage is replayed into the store.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::{FromRedisValue, Script, ScriptInvocation, Value};
use tokenroute_domain::clock::{day_start_ms, month_start_ms, now_ms};
use tokenroute_domain::{KeyLimits, NanoUsd, UsageEvent};
use tokenroute_store::{RecordedUsage, Store, Versioned};

use super::{Shared, SharedError};
use crate::credit::Cap;

const WINDOW_MS: u64 = 60_000;
/// An account's shared state is dropped after this long without a request (the next
/// request loads it from the store again).
const IDLE_MS: u64 = 24 * 3_600_000;

macro_rules! script {
    ($name:literal) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            include_str!(concat!("lua/", $name, ".lua"))
        ))
    };
}

struct Scripts {
    admit: Script,
    settle: Script,
    release: Script,
    commit: Script,
    load: Script,
    load_spend: Script,
    renew: Script,
}

/// Where the fleet's book reads what it does not hold yet: the store.
#[async_trait::async_trait]
pub trait Source: Send + Sync {
    /// The account's balance and its version.
    async fn balance(&self, account_id: &str) -> Option<Versioned>;
    /// What the key spent since the day's start, since the month's start, and in all.
    async fn key_spend(&self, key_id: &str, day0: i64, month0: i64) -> Option<[NanoUsd; 3]>;
}

#[async_trait::async_trait]
impl Source for Store {
    async fn balance(&self, account_id: &str) -> Option<Versioned> {
        self.balance_versioned(account_id).await.ok()
    }

    async fn key_spend(&self, key_id: &str, day0: i64, month0: i64) -> Option<[NanoUsd; 3]> {
        Some([
            self.key_spend_since(key_id, day0).await.ok()?,
            self.key_spend_since(key_id, month0).await.ok()?,
            self.key_spend_since(key_id, 0).await.ok()?,
        ])
    }
}

/// The fleet's book: the scripts, and this node's holds in flight (renewed while they
/// last).
pub struct SharedBook {
    shared: Arc<Shared>,
    scripts: Scripts,
    /// Account → ids of this node's requests in flight there.
    in_flight: Mutex<HashMap<String, HashSet<String>>>,
}

/// A request admitted by the fleet's book.
#[derive(Debug)]
pub struct Admitted {
    pub amount: NanoUsd,
    pub window: Window,
}

/// Why the fleet's book refused.
#[derive(Debug)]
pub enum Refused {
    /// `requests per minute` or `tokens per minute`, with the limit and when to retry.
    Rate {
        what: &'static str,
        limit: u64,
        retry_after: Duration,
        window: Window,
    },
    Concurrency {
        limit: usize,
    },
    Insufficient {
        available: NanoUsd,
        window: Window,
    },
    /// The key's spend cap `cap` is reached (counted across the fleet).
    Spend {
        cap: Cap,
        now_ms: i64,
        window: Window,
    },
    /// Redis did not answer: the caller applies `redis.on-outage`.
    Unavailable(SharedError),
}

/// The key's windows as the script saw them, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub requests: u64,
    pub requests_clear: Duration,
    pub tokens: u64,
    pub tokens_clear: Duration,
}

impl Window {
    pub fn headers(&self, limits: &KeyLimits) -> crate::limits::Headers {
        crate::limits::headers(
            limits,
            (self.requests, self.requests_clear),
            (self.tokens, self.tokens_clear),
        )
    }
}

/// A request's hold in the fleet's book.
#[derive(Debug)]
pub struct Hold {
    pub account_id: String,
    pub key_id: String,
    pub request_id: String,
}

impl SharedBook {
    pub fn new(shared: Arc<Shared>) -> Arc<SharedBook> {
        Arc::new(SharedBook {
            shared,
            scripts: Scripts {
                admit: script!("admit"),
                settle: script!("settle"),
                release: script!("release"),
                commit: script!("commit"),
                load: script!("load"),
                load_spend: script!("load_spend"),
                renew: script!("renew"),
            },
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The Redis key of one part of an account's state (`bal`, `holds`, `lease`, a key's
    /// window): all under the account's hash tag, so one script touches one slot.
    fn key(&self, account_id: &str, part: &str) -> String {
        format!(
            "{}:{{a:{account_id}}}:{part}",
            self.shared.config.key_prefix
        )
    }

    /// `script` invoked on the account's balance, holds and leases (its first keys).
    fn on_account<'s>(&self, script: &'s Script, account_id: &str) -> ScriptInvocation<'s> {
        let mut invocation = script.key(self.key(account_id, "bal"));
        invocation
            .key(self.key(account_id, "holds"))
            .key(self.key(account_id, "lease"));
        invocation
    }

    /// The key's window keys (requests, token times, token counts), in its account's slot.
    fn window_keys(&self, account_id: &str, key_id: &str) -> [String; 3] {
        ["rq", "tk", "tn"].map(|w| self.key(account_id, &format!("{w}:{key_id}")))
    }

    /// Admits a request of `key` (its id, account and limits): the key's windows, the
    /// account's concurrency cap and a hold of up to `worst_case` within the balance and
    /// the key's spend caps. What the fleet does not hold yet (the account's balance, a
    /// capped key's spend) is read from `source` once and loaded.
    pub async fn admit(
        &self,
        hold: &Hold,
        limits: &KeyLimits,
        worst_case: NanoUsd,
        max_in_flight: usize,
        estimated_tokens: u64,
        source: &dyn Source,
    ) -> Result<Admitted, Refused> {
        let unexpected = |what: &str| Refused::Unavailable(SharedError::Unexpected(what.into()));
        // At most: load the balance, load the spend, admit.
        for _ in 0..3 {
            let now = now_ms();
            let periods = (day_start_ms(now), month_start_ms(now));
            let reply = self
                .run_admit(
                    hold,
                    limits,
                    worst_case,
                    max_in_flight,
                    estimated_tokens,
                    periods,
                )
                .await
                .map_err(Refused::Unavailable)?;
            let outcome = reply.first().map(String::as_str).unwrap_or_default();
            match outcome {
                "load" => {
                    let stored = source
                        .balance(&hold.account_id)
                        .await
                        .ok_or_else(|| unexpected("the store did not give the balance"))?;
                    self.load(&hold.account_id, stored)
                        .await
                        .map_err(Refused::Unavailable)?;
                }
                "load_spend" => {
                    let spent = source
                        .key_spend(&hold.key_id, periods.0, periods.1)
                        .await
                        .ok_or_else(|| unexpected("the store did not give the key's spend"))?;
                    self.load_spend(hold, spent, periods)
                        .await
                        .map_err(Refused::Unavailable)?;
                }
                _ => return self.interpret(outcome, &reply, hold, limits, now),
            }
        }
        Err(unexpected("the shared state vanished while loading it"))
    }

    async fn run_admit(
        &self,
        hold: &Hold,
        limits: &KeyLimits,
        worst_case: NanoUsd,
        max_in_flight: usize,
        estimated_tokens: u64,
        (day0, month0): (i64, i64),
    ) -> Result<Vec<String>, SharedError> {
        let cap = |c: Option<NanoUsd>| c.map_or(0, NanoUsd::nanos);
        let [rq, tk, tn] = self.window_keys(&hold.account_id, &hold.key_id);
        let mut invocation = self.on_account(&self.scripts.admit, &hold.account_id);
        invocation
            .key(rq)
            .key(tk)
            .key(tn)
            .arg(&hold.request_id)
            .arg(worst_case.nanos())
            .arg(max_in_flight)
            .arg(limits.rpm.unwrap_or(0))
            .arg(limits.tpm.unwrap_or(0))
            .arg(estimated_tokens)
            .arg(millis(self.shared.config.hold_lease))
            .arg(WINDOW_MS)
            .arg(IDLE_MS)
            .arg(&hold.key_id)
            .arg(cap(limits.spend_per_day))
            .arg(cap(limits.spend_per_month))
            .arg(cap(limits.spend_total))
            .arg(day0)
            .arg(month0);
        let value = self.invoke(&invocation).await?;
        strings(value)
    }

    fn interpret(
        &self,
        outcome: &str,
        reply: &[String],
        hold: &Hold,
        limits: &KeyLimits,
        now_ms: i64,
    ) -> Result<Admitted, Refused> {
        let number = |i: usize| -> u64 { reply.get(i).and_then(|s| s.parse().ok()).unwrap_or(0) };
        let window = Window {
            requests: number(2),
            requests_clear: Duration::from_millis(number(3)),
            tokens: number(4),
            tokens_clear: Duration::from_millis(number(5)),
        };
        let detail = reply.get(1).map(String::as_str).unwrap_or_default();
        match outcome {
            "ok" => {
                let (amount, _partial) = detail.split_once(':').unwrap_or((detail, "0"));
                let amount = NanoUsd(amount.parse().map_err(|_| {
                    Refused::Unavailable(SharedError::Unexpected(format!("admit: {detail}")))
                })?);
                self.in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(hold.account_id.clone())
                    .or_default()
                    .insert(hold.request_id.clone());
                Ok(Admitted { amount, window })
            }
            "rpm" | "tpm" => Err(Refused::Rate {
                what: if outcome == "rpm" {
                    "requests per minute"
                } else {
                    "tokens per minute"
                },
                limit: if outcome == "rpm" {
                    limits.rpm.unwrap_or(0)
                } else {
                    limits.tpm.unwrap_or(0)
                },
                retry_after: Duration::from_millis(number(1)),
                window,
            }),
            "concurrency" => Err(Refused::Concurrency {
                limit: usize::try_from(number(1)).unwrap_or(usize::MAX),
            }),
            "insufficient" => Err(Refused::Insufficient {
                available: NanoUsd(detail.parse().unwrap_or(0)),
                window,
            }),
            "spend" => Err(Refused::Spend {
                cap: match detail {
                    "day" => Cap::Day,
                    "month" => Cap::Month,
                    _ => Cap::Total,
                },
                now_ms,
                window,
            }),
            other => Err(Refused::Unavailable(SharedError::Unexpected(format!(
                "admit: {other}"
            )))),
        }
    }

    /// Sets the account's balance from the store, unless a later one is held.
    pub async fn load(&self, account_id: &str, stored: Versioned) -> Result<(), SharedError> {
        let mut invocation = self.on_account(&self.scripts.load, account_id);
        invocation
            .arg(stored.balance.nanos())
            .arg(stored.version)
            .arg(IDLE_MS);
        self.invoke(&invocation).await?;
        Ok(())
    }

    /// What a capped key spent, as the store has it, unless a node loaded it first.
    async fn load_spend(
        &self,
        hold: &Hold,
        [day, month, total]: [NanoUsd; 3],
        (day0, month0): (i64, i64),
    ) -> Result<(), SharedError> {
        let mut invocation = self
            .scripts
            .load_spend
            .key(self.key(&hold.account_id, "bal"));
        invocation
            .arg(&hold.key_id)
            .arg(day.nanos())
            .arg(day0)
            .arg(month.nanos())
            .arg(month0)
            .arg(total.nanos());
        self.invoke(&invocation).await?;
        Ok(())
    }

    /// What the fleet counts the key spent today, this month and in all — when it holds
    /// the key's spend (a key with spend caps the fleet has admitted); `None` otherwise
    /// or while Redis does not answer.
    pub async fn key_spent(&self, account_id: &str, key_id: &str) -> Option<[NanoUsd; 3]> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.key(account_id, "bal"));
        for field in ["day", "day0", "mon", "mon0", "tot"] {
            cmd.arg(format!("k:{key_id}:{field}"));
        }
        let value = self
            .shared
            .run(|mut conn| {
                let cmd = &cmd;
                async move { conn.query(cmd).await }
            })
            .await
            .ok()?;
        let fields = Vec::<Option<i64>>::from_redis_value(value).ok()?;
        let [Some(day), Some(day0), Some(month), Some(month0), Some(total)] = fields[..] else {
            return None;
        };
        // A period that has passed since the last request counts from zero.
        let now = now_ms();
        let current = |spent: i64, start: i64, now_start: i64| {
            NanoUsd(if start == now_start { spent } else { 0 })
        };
        Some([
            current(day, day0, day_start_ms(now)),
            current(month, month0, month_start_ms(now)),
            NanoUsd(total),
        ])
    }

    /// The request finished: its hold becomes `cost` (and counts in its key's spend),
    /// its token estimate `tokens`.
    pub async fn settle(&self, hold: &Hold, cost: NanoUsd, tokens: u64) {
        let now = now_ms();
        self.forget_in_flight(hold);
        let [_, _, tn] = self.window_keys(&hold.account_id, &hold.key_id);
        let mut invocation = self.on_account(&self.scripts.settle, &hold.account_id);
        invocation
            .key(tn)
            .arg(&hold.request_id)
            .arg(cost.nanos())
            .arg(tokens)
            .arg(millis(self.shared.config.settled_lease))
            .arg(&hold.key_id)
            .arg(day_start_ms(now))
            .arg(month_start_ms(now));
        if let Err(e) = self.invoke(&invocation).await {
            // The in-flight hold lapses; the charge reaches the balance through the store.
            tracing::debug!(error = %e, "could not settle a shared hold");
        }
    }

    /// The request ended before the provider produced anything: its hold goes.
    pub async fn release(&self, hold: &Hold) {
        self.forget_in_flight(hold);
        let mut invocation = self.on_account(&self.scripts.release, &hold.account_id);
        invocation.arg(&hold.request_id);
        if let Err(e) = self.invoke(&invocation).await {
            tracing::debug!(error = %e, "could not release a shared hold; it lapses");
        }
    }

    fn forget_in_flight(&self, hold: &Hold) {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(ids) = in_flight.get_mut(&hold.account_id) {
            ids.remove(&hold.request_id);
            if ids.is_empty() {
                in_flight.remove(&hold.account_id);
            }
        }
    }

    /// The store has `events` (as `recorded` says): their holds go, the balances become
    /// the store's. A failure leaves the holds to lapse (the balance errs low, never high).
    pub async fn committed(&self, events: &[UsageEvent], recorded: &RecordedUsage) {
        let mut ids: HashMap<&str, Vec<&str>> = HashMap::new();
        for e in events {
            ids.entry(e.account_id.as_str())
                .or_default()
                .push(e.request_id.as_str());
        }
        for (account_id, request_ids) in ids {
            let (Some(balance), Some(version)) = (
                recorded.balances.get(account_id),
                recorded.versions.get(account_id),
            ) else {
                continue;
            };
            let mut invocation = self.on_account(&self.scripts.commit, account_id);
            invocation.arg(balance.nanos()).arg(*version);
            for id in request_ids {
                invocation.arg(id);
            }
            if let Err(e) = self.invoke(&invocation).await {
                tracing::debug!(error = %e, "could not drop committed holds; they lapse");
            }
        }
    }

    /// Renews the leases of this node's holds in flight; runs until `shutdown`.
    pub async fn renew_leases(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let every = self.shared.config.hold_lease / 3;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            let snapshot: Vec<(String, Vec<String>)> = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(account, ids)| (account.clone(), ids.iter().cloned().collect()))
                .collect();
            for (account_id, ids) in snapshot {
                let mut invocation = self.scripts.renew.key(self.key(&account_id, "lease"));
                invocation.arg(millis(self.shared.config.hold_lease));
                for id in &ids {
                    invocation.arg(id);
                }
                if self.invoke(&invocation).await.is_err() {
                    break;
                }
            }
        }
    }
}

impl SharedBook {
    /// Runs one script invocation through the shared connection.
    async fn invoke(&self, invocation: &ScriptInvocation<'_>) -> Result<Value, SharedError> {
        self.shared
            .run(|mut conn| async move { conn.invoke(invocation).await })
            .await
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A script's reply as strings (numbers and bulk strings alike).
fn strings(value: Value) -> Result<Vec<String>, SharedError> {
    let Value::Array(items) = value else {
        return Err(SharedError::Unexpected(format!("{value:?}")));
    };
    items
        .into_iter()
        .map(|item| {
            String::from_redis_value(item).map_err(|e| SharedError::Unexpected(e.to_string()))
        })
        .collect()
}
