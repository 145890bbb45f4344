//! Authentication: `Authorization: Bearer tr-...` (or `x-api-key`, as Anthropic SDKs
//! send it) → SHA-256 → in-memory cache → the store on a miss.
//!
//! A cached key is trusted for `key-cache-ttl-ms` (60 s by default) and then read
//! again. Changes made anywhere drop the entry at once — broadcast over Redis in a
//! fleet ([`crate::shared::changes`]), else read from the store's change log
//! ([`crate::change_log`]) — so a long TTL is safe, but only while this node hears
//! them: when it does not, entries live at most [`UNHEARD_TTL`]. When the store
//! cannot answer, a key already known keeps working from memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use pingora::http::RequestHeader;
use tokenroute_domain::api_key::looks_like_key;
use tokenroute_domain::KeyHash;
use tokenroute_store::{KeyRecord, Store};

use crate::error::ApiError;

/// Entries past this count are dropped wholesale; a cache, not a registry.
const MAX_ENTRIES: usize = 100_000;
/// How long a request waits for the store to re-check a known key before using the
/// copy in memory.
const STORE_WAIT: Duration = Duration::from_millis(500);
/// How long an entry is trusted while changes are not being heard.
const UNHEARD_TTL: Duration = Duration::from_secs(1);

/// How a key was found, as the lookup counters count it.
#[derive(Clone, Copy)]
enum Lookup {
    Hit = 0,
    Miss = 1,
    Stale = 2,
    /// The store was asked and knows no such key.
    Unknown = 3,
}

pub struct KeyCache {
    store: Store,
    ttl: Duration,
    entries: RwLock<HashMap<KeyHash, (Arc<KeyRecord>, Instant)>>,
    /// Lookup counters (hit, miss, stale), resolved once: no label hashing per request.
    lookups: Option<[prometheus::IntCounter; 4]>,
    /// Whether changes are heard (set when the fleet shares Redis).
    listening: Option<crate::shared::changes::Listening>,
    /// Keys being read from the store now, each behind one gate.
    reading: Mutex<HashMap<KeyHash, Arc<tokio::sync::Mutex<()>>>>,
    /// Advanced by every [`KeyCache::forget`]: a store read that a change overtook
    /// may carry the state from before it, and is not cached.
    forgets: AtomicU64,
}

impl KeyCache {
    pub fn new(store: Store, ttl: Duration) -> KeyCache {
        KeyCache {
            store,
            ttl,
            entries: RwLock::new(HashMap::new()),
            lookups: None,
            listening: None,
            reading: Mutex::new(HashMap::new()),
            forgets: AtomicU64::new(0),
        }
    }

    /// Trusts entries for the full TTL only while `listening` says changes are heard.
    pub fn with_listening(mut self, listening: crate::shared::changes::Listening) -> KeyCache {
        self.listening = Some(listening);
        self
    }

    fn ttl(&self) -> Duration {
        match &self.listening {
            Some(l) if !l.is_listening() => self.ttl.min(UNHEARD_TTL),
            _ => self.ttl,
        }
    }

    /// Drops the entries `stale` picks (a key or an account changed elsewhere).
    pub fn forget(&self, stale: impl Fn(&KeyRecord) -> bool) {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, (record, _)| !stale(record));
        self.forgets.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts lookups by result (`hit`, `miss`, `stale`, `unknown`) in `lookups`.
    pub fn with_metrics(mut self, lookups: prometheus::IntCounterVec) -> KeyCache {
        self.lookups = Some(
            ["hit", "miss", "stale", "unknown"].map(|result| lookups.with_label_values(&[result])),
        );
        self
    }

