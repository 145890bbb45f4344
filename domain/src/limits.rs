//! Per-key limits: rates, spend caps and the models a key may use.

use serde::{Deserialize, Serialize};

use crate::money::NanoUsd;

/// What a key may do. `None` everywhere means "no limit".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLimits {
    /// Requests per minute (sliding 60-second window).
    pub rpm: Option<u64>,
    /// Tokens (input + output) per minute (sliding 60-second window).
    pub tpm: Option<u64>,
    /// Spend per UTC calendar day.
    pub spend_per_day: Option<NanoUsd>,
    /// Spend per UTC calendar month.
    pub spend_per_month: Option<NanoUsd>,
    /// Spend over the key's lifetime.
    pub spend_total: Option<NanoUsd>,
    /// Model ids the key may use; `None` allows every model.
    pub allowed_models: Option<Vec<String>>,
}

impl KeyLimits {
    pub fn allows_model(&self, model: &str) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|models| models.iter().any(|m| m == model))
    }

    pub fn has_spend_caps(&self) -> bool {
        self.spend_per_day.is_some() || self.spend_per_month.is_some() || self.spend_total.is_some()
    }
}
