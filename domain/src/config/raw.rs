//! The config file format: TOML, kebab-case keys, unknown keys refused.
//!
//! These types are the file's front end only; [`super::Config`] is what the rest of
//! TokenRoute sees, after validation. Every field is documented in `conf/tokenroute.toml`.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawConfig {
    #[serde(default)]
    pub proxy: RawProxy,
    #[serde(default)]
    pub control_plane: RawControlPlane,
    #[serde(default)]
    pub store: RawStore,
    pub redis: Option<RawRedis>,
    pub oidc: Option<RawOidc>,
    pub stripe: Option<RawStripe>,
    pub email: Option<RawEmail>,
    #[serde(default)]
    pub usage: RawUsage,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub backup: RawBackup,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawProxy {
    pub listen: Option<String>,
    pub threads: Option<usize>,
    pub max_body_bytes: Option<usize>,
    pub upstream_connect_timeout_ms: Option<u64>,
    pub upstream_read_timeout_ms: Option<u64>,
    pub key_cache_ttl_ms: Option<u64>,
    pub change_poll_ms: Option<u64>,
    pub balance_refresh_ms: Option<u64>,
    pub grace_period_secs: Option<u64>,
    pub max_concurrent_requests_per_account: Option<usize>,
    pub upgrade_socket: Option<String>,
    pub max_json_depth: Option<usize>,
    pub max_messages: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub max_headers: Option<usize>,
    pub client_body_timeout_ms: Option<u64>,
    pub client_header_timeout_ms: Option<u64>,
    pub max_concurrent_requests_per_client: Option<usize>,
    pub max_connections_per_client: Option<usize>,
    pub failed_auth_per_client_per_minute: Option<u32>,
    pub http2: Option<bool>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub upstream_ca_file: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawControlPlane {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub admin_emails: Option<Vec<String>>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawOidc {
    pub issuer: String,
    pub client_id: String,
    pub client_secret_env: String,
    pub scopes: Option<Vec<String>>,
    pub admin_role: Option<String>,
    pub management: Option<RawLogtoManagement>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLogtoManagement {
    pub endpoint: String,
    pub resource: Option<String>,
    pub client_id: String,
    pub client_secret_env: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawEmail {
    pub smtp_url: String,
    pub password_env: Option<String>,
    pub from: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawStripe {
    pub secret_key_env: String,
    pub webhook_secret_env: String,
    pub api_base: Option<String>,
    pub min_topup_usd: Option<String>,
    pub max_topup_usd: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawStore {
    pub url: Option<String>,
    pub max_connections: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRedis {
    pub url: Option<String>,
    pub cluster_nodes: Option<Vec<String>>,
    pub on_outage: Option<String>,
    pub timeout_ms: Option<u64>,
    pub hold_lease_ms: Option<u64>,
    pub settled_lease_ms: Option<u64>,
    pub key_prefix: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawUsage {
    pub channel_capacity: Option<usize>,
    pub batch_size: Option<usize>,
    pub commit_interval_ms: Option<u64>,
    pub writer_nice: Option<i32>,
    pub spool_dir: Option<String>,
    pub spool_max_bytes: Option<u64>,
    pub spool_segment_bytes: Option<u64>,
    pub fsync: Option<String>,
    pub fsync_period_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawMetrics {
    pub listen: Option<String>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawBackup {
    pub dir: Option<String>,
    pub keep: Option<usize>,
    pub nightly: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLog {
    pub level: Option<String>,
    pub format: Option<String>,
    pub access_log_dir: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawProvider {
    pub id: String,
    pub kind: String,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The region of the endpoint at `base-url`.
    pub region: Option<String>,
    /// The weight of the endpoint at `base-url` among the provider's endpoints.
    pub weight: Option<u32>,
    /// More endpoints of the same provider (other regions, other keys).
    #[serde(default)]
    pub endpoints: Vec<RawEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawEndpoint {
    pub id: String,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub region: Option<String>,
    pub weight: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRouting {
    pub max_attempts: Option<usize>,
    pub deadline_ms: Option<u64>,
    pub retry_budget_percent: Option<u32>,
    pub retry_budget_min_per_sec: Option<u32>,
    pub breaker_failures: Option<u32>,
    pub breaker_open_ms: Option<u64>,
    pub health_check_interval_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRoute {
    pub id: String,
    pub description: Option<String>,
    pub candidates: Vec<RawCandidate>,
    pub max_input_usd_per_mtok: Option<String>,
    pub max_output_usd_per_mtok: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCandidate {
    pub model: String,
    pub weight: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRule {
    pub name: String,
    #[serde(default)]
    pub when: RawRuleMatch,
    pub then: RawRuleAction,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRuleMatch {
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub tools: Option<bool>,
    pub images: Option<bool>,
    pub stream: Option<bool>,
    pub min_prompt_tokens: Option<u64>,
    pub max_prompt_tokens: Option<u64>,
    pub percent: Option<RawNumber>,
}

/// A TOML number, integer or float (`percent = 5` and `percent = 0.5` both read).
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(untagged)]
pub enum RawNumber {
    Int(i64),
    Float(f64),
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRuleAction {
    pub candidates: Option<Vec<RawCandidate>>,
    #[serde(default)]
    pub weights: BTreeMap<String, u32>,
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub endpoints: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawModel {
    pub id: String,
    pub upstream: Option<String>,
    pub input_usd_per_mtok: String,
    pub output_usd_per_mtok: String,
    pub cached_input_usd_per_mtok: Option<String>,
    pub capabilities: Option<Vec<String>>,
    pub context_window: u64,
    pub max_output_tokens: Option<u64>,
}
