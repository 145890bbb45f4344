//! Account balances (and per-key spend caps) served from memory, with reservations.
//!
//! An account's available credit is `ledger − unpersisted − reserved`:
//! * `ledger`: the sum of its ledger entries as last read from the store;
//! * `unpersisted`: usage settled here whose debit the usage writer has not committed yet;
//! * `reserved`: the worst-case cost of requests in flight.
//!
//! Before forwarding, a request reserves its worst-case cost, capped by what is
//! available (402 when nothing is); afterwards it settles at the real cost. Only one
//! request per account may hold a capped (partial) reservation at a time, so
//! concurrent requests cannot push a balance below zero by more than one request's
//! settled excess. Re-reading the balance and committing usage take the same lock
//! (`ledger_io`), so a refresh never counts a debit twice or misses one; a commit
//! returns the store's balances, which replace the cached ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

mod caps;

use tokenroute_domain::clock::now_ms;
use tokenroute_domain::NanoUsd;
use tokenroute_store::{KeyRecord, RecordedUsage, Store, StoreError};

use crate::shared::book::{Hold, SharedBook};

pub use caps::Cap;
use caps::KeySpend;
use tokio::sync::mpsc;

#[derive(Debug)]
struct Balance {
    ledger: NanoUsd,
    unpersisted: NanoUsd,
    reserved: NanoUsd,
    loaded_at: Instant,
    refresh_queued: bool,
    /// A request holds less than its worst case (the balance could not cover it).
    /// Only one may at a time: that is what bounds overspend by one request's excess.
    partial_in_flight: bool,
    /// Requests of the account in flight (for the concurrency cap).
    in_flight: usize,
}

impl Balance {
    fn available(&self) -> NanoUsd {
        self.ledger - self.unpersisted - self.reserved
    }
}

type Entry = Arc<Mutex<Balance>>;

fn lock(entry: &Entry) -> MutexGuard<'_, Balance> {
    entry.lock().unwrap_or_else(PoisonError::into_inner)
}

fn lock_spend(spend: &Mutex<KeySpend>) -> MutexGuard<'_, KeySpend> {
    spend.lock().unwrap_or_else(PoisonError::into_inner)
}

pub struct CreditBook {
    store: Store,
    accounts: Mutex<HashMap<String, Entry>>,
    refresh_every: Duration,
    refresh_tx: mpsc::Sender<String>,
    /// Held while reading a balance from the store and while committing usage.
    ledger_io: tokio::sync::Mutex<()>,
    /// Unpersisted usage of accounts not cached yet (adopted from the spool at start).
    adopted: Mutex<HashMap<String, NanoUsd>>,
    /// Spend of keys with spend caps, by key id.
    spends: Mutex<HashMap<String, Arc<Mutex<KeySpend>>>>,
    /// The fleet's book, when nodes share state in Redis: refreshed balances go there too.
    shared: Option<Arc<SharedBook>>,
}

