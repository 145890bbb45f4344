use std::collections::HashMap;
use std::time::Instant;

use http::HeaderMap;
use serde_json::{json, Map, Value};
use tokenroute_domain::config::Config;
use tokenroute_domain::KeyLimits;

use super::*;

const BASE: &str = r#"
[[providers]]
id = "a"
kind = "openai"
base-url = "http://127.0.0.1:1/v1"

[[providers]]
id = "b"
kind = "anthropic"
base-url = "http://127.0.0.1:2/v1"
region = "us"
[[providers.endpoints]]
id = "eu"
base-url = "http://127.0.0.1:3/v1"
region = "eu"

[[providers]]
id = "c"
kind = "gemini"
base-url = "http://127.0.0.1:4/v1beta"

[[models]]
id = "a/small"
input-usd-per-mtok = "0.10"
output-usd-per-mtok = "0.40"
context-window = 8000
capabilities = ["json", "streaming"]

[[models]]
id = "b/medium"
input-usd-per-mtok = "1"
output-usd-per-mtok = "4"
context-window = 200000

[[models]]
id = "c/large"
input-usd-per-mtok = "2"
output-usd-per-mtok = "8"
context-window = 1000000

[aliases]
small = "a/small"
"#;

fn config(extra: &str) -> Config {
    Config::from_toml(&format!("{BASE}\n{extra}"), "test", &|_| None).unwrap()
}

/// Starts inside BASE's `[aliases]` table: `auto` names the route.
const AUTO: &str = r#"
auto = "tokenroute-auto"

[[routes]]
id = "tokenroute-auto"
candidates = [
  { model = "a/small", weight = 6 },
  { model = "b/medium", weight = 3 },
  { model = "c/large", weight = 1 },
]
"#;

struct Req {
    body: Map<String, Value>,
    headers: HeaderMap,
    account: String,
    limits: KeyLimits,
    steering: Steering,
}

impl Req {
    fn new(body: Value) -> Req {
        let Value::Object(mut body) = body else {
            panic!()
        };
        let steering = Steering::take(&mut body).unwrap();
        Req {
            body,
            headers: HeaderMap::new(),
            account: "acc_1".into(),
            limits: KeyLimits::default(),
            steering,
        }
    }

    fn user(n: usize) -> Req {
        Req::new(
            json!({"model": "tokenroute-auto", "user": format!("user-{n}"), "messages": [{"role": "user", "content": "hi"}]}),
        )
    }

    fn decide(&self, config: &Config, health: &Health) -> Result<Decision, RouteError> {
        let requested = self.body["model"].as_str().unwrap();
        let input = RouteInput {
            requested,
            account_id: &self.account,
            key_id: "key_1",
            limits: &self.limits,
            headers: &self.headers,
            features: Features::of(&self.body, 100, None),
            fingerprint: Fingerprint::of(None, &self.body, &self.account),
            steering: &self.steering,
        };
        decide(config, &input, health, Instant::now())
    }

    fn models(&self, config: &Config) -> Vec<String> {
        self.decide(config, &Health::default())
            .unwrap()
            .targets
            .iter()
            .map(|t| format!("{}@{}", config.models[t.model].id, endpoint_key(config, t)))
            .collect()
    }
}

fn first_model(config: &Config, d: &Decision) -> String {
    config.models[d.targets[0].model].id.clone()
}

#[test]
fn the_same_request_gets_the_same_order_every_time() {
    let c1 = config(AUTO);
    let c2 = config(AUTO);
    assert_eq!(c1.routing_version, c2.routing_version);
    for n in 0..1000 {
        let r = Req::user(n);
        assert_eq!(r.models(&c1), r.models(&c2));
    }
}

