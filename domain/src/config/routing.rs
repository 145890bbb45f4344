//! The routing part of the config: virtual models (`tokenroute-auto` and any other
//! route), aliases, ordered rules, and the knobs of fallback and health.
//!
//! What a request is routed to is decided in the data plane (`tokenroute-proxy`'s
//! `route` module) from these values alone, so two nodes with the same file decide
//! the same: [`super::Config::routing_version`] names that file's routing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::raw::{RawCandidate, RawNumber, RawRoute, RawRouting, RawRule};
use super::{Model, Provider};
use crate::money::NanoUsd;

type Invalid = (String, String);

/// Fallback, retry budget and health knobs (`[routing]`).
#[derive(Debug, Clone)]
pub struct RoutingSettings {
    /// The most upstream attempts one request makes (the first choice included).
    pub max_attempts: usize,
    /// No new attempt starts later than this after the request arrived.
    pub deadline: Duration,
    /// Fallbacks may add at most this many attempts per 100 requests...
    pub retry_budget_percent: u32,
    /// ...plus this many per second, whatever the traffic.
    pub retry_budget_min_per_sec: u32,
    /// Consecutive failures (connect errors, timeouts, 5xx, 429) that open an
    /// endpoint's circuit.
    pub breaker_failures: u32,
    /// How long an open circuit stays open before one probe request is let through.
    pub breaker_open: Duration,
    /// Active health checks (a TCP connect to each endpoint) this often; `None`: off.
    pub health_check_interval: Option<Duration>,
}

/// A virtual model: clients name it, TokenRoute picks one of its candidates.
#[derive(Debug, Clone)]
pub struct Route {
    pub id: String,
    pub description: Option<String>,
    pub candidates: Vec<Candidate>,
    /// Candidates priced above these (USD per 1M tokens) are not eligible.
    pub max_input_price: Option<NanoUsd>,
    pub max_output_price: Option<NanoUsd>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// A configured model id (`provider/model`).
    pub model: String,
    /// Its share of traffic relative to the others; 0 takes it out.
    pub weight: u32,
}

/// One entry of the ordered rule list: the first rule whose `when` holds fires.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub when: RuleMatch,
    pub then: RuleAction,
}

/// What a request must be for a rule to fire. Every condition given must hold;
/// list conditions hold when the request's value is in the list.
#[derive(Debug, Clone, Default)]
pub struct RuleMatch {
    pub accounts: Vec<String>,
    pub keys: Vec<String>,
    /// Model ids as the client sent them (routes and aliases included).
    pub models: Vec<String>,
    /// Header name (lower case) and exact value.
    pub headers: Vec<(String, String)>,
    pub tools: Option<bool>,
    pub images: Option<bool>,
    pub stream: Option<bool>,
    pub min_prompt_tokens: Option<u64>,
    pub max_prompt_tokens: Option<u64>,
    /// A deterministic share of matching requests, in basis points (1/100 of a
    /// percent), chosen by the request's routing fingerprint.
    pub share_bp: Option<u32>,
}

/// What a fired rule changes.
#[derive(Debug, Clone, Default)]
pub struct RuleAction {
    /// Replaces the candidate set.
    pub candidates: Option<Vec<Candidate>>,
    /// Overrides candidates' weights (0 removes one).
    pub weights: Vec<(String, u32)>,
    /// Only endpoints in these regions.
    pub regions: Vec<String>,
    /// Only these endpoints (`provider/endpoint`).
    pub endpoints: Vec<String>,
}

/// The routing sections, validated against the providers and models.
pub(super) struct Routing {
    pub settings: RoutingSettings,
    pub routes: Vec<Route>,
    pub aliases: BTreeMap<String, String>,
    pub rules: Vec<Rule>,
}

