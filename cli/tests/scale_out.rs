//! Scale-out: several `tokenroute proxy` processes sharing Postgres and Redis behave
//! as one. Each test runs real processes of the binary on one machine, a fresh
//! Postgres database, and Redis (the suite's server under a key prefix of its own,
//! or a server or Cluster the test starts itself when it must stop it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{assert_each_billed_once, free_port, wait_for_port, with_config, Database, BIN};
use tokenroute_domain::NanoUsd;
use tokenroute_store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What each answer of the slow provider costs: 10 prompt tokens at $0.15/M and
/// 5 completion tokens at $0.60/M.
const COST_NANOS: i64 = 10 * 150 + 5 * 600;

/// A provider that answers every chat completion after `delay`, OpenAI-style, with a
/// fixed usage (so every request costs [`COST_NANOS`]). Returns its port.
async fn slow_provider(delay: Duration) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                loop {
                    // One request: headers, then content-length bytes of body.
                    let (head_end, length) = loop {
                        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                        let mut chunk = [0u8; 4096];
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    };
                    while buffer.len() < head_end + length {
                        let mut chunk = [0u8; 4096];
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buffer.drain(..head_end + length);
                    tokio::time::sleep(delay).await;
                    let body = r#"{"id":"chatcmpl-slow","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// How the nodes reach Redis.
#[derive(Clone)]
enum Redis {
    Server(u16),
    Cluster(Vec<u16>),
}

/// One `tokenroute proxy` process and its config.
struct Node {
    config: PathBuf,
    port: u16,
    metrics: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn start(&mut self) {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&self.config)
            .arg("proxy")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null());
        if !common::log_to_suite(&mut cmd, "scale-out-node") {
            cmd.stderr(std::fs::File::create(&self.log).unwrap());
        }
        self.child = Some(cmd.spawn().unwrap());
        wait_for_port(self.port);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/chat/completions", self.port)
    }

    async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// N proxy nodes on one database and one Redis.
struct Fleet {
    dir: tempfile::TempDir,
    db: Option<Database>,
    nodes: Vec<Node>,
    prefix: String,
    redis: Redis,
}

struct Options {
    nodes: usize,
    redis: Redis,
    /// `redis.on-outage` per node (default `local`).
    on_outage: Vec<&'static str>,
    provider_delay: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: 3,
            redis: Redis::Server(6379),
            on_outage: Vec::new(),
            provider_delay: Duration::from_millis(50),
        }
    }
}

