//! Routing: which provider, model and endpoint serve a request, in what fallback
//! order — deterministic for a given config version, request fingerprint and
//! eligibility (PRIVACY.md [P9]), explainable, and hot-reloadable.
//!
//! [`request`] reads the request (features, fingerprint), [`steer`] the client's
//! per-request preferences, [`decide`] makes the decision, [`health`] keeps each
//! endpoint's circuit breaker, [`budget`] bounds fallbacks. [`Router`] holds the
//! live config (swapped atomically on reload: a request keeps the config it started
//! with) and the state that outlives reloads.

pub mod budget;
pub mod checks;
pub mod decide;
pub mod health;
pub mod request;
pub mod steer;

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use serde_json::{json, Value};
use tokenroute_domain::config::Config;

pub use decide::{decide, Caller, Decision, RouteError, RouteInput, Target};
pub use request::{Features, Fingerprint, FingerprintSource, ROUTE_KEY_HEADER};
pub use steer::Steering;

use budget::RetryBudget;
use health::Health;

/// The config routing runs on now, with the retry budget it sets.
pub struct Live {
    pub config: Arc<Config>,
    pub budget: RetryBudget,
}

pub struct Router {
    live: ArcSwap<Live>,
    pub health: Health,
}

impl Router {
    pub fn new(config: Arc<Config>) -> Router {
        Router {
            live: ArcSwap::from_pointee(live(config)),
            health: Health::default(),
        }
    }

    /// The current config and budget; held for a whole request.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Routes from now on by `config` (requests in flight finish on the old one).
    pub fn replace(&self, config: Arc<Config>) {
        self.live.store(Arc::new(live(config)));
    }

    pub fn decide(&self, config: &Config, input: &RouteInput<'_>) -> Result<Decision, RouteError> {
        decide(config, input, &self.health, Instant::now())
    }
}

fn live(config: Arc<Config>) -> Live {
    Live {
        budget: RetryBudget::new(
            config.routing.retry_budget_percent,
            config.routing.retry_budget_min_per_sec,
        ),
        config,
    }
}

/// `provider/endpoint`, the name an endpoint's breaker and metrics go by.
pub fn endpoint_key<'c>(config: &'c Config, target: &Target) -> &'c str {
    &config.providers[target.provider].endpoints[target.endpoint].key
}

/// The `x-tokenroute-route` header: why this target (route, rule, rank, fingerprint
/// source, config version).
pub fn header_value(config: &Config, decision: &Decision, requested: &str, rank: usize) -> String {
    let mut out = decision.route.as_deref().unwrap_or(requested).to_string();
    if let Some(rule) = &decision.rule {
        out.push_str("; rule=");
        out.push_str(rule);
    }
    out.push_str(&format!(
        "; rank={} of {}; fingerprint={}; config={}",
        rank + 1,
        decision.targets.len(),
        decision.fingerprint.source.as_str(),
        config.routing_version
    ));
    out
}

/// The decision as `POST /v1/route/explain` and `tokenroute route simulate` show it.
pub fn explain(
    config: &Config,
    requested: &str,
    features: &Features,
    decision: &Decision,
) -> Value {
    let target = |t: &Target| {
        let model = &config.models[t.model];
        let endpoint = &config.providers[t.provider].endpoints[t.endpoint];
        json!({
            "model": model.id,
            "provider": model.provider,
            "endpoint": endpoint.id,
            "region": endpoint.region,
        })
    };
    json!({
        "object": "route.decision",
        "config_version": config.routing_version,
        "requested": requested,
        "route": decision.route,
        "rule": decision.rule,
        "fingerprint": {
            "source": decision.fingerprint.source.as_str(),
            "hash": format!("{:016x}", decision.fingerprint.hash),
        },
        "features": {
            "tools": features.tools,
            "images": features.images,
            "json": features.json,
            "stream": features.stream,
            "prompt_tokens_estimate": features.prompt_tokens,
            "max_output_tokens": features.max_output,
        },
        "choice": decision.targets.first().map(target),
        "order": decision.targets.iter().map(target).collect::<Vec<_>>(),
        "max_attempts": config.routing.max_attempts,
        "excluded": decision.excluded.iter().map(|x| json!({
            "model": x.model,
            "endpoint": x.endpoint,
            "reason": x.reason,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests;
