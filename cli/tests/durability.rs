//! Nothing metered is lost or charged twice: the proxy killed with SIGKILL in the
//! middle of a load, and Postgres stopped for 30 s during one. Each runs the real
//! `tokenroute` binary (mock provider) and checks, afterwards, that every request
//! that got a complete answer has exactly one usage row and one ledger debit, and
//! that `tokenroute ledger verify` is clean.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{assert_each_billed_once, free_port, with_config, Database, BIN};

fn write_config(dir: &Path, store_url: &str) -> (PathBuf, u16) {
    let (path, port, _) = write_config_with_dashboard(dir, store_url);
    (path, port)
}

/// The config, the API port and the control plane's port.
fn write_config_with_dashboard(dir: &Path, store_url: &str) -> (PathBuf, u16, u16) {
    write_config_with_usage(dir, store_url, "")
}

/// The same, with `usage` (TOML lines) added to its `[usage]` table.
fn write_config_with_usage(dir: &Path, store_url: &str, usage: &str) -> (PathBuf, u16, u16) {
    let port = free_port();
    let cp = free_port();
    let text = format!(
        r#"
[proxy]
listen = "127.0.0.1:{port}"
threads = 2
grace-period-secs = 0
[control-plane]
listen = "127.0.0.1:{cp}"
[store]
url = "{store_url}"
max-connections = 4
[usage]
spool-dir = "{spool}"
{usage}
[log]
level = "warn"
access-log-dir = "{access_logs}"
[backup]
dir = "{backups}"
[metrics]
listen = "127.0.0.1:0"
[[providers]]
id = "mock"
kind = "mock"
[[models]]
id = "mock/echo"
input-usd-per-mtok = "0.15"
output-usd-per-mtok = "0.60"
context-window = 128000
max-output-tokens = 1000
"#,
        spool = dir.join("spool").display(),
        access_logs = dir.join("access-logs").display(),
        backups = dir.join("backups").display(),
    );
    let path = dir.join("tokenroute.toml");
    std::fs::write(&path, text).unwrap();
    (path, port, cp)
}

struct Proxy(Child);

impl Proxy {
    fn start(config: &Path, port: u16) -> Proxy {
        Self::run(config, port, "proxy")
    }

