//! The routing decision: from the requested model, the rules, the request's features
//! and fingerprint, and the endpoints' health, the ordered list of (model, endpoint)
//! targets to try.
//!
//! Selection is weighted rendezvous hashing (highest random weight): each eligible
//! candidate scores `weight / -ln(draw(fingerprint, candidate))` and the list is
//! sorted by score. Chosen over a consistent-hash ring because it needs no ring to
//! build or keep in step with the config, gives exact weight shares without virtual
//! nodes, yields a whole fallback order (not just a first choice) for free, and
//! removing a candidate moves only the requests that were on it — the others keep
//! their highest score. The same computation orders a provider's endpoints.

use std::time::Instant;

use http::HeaderMap;
use tokenroute_domain::config::{Candidate, Capability, Config, Model, RuleMatch};
use tokenroute_domain::{KeyLimits, NanoUsd};

use super::health::Health;
use super::request::{Features, Fingerprint};
use super::steer::{Sort, Steering};

/// What the router reads of a request.
pub struct RouteInput<'a> {
    /// The model as the client sent it (a model, a route or an alias).
    pub requested: &'a str,
    pub account_id: &'a str,
    pub key_id: &'a str,
    pub limits: &'a KeyLimits,
    pub headers: &'a HeaderMap,
    pub features: Features,
    pub fingerprint: Fingerprint,
    pub steering: &'a Steering,
}

/// Who sends a request, as routing sees it.
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    pub account_id: &'a str,
    pub key_id: &'a str,
    pub limits: &'a KeyLimits,
}

impl<'a> From<&'a tokenroute_store::KeyRecord> for Caller<'a> {
    fn from(key: &'a tokenroute_store::KeyRecord) -> Caller<'a> {
        Caller {
            account_id: &key.account_id,
            key_id: &key.id,
            limits: &key.limits,
        }
    }
}

impl<'a> RouteInput<'a> {
    /// The routing input of a chat request (its client steering already taken out).
    pub fn of_chat(
        chat: &'a crate::chat::ChatRequest,
        caller: Caller<'a>,
        headers: &'a HeaderMap,
        steering: &'a Steering,
        prompt_estimate: u64,
    ) -> RouteInput<'a> {
        let route_key = headers
            .get(super::ROUTE_KEY_HEADER)
            .and_then(|v| v.to_str().ok());
        RouteInput {
            requested: &chat.model,
            account_id: caller.account_id,
            key_id: caller.key_id,
            limits: caller.limits,
            headers,
            features: Features::of(chat.body(), prompt_estimate, chat.max_output_tokens),
            fingerprint: Fingerprint::of(route_key, chat.body(), caller.account_id),
            steering,
        }
    }
}

/// One place to send the request: indexes into the config it was decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub model: usize,
    pub provider: usize,
    pub endpoint: usize,
}

/// A candidate left out, and why.
#[derive(Debug, Clone)]
pub struct Exclusion {
    pub model: String,
    /// `provider/endpoint` when an endpoint (not the model) was left out.
    pub endpoint: Option<String>,
    pub reason: String,
    pub kind: ExclusionKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExclusionKind {
    /// The key may not use it.
    NotAllowed,
    /// Its circuit is open or its health check fails.
    Unhealthy,
    /// Anything else (capabilities, context window, price, weight, the client's or a
    /// rule's choice).
    Ineligible,
}

#[derive(Debug, Clone)]
pub struct Decision {
    /// The route id when the request named a route (directly or by alias).
    pub route: Option<String>,
    /// The rule that fired.
    pub rule: Option<String>,
    pub fingerprint: Fingerprint,
    /// In order of preference; fallback walks it.
    pub targets: Vec<Target>,
    pub excluded: Vec<Exclusion>,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("unknown model `{0}`")]
    UnknownModel(String),
    #[error("{0}")]
    NotAllowed(String),
    /// Nothing can serve the request; `unhealthy` when health is among the reasons.
    #[error("no candidate of `{requested}` can serve this request: {reasons}")]
    NoCandidate {
        requested: String,
        reasons: String,
        unhealthy: bool,
    },
    #[error("`models[{index}]`: unknown model `{name}`")]
    UnknownFallback { index: usize, name: String },
}