pub(super) fn validate(
    raw_settings: RawRouting,
    raw_routes: Vec<RawRoute>,
    raw_aliases: BTreeMap<String, String>,
    raw_rules: Vec<RawRule>,
    providers: &[Provider],
    models: &HashMap<String, usize>,
) -> Result<Routing, Invalid> {
    let settings = settings(raw_settings)?;
    let mut routes = Vec::with_capacity(raw_routes.len());
    let mut route_ids = HashSet::new();
    for (i, r) in raw_routes.into_iter().enumerate() {
        let at = |key: &str| format!("routes[{i}].{key}");
        if r.id.is_empty() || r.id.contains('/') {
            return Err((
                at("id"),
                format!(
                    "`{}` must be non-empty and contain no `/` (model ids have one)",
                    r.id
                ),
            ));
        }
        if !route_ids.insert(r.id.clone()) {
            return Err((at("id"), format!("route `{}` is defined twice", r.id)));
        }
        let candidates = candidates(&at("candidates"), r.candidates, models)?;
        let price = |key: &str, text: Option<String>| -> Result<Option<NanoUsd>, Invalid> {
            text.map(|t| NanoUsd::parse_usd(&t).map_err(|e| (at(key), e.to_string())))
                .transpose()
        };
        routes.push(Route {
            id: r.id,
            description: r.description,
            candidates,
            max_input_price: price("max-input-usd-per-mtok", r.max_input_usd_per_mtok)?,
            max_output_price: price("max-output-usd-per-mtok", r.max_output_usd_per_mtok)?,
        });
    }
    for (alias, target) in &raw_aliases {
        let at = format!("aliases.{alias}");
        if models.contains_key(alias) || route_ids.contains(alias) {
            return Err((at, format!("`{alias}` is already a model or route id")));
        }
        if !models.contains_key(target) && !route_ids.contains(target) {
            return Err((
                at,
                format!("`{target}` is neither a configured model nor a route"),
            ));
        }
    }
    let known_request_model =
        |m: &str| models.contains_key(m) || route_ids.contains(m) || raw_aliases.contains_key(m);
    let regions: HashSet<&str> = providers
        .iter()
        .flat_map(|p| p.endpoints.iter().filter_map(|e| e.region.as_deref()))
        .collect();
    let endpoints: HashSet<&str> = providers
        .iter()
        .flat_map(|p| p.endpoints.iter().map(|e| e.key.as_str()))
        .collect();
    let mut rules = Vec::with_capacity(raw_rules.len());
    let mut names = HashSet::new();
    for (i, r) in raw_rules.into_iter().enumerate() {
        let at = |key: &str| format!("rules[{i}].{key}");
        if r.name.is_empty() || !names.insert(r.name.clone()) {
            return Err((
                at("name"),
                format!("`{}` must be non-empty and unique", r.name),
            ));
        }
        for (j, m) in r.when.models.iter().enumerate() {
            if !known_request_model(m) {
                return Err((
                    at(&format!("when.models[{j}]")),
                    format!("`{m}` is not a model, route or alias"),
                ));
            }
        }
        let share_bp = r
            .when
            .percent
            .map(|p| {
                let percent = match p {
                    RawNumber::Int(n) => n as f64,
                    RawNumber::Float(f) => f,
                };
                if !(percent > 0.0 && percent <= 100.0) {
                    return Err((at("when.percent"), format!("{percent} is not in (0, 100]")));
                }
                Ok((percent * 100.0).round() as u32)
            })
            .transpose()?;
        let then = r.then;
        let candidates = then
            .candidates
            .map(|c| candidates(&at("then.candidates"), c, models))
            .transpose()?;
        for model in then.weights.keys() {
            if !models.contains_key(model) {
                return Err((
                    at("then.weights"),
                    format!("`{model}` is not a configured model"),
                ));
            }
        }
        for region in &then.regions {
            if !regions.contains(region.as_str()) {
                return Err((
                    at("then.regions"),
                    format!("no endpoint is in region `{region}`"),
                ));
            }
        }
        for endpoint in &then.endpoints {
            if !endpoints.contains(endpoint.as_str()) {
                return Err((
                    at("then.endpoints"),
                    format!("`{endpoint}` is not a configured `provider/endpoint`"),
                ));
            }
        }
        if candidates.is_none()
            && then.weights.is_empty()
            && then.regions.is_empty()
            && then.endpoints.is_empty()
        {
            return Err((
                at("then"),
                "the rule changes nothing: give candidates, weights, regions or endpoints".into(),
            ));
        }
        rules.push(Rule {
            name: r.name,
            when: RuleMatch {
                accounts: r.when.accounts,
                keys: r.when.keys,
                models: r.when.models,
                headers: r
                    .when
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect(),
                tools: r.when.tools,
                images: r.when.images,
                stream: r.when.stream,
                min_prompt_tokens: r.when.min_prompt_tokens,
                max_prompt_tokens: r.when.max_prompt_tokens,
                share_bp,
            },
            then: RuleAction {
                candidates,
                weights: then.weights.into_iter().collect(),
                regions: then.regions,
                endpoints: then.endpoints,
            },
        });
    }
    Ok(Routing {
        settings,
        routes,
        aliases: raw_aliases,
        rules,
    })
}

