//! `load-curve`: latency against offered load, open loop.
//!
//! For each rate of `--rates`, requests are *scheduled* at fixed intervals for
//! `--duration-secs` and sent over `--connections` kept-alive HTTP/1.1 connections;
//! each latency is measured from the request's scheduled time, so a server that falls
//! behind is charged for the queue it causes (no coordinated omission, as `wrk2` and
//! `oha --latency-correction` measure). Prints one line per rate:
//! `rate=R sent=N ok=N errors=N achieved=R p50=MS p90=MS p99=MS p999=MS max=MS`.
//!
//! A rate of 0 measures the saturation instead, closed loop: every connection sends
//! its next request as soon as its last is answered, latency from each send, and
//! `achieved` is what the connections carried.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use std::time::Instant;
use tokenroute_benchmarks::{http1, stats};
use tokio::net::TcpStream;

/// Latency against offered load (open loop, corrected for coordinated omission).
#[derive(Parser, Debug)]
#[command(name = "load-curve")]
struct Args {
    #[command(flatten)]
    target: http1::Target,
    /// Offered loads, requests per second, comma-separated; 0: closed loop (saturation).
    #[arg(long, value_delimiter = ',')]
    rates: Vec<u64>,
    /// Seconds per rate.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Unmeasured seconds at each rate before its measurement.
    #[arg(long, default_value_t = 1)]
    warmup_secs: u64,
    /// Connections (each carries one request at a time).
    #[arg(long, default_value_t = 64)]
    connections: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let request: Arc<[u8]> = args.target.request().into();
    let mut out = std::io::stdout();
    for &rate in &args.rates {
        let line = measure(&args, &request, rate).await;
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// One rate: schedule, send, and summarise.
async fn measure(args: &Args, request: &Arc<[u8]>, rate: u64) -> String {
    if rate == 0 {
        return saturate(args, request).await;
    }
    let (tx, rx) = schedule_queue(args.connections);
    let results = Arc::new(Mutex::new(Vec::<Option<Duration>>::new()));
    let measured_from = Instant::now() + Duration::from_secs(args.warmup_secs);
    let mut workers = Vec::new();
    for _ in 0..args.connections {
        let (rx, request, results) = (rx.clone(), request.clone(), results.clone());
        let addr = args.target.addr.clone();
        workers.push(tokio::spawn(async move {
            let mut conn: Option<TcpStream> = None;
            while let Ok(scheduled) = rx.recv().await {
                let ok = http1::send(&addr, &mut conn, &request).await;
                if scheduled >= measured_from {
                    let latency = ok.then(|| scheduled.elapsed());
                    results
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(latency);
                }
            }
        }));
    }
    // The schedule runs on its own thread: the runtime's timer ticks in whole
    // milliseconds, which would make every request late by up to one.
    let gap = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let end = measured_from + Duration::from_secs(args.duration_secs);
    let scheduler = std::thread::spawn(move || {
        let mut next = Instant::now();
        while next < end {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            // A full queue means every connection is busy: the request waits its
            // turn, and its latency counts from `next`.
            if tx.blocking_send(next).is_err() {
                break;
            }
            next += gap;
        }
    });
    while !scheduler.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = scheduler.join();
    for w in workers {
        let _ = w.await;
    }
    let results = std::mem::take(
        &mut *results
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    summarise(rate, args.duration_secs, &results)
}

/// Closed loop: each connection sends back to back for the warm-up and the measurement.
/// A schedule cannot do this: offered more than it answers, a hop would leave a queue
/// that takes longer to drain than the measurement lasted.
async fn saturate(args: &Args, request: &Arc<[u8]>) -> String {
    let measured_from = Instant::now() + Duration::from_secs(args.warmup_secs);
    let end = measured_from + Duration::from_secs(args.duration_secs);
    let mut workers = Vec::new();
    for _ in 0..args.connections {
        let (request, addr) = (request.clone(), args.target.addr.clone());
        workers.push(tokio::spawn(async move {
            let mut conn: Option<TcpStream> = None;
            let mut results = Vec::new();
            loop {
                let sent = Instant::now();
                if sent >= end {
                    return results;
                }
                let ok = http1::send(&addr, &mut conn, &request).await;
                if sent >= measured_from {
                    results.push(ok.then(|| sent.elapsed()));
                }
            }
        }));
    }
    let mut results = Vec::new();
    for w in workers {
        results.extend(w.await.unwrap_or_default());
    }
    summarise(0, args.duration_secs, &results)
}

fn summarise(rate: u64, secs: u64, results: &[Option<Duration>]) -> String {
    let mut ok: Vec<Duration> = results.iter().flatten().copied().collect();
    ok.sort_unstable();
    let errors = results.len() - ok.len();
    let pct = |p: f64| stats::percentile_ms(&ok, p);
    format!(
        "rate={rate} sent={} ok={} errors={errors} achieved={:.0} p50={:.3} p90={:.3} p99={:.3} p999={:.3} max={:.3}",
        results.len(),
        ok.len(),
        ok.len() as f64 / secs as f64,
        pct(50.0),
        pct(90.0),
        pct(99.0),
        pct(99.9),
        pct(100.0)
    )
}

/// A multi-consumer queue of scheduled send times (tokio's mpsc has one consumer).
fn schedule_queue(connections: usize) -> (tokio::sync::mpsc::Sender<Instant>, Arc<SharedReceiver>) {
    let (tx, rx) = tokio::sync::mpsc::channel(connections.max(1) * 1024);
    (tx, Arc::new(SharedReceiver(tokio::sync::Mutex::new(rx))))
}

struct SharedReceiver(tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Instant>>);

impl SharedReceiver {
    async fn recv(&self) -> Result<Instant, ()> {
        self.0.lock().await.recv().await.ok_or(())
    }
}
