//! Helpers shared by the binary's test suites: running `tokenroute` as a user does.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tokenroute");

pub fn tokenroute(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("TOKENROUTE_CONFIG")
        .env_remove("TOKENROUTE_STORE_URL")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The built-in default with free ports instead of 8080/8081 (tests run in parallel).
pub fn default_config_on_free_ports(dir: &Path) -> (std::path::PathBuf, u16) {
    let port = free_port();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../conf/tokenroute.toml"
    ))
    .unwrap()
    .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
    .replace("127.0.0.1:8081", &format!("127.0.0.1:{}", free_port()))
    .replace("grace-period-secs = 5", "grace-period-secs = 0")
    .replace("127.0.0.1:9090", "127.0.0.1:0");
    let path = dir.join("tokenroute.toml");
    std::fs::write(&path, text).unwrap();
    (path, port)
}

pub fn last_line(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string()
}

pub struct Serve(pub Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "serve did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Serve {
    /// Sends the process a signal (`"-TERM"`, `"-QUIT"`, `"-HUP"`).
    pub fn signal(&self, signal: &str) {
        let pid = self.0.id().to_string();
        assert!(Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Waits up to `within` for the process to exit (without blocking the runtime).
    pub async fn exited(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the process did not stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `tokenroute --config CONFIG ARGS...`, as a user runs it.
pub fn with_config(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// Waits until every id has its usage row, then checks: one row and one debit each,
/// and a clean `ledger verify`.
pub async fn assert_each_billed_once(
    store_url: &str,
    config: &Path,
    account_email: &str,
    ids: &[String],
) {
    let store = tokenroute_store::Store::connect(store_url, 2)
        .await
        .unwrap();
    let account = store
        .account_by_email(account_email)
        .await
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let rows = store
            .usage_of_account(&account.id, 1_000_000)
            .await
            .unwrap();
        let have: std::collections::HashSet<&str> =
            rows.iter().map(|r| r.request_id.as_str()).collect();
        let missing = ids.iter().filter(|id| !have.contains(id.as_str())).count();
        if missing == 0 {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} answered requests have no usage row"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut seen = std::collections::HashMap::new();
    for r in &rows {
        *seen.entry(r.request_id.as_str()).or_insert(0) += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "a request recorded twice");
    // Each request is charged by one usage debit of its account (one per batch the
    // writer wrote); `ledger verify` below checks each debit is exactly its rows' sum.
    let debits: std::collections::HashSet<String> = store
        .ledger(&account.id, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "usage")
        .map(|e| e.reference)
        .collect();
    for id in ids {
        let debit = store.debit_of_request(id).await.unwrap();
        let debit = debit.unwrap_or_else(|| panic!("request {id}: no debit"));
        assert!(
            debits.contains(&debit.reference),
            "request {id}: debit of its account"
        );
    }
    let verify = with_config(config, &["ledger", "verify"]);
    assert!(
        verify.status.success(),
        "ledger verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// The log filter of served processes whose log the suite keeps: everything TokenRoute
/// and Pingora say at debug level, the chattiest libraries at info.
const SUITE_LOG_FILTER: &str =
    "debug,sqlx=info,h2=info,hyper=info,hyper_util=info,rustls=info,tokio_postgres=info";

/// Sends a served process's log (`name`, e.g. `scale-out-node`) to the suite's log
/// folder when the test command names one (`TOKENROUTE_TEST_LOGS`), at debug level, for
/// the scan for keys after the suite; returns false when there is none.
pub fn log_to_suite(cmd: &mut Command, name: &str) -> bool {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let Some(dir) = std::env::var_os("TOKENROUTE_TEST_LOGS") else {
        return false;
    };
    let file = Path::new(&dir).join(format!(
        "{name}-{}-{}.log",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    cmd.env("RUST_LOG", SUITE_LOG_FILTER)
        .stderr(std::fs::File::create(file).unwrap());
    true
}

/// As [`log_to_suite`], else the log goes nowhere.
pub fn log_to_suite_or_discard(cmd: &mut Command, name: &str) {
    if !log_to_suite(cmd, name) {
        cmd.stderr(Stdio::null());
    }
}

/// A fresh Postgres database on the suite's server, dropped at the end.
pub struct Database {
    pub url: String,
    admin: String,
    name: String,
}

impl Database {
    pub async fn create() -> Database {
        let admin = std::env::var("TOKENROUTE_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        let name = format!("tokenroute_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        Database { url, admin, name }
    }

    pub async fn drop_now(self) {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&self.admin)
            .await
            .unwrap();
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await;
    }
}
