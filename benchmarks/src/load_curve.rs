//! `load-curve`: latency against offered load, open loop.
//!
//! For each rate of `--rates`, requests are *scheduled* at fixed intervals for
//! `--duration-secs` and sent over `--connections` kept-alive HTTP/1.1 connections;
//! each latency is measured from the request's scheduled time, so a server that falls
//! behind is charged for the queue it causes (no coordinated omission, as `wrk2` and
//! `oha --latency-correction` measure). Prints one line per rate:
//! `rate=R sent=N ok=N errors=N achieved=R p50=MS p90=MS p99=MS p999=MS max=MS`.

#[path = "http1.rs"]
mod http1;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Latency against offered load (open loop, corrected for coordinated omission).
#[derive(Parser, Debug)]
#[command(name = "load-curve")]
struct Args {
    #[command(flatten)]
    target: http1::Target,
    /// Offered loads, requests per second, comma-separated.
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
                let ok = send(&addr, &mut conn, &request).await;
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

fn summarise(rate: u64, secs: u64, results: &[Option<Duration>]) -> String {
    let mut ok: Vec<Duration> = results.iter().flatten().copied().collect();
    ok.sort_unstable();
    let errors = results.len() - ok.len();
    let pct = |p: f64| -> f64 {
        if ok.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * (ok.len() - 1) as f64).round() as usize;
        ok[i].as_secs_f64() * 1000.0
    };
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

/// Sends one request on the connection (opening one if there is none); true on a 200
/// read whole. A failed connection is dropped, the next request opens another.
async fn send(addr: &str, conn: &mut Option<TcpStream>, request: &[u8]) -> bool {
    if conn.is_none() {
        match TcpStream::connect(addr).await {
            Ok(c) => {
                let _ = c.set_nodelay(true);
                *conn = Some(c);
            }
            Err(_) => return false,
        }
    }
    let Some(c) = conn.as_mut() else {
        return false;
    };
    let result = exchange(c, request).await;
    match result {
        Ok((status, keep)) => {
            if !keep {
                *conn = None;
            }
            status == 200
        }
        Err(_) => {
            *conn = None;
            false
        }
    }
}

/// Writes the request and reads the response whole (content-length or chunked);
/// returns the status and whether the connection stays open.
async fn exchange(c: &mut TcpStream, request: &[u8]) -> std::io::Result<(u16, bool)> {
    c.write_all(request).await?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = c.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let keep = !head.contains("connection: close");
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let done = |body: &[u8]| match length {
        Some(n) => body.len() >= n,
        None => body.ends_with(b"0\r\n\r\n"),
    };
    while !done(&buf[head_end..]) {
        let n = c.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((status, keep))
}
