//! `GET /v1/models`: the configured models, with what a client needs to choose one,
//! then the routes (`tokenroute-auto`, ...) with their candidates, then the aliases.

use serde_json::{json, Value};
use tokenroute_domain::config::Config;
use tokenroute_domain::NanoUsd;

pub fn list(config: &Config) -> Vec<u8> {
    let data: Vec<Value> = config
        .models
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "object": "model",
                "created": 0,
                "owned_by": m.provider,
                "context_window": m.context_window,
                "max_output_tokens": m.max_output_tokens,
                "pricing": {
                    "input_usd_per_mtok": usd(m.price.input_per_mtok),
                    "output_usd_per_mtok": usd(m.price.output_per_mtok),
                    "cached_input_usd_per_mtok": usd(m.price.cached_input_per_mtok.unwrap_or(m.price.input_per_mtok)),
                },
                "capabilities": m.capabilities.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            })
        })
        .chain(config.routes.iter().map(|r| {
            json!({
                "id": r.id,
                "object": "model",
                "created": 0,
                "owned_by": "tokenroute",
                "description": r.description,
                "routing": {
                    "candidates": r.candidates.iter().filter(|c| c.weight > 0).map(|c| json!({
                        "model": c.model,
                        "weight": c.weight,
                    })).collect::<Vec<_>>(),
                    "config_version": config.routing_version,
                },
            })
        }))
        .chain(config.aliases.iter().map(|(alias, target)| {
            json!({
                "id": alias,
                "object": "model",
                "created": 0,
                "owned_by": "tokenroute",
                "alias_of": target,
            })
        }))
        .collect();
    json!({"object": "list", "data": data})
        .to_string()
        .into_bytes()
}

/// A price as a decimal string without the `$`, e.g. `"0.15"`.
fn usd(n: NanoUsd) -> String {
    n.to_string().replacen('$', "", 1)
}
