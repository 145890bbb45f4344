//! Reading HTML forms and query strings, and formatting for pages.

use std::collections::HashMap;

use axum::extract::{FromRequest, Request};
use axum::Form;
use tokenroute_domain::{KeyLimits, NanoUsd};

use super::WebError;
use crate::error::ApiError;

/// A form's fields in order (repeated names kept: checkboxes).
pub struct Fields(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Form::<Vec<(String, String)>>::from_request(req, state)
            .await
            .map(|Form(fields)| Fields(fields))
            .map_err(|e| WebError::Status(e.status(), e.body_text()))
    }
}

impl Fields {
    /// The first value of `name`, trimmed; `None` when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The key limits of the limits fieldset (`dashboard/templates/limits_fields.html`).
    pub fn limits(&self, known_model: impl Fn(&str) -> bool) -> Result<KeyLimits, ApiError> {
        let count = |name: &str, what: &str| -> Result<Option<u64>, ApiError> {
            self.get(name)
                .map(|v| {
                    v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        ApiError::BadRequest(format!("{what} must be a positive whole number"))
                    })
                })
                .transpose()
        };
        let usd = |name: &str, what: &str| -> Result<Option<NanoUsd>, ApiError> {
            self.get(name)
                .map(|v| {
                    NanoUsd::parse_usd(v.trim_start_matches('$'))
                        .ok()
                        .filter(|n| n.is_positive())
                        .ok_or_else(|| {
                            ApiError::BadRequest(format!("{what} must be a positive USD amount"))
                        })
                })
                .transpose()
        };
        let models = self.all("models");
        if let Some(unknown) = models.iter().find(|m| !known_model(m)) {
            return Err(ApiError::BadRequest(format!("`{unknown}` is not a model")));
        }
        Ok(KeyLimits {
            rpm: count("rpm", "Requests per minute")?,
            tpm: count("tpm", "Tokens per minute")?,
            spend_per_day: usd("daily_usd", "The daily limit")?,
            spend_per_month: usd("monthly_usd", "The monthly limit")?,
            spend_total: usd("total_usd", "The total limit")?,
            allowed_models: (!models.is_empty()).then_some(models),
        })
    }
}

/// Query parameters as a map (first value wins).
pub type Query = HashMap<String, String>;

pub use tokenroute_domain::clock::{parse_ymd as parse_date, ymd as date};

/// Unix ms → `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// A short human summary of a key's limits.
pub fn limits_summary(l: &KeyLimits) -> String {
    let mut parts = Vec::new();
    if let Some(n) = l.rpm {
        parts.push(format!("{n} req/min"));
    }
    if let Some(n) = l.tpm {
        parts.push(format!("{n} tok/min"));
    }
    if let Some(n) = l.spend_per_day {
        parts.push(format!("{n}/day"));
    }
    if let Some(n) = l.spend_per_month {
        parts.push(format!("{n}/month"));
    }
    if let Some(n) = l.spend_total {
        parts.push(format!("{n} in all"));
    }
    if let Some(m) = &l.allowed_models {
        parts.push(format!("models: {}", m.join(", ")));
    }
    if parts.is_empty() {
        "no limits".to_string()
    } else {
        parts.join(" · ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_in_utc() {
        let ms = parse_date("2026-11-29").unwrap();
        assert_eq!(ms, 1_795_910_400_000);
        assert_eq!(date(ms), "2026-11-29");
        assert_eq!(parse_date("29/11/2026"), None);
    }

    #[test]
    fn limits_come_from_the_form() {
        let fields = Fields(vec![
            ("rpm".into(), "60".into()),
            ("tpm".into(), "".into()),
            ("daily_usd".into(), "$2.50".into()),
            ("models".into(), "a/b".into()),
            ("models".into(), "c/d".into()),
        ]);
        let limits = fields.limits(|_| true).unwrap();
        assert_eq!(limits.rpm, Some(60));
        assert_eq!(limits.tpm, None);
        assert_eq!(
            limits.spend_per_day,
            Some(NanoUsd::parse_usd("2.5").unwrap())
        );
        assert_eq!(limits.allowed_models.unwrap(), ["a/b", "c/d"]);
        let bad = Fields(vec![("rpm".into(), "-1".into())]);
        assert!(bad.limits(|_| true).is_err());
        let unknown = Fields(vec![("models".into(), "x/y".into())]);
        assert!(unknown.limits(|_| false).is_err());
    }
}