impl Fleet {
    async fn start(options: Options) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create().await;
        let provider = slow_provider(options.provider_delay).await;
        let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
        let redis_toml = match &options.redis {
            Redis::Server(port) => format!("url = \"redis://127.0.0.1:{port}\""),
            Redis::Cluster(ports) => format!(
                "cluster-nodes = [{}]",
                ports
                    .iter()
                    .map(|p| format!("\"redis://127.0.0.1:{p}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut nodes = Vec::new();
        for n in 0..options.nodes {
            let (port, metrics) = (free_port(), free_port());
            let on_outage = options.on_outage.get(n).copied().unwrap_or("local");
            let text = format!(
                r#"
[proxy]
listen = "127.0.0.1:{port}"
threads = 1
grace-period-secs = 0
# Changes are broadcast: a long TTL, so that only the broadcast can explain a revocation
# seen within a second.
key-cache-ttl-ms = 60000
max-concurrent-requests-per-account = 1000
max-concurrent-requests-per-client = 10000
[store]
url = "{store}"
max-connections = 4
[redis]
{redis_toml}
key-prefix = "{prefix}"
on-outage = "{on_outage}"
hold-lease-ms = 2000
settled-lease-ms = 3000
[usage]
spool-dir = "{dir}/spool-{n}"
[log]
level = "info"
access-log-dir = "{dir}/access-logs-{n}"
[backup]
dir = "{dir}/backups"
[metrics]
listen = "127.0.0.1:{metrics}"
[[providers]]
id = "slow"
kind = "openai"
base-url = "http://127.0.0.1:{provider}/v1"
[[models]]
id = "slow/m"
upstream = "m"
input-usd-per-mtok = "0.15"
output-usd-per-mtok = "0.60"
context-window = 128000
max-output-tokens = 1000
"#,
                store = db.url,
                dir = dir.path().display(),
            );
            let config = dir.path().join(format!("node-{n}.toml"));
            std::fs::write(&config, text).unwrap();
            nodes.push(Node {
                config,
                port,
                metrics,
                log: dir.path().join(format!("node-{n}.log")),
                child: None,
            });
        }
        // Migrate once before the nodes race to.
        let out = with_config(&nodes[0].config, &["migrate"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for node in &mut nodes {
            node.start();
        }
        Fleet {
            dir,
            db: Some(db),
            nodes,
            prefix,
            redis: options.redis,
        }
    }

    fn store_url(&self) -> String {
        self.db.as_ref().unwrap().url.clone()
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = with_config(&self.nodes[0].config, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A new key (and account) with `credits` USD; returns (key, key id).
    fn key(&self, email: &str, credits: &str) -> (String, String) {
        let key = self
            .cli(&["keys", "create", "--email", email, "--credits", credits])
            .lines()
            .last()
            .unwrap()
            .to_string();
        let id = self
            .cli(&["keys", "list", "--email", email])
            .lines()
            .last()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        (key, id)
    }

    /// Every id has one usage row and one debit; `ledger verify` is clean.
    async fn assert_billed_once(&self, email: &str, ids: &[String]) {
        assert_each_billed_once(&self.store_url(), &self.nodes[0].config, email, ids).await;
    }

    async fn store(&self) -> Store {
        Store::connect(&self.store_url(), 2).await.unwrap()
    }

    /// The account's shared state in Redis (`ledger`, `held`, `inflight`, ...).
    fn shared_balance(&self, account_id: &str) -> std::collections::HashMap<String, String> {
        let port = match &self.redis {
            Redis::Server(port) => *port,
            Redis::Cluster(ports) => ports[0],
        };
        let key = format!("{}:{{a:{account_id}}}:bal", self.prefix);
        let out = Command::new("redis-cli")
            .args(["-c", "-p", &port.to_string(), "--no-raw", "hgetall", &key])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let items: Vec<String> = text
            .lines()
            .map(|l| {
                let v = l.split_once(") ").map_or(l, |(_, v)| v);
                v.trim_matches('"').to_string()
            })
            .collect();
        items
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect()
    }

    async fn finish(mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        if let Some(db) = self.db.take() {
            db.drop_now().await;
        }
        let _ = &self.dir;
    }
}

fn body() -> &'static str {
    r#"{"model":"slow/m","max_tokens":5,"messages":[{"role":"user","content":"hello"}]}"#
}

/// Sends one chat completion; returns the status and the generation id.
async fn request(client: &reqwest::Client, url: &str, key: &str) -> (u16, Option<String>, String) {
    match client
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body())
        .send()
        .await
    {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let id = resp
                .headers()
                .get("x-tokenroute-generation-id")
                .map(|v| v.to_str().unwrap().to_string());
            let text = resp.text().await.unwrap_or_default();
            (status, id, text)
        }
        Err(e) => (0, None, e.to_string()),
    }
}

/// The generation ids of the requests answered with 200.
fn answered(results: &[(u16, Option<String>, String)]) -> Vec<String> {
    results
        .iter()
        .filter(|r| r.0 == 200)
        .filter_map(|r| r.1.clone())
        .collect()
}

/// Sends `per_node` requests to each node, `concurrency` at a time per node; returns
/// every (status, id).
async fn spread(
    fleet: &Fleet,
    key: &str,
    per_node: usize,
    concurrency: usize,
) -> Vec<(u16, Option<String>, String)> {
    let client = reqwest::Client::new();
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for node in &fleet.nodes {
        for worker in 0..concurrency {
            let (client, url, key, results) =
                (client.clone(), node.url(), key.to_string(), results.clone());
            let count = per_node / concurrency + usize::from(worker < per_node % concurrency);
            tasks.push(tokio::spawn(async move {
                for _ in 0..count {
                    let r = request(&client, &url, &key).await;
                    results.lock().unwrap().push(r);
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let results = results.lock().unwrap().clone();
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_60_rpm_key_gets_60_requests_a_minute_across_three_nodes() {
    let fleet = Fleet::start(Options::default()).await;
    let (key, id) = fleet.key("rpm@example.com", "10");
    fleet.cli(&["keys", "set-limits", &id, "--rpm", "60"]);
    let results = spread(&fleet, &key, 50, 5).await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let limited: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert_eq!(ok, 60, "60 requests a minute in all, not per node");
    assert_eq!(limited.len(), 150 - 60);
    assert!(
        limited[0].2.contains("60 requests per minute"),
        "{}",
        limited[0].2
    );
    // Each node's 200s carry the fleet-wide remaining count.
    let client = reqwest::Client::new();
    for node in &fleet.nodes {
        let resp = client
            .post(node.url())
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["x-ratelimit-limit-requests"], "60");
        assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "0");
        assert!(resp.headers().contains_key("retry-after"));
    }
    let ids = answered(&results);
    fleet.assert_billed_once("rpm@example.com", &ids).await;
    fleet.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daily_spend_cap_holds_across_three_nodes() {
    let fleet = Fleet::start(Options::default()).await;
    let (key, id) = fleet.key("cap@example.com", "10");
    // A cap of exactly 10 answers a day, whichever nodes serve them.
    let cap = NanoUsd(10 * COST_NANOS).to_decimal();
    fleet.cli(&["keys", "set-limits", &id, "--daily-usd", cap.as_str()]);
    let mut results = spread(&fleet, &key, 20, 4).await;
    // While requests are in flight their worst cases are held (and one request at a
    // time may hold less than its worst case), so a burst can spend all its attempts
    // on refusals while the last answers are still out, leaving part of the cap
    // unserved. With nothing in flight, the rest is served one request at a time,
    // round the nodes, until the cap refuses.
    let client = reqwest::Client::new();
    for i in 0..=10 {
        let node = &fleet.nodes[i % fleet.nodes.len()];
        let r = request(&client, &node.url(), &key).await;
        let refused = r.0 != 200;
        results.push(r);
        if refused {
            break;
        }
    }
    let ok = answered(&results);
    let capped = results
        .iter()
        .filter(|r| r.0 == 429 && r.2.contains("spend_limit_reached"))
        .count();
    let mut outcomes = std::collections::BTreeMap::new();
    for r in &results {
        *outcomes
            .entry((r.0, r.2.chars().take(80).collect::<String>()))
            .or_insert(0) += 1;
    }
    assert_eq!(
        ok.len(),
        10,
        "10 answers a day in all, not per node: {outcomes:#?}"
    );
    assert_eq!(capped, results.len() - 10, "{outcomes:#?}");
    // Every node tells the key what the fleet spent (GET /v1/key), not what it served.
    for node in &fleet.nodes {
        let info: serde_json::Value = client
            .get(format!("http://127.0.0.1:{}/v1/key", node.port))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let spent = &info["data"]["spent"];
        assert_eq!(spent["today_usd"], cap.as_str(), "{info}");
        assert_eq!(spent["total_usd"], cap.as_str(), "{info}");
    }
    fleet.assert_billed_once("cap@example.com", &ok).await;
    fleet.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_key_is_refused_by_every_node_within_a_second() {
    let fleet = Fleet::start(Options::default()).await;
    let (key, id) = fleet.key("revoke@example.com", "10");
    let client = reqwest::Client::new();
    // Every node has the key in its cache (trusted for 60 s).
    for node in &fleet.nodes {
        assert_eq!(request(&client, &node.url(), &key).await.0, 200);
    }
    let revoked = Instant::now();
    fleet.cli(&["keys", "revoke", &id]);
    every_node_answers(&fleet, &key, 401, revoked, "a revoked key").await;
    for node in &fleet.nodes {
        assert!(
            node.metric("tokenroute_invalidations_total{kind=\"key\"}")
                .await
                >= Some(1.0)
        );
    }
    fleet.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_overspend_no_more_than_one_request() {
    let fleet = Fleet::start(Options {
        provider_delay: Duration::from_millis(200),
        ..Options::default()
    })
    .await;
    // Credit for exactly 50 requests.
    let credits = NanoUsd(50 * COST_NANOS).to_decimal();
    let (key, _) = fleet.key("spend@example.com", &credits);
    let results = spread(&fleet, &key, 100, 100).await;
    let ok = answered(&results);
    let refused = results.iter().filter(|r| r.0 == 402).count();
    let others: Vec<_> = results
        .iter()
        .filter(|r| r.0 != 200 && r.0 != 402)
        .collect();
    assert_eq!(ok.len() + refused, 300, "only 200s and 402s: {others:?}");
    assert!(!ok.is_empty());
    fleet.assert_billed_once("spend@example.com", &ok).await;
    let store = fleet.store().await;
    let account = store
        .account_by_email("spend@example.com")
        .await
        .unwrap()
        .unwrap();
    let balance = store.balance(&account.id).await.unwrap();
    assert_eq!(
        balance.nanos(),
        50 * COST_NANOS - ok.len() as i64 * COST_NANOS,
        "every answer charged exactly"
    );
    // The bound: at most one request's settled excess below zero — one request more
    // than the credit covers, at most (three unshared nodes could each overspend).
    assert!(
        balance.nanos() > -COST_NANOS,
        "overspent {} nano-USD with {} answers",
        -balance.nanos(),
        ok.len()
    );
    assert!(ok.len() <= 51, "{} answers for credit of 50", ok.len());
    // The shared book ends exact: the store's balance, nothing held.
    let shared = fleet.shared_balance(&account.id);
    assert_eq!(shared["ledger"], balance.nanos().to_string(), "{shared:?}");
    assert_eq!(shared["held"], "0", "{shared:?}");
    assert_eq!(shared["inflight"], "0", "{shared:?}");

    // A top-up (here through the CLI, as an admin credit or a Stripe payment would be
    // booked) is heard by every node at once: no node refuses for the old balance.
    let client = reqwest::Client::new();
    let mut spent = 0;
    while request(&client, &fleet.nodes[0].url(), &key).await.0 == 200 {
        spent += 1;
        assert!(spent <= 50, "the credit ran out");
    }
    for node in &fleet.nodes {
        assert_eq!(request(&client, &node.url(), &key).await.0, 402);
    }
    let topped_up = Instant::now();
    let credits = NanoUsd(20 * COST_NANOS).to_decimal();
    fleet.cli(&[
        "keys",
        "create",
        "--email",
        "spend@example.com",
        "--credits",
        &credits,
    ]);
    every_node_answers(&fleet, &key, 200, topped_up, "the top-up").await;
    fleet.finish().await;
}

/// Waits until every node answers `want` to a request with `key`: each within a
/// second of `since`, when `change` was made elsewhere.
async fn every_node_answers(fleet: &Fleet, key: &str, want: u16, since: Instant, change: &str) {
    let client = reqwest::Client::new();
    for node in &fleet.nodes {
        loop {
            let (status, _, text) = request(&client, &node.url(), key).await;
            if status == want {
                break;
            }
            assert!(
                since.elapsed() < Duration::from_secs(1),
                "node on {} answers {status} a second after {change}: {text}",
                node.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Load on every node until `stop`; returns the generation ids answered with 200 and
/// the statuses of the others.
async fn load(
    urls: Vec<String>,
    key: String,
    workers_per_node: usize,
    stop: Arc<AtomicBool>,
) -> (Vec<String>, Vec<(Instant, u16, String)>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let ok = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for url in urls {
        for _ in 0..workers_per_node {
            let (client, url, key, stop, ok, failed) = (
                client.clone(),
                url.clone(),
                key.clone(),
                stop.clone(),
                ok.clone(),
                failed.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match request(&client, &url, &key).await {
                        (200, Some(id), _) => ok.lock().unwrap().push(id),
                        (status, _, text) => {
                            failed.lock().unwrap().push((Instant::now(), status, text));
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ok = ok.lock().unwrap().clone();
    let failed = failed.lock().unwrap().clone();
    (ok, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_run_loses_no_usage() {
    let mut fleet = Fleet::start(Options::default()).await;
    let (key, _) = fleet.key("kill@example.com", "100");
    let stop = Arc::new(AtomicBool::new(false));
    let urls: Vec<String> = fleet.nodes.iter().map(Node::url).collect();
    let loader = tokio::spawn(load(urls, key.clone(), 4, stop.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fleet.nodes[1].kill(); // SIGKILL: holds in flight, usage in its spool
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, _failed) = loader.await.unwrap();
    assert!(ok.len() > 50, "the load ran: {}", ok.len());
    // The node comes back on its spool, which it replays into the store.
    fleet.nodes[1].start();
    fleet.assert_billed_once("kill@example.com", &ok).await;
    // The dead process's holds lapsed — in flight after hold-lease-ms (2 s here), and
    // charges it settled but never spooled (it died between the two; no client got
    // an answer for them) after settled-lease-ms (3 s here): once a request passes
    // by, the shared book holds nothing and shows the store's balance.
    let store = fleet.store().await;
    let account = store
        .account_by_email("kill@example.com")
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let client = reqwest::Client::new();
    let (status, id, _) = request(&client, &fleet.nodes[0].url(), &key).await;
    assert_eq!(status, 200);
    let mut all = ok.clone();
    all.push(id.unwrap());
    fleet.assert_billed_once("kill@example.com", &all).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let balance = store.balance(&account.id).await.unwrap();
        let shared = fleet.shared_balance(&account.id);
        if shared["held"] == "0"
            && shared["inflight"] == "0"
            && shared["ledger"] == balance.nanos().to_string()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shared book {shared:?}, store {balance:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fleet.finish().await;
}

/// A Redis server of the test's own, so that it can be stopped.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
    cluster_dir: Option<PathBuf>,
}

impl OwnRedis {
    fn start(port: u16) -> OwnRedis {
        let mut redis = OwnRedis {
            port,
            child: None,
            cluster_dir: None,
        };
        redis.run();
        redis
    }

    fn cluster_node(port: u16, dir: &Path) -> OwnRedis {
        let mut redis = OwnRedis {
            port,
            child: None,
            cluster_dir: Some(dir.to_path_buf()),
        };
        redis.run();
        redis
    }

    fn run(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        if let Some(dir) = &self.cluster_dir {
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("nodes-{}.conf", self.port),
                "--dir",
                dir.to_str().unwrap(),
            ]);
        }
        self.child = Some(
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for_port(self.port);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_stopped_mid_run_local_nodes_keep_serving_refusing_nodes_say_503() {
    let mut redis = OwnRedis::start(free_port());
    let fleet = Fleet::start(Options {
        nodes: 3,
        redis: Redis::Server(redis.port),
        on_outage: vec!["local", "local", "refuse"],
        ..Options::default()
    })
    .await;
    let (key, _) = fleet.key("redis-down@example.com", "100");
    let stop = Arc::new(AtomicBool::new(false));
    let local: Vec<String> = fleet.nodes[..2].iter().map(Node::url).collect();
    let loader = tokio::spawn(load(local, key.clone(), 3, stop.clone()));
    tokio::time::sleep(Duration::from_millis(1000)).await;

    redis.stop();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The refusing node says why, in the API's error shape.
    let client = reqwest::Client::new();
    let (status, _, text) = request(&client, &fleet.nodes[2].url(), &key).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("Redis"), "{text}");
    for node in &fleet.nodes[..2] {
        assert_eq!(node.metric("tokenroute_redis_up").await, Some(0.0));
        assert!(node.metric("tokenroute_redis_local_fallbacks_total").await > Some(0.0));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.run();
    let back = Instant::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = loader.await.unwrap();
    assert!(
        failed.is_empty(),
        "requests kept succeeding on the local nodes: {failed:?}"
    );
    let _ = (down, back);
    assert!(ok.len() > 50, "{}", ok.len());
    for node in &fleet.nodes[..2] {
        assert_eq!(
            node.metric("tokenroute_redis_up").await,
            Some(1.0),
            "back up"
        );
    }
    // The refusing node serves again, through Redis.
    assert_eq!(request(&client, &fleet.nodes[2].url(), &key).await.0, 200);
    fleet
        .assert_billed_once("redis-down@example.com", &ok)
        .await;
    fleet.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_cluster_serves_the_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let _servers: Vec<OwnRedis> = ports
        .iter()
        .map(|p| OwnRedis::cluster_node(*p, dir.path()))
        .collect();
    let mut create = Command::new("redis-cli");
    create.args(["--cluster", "create"]);
    for p in &ports {
        create.arg(format!("127.0.0.1:{p}"));
    }
    let out = create
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    for p in &ports {
        loop {
            let info = Command::new("redis-cli")
                .args(["-p", &p.to_string(), "cluster", "info"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            assert!(Instant::now() < deadline, "the cluster did not form");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let fleet = Fleet::start(Options {
        redis: Redis::Cluster(ports.clone()),
        ..Options::default()
    })
    .await;
    // Accounts land in different slots (and nodes); each account's keys share one.
    let mut keys = Vec::new();
    for n in 0..4 {
        let (key, id) = fleet.key(&format!("cluster{n}@example.com"), "10");
        fleet.cli(&["keys", "set-limits", &id, "--rpm", "12"]);
        keys.push((key, id));
    }
    for (key, _) in &keys {
        let results = spread(&fleet, key, 8, 2).await;
        let ok = results.iter().filter(|r| r.0 == 200).count();
        assert_eq!(ok, 12, "12 requests a minute in all");
    }
    // Revocation travels through the Cluster's pub/sub.
    let (key, id) = fleet.key("cluster-revoke@example.com", "10");
    let client = reqwest::Client::new();
    for node in &fleet.nodes {
        assert_eq!(request(&client, &node.url(), &key).await.0, 200);
    }
    let revoked = Instant::now();
    fleet.cli(&["keys", "revoke", &id]);
    every_node_answers(&fleet, &key, 401, revoked, "a revoked key").await;
    fleet.finish().await;
}
