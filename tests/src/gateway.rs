//! A TokenRoute under test: both planes in this process on free ports, pointed at a
//! fake provider and a fresh store. Stopped (fast) when dropped.

use std::time::{Duration, Instant};

use tokenroute::{launch_with_listener, Planes, Running, Stop};
use tokenroute_domain::api_key::ApiKey;
use tokenroute_domain::config::Config;
use tokenroute_domain::{KeyLimits, NanoUsd, UsageEvent};
use tokenroute_store::{LedgerKind, NewKey, Store};

use crate::{free_port, refusing_port, Backend, FakeOpenAi, TestDb};

/// The provider key the gateway is configured with; clients never see it.
pub const PROVIDER_KEY: &str = "sk-test-provider-key";

/// Knobs tests turn; everything else is the production default.
#[derive(Clone, Debug)]
pub struct Options {
    pub max_body_bytes: usize,
    pub read_timeout_ms: u64,
    pub key_cache_ttl_ms: u64,
    pub max_concurrent_per_account: usize,
    /// More keys of the `[proxy]` section (e.g. `max-json-depth`).
    pub proxy_toml: String,
    /// More keys of the `[control-plane]` section (e.g. `admin-emails`).
    pub control_plane_toml: String,
    /// More keys of the `[log]` section (e.g. `trusted-proxies`).
    pub log_toml: String,
    /// More keys of the `[usage]` section (e.g. `commit-interval-ms`).
    pub usage_toml: String,
    /// More config (e.g. `[oidc]`, `[stripe]` sections), appended to the file.
    pub extra_toml: String,
    /// The `[routing]` section's keys. Default: no active health checks and a circuit
    /// breaker that never opens, so that suites about other things see every
    /// upstream failure as it is; routing suites set their own.
    pub routing_toml: String,
    /// Environment variables the config may name (`*-env` keys).
    pub env: Vec<(String, String)>,
    /// The control plane's port (default: a free one), for tests that must name the
    /// dashboard's URL before it starts (the OIDC redirect URI).
    pub control_plane_port: Option<u16>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_body_bytes: 16 * 1024 * 1024,
            read_timeout_ms: 10_000,
            key_cache_ttl_ms: 60_000,
            max_concurrent_per_account: 256,
            proxy_toml: String::new(),
            control_plane_toml: String::new(),
            log_toml: String::new(),
            usage_toml: String::new(),
            extra_toml: String::new(),
            routing_toml: "health-check-interval-ms = 0\nbreaker-failures = 1000000\n".into(),
            env: Vec::new(),
            control_plane_port: None,
        }
    }
}

pub struct Gateway {
    /// `http://127.0.0.1:PORT`, the data plane.
    pub base: String,
    /// `http://127.0.0.1:PORT`, the control plane.
    pub control_plane: String,
    /// `http://127.0.0.1:PORT/metrics`, both planes' Prometheus metrics.
    pub metrics: String,
    /// A separate connection to the gateway's store, for assertions.
    pub store: Store,
    pub config: Config,
    running: Option<Running>,
    _db: TestDb,
    /// Keeps the `dead` providers' port refusing.
    _dead: tokio::net::TcpSocket,
}

impl Gateway {
    pub async fn start(backend: Backend, fake: &FakeOpenAi) -> Gateway {
        Self::start_with(backend, fake, Options::default()).await
    }

    pub async fn start_with(backend: Backend, fake: &FakeOpenAi, opts: Options) -> Gateway {
        Self::start_with_listener(backend, fake, opts, None).await
    }