/// Credit held for one request in flight. Dropping it without settling releases it
/// (the request failed before the provider produced anything: nothing is charged).
pub struct Reservation {
    entry: Entry,
    spend: Option<Arc<Mutex<KeySpend>>>,
    /// Held in this node's book (zero when the fleet's book holds it).
    amount: NanoUsd,
    partial: bool,
    /// The hold in the fleet's book, until settled or released.
    shared: Option<(Arc<SharedBook>, Hold)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreditError {
    #[error("insufficient credits (available {available})")]
    Insufficient { available: NanoUsd },
    #[error("the key's {} spend cap is reached", cap.describe())]
    SpendCap { cap: Cap, now_ms: i64 },
    #[error("the account already has {limit} requests in flight")]
    Concurrency { limit: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CreditBook {
    /// A book, and the receiver of balance-refresh requests that [`run_refresher`] serves.
    pub fn new(
        store: Store,
        refresh_every: Duration,
        shared: Option<Arc<SharedBook>>,
    ) -> (Arc<CreditBook>, mpsc::Receiver<String>) {
        let (refresh_tx, refresh_rx) = mpsc::channel(1024);
        let book = CreditBook {
            store,
            accounts: Mutex::new(HashMap::new()),
            refresh_every,
            refresh_tx,
            ledger_io: tokio::sync::Mutex::new(()),
            adopted: Mutex::new(HashMap::new()),
            spends: Mutex::new(HashMap::new()),
            shared,
        };
        (Arc::new(book), refresh_rx)
    }

    /// Reserves up to `worst_case` for a request of `key`: against the account's
    /// balance and the key's spend caps, within the account's concurrency cap.
    pub async fn reserve(
        &self,
        key: &KeyRecord,
        worst_case: NanoUsd,
        max_concurrent: usize,
    ) -> Result<Reservation, CreditError> {
        let entry = self.entry(&key.account_id).await?;
        let spend = if key.limits.has_spend_caps() {
            Some(self.key_spend(&key.id).await?)
        } else {
            None
        };
        let now = now_ms();
        let mut balance = lock(&entry);
        // Off the request path: the refresher re-reads the balance in the background.
        self.queue_refresh_if_due(&key.account_id, &mut balance);
        if balance.in_flight >= max_concurrent {
            return Err(CreditError::Concurrency {
                limit: max_concurrent,
            });
        }
        let available = balance.available();
        if !available.is_positive() {
            return Err(CreditError::Insufficient { available });
        }
        let mut spend_guard = spend.as_ref().map(|s| lock_spend(s));
        let mut limit = available;
        let mut partial_elsewhere = balance.partial_in_flight;
        if let Some(s) = spend_guard.as_mut() {
            s.roll(now);
            if let Some((left, cap)) = s.remaining(&key.limits) {
                if !left.is_positive() {
                    return Err(CreditError::SpendCap { cap, now_ms: now });
                }
                if left < limit {
                    limit = left;
                    partial_elsewhere = s.partial_in_flight;
                }
            }
        }
        let partial = limit < worst_case;
        if partial && partial_elsewhere {
            return Err(
                match spend_guard.as_ref().and_then(|s| s.remaining(&key.limits)) {
                    Some((left, cap)) if left < available => {
                        CreditError::SpendCap { cap, now_ms: now }
                    }
                    _ => CreditError::Insufficient { available },
                },
            );
        }
        let amount = worst_case.min(limit);
        balance.reserved += amount;
        balance.in_flight += 1;
        balance.partial_in_flight |= partial;
        if let Some(s) = spend_guard.as_mut() {
            s.reserved += amount;
            s.partial_in_flight |= partial;
        }
        drop(spend_guard);
        drop(balance);
        Ok(Reservation {
            entry,
            spend,
            amount,
            partial,
            shared: None,
        })
    }

    /// A reservation whose credit the fleet's book holds (`hold`), with the key's spend
    /// caps counted there too: this node tracks only what it needs to settle it — the
    /// account's unpersisted usage.
    pub async fn reserve_shared(
        &self,
        key: &KeyRecord,
        book: Arc<SharedBook>,
        hold: Hold,
    ) -> Result<Reservation, CreditError> {
        let entry = match self.entry(&key.account_id).await {
            Ok(entry) => entry,
            Err(e) => {
                book.release(&hold).await;
                return Err(e);
            }
        };
        let mut balance = lock(&entry);
        self.queue_refresh_if_due(&key.account_id, &mut balance);
        balance.in_flight += 1;
        drop(balance);
        Ok(Reservation {
            entry,
            spend: None,
            amount: NanoUsd::ZERO,
            partial: false,
            shared: Some((book, hold)),
        })
    }

    /// The fleet's book, when nodes share state.
    pub fn shared(&self) -> Option<&Arc<SharedBook>> {
        self.shared.as_ref()
    }

    /// Re-reads the account's balance in the background when this node's copy is older
    /// than `balance-refresh-ms`: in a fleet, this is also what refreshes the shared
    /// balance of an account whose change message a node missed.
    pub async fn refresh_if_due(&self, account_id: &str) {
        if let Ok(entry) = self.entry(account_id).await {
            self.queue_refresh_if_due(account_id, &mut lock(&entry));
        }
    }

    fn queue_refresh_if_due(&self, account_id: &str, balance: &mut Balance) {
        if balance.loaded_at.elapsed() >= self.refresh_every && !balance.refresh_queued {
            balance.refresh_queued = self.refresh_tx.try_send(account_id.to_string()).is_ok();
        }
    }

    /// Another process changed the account's balance: read it again.
    pub fn balance_changed(&self, account_id: &str) {
        let _ = self.refresh_tx.try_send(account_id.to_string());
    }

    /// The key's spend record, loaded from the store on first use.
    async fn key_spend(&self, key_id: &str) -> Result<Arc<Mutex<KeySpend>>, CreditError> {
        if let Some(s) = self
            .spends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key_id)
        {
            return Ok(s.clone());
        }
        let loaded = KeySpend::load(&self.store, key_id, now_ms()).await?;
        Ok(self
            .spends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key_id.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(loaded)))
            .clone())
    }

