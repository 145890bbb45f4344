//! TokenRoute's validated configuration.
//!
//! A TOML file (see `conf/tokenroute.toml`, which is also the built-in default) is read
//! into [`raw::RawConfig`] and then checked into [`Config`]. Every error names the key
//! path and the problem, so a bad config stops start-up with a message a person can act on.

mod error;
mod raw;
mod routing;
mod validate;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::ConfigError;
pub use routing::{Candidate, Route, RoutingSettings, Rule, RuleAction, RuleMatch};

use crate::money::{NanoUsd, Price};
use crate::secret::Secret;

/// The built-in default: the embedded store (SQLite under `./data`), the mock provider.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../../conf/tokenroute.toml");

#[derive(Debug, Clone)]
pub struct Config {
    pub proxy: ProxyConfig,
    pub control_plane: ControlPlaneConfig,
    pub store: StoreConfig,
    pub redis: Option<RedisConfig>,
    /// Dashboard sign-in (Logto or any OpenID Connect issuer); `None`: sign-in is off.
    pub oidc: Option<OidcConfig>,
    /// Credit top-ups through Stripe Checkout; `None`: top-ups are off.
    pub stripe: Option<StripeConfig>,
    /// Outgoing email (policy-change notices); `None`: no email is sent.
    pub email: Option<EmailConfig>,
    pub usage: UsageConfig,
    pub log: LogConfig,
    pub backup: BackupConfig,
    pub metrics: MetricsConfig,
    pub providers: Vec<Provider>,
    pub models: Vec<Model>,
    /// Fallback, retry budget and health knobs.
    pub routing: RoutingSettings,
    /// Virtual models (`tokenroute-auto`, ...): TokenRoute picks among candidates.
    pub routes: Vec<Route>,
    /// Other names for models and routes.
    pub aliases: std::collections::BTreeMap<String, String>,
    /// Ordered routing rules; the first whose conditions hold fires.
    pub rules: Vec<Rule>,
    /// A digest of everything routing depends on: equal versions route equally.
    pub routing_version: String,
    models_by_id: HashMap<String, usize>,
    providers_by_id: HashMap<String, usize>,
    routes_by_id: HashMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub threads: usize,
    pub max_body_bytes: usize,
    pub upstream_connect_timeout: Duration,
    /// Longest wait for the next bytes from a provider (first byte included).
    pub upstream_read_timeout: Duration,
    /// How long an authenticated key is trusted from memory before the store is asked
    /// again, while the node hears changes (Redis broadcast or the store's change log);
    /// while it does not, at most 1 s.
    pub key_cache_ttl: Duration,
    /// How often a node without Redis reads the store's change log (key and account
    /// changes made elsewhere): about how long a revoked key keeps working.
    pub change_poll: Duration,
    /// How often an active account's balance is re-read from the ledger.
    pub balance_refresh: Duration,
    pub grace_period: Duration,
    /// Requests of one account in flight at once; more get 429.
    pub max_concurrent_per_account: usize,
    /// The Unix socket a graceful upgrade hands the listening sockets over through
    /// (`tokenroute proxy --upgrade`, then SIGQUIT to the old process).
    pub upgrade_socket: PathBuf,
    /// Request bodies nested deeper than this (arrays and objects) are refused (400).
    pub max_json_depth: usize,
    /// Chat requests with more messages than this are refused (400).
    pub max_messages: usize,
    /// Request line and headers larger than this are refused (431).
    pub max_header_bytes: usize,
    /// Requests with more header fields than this are refused (431).
    pub max_headers: usize,
    /// The whole request body must arrive within this (408), so slow clients cannot
    /// hold requests open.
    pub client_body_timeout: Duration,
    /// A request's headers must be in within this of its first byte (HTTP/1.1; the
    /// connection is closed otherwise), so slow clients cannot hold connections.
    pub client_header_timeout: Duration,
    /// Requests of one client address in flight at once; more get 429.
    pub max_concurrent_per_client: usize,
    /// Connections one client address (the TCP peer; not a trusted proxy) holds open.
    pub max_connections_per_client: usize,
    /// Failed authentications of one client address per minute before its requests
    /// with keys not already in memory get 429 (without reaching the store).
    pub failed_auth_per_client_per_minute: u32,
    /// HTTP/2 beside HTTP/1.1: negotiated by ALPN over TLS, prior knowledge (h2c) over
    /// plain TCP.
    pub http2: bool,
    /// Serve the API over TLS with this certificate chain and key (PEM files,
    /// re-read when they change).
    pub tls: Option<TlsFiles>,
    /// Verify providers' certificates against this CA bundle (PEM) instead of the
    /// system's (private deployments).
    pub upstream_ca_file: Option<PathBuf>,
}

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ControlPlaneConfig {
    pub listen: SocketAddr,
    /// The address people reach the dashboard at, without a trailing slash: sign-in
    /// callbacks and Stripe's return pages are built from it. An `https` URL makes the
    /// session cookie `Secure`; plain `http` is allowed for loopback hosts only.
    pub public_url: String,
    /// Signed-in users with one of these emails (lower-cased) are admins.
    pub admin_emails: Vec<String>,
    /// The dashboard's certificate and key, when it serves TLS itself (else plain
    /// HTTP, e.g. behind a TLS-terminating load balancer).
    pub tls: Option<TlsFiles>,
}