    /// As [`Gateway::start_with`], the control plane on a socket the caller bound (so
    /// its port is known, and kept, before start-up: no other test can take it).
    pub async fn start_with_listener(
        backend: Backend,
        fake: &FakeOpenAi,
        mut opts: Options,
        control_plane: Option<std::net::TcpListener>,
    ) -> Gateway {
        if let Some(listener) = &control_plane {
            opts.control_plane_port = Some(listener.local_addr().unwrap().port());
        }
        keep_logs_for_the_scan();
        let db = TestDb::new(backend).await;
        let (dead, dead_port) = refusing_port();
        let toml = format!(
            r#"
[proxy]
listen = "127.0.0.1:{port}"
threads = 2
max-body-bytes = {max_body}
upstream-connect-timeout-ms = 2000
upstream-read-timeout-ms = {read_timeout}
key-cache-ttl-ms = {ttl}
grace-period-secs = 0
max-concurrent-requests-per-account = {max_concurrent}
{proxy_extra}

[control-plane]
listen = "127.0.0.1:{cp_port}"
{cp_extra}

[store]
url = "{url}"

[usage]
spool-dir = "{spool}"
{usage_extra}

[metrics]
listen = "127.0.0.1:0"

[backup]
dir = "{backups}"
# Backups are proven in tests/policy; a pg_dump per test start would only cost time.
nightly = false

[log]
level = "warn"
access-log-dir = "{access_logs}"
{log_extra}

[routing]
{routing}

[[providers]]
id = "openai"
kind = "openai"
base-url = "{fake}"
api-key-env = "PROVIDER_KEY"

[[providers]]
id = "anthropic"
kind = "anthropic"
base-url = "{fake}"
api-key-env = "PROVIDER_KEY"

[[providers]]
id = "gemini"
kind = "gemini"
base-url = "{fake_gemini}"
api-key-env = "PROVIDER_KEY"

[[providers]]
id = "dead"
kind = "openai"
base-url = "http://127.0.0.1:{dead}/v1"

[[providers]]
id = "dead-anthropic"
kind = "anthropic"
base-url = "http://127.0.0.1:{dead}/v1"

[[providers]]
id = "dead-gemini"
kind = "gemini"
base-url = "http://127.0.0.1:{dead}/v1beta"

[[models]]
id = "openai/gpt-4o-mini"
upstream = "gpt-4o-mini"
input-usd-per-mtok = "0.15"
output-usd-per-mtok = "0.60"
context-window = 128000
max-output-tokens = 16384

[[models]]
id = "anthropic/claude-3-5-haiku"
upstream = "claude-3-5-haiku-20241022"
input-usd-per-mtok = "0.80"
output-usd-per-mtok = "4.00"
context-window = 200000
max-output-tokens = 8192

[[models]]
id = "gemini/gemini-2.0-flash"
upstream = "gemini-2.0-flash"
input-usd-per-mtok = "0.10"
output-usd-per-mtok = "0.40"
context-window = 1048576
max-output-tokens = 8192

[[models]]
id = "openai/text-embedding-3-small"
upstream = "text-embedding-3-small"
input-usd-per-mtok = "0.02"
output-usd-per-mtok = "0"
context-window = 8191
max-output-tokens = 1

[[models]]
id = "gemini/text-embedding-004"
upstream = "text-embedding-004"
input-usd-per-mtok = "0.01"
output-usd-per-mtok = "0"
context-window = 2048
max-output-tokens = 1

[[models]]
id = "dead/model"
input-usd-per-mtok = "1"
output-usd-per-mtok = "1"
context-window = 1000

[[models]]
id = "dead-anthropic/model"
input-usd-per-mtok = "1"
output-usd-per-mtok = "1"
context-window = 1000

[[models]]
id = "dead-gemini/model"
input-usd-per-mtok = "1"
output-usd-per-mtok = "1"
context-window = 1000

{extra}
"#,
            extra = opts.extra_toml,
            routing = opts.routing_toml,
            cp_extra = opts.control_plane_toml,
            proxy_extra = opts.proxy_toml,
            log_extra = opts.log_toml,
            usage_extra = opts.usage_toml,
            cp_port = opts.control_plane_port.unwrap_or_else(free_port),
            port = free_port(),
            max_body = opts.max_body_bytes,
            read_timeout = opts.read_timeout_ms,
            ttl = opts.key_cache_ttl_ms,
            max_concurrent = opts.max_concurrent_per_account,
            url = db.url,
            spool = db.dir.path().join("spool").display(),
            access_logs = db.dir.path().join("access-logs").display(),
            backups = db.dir.path().join("backups").display(),
            fake = fake.base_url(),
            fake_gemini = fake.gemini_base_url(),
            dead = dead_port,
        );
        let config = Config::from_toml(&toml, "test", &|var| {
            if var == "PROVIDER_KEY" {
                return Some(PROVIDER_KEY.to_string());
            }
            opts.env
                .iter()
                .find(|(k, _)| k == var)
                .map(|(_, v)| v.clone())
        })
        .unwrap();
        let launch_config = config.clone();
        // launch() runs its own runtime: start it from a plain thread.
        let running = std::thread::spawn(move || {
            launch_with_listener(
                launch_config,
                Planes {
                    proxy: true,
                    control_plane: true,
                },
                control_plane,
            )
        })
        .join()
        .unwrap()
        .unwrap();
        let store = Store::connect(&db.url, 2).await.unwrap();
        Gateway {
            base: format!("http://{}", running.proxy_addr.unwrap()),
            control_plane: format!("http://{}", running.control_plane_addr.unwrap()),
            metrics: format!("http://{}/metrics", running.metrics_addr.unwrap()),
            store,
            config,
            running: Some(running),
            _db: db,
            _dead: dead,
        }
    }