    /// What the key spent (today, this month, in all), when it has spend caps.
    pub fn key_spent(&self, key_id: &str) -> Option<(NanoUsd, NanoUsd, NanoUsd)> {
        let spends = self.spends.lock().unwrap_or_else(PoisonError::into_inner);
        let s = spends.get(key_id)?;
        let mut s = lock_spend(s);
        s.roll(now_ms());
        Some(s.spent())
    }

    /// The balance as this node sees it (ledger minus unpersisted usage), for tests and
    /// error messages.
    pub async fn balance(&self, account_id: &str) -> Result<NanoUsd, CreditError> {
        let entry = self.entry(account_id).await?;
        let b = lock(&entry);
        Ok(b.ledger - b.unpersisted)
    }

    /// Runs `commit` (which writes usage debits to the store and returns the balances
    /// after them) under the ledger lock; then the debits leave `unpersisted` and the
    /// cached ledger takes the store's exact figure. Whether an event was new or a
    /// replay already stored, the result is the same: nothing counted twice.
    pub async fn commit_usage<F>(
        &self,
        debits: &[(String, NanoUsd)],
        commit: F,
    ) -> Result<RecordedUsage, StoreError>
    where
        F: std::future::Future<Output = Result<RecordedUsage, StoreError>>,
    {
        let _io = self.ledger_io.lock().await;
        let recorded = commit.await?;
        let accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut adopted = self.adopted.lock().unwrap_or_else(PoisonError::into_inner);
        for (account_id, cost) in debits {
            match accounts.get(account_id) {
                Some(entry) => lock(entry).unpersisted -= *cost,
                None => {
                    if let Some(pending) = adopted.get_mut(account_id) {
                        *pending -= *cost;
                    }
                }
            }
        }
        adopted.retain(|_, pending| *pending != NanoUsd::ZERO);
        for (account_id, balance) in &recorded.balances {
            if let Some(entry) = accounts.get(account_id) {
                lock(entry).ledger = *balance;
            }
        }
        Ok(recorded)
    }

    /// Counts a usage event found in the spool at start-up (metered by an earlier run,
    /// perhaps not yet in the store) as unpersisted, until the writer commits it.
    pub fn adopt(&self, account_id: &str, cost: NanoUsd) {
        let accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        match accounts.get(account_id) {
            Some(entry) => lock(entry).unpersisted += cost,
            None => {
                *self
                    .adopted
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(account_id.to_string())
                    .or_default() += cost;
            }
        }
    }