fn settings(raw: RawRouting) -> Result<RoutingSettings, Invalid> {
    let max_attempts = raw.max_attempts.unwrap_or(3);
    if max_attempts == 0 {
        return Err(("routing.max-attempts".into(), "must be at least 1".into()));
    }
    let breaker_failures = raw.breaker_failures.unwrap_or(5);
    if breaker_failures == 0 {
        return Err((
            "routing.breaker-failures".into(),
            "must be at least 1".into(),
        ));
    }
    Ok(RoutingSettings {
        max_attempts,
        deadline: Duration::from_millis(raw.deadline_ms.unwrap_or(60_000)),
        retry_budget_percent: raw.retry_budget_percent.unwrap_or(20),
        retry_budget_min_per_sec: raw.retry_budget_min_per_sec.unwrap_or(10),
        breaker_failures,
        breaker_open: Duration::from_millis(raw.breaker_open_ms.unwrap_or(30_000)),
        health_check_interval: match raw.health_check_interval_ms.unwrap_or(10_000) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        },
    })
}

fn candidates(
    at: &str,
    raw: Vec<RawCandidate>,
    models: &HashMap<String, usize>,
) -> Result<Vec<Candidate>, Invalid> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (j, c) in raw.into_iter().enumerate() {
        if !models.contains_key(&c.model) {
            return Err((
                format!("{at}[{j}].model"),
                format!("`{}` is not a configured model", c.model),
            ));
        }
        if !seen.insert(c.model.clone()) {
            return Err((
                format!("{at}[{j}].model"),
                format!("`{}` is listed twice", c.model),
            ));
        }
        out.push(Candidate {
            model: c.model,
            weight: c.weight.unwrap_or(1),
        });
    }
    if !out.iter().any(|c| c.weight > 0) {
        return Err((
            at.to_string(),
            "needs at least one candidate with a weight above 0".into(),
        ));
    }
    Ok(out)
}

/// A short digest of everything routing decisions depend on (providers and their
/// endpoints without their keys, models, routes, aliases, rules, settings): equal
/// digests decide equally.
pub(super) fn version(providers: &[Provider], models: &[Model], routing: &Routing) -> String {
    let mut hash = Sha256::new();
    for p in providers {
        hash.update(format!("{}|{:?}|{:?}\n", p.id, p.kind, p.headers));
        for e in &p.endpoints {
            // The key is a secret: only whether there is one.
            hash.update(format!(
                "  {}|{:?}|{:?}|{}|{}\n",
                e.id,
                e.url,
                e.region,
                e.weight,
                e.api_key.is_some()
            ));
        }
    }
    for m in models {
        hash.update(format!("{m:?}\n"));
    }
    hash.update(format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n",
        routing.settings, routing.routes, routing.aliases, routing.rules
    ));
    hex::encode(&hash.finalize()[..6])
}