#[test]
fn shares_follow_the_weights_within_two_points_over_100k_requests() {
    let c = config(AUTO);
    let health = Health::default();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let n = 100_000;
    for i in 0..n {
        let d = Req::user(i).decide(&c, &health).unwrap();
        *counts.entry(first_model(&c, &d)).or_default() += 1;
    }
    for (model, weight) in [("a/small", 0.6), ("b/medium", 0.3), ("c/large", 0.1)] {
        let share = counts[model] as f64 / n as f64;
        assert!(
            (share - weight).abs() < 0.02,
            "{model}: {share} vs {weight}"
        );
    }
}

#[test]
fn removing_a_candidate_moves_only_the_requests_that_were_on_it() {
    let before = config(AUTO);
    let after = config(
        r#"
[[routes]]
id = "tokenroute-auto"
candidates = [
  { model = "a/small", weight = 6 },
  { model = "c/large", weight = 1 },
]
"#,
    );
    assert_ne!(before.routing_version, after.routing_version);
    let health = Health::default();
    let mut moved = 0;
    for i in 0..10_000 {
        let r = Req::user(i);
        let was = first_model(&before, &r.decide(&before, &health).unwrap());
        let is = first_model(&after, &r.decide(&after, &health).unwrap());
        if was != "b/medium" {
            assert_eq!(was, is, "request {i} moved though its model stayed");
        } else {
            moved += 1;
        }
    }
    assert!(moved > 2000, "{moved}");
}

#[test]
fn ineligible_candidates_are_left_out_with_a_reason() {
    let c = config(AUTO);
    // Tools: a/small cannot; a 100k-token prompt: a/small's 8k window is too small.
    let mut r = Req::new(
        json!({"model": "auto", "tools": [{"type": "function"}], "messages": [{"role": "user", "content": "x"}]}),
    );
    let d = r.decide(&c, &Health::default()).unwrap();
    assert!(d.targets.iter().all(|t| c.models[t.model].id != "a/small"));
    assert!(d
        .excluded
        .iter()
        .any(|x| x.model == "a/small" && x.reason.contains("tools")));
    assert_eq!(
        d.route.as_deref(),
        Some("tokenroute-auto"),
        "the alias resolves to the route"
    );

    r.body.remove("tools");
    let input_limits = KeyLimits {
        allowed_models: Some(vec!["c/large".into()]),
        ..KeyLimits::default()
    };
    r.limits = input_limits;
    let d = r.decide(&c, &Health::default()).unwrap();
    assert_eq!(d.targets.len(), 1, "only the allowed model");
    assert_eq!(first_model(&c, &d), "c/large");

    r.limits.allowed_models = Some(vec!["nothing/else".into()]);
    assert!(matches!(
        r.decide(&c, &Health::default()),
        Err(RouteError::NotAllowed(_))
    ));
}