    async fn entry(&self, account_id: &str) -> Result<Entry, CreditError> {
        if let Some(entry) = self
            .accounts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(account_id)
        {
            return Ok(entry.clone());
        }
        let _io = self.ledger_io.lock().await;
        let ledger = self.store.balance(account_id).await?;
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let adopted = self
            .adopted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(account_id)
            .unwrap_or_default();
        let entry = accounts
            .entry(account_id.to_string())
            .or_insert_with(|| {
                Arc::new(Mutex::new(Balance {
                    ledger,
                    unpersisted: adopted,
                    reserved: NanoUsd::ZERO,
                    loaded_at: Instant::now(),
                    refresh_queued: false,
                    partial_in_flight: false,
                    in_flight: 0,
                }))
            })
            .clone();
        Ok(entry)
    }

    async fn refresh(&self, account_id: &str) -> Result<(), StoreError> {
        let _io = self.ledger_io.lock().await;
        let stored = self.store.balance_versioned(account_id).await?;
        {
            let accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = accounts.get(account_id) {
                let mut b = lock(entry);
                b.ledger = stored.balance;
                b.loaded_at = Instant::now();
                b.refresh_queued = false;
            }
        }
        if let Some(book) = &self.shared {
            // Never older than what the fleet holds: the script keeps the later version.
            if let Err(e) = book.load(account_id, stored).await {
                tracing::debug!(error = %e, "could not refresh the shared balance");
            }
        }
        Ok(())
    }
}

impl Reservation {
    pub fn amount(&self) -> NanoUsd {
        self.amount
    }

    /// Replaces the hold by the real cost (and, in the fleet's book, the token
    /// estimate by `tokens`), which the usage writer will persist.
    pub async fn settle(mut self, cost: NanoUsd, tokens: u64) {
        lock(&self.entry).unpersisted += cost;
        if let Some(spend) = &self.spend {
            lock_spend(spend).add_spent(cost);
        }
        if let Some((book, hold)) = self.shared.take() {
            // Before the usage is recorded: the writer's commit then finds it settled.
            book.settle(&hold, cost, tokens).await;
        }
        // Drop releases the local hold.
    }

    /// Whether the fleet's book holds this reservation (its rate windows too).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut b = lock(&self.entry);
        b.reserved -= self.amount;
        b.in_flight -= 1;
        if self.partial {
            b.partial_in_flight = false;
        }
        drop(b);
        if let Some(spend) = &self.spend {
            let mut s = lock_spend(spend);
            s.reserved -= self.amount;
            if self.partial {
                s.partial_in_flight = false;
            }
        }
        if let Some((book, hold)) = self.shared.take() {
            // Never settled: the request produced nothing, its shared hold goes.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { book.release(&hold).await });
            }
        }
    }
}

/// How long a queued balance refresh waits before the store is read: the request that
/// queued it has just been admitted and is on its way to the provider, and on a busy
/// core the read (~0.4 ms on SQLite) would run in its place; refreshes queued meanwhile
/// share one wake-up. Balances are re-read every `balance-refresh-ms` (1 s) plus this.
const REFRESH_COALESCE: Duration = Duration::from_millis(10);

/// Serves balance-refresh requests until the book's senders are gone or `shutdown` fires.
pub async fn run_refresher(
    book: Arc<CreditBook>,
    mut requests: mpsc::Receiver<String>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut due = Vec::new();
    loop {
        tokio::select! {
            next = requests.recv() => match next {
                Some(id) => due.push(id),
                None => return,
            },
            _ = shutdown.changed() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(REFRESH_COALESCE) => {}
            _ = shutdown.changed() => return,
        }
        while let Ok(id) = requests.try_recv() {
            due.push(id);
        }
        due.sort_unstable();
        due.dedup();
        for account_id in due.drain(..) {
            if let Err(e) = book.refresh(&account_id).await {
                tracing::warn!(error = %e, "could not refresh an account balance; keeping the cached one");
                // Let a later request queue it again.
                if let Some(entry) = book
                    .accounts
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&account_id)
                {
                    lock(entry).refresh_queued = false;
                }
            }
        }
    }
}
