//! A client steering routing per request, in the shape OpenRouter users know: a
//! `models` fallback list and a `provider` object (`order`, `only`, `ignore`,
//! `allow_fallbacks`, `sort`, `max_price`). Both are taken out of the body: no
//! provider sees them.

use serde_json::{Map, Value};
use tokenroute_domain::NanoUsd;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Cheapest first (input + output price per token).
    Price,
    /// Fastest first (the endpoint's recent time to first byte).
    Latency,
}

#[derive(Debug, Clone, Default)]
pub struct Steering {
    /// Models (or routes, or aliases) to fall back to, in order, after the requested one.
    pub models: Vec<String>,
    /// Providers to try first, in this order.
    pub order: Vec<String>,
    /// Only these providers.
    pub only: Option<Vec<String>>,
    /// Never these providers.
    pub ignore: Vec<String>,
    /// `false`: no provider outside `order` (or beyond the first choice).
    pub allow_fallbacks: bool,
    pub sort: Option<Sort>,
    /// Price caps, per 1M input / output tokens.
    pub max_input_price: Option<NanoUsd>,
    pub max_output_price: Option<NanoUsd>,
}

impl Steering {
    pub const NONE: Steering = Steering {
        models: Vec::new(),
        order: Vec::new(),
        only: None,
        ignore: Vec::new(),
        allow_fallbacks: true,
        sort: None,
        max_input_price: None,
        max_output_price: None,
    };

    /// Takes `models` and `provider` out of `body`. A malformed value is the client's
    /// to fix: the error names the parameter.
    pub fn take(body: &mut Map<String, Value>) -> Result<Steering, (&'static str, String)> {
        let mut steering = Steering::NONE;
        if let Some(models) = body.remove("models") {
            steering.models = strings(&models).ok_or((
                "models",
                "`models` must be an array of model ids.".to_string(),
            ))?;
        }
        let Some(provider) = body.remove("provider") else {
            return Ok(steering);
        };
        let Value::Object(p) = provider else {
            return Err(("provider", "`provider` must be an object.".into()));
        };
        for (name, value) in p {
            let bad = |what: &str| ("provider", format!("`provider.{name}` must be {what}."));
            match name.as_str() {
                "order" => {
                    steering.order =
                        strings(&value).ok_or_else(|| bad("an array of provider ids"))?
                }
                "only" => {
                    steering.only =
                        Some(strings(&value).ok_or_else(|| bad("an array of provider ids"))?)
                }
                "ignore" => {
                    steering.ignore =
                        strings(&value).ok_or_else(|| bad("an array of provider ids"))?
                }
                "allow_fallbacks" => {
                    steering.allow_fallbacks = value.as_bool().ok_or_else(|| bad("a boolean"))?
                }
                "sort" => {
                    steering.sort = Some(match value.as_str() {
                        Some("price") => Sort::Price,
                        Some("latency" | "throughput") => Sort::Latency,
                        _ => return Err(bad("`price`, `latency` or `throughput`")),
                    })
                }
                "max_price" => {
                    let Value::Object(prices) = value else {
                        return Err(bad(
                            "an object with `prompt` and `completion` (USD per 1M tokens)",
                        ));
                    };
                    for (which, price) in prices {
                        let usd = match &price {
                            Value::Number(n) => NanoUsd::parse_usd(&n.to_string()),
                            Value::String(s) => NanoUsd::parse_usd(s),
                            _ => return Err(bad("a price in USD per 1M tokens")),
                        }
                        .map_err(|e| ("provider", format!("`provider.max_price.{which}`: {e}")))?;
                        match which.as_str() {
                            "prompt" => steering.max_input_price = Some(usd),
                            "completion" => steering.max_output_price = Some(usd),
                            // Per-request and per-image prices do not exist here.
                            _ => {}
                        }
                    }
                }
                // Other OpenRouter preferences (data_collection, quantizations, ...)
                // have no meaning here and are ignored, as unknown ones are there.
                _ => {}
            }
        }
        Ok(steering)
    }

    /// Whether the client allows `provider`.
    pub fn allows_provider(&self, provider: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|p| p == provider))
            && !self.ignore.iter().any(|p| p == provider)
    }
}

fn strings(value: &Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steering_is_taken_out_of_the_body() {
        let mut body: Map<String, Value> = serde_json::from_str(
            r#"{"model":"m","models":["a/b"],"provider":{"order":["x"],"allow_fallbacks":false,"sort":"price","max_price":{"prompt":1,"completion":"2.5"}}}"#,
        )
        .unwrap();
        let s = Steering::take(&mut body).unwrap();
        assert!(!body.contains_key("models") && !body.contains_key("provider"));
        assert_eq!(s.models, ["a/b"]);
        assert_eq!(s.order, ["x"]);
        assert!(!s.allow_fallbacks);
        assert_eq!(s.sort, Some(Sort::Price));
        assert_eq!(s.max_input_price, Some(NanoUsd::parse_usd("1").unwrap()));
        assert_eq!(s.max_output_price, Some(NanoUsd::parse_usd("2.5").unwrap()));
        let mut bad: Map<String, Value> =
            serde_json::from_str(r#"{"provider":{"only":"x"}}"#).unwrap();
        assert_eq!(Steering::take(&mut bad).unwrap_err().0, "provider");
    }
}