    /// The folder of the gateway's usage spool.
    pub fn spool_dir(&self) -> std::path::PathBuf {
        self.config.usage.spool_dir.clone()
    }

    /// The folder of the gateway's access log files.
    pub fn access_log_dir(&self) -> std::path::PathBuf {
        self.config.log.access_log_dir.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The value of one series of `/metrics` — its name with its labels as exported,
    /// e.g. `tokenroute_key_cache_lookups_total{result="unknown"}` — or 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = reqwest::get(&self.metrics)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0.0, |v| v.parse::<f64>().unwrap())
    }

    /// Creates an account with `credits_usd` of credit and a key, as
    /// `tokenroute keys create` does. Returns (plaintext key, account id, key id).
    pub async fn key_with_credits(
        &self,
        email: &str,
        credits_usd: &str,
    ) -> (String, String, String) {
        self.key_with_limits(email, credits_usd, KeyLimits::default())
            .await
    }

    /// As [`Gateway::key_with_credits`], for a key with these limits.
    pub async fn key_with_limits(
        &self,
        email: &str,
        credits_usd: &str,
        limits: KeyLimits,
    ) -> (String, String, String) {
        let account = self.store.upsert_account_by_email(email).await.unwrap();
        let amount = NanoUsd::parse_usd(credits_usd).unwrap();
        if amount.is_positive() {
            let reference = tokenroute_store::new_id();
            self.store
                .book(
                    &account.id,
                    LedgerKind::Adjustment,
                    amount,
                    &reference,
                    Some("test"),
                )
                .await
                .unwrap();
        }
        let key = ApiKey::generate();
        let record = self
            .store
            .create_key(
                &NewKey {
                    account_id: &account.id,
                    name: "test",
                    limits,
                },
                &key,
            )
            .await
            .unwrap();
        (key.plaintext().to_string(), account.id, record.id)
    }

    /// Waits (up to 10 s) until the account has `n` usage rows, and returns them.
    pub async fn wait_usage(&self, account_id: &str, n: usize) -> Vec<UsageEvent> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let rows = self.store.usage_of_account(account_id, 1000).await.unwrap();
            if rows.len() >= n || Instant::now() > deadline {
                assert_eq!(rows.len(), n, "usage rows for the account");
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The price of the test model, for computing expected costs.
    pub fn price(&self, model: &str) -> tokenroute_domain::Price {
        self.config.model(model).unwrap().price
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = std::thread::spawn(move || running.stop(Stop::Fast)).join();
        }
    }
}

/// With `TOKENROUTE_TEST_LOGS` set (the test command sets it), everything this test
/// process's gateways log — both planes, at debug level — goes to a file there, which
/// the test command scans for keys after the whole suite. Once per process.
fn keep_logs_for_the_scan() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Some(dir) = std::env::var_os("TOKENROUTE_TEST_LOGS") else {
            return;
        };
        let binary = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "tests".into());
        let path = std::path::Path::new(&dir).join(format!("{binary}-{}.log", std::process::id()));
        let Ok(file) = std::fs::File::create(path) else {
            return;
        };
        let filter = tracing_subscriber::EnvFilter::new(
            "debug,sqlx=info,h2=info,hyper=info,hyper_util=info,rustls=info,tokio_postgres=info,\
             html5ever=info,selectors=info,fantoccini=info,reqwest=info,cookie_store=info",
        );
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .try_init();
    });
}
