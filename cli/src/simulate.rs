//! `tokenroute route simulate`: the router's decisions for sample requests, without
//! calling any provider — each decision, then the traffic shares.
//!
//! Each line of the file is a chat completion body, or an object
//! `{"request": BODY, "headers": {...}, "account": "...", "key": "..."}` for requests
//! whose headers, account or key matter (route keys, rules). Every endpoint is taken
//! as healthy and every model as allowed.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use serde_json::{json, Map, Value};
use tokenroute_domain::config::Config;
use tokenroute_domain::KeyLimits;
use tokenroute_proxy::chat::ChatRequest;
use tokenroute_proxy::meter::estimate_tokens;
use tokenroute_proxy::route::health::Health;
use tokenroute_proxy::route::{decide, endpoint_key, Caller, RouteInput};

/// One request of the file.
struct Sample {
    body: Map<String, Value>,
    body_len: usize,
    headers: http::HeaderMap,
    account: String,
    key: String,
}

fn sample(line: &str) -> Result<Sample, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut object) = value else {
        return Err("not a JSON object".into());
    };
    let text = |o: &Map<String, Value>, k: &str, default: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_string()
    };
    if let Some(Value::Object(body)) = object.remove("request") {
        let mut headers = http::HeaderMap::new();
        if let Some(Value::Object(h)) = object.get("headers") {
            for (name, value) in h {
                let name = http::HeaderName::try_from(name.as_str())
                    .map_err(|e| format!("header `{name}`: {e}"))?;
                let value = http::HeaderValue::try_from(value.as_str().unwrap_or_default())
                    .map_err(|e| format!("header `{name}`: {e}"))?;
                headers.insert(name, value);
            }
        }
        let body_len = Value::Object(body.clone()).to_string().len();
        return Ok(Sample {
            account: text(&object, "account", "acc_simulated"),
            key: text(&object, "key", "key_simulated"),
            body,
            body_len,
            headers,
        });
    }
    Ok(Sample {
        body_len: line.len(),
        body: object,
        headers: http::HeaderMap::new(),
        account: "acc_simulated".into(),
        key: "key_simulated".into(),
    })
}

/// Decides every request of `input`, writes one line per decision (JSON objects when
/// `json`) and the shares to `out`. Returns the number of requests that could not be
/// routed.
pub fn simulate(
    config: &Config,
    input: impl BufRead,
    out: &mut impl Write,
    json_lines: bool,
) -> Result<usize, String> {
    let health = Health::default();
    let limits = KeyLimits::default();
    let now = std::time::Instant::now();
    let mut by_model: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_provider: BTreeMap<String, usize> = BTreeMap::new();
    let mut routed = 0usize;
    let mut failed = 0usize;
    let write_err = |e: std::io::Error| e.to_string();
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        let n = n + 1;
        let s = sample(&line).map_err(|e| format!("line {n}: {e}"))?;
        // Read as the gateway reads a request (a request it would refuse is an error).
        let mut chat = ChatRequest::from_map(s.body).map_err(|e| format!("line {n}: {e}"))?;
        let steering = chat.take_steering().map_err(|e| format!("line {n}: {e}"))?;
        let requested = chat.model.clone();
        let caller = Caller {
            account_id: &s.account,
            key_id: &s.key,
            limits: &limits,
        };
        let input = RouteInput::of_chat(
            &chat,
            caller,
            &s.headers,
            &steering,
            estimate_tokens(s.body_len),
        );
        let features = input.features;
        match decide(config, &input, &health, now) {
            Ok(decision) => {
                routed += 1;
                let first = &decision.targets[0];
                let model = &config.models[first.model];
                *by_model.entry(model.id.clone()).or_default() += 1;
                *by_provider.entry(model.provider.clone()).or_default() += 1;
                if json_lines {
                    let mut v =
                        tokenroute_proxy::route::explain(config, &requested, &features, &decision);
                    v["line"] = json!(n);
                    writeln!(out, "{v}").map_err(write_err)?;
                } else {
                    let order: Vec<String> = decision
                        .targets
                        .iter()
                        .map(|t| {
                            format!("{}@{}", config.models[t.model].id, endpoint_key(config, t))
                        })
                        .collect();
                    writeln!(
                        out,
                        "{n}\t{requested}\t-> {}\trule={}\tfingerprint={}:{:016x}\torder={}",
                        model.id,
                        decision.rule.as_deref().unwrap_or("-"),
                        decision.fingerprint.source.as_str(),
                        decision.fingerprint.hash,
                        order.join(",")
                    )
                    .map_err(write_err)?;
                }
            }
            Err(e) => {
                failed += 1;
                if json_lines {
                    writeln!(
                        out,
                        "{}",
                        json!({"line": n, "requested": requested, "error": e.to_string()})
                    )
                    .map_err(write_err)?;
                } else {
                    writeln!(out, "{n}\t{requested}\tERROR {e}").map_err(write_err)?;
                }
            }
        }
    }
    if !json_lines {
        writeln!(
            out,
            "\nconfig {}: {routed} routed, {failed} not routable",
            config.routing_version
        )
        .map_err(write_err)?;
        for (title, counts) in [("model", &by_model), ("provider", &by_provider)] {
            writeln!(out, "share by {title}:").map_err(write_err)?;
            for (name, count) in counts {
                writeln!(
                    out,
                    "  {name:<40} {count:>9} {:>7.2}%",
                    *count as f64 * 100.0 / routed.max(1) as f64
                )
                .map_err(write_err)?;
            }
        }
    }
    Ok(failed)
}