    /// `tokenroute <command>` (`proxy` or `serve`), once the API port accepts.
    fn run(config: &Path, port: u16, command: &str) -> Proxy {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(config)
            .arg(command)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null());
        common::log_to_suite_or_discard(&mut cmd, "durability");
        let child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "proxy did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Proxy(child)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends requests from `workers` tasks until `stop`; returns the generation ids of
/// the requests that got a complete answer (whole JSON, or a stream up to [DONE]),
/// with when they completed.
async fn load(
    port: u16,
    key: String,
    workers: usize,
    stop: Arc<AtomicBool>,
) -> Vec<(Instant, String)> {
    let done = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (key, stop, done) = (key.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .unwrap();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let stream = (w + i).is_multiple_of(2);
                    let body = format!(
                        r#"{{"model":"mock/echo","stream":{stream},"messages":[{{"role":"user","content":"worker {w} request {i}"}}]}}"#
                    );
                    let sent = client
                        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
                        .bearer_auth(&key)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    let Ok(resp) = sent else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    if resp.status() != 200 {
                        continue;
                    }
                    let id = resp.headers()["x-tokenroute-generation-id"].to_str().unwrap().to_string();
                    let Ok(text) = resp.text().await else { continue };
                    let complete = if stream {
                        text.ends_with("data: [DONE]\n\n")
                    } else {
                        serde_json::from_str::<serde_json::Value>(&text).is_ok()
                    };
                    if complete {
                        done.lock().unwrap().push((Instant::now(), id));
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let ids = done.lock().unwrap().clone();
    ids
}

fn create_key(config: &Path, email: &str) -> String {
    let out = with_config(
        config,
        &["keys", "create", "--email", email, "--credits", "100"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string()
}

/// `usage`: lines for the config's `[usage]` table.
async fn kill_9_mid_load(store_url: String, dir: &Path, usage: &str) {
    let (config, port, _) = write_config_with_usage(dir, &store_url, usage);
    let key = create_key(&config, "crash@example.com");
    let mut ids = Vec::new();
    // Three crashes in a row, each in the middle of 64 clients' requests.
    for round in 0..3 {
        let mut proxy = Proxy::start(&config, port);
        let stop = Arc::new(AtomicBool::new(false));
        let loader = tokio::spawn(load(port, key.clone(), 64, stop.clone()));
        tokio::time::sleep(Duration::from_millis(1000 + 300 * round)).await;
        proxy.0.kill().unwrap(); // SIGKILL: no shutdown, no flush
        proxy.0.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        ids.extend(loader.await.unwrap().into_iter().map(|(_, id)| id));
    }
    assert!(ids.len() > 100, "the load ran: {} answers", ids.len());

    // Restart on the same spool: what the killed processes spooled is replayed.
    let _proxy = Proxy::start(&config, port);
    assert_each_billed_once(&store_url, &config, "crash@example.com", &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_kill_9_mid_load_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/tokenroute.db", dir.path().display());
    kill_9_mid_load(url, dir.path(), "").await;
}

/// With `usage.fsync = "periodic"` answers do not wait for the fsync, only for the
/// write: what a killed process wrote is still in the file, so nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_periodic_fsync_kill_9_mid_load_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/tokenroute.db", dir.path().display());
    // A long period: the killed processes' last writes are not fsynced yet.
    let usage = "fsync = \"periodic\"\nfsync-period-ms = 500";
    kill_9_mid_load(url, dir.path(), usage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_kill_9_mid_load_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create().await;
    kill_9_mid_load(db.url.clone(), dir.path(), "").await;
    db.drop_now().await;
}

/// A Postgres server of this test's own, so that it can be stopped.
struct OwnPostgres {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl OwnPostgres {
    fn start(parent: &Path) -> OwnPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect(
                "PostgreSQL server binaries under /usr/lib/postgresql (scripts/test installs them)",
            )
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|p| p.join("initdb").exists())
            .expect("initdb");
        let dir = parent.join("pg");
        std::fs::create_dir_all(&dir).unwrap();
        let as_postgres = |args: &[&str]| {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres", parent.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(status.success());
            let out = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        as_postgres(&[
            bin.join("initdb").to_str().unwrap(),
            "-D",
            dir.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
        ]);
        let pg = OwnPostgres {
            dir,
            port: free_port(),
            bin,
        };
        pg.ctl("start");
        pg
    }

    fn ctl(&self, action: &str) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        let mut args = vec![
            self.bin.join("pg_ctl").to_str().unwrap().to_string(),
            "-D".into(),
            self.dir.to_str().unwrap().into(),
            "-w".into(),
            "-l".into(),
            log.to_str().unwrap().into(),
        ];
        if action == "stop" {
            args.extend(["-m".into(), "fast".into()]);
        } else {
            args.extend(["-o".into(), options]);
        }
        args.push(action.into());
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", self.dir.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_down_for_30_seconds_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pg = OwnPostgres::start(dir.path());
    let (config, port) = write_config(dir.path(), &pg.url());
    let key = create_key(&config, "outage@example.com");
    let _proxy = Proxy::start(&config, port);
    let stop = Arc::new(AtomicBool::new(false));
    let loader = tokio::spawn(load(port, key, 4, stop.clone()));

    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = Instant::now();
    pg.ctl("stop");
    tokio::time::sleep(Duration::from_secs(30)).await;
    pg.ctl("start");
    let outage = before.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let answered = loader.await.unwrap();
    assert!(outage >= Duration::from_secs(30));
    let during = answered
        .iter()
        .filter(|(at, _)| {
            *at > before + Duration::from_secs(1) && *at < before + Duration::from_secs(30)
        })
        .count();
    assert!(
        during > 100,
        "requests kept succeeding while Postgres was down: {during}"
    );
    let ids: Vec<String> = answered.into_iter().map(|(_, id)| id).collect();
    assert_each_billed_once(&pg.url(), &config, "outage@example.com", &ids).await;
}

/// `/readyz` of both planes follows the store: 503 while Postgres is down, 200 again
/// when it is back (while `/healthz` says alive throughout).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_flips_with_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let pg = OwnPostgres::start(dir.path());
    let (config, port, cp) = write_config_with_dashboard(dir.path(), &pg.url());
    let _serve = Proxy::run(&config, port, "serve");
    let client = reqwest::Client::new();
    let status = |url: String| {
        let client = client.clone();
        async move {
            client
                .get(url)
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    let planes = [
        format!("http://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{cp}"),
    ];
    let wait_for = |want: u16| {
        let planes = planes.clone();
        let status = &status;
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            for plane in &planes {
                loop {
                    let got = status(format!("{plane}/readyz")).await;
                    if got == want {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{plane}/readyz stayed {got}, not {want}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    };
    wait_for(200).await;
    pg.ctl("stop");
    wait_for(503).await;
    for plane in &planes {
        assert_eq!(
            status(format!("{plane}/healthz")).await,
            200,
            "alive while not ready"
        );
    }
    pg.ctl("start");
    wait_for(200).await;
}
