//! The `tokenroute` command: run the planes, migrate the store, manage keys, check configs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tokenroute::{launch, launch_upgrading, Planes};
use tokenroute_domain::api_key::ApiKey;
use tokenroute_domain::config::Config;
use tokenroute_domain::{KeyLimits, NanoUsd};
use tokenroute_store::{LedgerKind, NewKey, Store};

/// mimalloc instead of the system allocator: the request path allocates and frees
/// many small buffers (headers, JSON, events) on one thread, which glibc's malloc
/// serves slower (measured under load: allocation was ~8% of the data plane's CPU).
/// Built without transparent huge pages (see the workspace's `Cargo.toml`): they
/// doubled the memory an open stream holds.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// TokenRoute: a metered LLM API gateway.
///
/// With no --config, TokenRoute uses its built-in default (conf/tokenroute.toml): data in
/// ./data (SQLite), the API on http://127.0.0.1:8080/v1, the dashboard on
/// http://127.0.0.1:8081, Prometheus metrics on http://127.0.0.1:9090/metrics, and the
/// built-in `mock` provider.
#[derive(Parser)]
#[command(name = "tokenroute", version)]
struct Cli {
    /// Config file (TOML). Default: the built-in configuration.
    #[arg(
        long,
        short,
        global = true,
        env = "TOKENROUTE_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    /// Overrides `store.url` (e.g. postgres://user@host/db or sqlite://path/to.db).
    #[arg(long, global = true, env = "TOKENROUTE_STORE_URL", value_name = "URL")]
    store_url: Option<String>,
    /// With serve or proxy: take over from the running TokenRoute on the same config
    /// without dropping a connection. Start this, then send the old process SIGQUIT:
    /// it hands over its listening sockets (through `proxy.upgrade-socket`), lets its
    /// in-flight requests and streams finish, writes its usage and exits.
    #[arg(long, global = true)]
    upgrade: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the data plane and the control plane in one process.
    Serve,
    /// Run the data plane (the /v1 API) only.
    Proxy,
    /// Run the control plane (dashboard and its JSON API) only.
    ControlPlane,
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Create, list and revoke API keys; set their limits.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check the credit ledger.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Validate configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Inspect routing without calling any provider.
    #[command(subcommand)]
    Route(RouteCommand),
    /// Back the database up into one file (pg_dump custom format, or a SQLite copy);
    /// keeps the newest `backup.keep` in the folder.
    Backup {
        /// Where to write it (default: `backup.dir` of the config).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Restore a backup made by `tokenroute backup`, replacing the database's contents.
    /// Stop TokenRoute first (for SQLite the database file is replaced).
    Restore {
        /// The backup file (`tokenroute-<time>.dump` or `.sqlite`).
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create an API key (and the account, if new); print it once, alone on the last line.
    Create(CreateKey),
    /// List an account's keys (never the keys themselves: they are stored as hashes).
    List {
        /// The account's email.
        #[arg(long)]
        email: String,
    },
    /// Revoke a key by id. Its hash is kept forever, so it can never work again.
    Revoke {
        /// The key id, as `keys list` shows it.
        id: String,
    },
    /// Set a key's limits to exactly these (a limit not given is removed).
    SetLimits {
        /// The key id, as `keys list` shows it.
        id: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Recompute every balance from the ledger and check every usage debit against its
    /// usage row; print discrepancies and exit 1 if there are any.
    Verify,
}

/// Per-key limits. Rates are over a sliding minute; spend caps over the UTC day, the
/// UTC month and the key's lifetime.
#[derive(Args, Default)]
struct LimitArgs {
    /// Requests per minute.
    #[arg(long, value_name = "N")]
    rpm: Option<u64>,
    /// Tokens (input + output) per minute.
    #[arg(long, value_name = "N")]
    tpm: Option<u64>,
    /// Spend cap per UTC day, in USD.
    #[arg(long, value_name = "USD")]
    daily_usd: Option<String>,
    /// Spend cap per UTC calendar month, in USD.
    #[arg(long, value_name = "USD")]
    monthly_usd: Option<String>,
    /// Spend cap over the key's lifetime, in USD.
    #[arg(long, value_name = "USD")]
    total_usd: Option<String>,
    /// Models the key may use, comma-separated (default: all).
    #[arg(long, value_name = "MODEL,...", value_delimiter = ',')]
    models: Option<Vec<String>>,
}

impl LimitArgs {
    fn to_limits(&self) -> Result<KeyLimits, String> {
        let usd = |flag: &str, v: &Option<String>| -> Result<Option<NanoUsd>, String> {
            v.as_deref()
                .map(|text| {
                    let amount = NanoUsd::parse_usd(text).map_err(|e| format!("--{flag}: {e}"))?;
                    if amount.nanos() < 0 {
                        return Err(format!("--{flag} must not be negative"));
                    }
                    Ok(amount)
                })
                .transpose()
        };
        Ok(KeyLimits {
            rpm: self.rpm,
            tpm: self.tpm,
            spend_per_day: usd("daily-usd", &self.daily_usd)?,
            spend_per_month: usd("monthly-usd", &self.monthly_usd)?,
            spend_total: usd("total-usd", &self.total_usd)?,
            allowed_models: self.models.clone(),
        })
    }
}

#[derive(Args)]
struct CreateKey {
    /// The account's email; the account is created if there is none.
    #[arg(long)]
    email: String,
    /// Credit to add to the account, in USD (e.g. 10 or 2.50), booked in the ledger.
    #[arg(long, value_name = "USD")]
    credits: Option<String>,
    /// A name to recognise the key by.
    #[arg(long, default_value = "default")]
    name: String,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Subcommand)]
enum RouteCommand {
    /// Route sample requests by the config (--config, or the built-in one) and print
    /// each decision, then the traffic shares by model and provider. Exit 1 if any
    /// request could not be routed.
    Simulate {
        /// JSON lines: each a chat completion body, or
        /// {"request": BODY, "headers": {...}, "account": "...", "key": "..."}.
        #[arg(long, value_name = "FILE.jsonl")]
        requests: PathBuf,
        /// One JSON object per decision (as POST /v1/route/explain answers) instead of
        /// the table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check config files; print what is wrong, naming the key. Exit 1 if any is invalid.
    Check {
        /// Files to check. Default: the --config file, or the built-in configuration.
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    if let Command::Config(ConfigCommand::Check { files }) = &cli.command {
        return check_configs(files, cli.config.as_deref());
    }
    let mut config = Config::load(cli.config.as_deref()).map_err(|e| e.to_string())?;
    if let Command::Route(RouteCommand::Simulate { requests, json }) = &cli.command {
        return simulate(&config, requests, *json);
    }
    let config_file = cli.config.clone();
    let store_url = cli.store_url.clone();
    if let Some(url) = cli.store_url {
        config.store.url = url;
    }
    init_logging(&config.log.level, config.log.json);
    match cli.command {
        Command::Serve => serve(
            config,
            config_file.clone(),
            store_url.clone(),
            cli.upgrade,
            Planes {
                proxy: true,
                control_plane: true,
            },
        ),
        Command::Proxy => serve(
            config,
            config_file.clone(),
            store_url.clone(),
            cli.upgrade,
            Planes {
                proxy: true,
                control_plane: false,
            },
        ),
        Command::ControlPlane => serve(
            config,
            config_file.clone(),
            store_url.clone(),
            cli.upgrade,
            Planes {
                proxy: false,
                control_plane: true,
            },
        ),
        Command::Migrate => with_store(&config, |store| async move {
            store.migrate().await.map_err(|e| e.to_string())?;
            eprintln!("store is up to date");
            Ok(())
        }),
        Command::Keys(cmd) => keys(&config, cmd),
        Command::Ledger(LedgerCommand::Verify) => {
            with_store(&config, |store| async move { verify_ledger(&store).await })
        }
        Command::Config(_) | Command::Route(_) => Ok(()),
        Command::Backup { dir } => {
            let url = config.store.url.clone();
            let dir = dir.unwrap_or_else(|| config.backup.dir.clone());
            let keep = config.backup.keep;
            with_store(&config, |store| async move {
                let file = store
                    .backup(&url, &dir, tokenroute_domain::clock::now_ms(), keep)
                    .await
                    .map_err(|e| e.to_string())?;
                eprintln!(
                    "backup written; the newest {keep} in {} are kept",
                    dir.display()
                );
                #[allow(clippy::print_stdout)]
                {
                    println!("{}", file.display());
                }
                Ok(())
            })
        }
        Command::Restore { file } => {
            tokenroute_store::backup::restore(&config.store.url, &file)
                .map_err(|e| e.to_string())?;
            eprintln!("restored {}; start TokenRoute again", file.display());
            Ok(())
        }
    }
}

fn serve(
    config: Config,
    config_file: Option<PathBuf>,
    store_url: Option<String>,
    upgrade: bool,
    planes: Planes,
) -> Result<(), String> {
    let running = if upgrade {
        launch_upgrading(config, planes)
    } else {
        launch(config, planes)
    }
    .map_err(|e| e.to_string())?;
    // Routing follows the file: reloaded on SIGHUP and when it changes.
    running.watch_config(config_file, store_url);
    if running.proxy_addr.is_some() && running.control_plane_addr.is_some() {
        tracing::info!(
            "create a key with: tokenroute keys create --email you@example.com --credits 5"
        );
    }
    running.wait_for_signal_then_stop();
    Ok(())
}

fn simulate(config: &Config, requests: &Path, json: bool) -> Result<(), String> {
    let file = std::fs::File::open(requests)
        .map_err(|e| format!("cannot read {}: {e}", requests.display()))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let failed =
        tokenroute::simulate::simulate(config, std::io::BufReader::new(file), &mut out, json)?;
    out.flush().map_err(|e| e.to_string())?;
    if failed > 0 {
        return Err(format!("{failed} request(s) could not be routed"));
    }
    Ok(())
}

fn keys(config: &Config, cmd: KeysCommand) -> Result<(), String> {
    with_store(config, |store| async move {
        match cmd {
            KeysCommand::Create(args) => create_key(&store, args).await,
            KeysCommand::List { email } => list_keys(&store, &email).await,
            KeysCommand::SetLimits { id, limits } => {
                let limits = limits.to_limits()?;
                store
                    .set_key_limits(&id, &limits)
                    .await
                    .map_err(|e| e.to_string())?;
                eprintln!("limits set; running proxies apply them within proxy.change-poll-ms (at once with [redis])");
                Ok(())
            }
            KeysCommand::Revoke { id } => {
                let was_active = store.revoke_key(&id).await.map_err(|e| e.to_string())?;
                eprintln!(
                    "{}",
                    if was_active {
                        "key revoked"
                    } else {
                        "key was already revoked"
                    }
                );
                Ok(())
            }
        }
    })
}

async fn create_key(store: &Store, args: CreateKey) -> Result<(), String> {
    if !args.email.contains('@') {
        return Err(format!("`{}` is not an email address", args.email));
    }
    let credits = match &args.credits {
        Some(text) => {
            let amount = NanoUsd::parse_usd(text).map_err(|e| format!("--credits: {e}"))?;
            if !amount.is_positive() {
                return Err("--credits must be greater than 0".into());
            }
            Some(amount)
        }
        None => None,
    };
    let limits = args.limits.to_limits()?;
    let account = store
        .upsert_account_by_email(&args.email)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(amount) = credits {
        let reference = tokenroute_store::new_id();
        store
            .book(
                &account.id,
                LedgerKind::Adjustment,
                amount,
                &reference,
                Some("credited by `tokenroute keys create`"),
            )
            .await
            .map_err(|e| e.to_string())?;
    }
    let key = ApiKey::generate();
    let record = store
        .create_key(
            &NewKey {
                account_id: &account.id,
                name: &args.name,
                limits,
            },
            &key,
        )
        .await
        .map_err(|e| e.to_string())?;
    let balance = store
        .balance(&account.id)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let lines = [
        format!(
            "Created key \"{}\" (id {}) for {}.",
            record.name, record.id, account.email
        ),
        format!("Account balance: {balance}."),
        "This is the only time the key is shown; TokenRoute keeps only its SHA-256:".to_string(),
        key.plaintext().to_string(),
    ];
    for line in lines {
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn list_keys(store: &Store, email: &str) -> Result<(), String> {
    let account = store
        .account_by_email(email)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no account with email {email}"))?;
    let keys = store
        .keys_of_account(&account.id)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let write = |out: &mut std::io::StdoutLock, line: String| {
        writeln!(out, "{line}").map_err(|e| e.to_string())
    };
    write(
        &mut out,
        format!("{:<36}  {:<16}  {:<14}  {}", "ID", "NAME", "KEY", "STATUS"),
    )?;
    for k in keys {
        let status = if k.revoked_at_ms.is_some() {
            "revoked"
        } else {
            "active"
        };
        write(
            &mut out,
            format!(
                "{:<36}  {:<16}  {}...{}  {}",
                k.id, k.name, k.display_prefix, k.last_four, status
            ),
        )?;
    }
    Ok(())
}

async fn verify_ledger(store: &Store) -> Result<(), String> {
    let report = store.verify_ledger().await.map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let mut say = |line: String| writeln!(out, "{line}").map_err(|e| e.to_string());
    say(format!(
        "{} accounts, {} usage rows, {} ledger entries checked",
        report.accounts, report.usage_rows, report.ledger_entries
    ))?;
    for (account, balance) in &report.balances {
        if balance.nanos() < 0 {
            say(format!("note: account {account} is below zero: {balance}"))?;
        }
    }
    for d in &report.discrepancies {
        say(format!(
            "DISCREPANCY account {} ({}): {}",
            d.account_id, d.reference, d.problem
        ))?;
    }
    if report.discrepancies.is_empty() {
        say("ledger verified: every balance and every usage debit reconciles".into())?;
        Ok(())
    } else {
        Err(format!("{} discrepancies", report.discrepancies.len()))
    }
}

fn check_configs(files: &[PathBuf], global: Option<&Path>) -> Result<(), String> {
    let targets: Vec<Option<&Path>> = if files.is_empty() {
        vec![global]
    } else {
        files.iter().map(|f| Some(f.as_path())).collect()
    };
    let mut failed = 0;
    for target in targets {
        let name = target.map_or("<built-in default>".to_string(), |p| {
            p.display().to_string()
        });
        // Provider keys are secrets that CI and laptops do not hold: a variable that is
        // not set is reported, not fatal, here (start-up still refuses it).
        let unset = std::cell::RefCell::new(Vec::new());
        let env = |var: &str| {
            std::env::var(var).ok().or_else(|| {
                unset.borrow_mut().push(var.to_string());
                Some("unset".to_string())
            })
        };
        match Config::load_with_env(target, &env) {
            Ok(_) => {
                eprintln!("ok: {name}");
                for var in unset.borrow().iter() {
                    eprintln!(
                        "  note: environment variable {var} is not set here; start-up needs it"
                    );
                }
            }
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(format!("{failed} invalid config file(s)"));
    }
    Ok(())
}

/// Runs a store task on a small runtime, migrating first (so a fresh data directory works).
fn with_store<F, Fut>(config: &Config, task: F) -> Result<(), String>
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let store = Store::open(&config.store.url, 2)
            .await
            .map_err(|e| e.to_string())?;
        // Changes made here (revocations, credits) reach every node at once.
        let (store, _shared) =
            tokenroute_proxy::shared::attach(config, store, &prometheus::Registry::new())
                .map_err(|e| e.to_string())?;
        let result = task(store.clone()).await;
        store.close().await;
        result
    })
}

fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        logs.json().flatten_event(true).init();
    } else {
        logs.init();
    }
}
