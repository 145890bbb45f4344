//! `key-storm`: what a burst of keys the proxy has never seen costs it — a key-cache
//! miss storm, as after a restart or when many new clients arrive at once.
//!
//! Creates `--keys` new keys of one account (with credit) in the proxy's own store
//! (`--store-url`), then sends one request per key over `--connections` kept-alive
//! connections: the *cold* pass, where every request's key must be read from the
//! store; then the same keys once more: the *warm* pass, every key in the proxy's
//! cache. Prints one line per pass:
//! `pass=cold requests=N ok=N errors=N seconds=S rps=R p50=MS p90=MS p99=MS max=MS`.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use tokenroute_benchmarks::{http1, stats};
use tokenroute_domain::api_key::ApiKey;
use tokenroute_domain::{KeyLimits, NanoUsd};
use tokenroute_store::{LedgerKind, NewKey, Store};
use tokio::net::TcpStream;

/// A key-cache miss storm: one request for each of many new keys, then again.
#[derive(Parser, Debug)]
#[command(name = "key-storm")]
struct Args {
    #[command(flatten)]
    target: http1::Target,
    /// The proxy's store, where the new keys are made.
    #[arg(long)]
    store_url: String,
    /// New keys (one request each per pass).
    #[arg(long, default_value_t = 2000)]
    keys: usize,
    /// Connections (each carries one request at a time).
    #[arg(long, default_value_t = 32)]
    connections: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let started = Instant::now();
    let keys = new_keys(&args.store_url, args.keys).await?;
    eprintln!(
        "key-storm: {} keys made in {:.1} s",
        keys.len(),
        started.elapsed().as_secs_f64()
    );
    let requests: Arc<[Vec<u8>]> = keys
        .iter()
        .map(|k| args.target.request_with_key(Some(k.plaintext())))
        .collect();
    let mut out = std::io::stdout();
    for pass in ["cold", "warm"] {
        let line = storm(&args, &requests).await;
        writeln!(out, "pass={pass} {line}")?;
        out.flush()?;
    }
    Ok(())
}

/// `count` new keys of one new account holding enough credit for both passes.
async fn new_keys(
    store_url: &str,
    count: usize,
) -> Result<Vec<ApiKey>, Box<dyn std::error::Error>> {
    let store = Store::open(store_url, 2).await?;
    let run = tokenroute_domain::clock::now_ms();
    let account = store
        .upsert_account_by_email(&format!("key-storm-{run}@example.com"))
        .await?;
    store
        .book(
            &account.id,
            LedgerKind::Adjustment,
            NanoUsd::parse_usd("100000")?,
            &format!("key-storm-grant-{run}"),
            None,
        )
        .await?;
    let mut keys = Vec::with_capacity(count);
    for _ in 0..count {
        let key = ApiKey::generate();
        store
            .create_key(
                &NewKey {
                    account_id: &account.id,
                    name: "key-storm",
                    limits: KeyLimits::default(),
                },
                &key,
            )
            .await?;
        keys.push(key);
    }
    store.close().await;
    Ok(keys)
}

/// Every request once, as fast as the connections carry them; the pass's summary.
async fn storm(args: &Args, requests: &Arc<[Vec<u8>]>) -> String {
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::with_capacity(requests.len())));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.connections.max(1))
        .map(|_| {
            let (next, requests, results) = (next.clone(), requests.clone(), results.clone());
            let addr = args.target.addr.clone();
            tokio::spawn(async move {
                let mut conn: Option<TcpStream> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(request) = requests.get(i) else {
                        break;
                    };
                    let sent = Instant::now();
                    let ok = http1::send(&addr, &mut conn, request).await;
                    let latency = ok.then(|| sent.elapsed());
                    results
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(latency);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let results: Vec<Option<Duration>> = std::mem::take(
        &mut *results
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let mut ok: Vec<Duration> = results.iter().flatten().copied().collect();
    ok.sort_unstable();
    let pct = |p: f64| stats::percentile_ms(&ok, p);
    format!(
        "requests={} ok={} errors={} seconds={seconds:.3} rps={:.0} p50={:.3} p90={:.3} p99={:.3} max={:.3}",
        results.len(),
        ok.len(),
        results.len() - ok.len(),
        ok.len() as f64 / seconds,
        pct(50.0),
        pct(90.0),
        pct(99.0),
        pct(100.0)
    )
}