impl ControlPlaneConfig {
    /// Whether the session cookie carries `Secure` (everything but plain-http localhost).
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer URL, exactly as the provider's discovery document states it
    /// (Logto: `https://<tenant>/oidc`).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret<String>,
    pub scopes: Vec<String>,
    /// Users whose ID token lists this role in its `roles` claim are admins.
    pub admin_role: Option<String>,
    /// Logto's Management API, to delete the user when their account is deleted.
    pub management: Option<LogtoManagement>,
}

/// A Logto machine-to-machine application allowed to use the Management API.
#[derive(Debug, Clone)]
pub struct LogtoManagement {
    /// The tenant's base URL, without a trailing slash (e.g. `https://tenant.logto.app`).
    pub endpoint: String,
    /// The API resource indicator (Logto Cloud: `https://default.logto.app/api`).
    pub resource: String,
    pub client_id: String,
    pub client_secret: Secret<String>,
}

/// An SMTP server to send email through.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// `smtps://user@host:465`, `smtp://host:587?tls=required`, or plain `smtp://host:25`.
    pub smtp_url: String,
    /// The SMTP password, when the URL names a user.
    pub password: Option<Secret<String>>,
    /// The sender, e.g. `TokenRoute <noreply@example.com>`.
    pub from: String,
}

#[derive(Debug, Clone)]
pub struct StripeConfig {
    pub secret_key: Secret<String>,
    /// The endpoint's signing secret (`whsec_...`), for `Stripe-Signature`.
    pub webhook_secret: Secret<String>,
    /// Stripe's API, without a trailing slash (tests point it at a fake).
    pub api_base: String,
    pub min_topup: NanoUsd,
    pub max_topup: NanoUsd,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub url: String,
    pub max_connections: u32,
}

/// Redis, for state shared by several proxy nodes: key and account changes broadcast,
/// rate limits, concurrency caps and credit reservations counted across the fleet.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// One server (`url`), or a Redis Cluster's seed nodes (`cluster-nodes`).
    pub nodes: Vec<Secret<String>>,
    pub cluster: bool,
    pub on_outage: RedisOutage,
    /// How long one Redis call may take before it counts as an outage.
    pub timeout: Duration,
    /// How long an in-flight request's credit hold lives without its node renewing it
    /// (a node that dies frees its holds after this).
    pub hold_lease: Duration,
    /// How long a settled (metered, not yet in the store) request's charge stays held.
    pub settled_lease: Duration,
    /// Prefix of every key TokenRoute writes, so one Redis can serve several fleets.
    pub key_prefix: String,
}

/// What the data plane does while Redis does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisOutage {
    /// Each node counts limits and holds credit on its own (a fleet of N may then let
    /// through N times a limit) and says so in a metric and a warning.
    Local,
    /// Requests that need shared state are refused with 503 until Redis is back.
    Refuse,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsageConfig {
    pub channel_capacity: usize,
    pub batch_size: usize,
    /// The usage writer commits at most once per this long while it keeps up (a full
    /// batch goes at once): fewer, larger transactions.
    pub commit_interval: Duration,
    /// How many nice steps (0–19) the usage writer's thread and its store connections
    /// run below the process's priority, so that commits yield the core to requests.
    pub writer_nice: i32,
    /// Where metered events wait, fsynced, until the store has them.
    pub spool_dir: PathBuf,
    /// Past this many bytes waiting, new requests are refused with 503.
    pub spool_max_bytes: u64,
    pub spool_segment_bytes: u64,
    /// When the spool is fsynced, and so what an answer waits for.
    pub fsync: SpoolFsync,
}

/// When the usage spool is fsynced (`usage.fsync`). Either way an answer's end waits
/// until its usage is written to the spool file, which outlives a crash of the process
/// (`kill -9`, a panic, the OOM killer): the kernel holds what was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolFsync {
    /// The answer's end also waits for the fsync (one serves every request that
    /// finished meanwhile): a crash of the machine loses nothing either, and every
    /// answer pays the disk's fsync latency.
    PerAnswer,
    /// A background thread fsyncs what was written at most this often: answers do not
    /// wait for the disk, and a crash of the machine (power, kernel) can lose the usage
    /// of the answers of this last period.
    Periodic(Duration),
}

/// Prometheus metrics of both planes, served at `http://{listen}/metrics`.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
}

/// Database backups ([P13]).
#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// Where backup files go.
    pub dir: PathBuf,
    /// How many are kept (the oldest beyond this are deleted).
    pub keep: usize,
    /// Whether the control plane takes one every night.
    pub nightly: bool,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A `tracing` filter directive, e.g. `info` or `tokenroute_proxy=debug,info`.
    pub level: String,
    /// `text` (human) or `json` (one object per line, for log pipelines).
    pub json: bool,
    /// Where the daily access log files go ([P5]; kept 30 days).
    pub access_log_dir: PathBuf,
    /// Peers whose `X-Forwarded-For` is believed (load balancers in front).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI or any upstream speaking its Chat Completions API (Groq, DeepSeek, vLLM, ...).
    OpenAi,
    /// Anthropic's Messages API (`x-api-key` authentication).
    Anthropic,
    /// Google's Gemini API, generateContent (`x-goog-api-key` authentication).
    Gemini,
    /// Built in, no network: deterministic OpenAI-shaped answers, for trying TokenRoute out.
    Mock,
}