#[test]
fn an_open_circuit_removes_a_candidate_and_503s_when_nothing_is_left() {
    let c = config("");
    let r = Req::new(json!({"model": "a/small", "messages": [{"role": "user", "content": "x"}]}));
    let health = Health::default();
    let settings = c.routing.clone();
    for _ in 0..settings.breaker_failures {
        health
            .breaker("a/default")
            .failure(Instant::now(), &settings);
    }
    match r.decide(&c, &health) {
        Err(RouteError::NoCandidate {
            unhealthy, reasons, ..
        }) => {
            assert!(unhealthy);
            assert!(reasons.contains("circuit open"), "{reasons}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rules_fire_in_order_and_name_themselves() {
    let c = config(&format!(
        r#"{AUTO}
[[rules]]
name = "eu-tenant"
when = {{ accounts = ["acc_eu"] }}
then = {{ regions = ["eu"], candidates = [{{ model = "b/medium" }}] }}

[[rules]]
name = "canary"
when = {{ models = ["tokenroute-auto"], percent = 5 }}
then = {{ candidates = [{{ model = "c/large" }}] }}

[[rules]]
name = "tools-stay-capable"
when = {{ tools = true }}
then = {{ weights = {{ "a/small" = 0 }} }}
"#
    ));
    let mut eu = Req::user(1);
    eu.account = "acc_eu".into();
    let d = eu.decide(&c, &Health::default()).unwrap();
    assert_eq!(d.rule.as_deref(), Some("eu-tenant"));
    assert_eq!(
        eu.models(&c),
        ["b/medium@b/eu"],
        "pinned to the EU endpoint"
    );

    // The canary takes 5% of auto traffic, the same requests every time.
    let health = Health::default();
    let canaried: Vec<usize> = (0..20_000)
        .filter(|&i| Req::user(i).decide(&c, &health).unwrap().rule.as_deref() == Some("canary"))
        .collect();
    let share = canaried.len() as f64 / 20_000.0;
    assert!((share - 0.05).abs() < 0.01, "{share}");
    for &i in canaried.iter().take(50) {
        let d = Req::user(i).decide(&c, &health).unwrap();
        assert_eq!(first_model(&c, &d), "c/large");
    }
}

#[test]
fn endpoints_of_a_provider_are_ordered_by_weight_too() {
    let c = config("");
    let r = Req::new(
        json!({"model": "b/medium", "user": "u", "messages": [{"role": "user", "content": "x"}]}),
    );
    let order = r.models(&c);
    assert_eq!(order.len(), 2);
    assert!(
        order.iter().any(|o| o.ends_with("@b/eu"))
            && order.iter().any(|o| o.ends_with("@b/default"))
    );
}

#[test]
fn the_client_steers_with_models_and_provider() {
    let c = config(AUTO);
    let r = Req::new(
        json!({"model": "c/large", "models": ["a/small", "small"], "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(r.models(&c), ["c/large@c/default", "a/small@a/default"]);

    let r = Req::new(
        json!({"model": "auto", "user": "u", "provider": {"sort": "price"}, "messages": [{"role": "user", "content": "x"}]}),
    );
    let order = r.models(&c);
    assert!(
        order[0].starts_with("a/small") && order.last().unwrap().starts_with("c/large"),
        "{order:?}"
    );

    let r = Req::new(
        json!({"model": "auto", "user": "u", "provider": {"order": ["c", "b"], "allow_fallbacks": false}, "messages": [{"role": "user", "content": "x"}]}),
    );
    let order = r.models(&c);
    assert!(
        order[0].starts_with("c/large") && order.iter().all(|o| !o.starts_with("a/")),
        "{order:?}"
    );

    let r = Req::new(
        json!({"model": "auto", "user": "u", "provider": {"ignore": ["a"], "max_price": {"completion": 5}}, "messages": [{"role": "user", "content": "x"}]}),
    );
    let order = r.models(&c);
    assert!(order.iter().all(|o| o.starts_with("b/medium")), "{order:?}");

    let r = Req::new(
        json!({"model": "c/large", "models": ["nope/x"], "messages": [{"role": "user", "content": "x"}]}),
    );
    assert!(matches!(
        r.decide(&c, &Health::default()),
        Err(RouteError::UnknownFallback { index: 0, .. })
    ));
}

#[test]
fn routing_config_mistakes_name_their_key() {
    let bad = |extra: &str| {
        Config::from_toml(&format!("{BASE}\n{extra}"), "test", &|_| None)
            .unwrap_err()
            .to_string()
    };
    assert!(
        bad("[[routes]]\nid = \"r\"\ncandidates = [{ model = \"x/y\" }]\n")
            .contains("routes[0].candidates[0].model")
    );
    assert!(
        bad("[[routes]]\nid = \"r\"\ncandidates = [{ model = \"a/small\", weight = 0 }]\n")
            .contains("routes[0].candidates")
    );
    assert!(bad("foo = \"nothing\"\n").contains("aliases.foo"));
    assert!(
        bad("[[rules]]\nname = \"r\"\nthen = { regions = [\"mars\"] }\n")
            .contains("rules[0].then.regions")
    );
    assert!(bad(
        "[[rules]]\nname = \"r\"\nwhen = { percent = 150 }\nthen = { regions = [\"eu\"] }\n"
    )
    .contains("rules[0].when.percent"));
    assert!(bad("[routing]\nmax-attempts = 0\n").contains("routing.max-attempts"));
}
