//! `open-streams`: holds N streamed chat completions open at once, for measuring what
//! each open stream costs the proxy in memory.
//!
//! Opens `--streams` connections (at most `--connect-per-sec` a second), sends each a
//! streamed chat request, and waits for each answer's first SSE event. When every
//! stream is open (or `--ready-timeout-secs` passed) it prints one line —
//! `ready=N failed=F seconds=S` — and keeps reading every stream until it ends or the
//! process is killed; the harness samples the proxy's memory in between.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tokenroute_benchmarks::http1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Hold N streamed chat completions open at once.
#[derive(Parser, Debug)]
#[command(name = "open-streams")]
struct Args {
    #[command(flatten)]
    target: http1::Target,
    /// Streams to hold open at once.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// New connections per second, at most.
    #[arg(long, default_value_t = 2000)]
    connect_per_sec: u64,
    /// Report what is open after this long even if some streams never opened.
    #[arg(long, default_value_t = 120)]
    ready_timeout_secs: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let request = Arc::new(args.target.request());
    let opened = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let gap = Duration::from_nanos(1_000_000_000 / args.connect_per_sec.max(1));
    let mut next = tokio::time::Instant::now();
    for _ in 0..args.streams {
        tokio::time::sleep_until(next).await;
        next += gap;
        let (addr, request) = (args.target.addr.clone(), request.clone());
        let (opened, failed) = (opened.clone(), failed.clone());
        tokio::spawn(async move {
            if hold(&addr, &request, &opened).await.is_err() {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let deadline = started + Duration::from_secs(args.ready_timeout_secs);
    while opened.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < args.streams
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "ready={} failed={} seconds={:.2}",
        opened.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    let _ = out.flush();
    // Hold until killed (or every stream ended).
    std::future::pending::<()>().await;
}

/// One stream: sends the request, counts it open at its first event, reads to the end.
async fn hold(addr: &str, request: &[u8], opened: &AtomicUsize) -> std::io::Result<()> {
    let mut conn = TcpStream::connect(addr).await?;
    conn.set_nodelay(true)?;
    conn.write_all(request).await?;
    let mut seen = Vec::with_capacity(4096);
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        seen.extend_from_slice(&buf[..n]);
        if let Some(head_end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            if !seen.starts_with(b"HTTP/1.1 200") {
                return Err(std::io::Error::other("not a 200"));
            }
            if seen[head_end + 4..].windows(2).any(|w| w == b"\n\n") {
                break;
            }
        }
    }
    opened.fetch_add(1, Ordering::Relaxed);
    drop(seen);
    while conn.read(&mut buf).await? > 0 {}
    Ok(())
}