enum Named<'c> {
    Model(usize),
    Route(&'c tokenroute_domain::config::Route),
}

fn lookup<'c>(config: &'c Config, name: &str) -> Option<Named<'c>> {
    let name = config.resolve_alias(name);
    if let Some(i) = config.model_index(name) {
        return Some(Named::Model(i));
    }
    config.route(name).map(Named::Route)
}

/// Where in the decision a candidate set came from: explicit models are the client's
/// choice (only the key's allow-list and health decide), route candidates must also
/// fit the request.
struct Set<'c> {
    candidates: Vec<Candidate>,
    explicit: bool,
    route: Option<&'c tokenroute_domain::config::Route>,
}

pub fn decide(
    config: &Config,
    input: &RouteInput<'_>,
    health: &Health,
    now: Instant,
) -> Result<Decision, RouteError> {
    let requested = input.requested;
    let primary =
        lookup(config, requested).ok_or_else(|| RouteError::UnknownModel(requested.to_string()))?;
    let mut route_id = None;
    let mut set = match primary {
        Named::Model(i) => Set {
            candidates: vec![Candidate {
                model: config.models[i].id.clone(),
                weight: 1,
            }],
            explicit: true,
            route: None,
        },
        Named::Route(r) => {
            route_id = Some(r.id.clone());
            Set {
                candidates: r.candidates.clone(),
                explicit: false,
                route: Some(r),
            }
        }
    };
    let resolved_name = config.resolve_alias(requested);
    let rule = config
        .rules
        .iter()
        .find(|r| matches(&r.name, &r.when, input, resolved_name));
    if let Some(rule) = rule {
        if let Some(candidates) = &rule.then.candidates {
            set.candidates = candidates.clone();
            set.explicit = false;
        }
        for (model, weight) in &rule.then.weights {
            if let Some(c) = set.candidates.iter_mut().find(|c| &c.model == model) {
                c.weight = *weight;
            }
        }
    }
    let endpoint_filter = rule.map(|r| (&r.then.regions, &r.then.endpoints));

    let mut excluded = Vec::new();
    let mut models = order(config, &set, input, &mut excluded);
    for (index, name) in input.steering.models.iter().enumerate() {
        let fallback = match lookup(config, name) {
            Some(Named::Model(i)) => Set {
                candidates: vec![Candidate {
                    model: config.models[i].id.clone(),
                    weight: 1,
                }],
                explicit: true,
                route: None,
            },
            Some(Named::Route(r)) => Set {
                candidates: r.candidates.clone(),
                explicit: false,
                route: Some(r),
            },
            None => {
                return Err(RouteError::UnknownFallback {
                    index,
                    name: name.clone(),
                })
            }
        };
        for m in order(config, &fallback, input, &mut excluded) {
            if !models.contains(&m) {
                models.push(m);
            }
        }
    }
    steer(config, input.steering, health, &mut models);

    let mut targets = Vec::new();
    for &m in &models {
        let model = &config.models[m];
        let Some(p) = config.provider_index(&model.provider) else {
            continue;
        };
        let provider = &config.providers[p];
        let mut endpoints: Vec<(usize, f64)> = Vec::new();
        for (e, endpoint) in provider.endpoints.iter().enumerate() {
            let key = &endpoint.key;
            let mut exclude = |reason: String, kind| {
                excluded.push(Exclusion {
                    model: model.id.clone(),
                    endpoint: Some(key.clone()),
                    reason,
                    kind,
                })
            };
            if endpoint.weight == 0 {
                exclude("weight 0".into(), ExclusionKind::Ineligible);
                continue;
            }
            if let Some((regions, only)) = endpoint_filter {
                if !regions.is_empty()
                    && !endpoint
                        .region
                        .as_ref()
                        .is_some_and(|r| regions.contains(r))
                {
                    exclude(
                        format!(
                            "not in region {} (rule `{}`)",
                            regions.join(", "),
                            rule.map_or("", |r| r.name.as_str())
                        ),
                        ExclusionKind::Ineligible,
                    );
                    continue;
                }
                if !only.is_empty() && !only.contains(key) {
                    exclude(
                        format!(
                            "not among the rule's endpoints (rule `{}`)",
                            rule.map_or("", |r| r.name.as_str())
                        ),
                        ExclusionKind::Ineligible,
                    );
                    continue;
                }
            }
            if let Some(why) = health.unavailable_because(key, now) {
                exclude(why.into(), ExclusionKind::Unhealthy);
                continue;
            }
            endpoints.push((e, input.fingerprint.score(key, endpoint.weight)));
        }
        endpoints.sort_by(|a, b| b.1.total_cmp(&a.1));
        targets.extend(endpoints.into_iter().map(|(e, _)| Target {
            model: m,
            provider: p,
            endpoint: e,
        }));
    }
    if !input.steering.allow_fallbacks && input.steering.order.is_empty() {
        targets.truncate(1);
    }
    if targets.is_empty() {
        if !excluded.is_empty() && excluded.iter().all(|x| x.kind == ExclusionKind::NotAllowed) {
            return Err(RouteError::NotAllowed(format!(
                "This key may not use `{requested}`."
            )));
        }
        return Err(RouteError::NoCandidate {
            requested: requested.to_string(),
            unhealthy: excluded.iter().any(|x| x.kind == ExclusionKind::Unhealthy),
            reasons: excluded
                .iter()
                .map(|x| {
                    format!(
                        "{}: {}",
                        x.endpoint.as_deref().unwrap_or(&x.model),
                        x.reason
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    Ok(Decision {
        route: route_id,
        rule: rule.map(|r| r.name.clone()),
        fingerprint: input.fingerprint,
        targets,
        excluded,
    })
}

fn matches(name: &str, when: &RuleMatch, input: &RouteInput<'_>, resolved: &str) -> bool {
    let listed = |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
    let flag = |want: Option<bool>, have: bool| want.is_none_or(|w| w == have);
    listed(&when.accounts, input.account_id)
        && listed(&when.keys, input.key_id)
        && (when.models.is_empty()
            || when
                .models
                .iter()
                .any(|m| m == input.requested || m == resolved))
        && when.headers.iter().all(|(h, v)| {
            input
                .headers
                .get(h.as_str())
                .and_then(|x| x.to_str().ok())
                .is_some_and(|x| x == v)
        })
        && flag(when.tools, input.features.tools)
        && flag(when.images, input.features.images)
        && flag(when.stream, input.features.stream)
        && when
            .min_prompt_tokens
            .is_none_or(|n| input.features.prompt_tokens >= n)
        && when
            .max_prompt_tokens
            .is_none_or(|n| input.features.prompt_tokens <= n)
        && when.share_bp.is_none_or(|bp| {
            // The same requests every time: the draw depends on the fingerprint only.
            input.fingerprint.draw(&format!("rule:{name}")) * 10_000.0 < f64::from(bp)
        })
}

/// The eligible models of a candidate set, best first.
fn order(
    config: &Config,
    set: &Set<'_>,
    input: &RouteInput<'_>,
    excluded: &mut Vec<Exclusion>,
) -> Vec<usize> {
    let mut scored: Vec<(usize, f64)> = Vec::new();
    for c in &set.candidates {
        let Some(i) = config.model_index(&c.model) else {
            continue;
        };
        let model = &config.models[i];
        match ineligible(model, c.weight, set, input) {
            Some((reason, kind)) => excluded.push(Exclusion {
                model: model.id.clone(),
                endpoint: None,
                reason,
                kind,
            }),
            None => scored.push((i, input.fingerprint.score(&model.id, c.weight))),
        }
    }
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.into_iter().map(|(i, _)| i).collect()
}

fn ineligible(
    model: &Model,
    weight: u32,
    set: &Set<'_>,
    input: &RouteInput<'_>,
) -> Option<(String, ExclusionKind)> {
    let allowed = input.limits.allows_model(&model.id)
        || set.route.is_some_and(|r| input.limits.allows_model(&r.id))
        || input.limits.allows_model(input.requested);
    if !allowed {
        return Some((
            "not among the key's allowed models".into(),
            ExclusionKind::NotAllowed,
        ));
    }
    let steering = input.steering;
    if !steering.allows_provider(&model.provider) {
        return Some((
            "provider excluded by the request's `provider` preferences".into(),
            ExclusionKind::Ineligible,
        ));
    }
    let over = |price: NanoUsd, cap: Option<NanoUsd>| cap.is_some_and(|cap| price > cap);
    let caps = [
        (
            model.price.input_per_mtok,
            steering.max_input_price,
            "input",
            "the request's max_price",
        ),
        (
            model.price.output_per_mtok,
            steering.max_output_price,
            "output",
            "the request's max_price",
        ),
        (
            model.price.input_per_mtok,
            set.route.and_then(|r| r.max_input_price),
            "input",
            "the route's cap",
        ),
        (
            model.price.output_per_mtok,
            set.route.and_then(|r| r.max_output_price),
            "output",
            "the route's cap",
        ),
    ];
    for (price, cap, what, whose) in caps {
        if over(price, cap) {
            return Some((
                format!(
                    "{what} price {price}/Mtok is over {whose} {}",
                    cap.unwrap_or_default()
                ),
                ExclusionKind::Ineligible,
            ));
        }
    }
    if set.explicit {
        // The client named this model: the provider judges what it can do.
        return None;
    }
    if weight == 0 {
        return Some(("weight 0".into(), ExclusionKind::Ineligible));
    }
    let f = &input.features;
    let needs = [
        (f.tools, Capability::Tools),
        (f.images, Capability::Vision),
        (f.json, Capability::Json),
        (f.stream, Capability::Streaming),
    ];
    for (needed, capability) in needs {
        if needed && !model.capabilities.contains(&capability) {
            return Some((
                format!("cannot do {}", capability.as_str()),
                ExclusionKind::Ineligible,
            ));
        }
    }
    let tokens = f.prompt_tokens + f.max_output.unwrap_or(0);
    if tokens > model.context_window {
        return Some((
            format!(
                "context window {} < {tokens} tokens (prompt estimate + max output)",
                model.context_window
            ),
            ExclusionKind::Ineligible,
        ));
    }
    None
}

/// The client's `provider` preferences that reorder or cut the list.
fn steer(config: &Config, steering: &Steering, health: &Health, models: &mut Vec<usize>) {
    match steering.sort {
        Some(Sort::Price) => models.sort_by_key(|&m| {
            let p = &config.models[m].price;
            p.input_per_mtok
                .nanos()
                .saturating_add(p.output_per_mtok.nanos())
        }),
        Some(Sort::Latency) => {
            let latency = |m: usize| {
                let model = &config.models[m];
                config
                    .provider(&model.provider)
                    .and_then(|p| p.endpoints.first())
                    .and_then(|e| health.latency_ms(&e.key))
                    // Unmeasured endpoints sort last, in their rendezvous order.
                    .unwrap_or(f64::MAX)
            };
            models.sort_by(|a, b| latency(*a).total_cmp(&latency(*b)));
        }
        None => {}
    }
    if !steering.order.is_empty() {
        let rank = |m: usize| {
            let provider = &config.models[m].provider;
            steering
                .order
                .iter()
                .position(|p| p == provider)
                .unwrap_or(usize::MAX)
        };
        models.sort_by_key(|&m| rank(m));
        if !steering.allow_fallbacks {
            models.retain(|&m| rank(m) != usize::MAX);
        }
    }
}