    fn count(&self, result: Lookup) {
        if let Some(lookups) = &self.lookups {
            lookups[result as usize].inc();
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The usable key the request carries, or the reason it is refused.
    pub async fn authenticate(&self, req: &RequestHeader) -> Result<Arc<KeyRecord>, ApiError> {
        let presented = presented_key(req).ok_or(ApiError::MissingKey)?;
        if !looks_like_key(presented) {
            return Err(ApiError::InvalidKey);
        }
        let record = self.lookup(KeyHash::of(presented)).await?;
        if record.revoked_at_ms.is_some() {
            return Err(ApiError::RevokedKey);
        }
        if record.suspended_at_ms.is_some() {
            return Err(ApiError::SuspendedKey);
        }
        if record.account_status != "active" {
            return Err(ApiError::AccountInactive(record.account_status.clone()));
        }
        Ok(record)
    }

    /// Whether the request's key is one this node has in memory (fresh or not): such
    /// a key is checked without the store even for a client that failed too often.
    pub fn knows(&self, req: &RequestHeader) -> bool {
        presented_key(req).is_some_and(|key| {
            self.entries
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(&KeyHash::of(key))
        })
    }

    fn cached(&self, hash: &KeyHash) -> Option<(Arc<KeyRecord>, Instant)> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(hash)
            .cloned()
    }

    async fn lookup(&self, hash: KeyHash) -> Result<Arc<KeyRecord>, ApiError> {
        let fresh = |cached: &Option<(Arc<KeyRecord>, Instant)>| {
            cached
                .as_ref()
                .filter(|(_, at)| at.elapsed() < self.ttl())
                .map(|(record, _)| record.clone())
        };
        let cached = self.cached(&hash);
        if let Some(record) = fresh(&cached) {
            self.count(Lookup::Hit);
            return Ok(record);
        }
        // One store read per key at a time: a burst of requests with a key not in
        // memory (a new key, a node just started, a change just heard) waits for the
        // first one's read instead of sending the store one read each.
        let gate = self
            .reading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(hash.clone())
            .or_default()
            .clone();
        let _turn = gate.lock().await;
        let cached = self.cached(&hash);
        if let Some(record) = fresh(&cached) {
            self.count(Lookup::Hit);
            return Ok(record);
        }
        let result = self.read(hash.clone(), cached).await;
        self.reading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&hash);
        result
    }

    async fn read(
        &self,
        hash: KeyHash,
        cached: Option<(Arc<KeyRecord>, Instant)>,
    ) -> Result<Arc<KeyRecord>, ApiError> {
        let forgets = self.forgets.load(Ordering::Acquire);
        let fetched = tokio::time::timeout(STORE_WAIT, self.store.key_by_hash(&hash)).await;
        let record = match (fetched, cached) {
            (Ok(Ok(Some(record))), _) => {
                self.count(Lookup::Miss);
                Arc::new(record)
            }
            (Ok(Ok(None)), _) => {
                self.count(Lookup::Unknown);
                return Err(ApiError::InvalidKey);
            }
            // The store is down or slow: a key this node knew keeps working (nothing
            // can be revoked meanwhile: revocation goes through the store).
            (Ok(Err(_)) | Err(_), Some((record, _))) => {
                tracing::warn!("store unreachable; authenticating a known key from memory");
                self.count(Lookup::Stale);
                return Ok(record);
            }
            (Ok(Err(e)), None) => return Err(ApiError::Internal(format!("key lookup: {e}"))),
            (Err(_), None) => {
                return Err(ApiError::Unavailable(
                    "the key store does not answer".into(),
                ))
            }
        };
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        // A change heard while the store was being read may have committed after the
        // read saw the row: use the answer once, but do not keep it.
        if self.forgets.load(Ordering::Acquire) != forgets {
            return Ok(record);
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(hash, (record.clone(), Instant::now()));
        Ok(record)
    }
}

/// The credential in `Authorization: Bearer ...`, else in `x-api-key`.
fn presented_key(req: &RequestHeader) -> Option<&str> {
    if let Some(value) = req.headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?.trim();
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty());
    }
    req.headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), v.to_string()).unwrap();
        }
        r
    }

    #[test]
    fn finds_bearer_and_x_api_key_credentials() {
        assert_eq!(
            presented_key(&req(&[("authorization", "Bearer tr-abc")])),
            Some("tr-abc")
        );
        assert_eq!(
            presented_key(&req(&[("authorization", "bearer  tr-abc ")])),
            Some("tr-abc")
        );
        assert_eq!(
            presented_key(&req(&[("x-api-key", "tr-xyz")])),
            Some("tr-xyz")
        );
        assert_eq!(
            presented_key(&req(&[("authorization", "Basic dXNlcg==")])),
            None
        );
        assert_eq!(presented_key(&req(&[("authorization", "Bearer ")])), None);
        assert_eq!(presented_key(&req(&[])), None);
    }
}