/// Where a provider's HTTP API lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash, e.g. `/v1`.
    pub base_path: String,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub id: String,
    pub kind: ProviderKind,
    /// Where the provider is reached: `default` (its `base-url`) first, then any
    /// others (regions, keys). Never empty.
    pub endpoints: Vec<ProviderEndpoint>,
    /// Extra headers sent with every upstream request (e.g. an organisation id).
    pub headers: Vec<(String, String)>,
}

/// One place a provider is reached, with its own key.
#[derive(Debug, Clone)]
pub struct ProviderEndpoint {
    /// `default` for the provider's `base-url`, else as configured.
    pub id: String,
    /// `provider/endpoint`: what breakers, rules and metrics name it by.
    pub key: String,
    /// `None` only for the mock provider.
    pub url: Option<Endpoint>,
    pub api_key: Option<Secret<String>>,
    /// A region name rules can select (e.g. `eu`).
    pub region: Option<String>,
    /// Share of the provider's traffic relative to its other endpoints.
    pub weight: u32,
}

#[derive(Debug, Clone)]
pub struct Model {
    /// `provider/model`, what clients put in `model`.
    pub id: String,
    pub provider: String,
    /// The name sent to the provider.
    pub upstream: String,
    pub price: Price,
    pub context_window: u64,
    /// Used for the worst-case reservation when the request sets no `max_tokens`.
    pub max_output_tokens: u64,
    /// What the model can do, as `GET /v1/models` lists it.
    pub capabilities: Vec<Capability>,
}

/// Something a model can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    Tools,
    Vision,
    Json,
    Streaming,
    Embeddings,
}

impl Capability {
    /// What a chat model is assumed to do when its config says nothing.
    pub const ALL: [Capability; 4] = [
        Capability::Tools,
        Capability::Vision,
        Capability::Json,
        Capability::Streaming,
    ];

    pub fn parse(name: &str) -> Option<Capability> {
        Some(match name {
            "tools" => Capability::Tools,
            "vision" => Capability::Vision,
            "json" => Capability::Json,
            "streaming" => Capability::Streaming,
            "embeddings" => Capability::Embeddings,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Tools => "tools",
            Capability::Vision => "vision",
            Capability::Json => "json",
            Capability::Streaming => "streaming",
            Capability::Embeddings => "embeddings",
        }
    }
}

impl Config {
    /// Reads and validates `path`, or the built-in default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(path, &|k| std::env::var(k).ok())
    }

    /// As [`Config::load`], resolving `api-key-env` variables through `env`.
    pub fn load_with_env(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    file: path.display().to_string(),
                    message: e.to_string(),
                })?;
                Self::from_toml(&text, &path.display().to_string(), env)
            }
            None => Self::from_toml(DEFAULT_CONFIG_TOML, "<built-in default>", env),
        }
    }

    /// Parses and validates TOML text. `env` resolves `api-key-env` variables (a
    /// function so tests need not touch the process environment).
    pub fn from_toml(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let raw: raw::RawConfig =
            serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Invalid {
                file: file.to_string(),
                path: e.path().to_string(),
                message: e.inner().message().to_string(),
            })?;
        validate::validate(raw, env).map_err(|(path, message)| ConfigError::Invalid {
            file: file.to_string(),
            path,
            message,
        })
    }

    pub fn model(&self, id: &str) -> Option<&Model> {
        self.models_by_id.get(id).map(|&i| &self.models[i])
    }

    pub fn provider(&self, id: &str) -> Option<&Provider> {
        self.providers_by_id.get(id).map(|&i| &self.providers[i])
    }

    /// The index of a model in [`Config::models`].
    pub fn model_index(&self, id: &str) -> Option<usize> {
        self.models_by_id.get(id).copied()
    }

    /// The index of a provider in [`Config::providers`].
    pub fn provider_index(&self, id: &str) -> Option<usize> {
        self.providers_by_id.get(id).copied()
    }

    pub fn route(&self, id: &str) -> Option<&Route> {
        self.routes_by_id.get(id).map(|&i| &self.routes[i])
    }

    /// What `name` stands for: the target of an alias, else `name` itself.
    pub fn resolve_alias<'a>(&'a self, name: &'a str) -> &'a str {
        self.aliases.get(name).map_or(name, String::as_str)
    }

    /// The SQLite database file named by the store URL, when the store is SQLite.
    pub fn sqlite_path(&self) -> Option<&str> {
        sqlite_path(&self.store.url)
    }
}

/// The file path of a `sqlite:` URL (`sqlite://data/x.db?mode=rwc` → `data/x.db`).
pub fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    Some(rest.split('?').next().unwrap_or(rest))
}

#[cfg(test)]
mod tests;
