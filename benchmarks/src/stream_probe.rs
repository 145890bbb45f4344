//! `stream-probe`: times streamed chat completions, one at a time, each on a fresh
//! connection (as `curl` would), and prints the medians.
//!
//! Per run it records, from the moment before `connect`:
//! * `ttfb` — the first response byte (what `curl -w %{time_starttransfer}` shows);
//! * `first_event` — the first complete SSE event of the body (`...\n\n`): a proxy
//!   that sends the response head and the first event in separate small writes with
//!   Nagle's algorithm on shows up here, not in `ttfb`;
//! * `done` — the `data: [DONE]` event;
//! * `total` — the end of the body (the last chunk of a chunked body).
//!
//! Output: one line of `key=value` pairs (milliseconds) for the harness to parse.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use tokenroute_benchmarks::http1;

/// Time streamed chat completions (TTFB, first event, [DONE], total).
#[derive(Parser, Debug)]
#[command(name = "stream-probe")]
struct Args {
    /// `http://HOST:PORT/path` (plain HTTP/1.1 only).
    #[arg(long)]
    url: String,
    /// Sent as `Authorization: Bearer KEY`.
    #[arg(long)]
    key: Option<String>,
    /// More request headers, `Name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// JSON request body.
    #[arg(long)]
    body: String,
    /// Measured runs.
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Unmeasured runs first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Give up on one run after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Also print, on stderr, when each read of the last run arrived and what it held.
    #[arg(long)]
    trace: bool,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    ttfb: Duration,
    first_event: Duration,
    done: Duration,
    total: Duration,
}

#[derive(Debug, Default)]
struct Shape {
    events: usize,
    usage: bool,
    done: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(line) => {
            #[allow(clippy::print_stdout, reason = "the figures are the program's output")]
            {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("stream-probe: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<String, String> {
    let (addr, host, path) = parse_url(&args.url)?;
    let request = build_request(&host, &path, args.key.as_deref(), &args.headers, &args.body);
    let timeout = Duration::from_secs(args.timeout_secs);
    let mut shape = Shape::default();
    for _ in 0..args.warmup {
        once(addr, &request, timeout, false)?;
    }
    let mut runs = Vec::with_capacity(args.runs);
    for i in 0..args.runs {
        let (run, s) = once(addr, &request, timeout, args.trace && i + 1 == args.runs)?;
        runs.push(run);
        shape = s;
    }
    if runs.is_empty() {
        return Err("--runs must be at least 1".into());
    }
    let ms = |pick: fn(&Run) -> Duration, q: f64| {
        let mut v: Vec<f64> = runs
            .iter()
            .map(|r| pick(r).as_secs_f64() * 1000.0)
            .collect();
        v.sort_by(f64::total_cmp);
        quantile(&v, q)
    };
    Ok(format!(
        "runs={} ttfb_ms_p50={:.2} first_event_ms_p50={:.2} done_ms_p50={:.2} total_ms_p50={:.2} \
         ttfb_ms_p90={:.2} first_event_ms_p90={:.2} total_ms_p90={:.2} events={} usage={} done={}",
        runs.len(),
        ms(|r| r.ttfb, 0.5),
        ms(|r| r.first_event, 0.5),
        ms(|r| r.done, 0.5),
        ms(|r| r.total, 0.5),
        ms(|r| r.ttfb, 0.9),
        ms(|r| r.first_event, 0.9),
        ms(|r| r.total, 0.9),
        shape.events,
        if shape.usage { "yes" } else { "no" },
        if shape.done { "yes" } else { "no" },
    ))
}

/// Linear-interpolated quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            let frac = pos - lo as f64;
            sorted[lo] + (sorted[hi] - sorted[lo]) * frac
        }
    }
}

fn parse_url(url: &str) -> Result<(SocketAddr, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    Ok((addr, host.to_string(), path.to_string()))
}

fn build_request(
    host: &str,
    path: &str,
    key: Option<&str>,
    headers: &[String],
    body: &str,
) -> Vec<u8> {
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let extra = http1::header_lines(headers);
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: stream-probe\r\n\
         Content-Type: application/json\r\nAccept: text/event-stream\r\n{auth}{extra}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// How the body is delimited.
enum Framing {
    Chunked,
    Length(usize),
    UntilClose,
}

fn once(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
    trace: bool,
) -> Result<(Run, Shape), String> {
    let start = Instant::now();
    let mut tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    tcp.write_all(request).map_err(|e| format!("send: {e}"))?;

    let mut raw: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut ttfb = None;
    let mut first_event = None;
    let mut done = None;
    let mut head: Option<(usize, Framing)> = None;
    let mut decoded: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut consumed = 0; // bytes of `raw` (after the head) already decoded
    let mut scanned: usize = 0; // bytes of `decoded` already searched
    let mut finished = false;
    while !finished {
        let n = tcp.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        let now = start.elapsed();
        if n == 0 {
            if matches!(head, Some((_, Framing::UntilClose))) {
                finished = true;
            } else {
                return Err(format!(
                    "connection closed before the response ended; got:\n{}",
                    String::from_utf8_lossy(&raw)
                ));
            }
        }
        if n > 0 && ttfb.is_none() {
            ttfb = Some(now);
        }
        if trace {
            let data = String::from_utf8_lossy(&buf[..n]);
            eprintln!(
                "{:>10.3} ms  {:>6} bytes  {} events  {:?}",
                now.as_secs_f64() * 1000.0,
                n,
                data.matches("data: ").count(),
                data.chars().take(60).collect::<String>()
            );
        }
        raw.extend_from_slice(&buf[..n]);
        if head.is_none() {
            let Some(end) = find(&raw, b"\r\n\r\n") else {
                continue;
            };
            let text = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let status_ok = text
                .lines()
                .next()
                .is_some_and(|l| l.split_whitespace().nth(1) == Some("200"));
            if !status_ok {
                // Read what is left (bounded by the timeout) to show the error.
                let mut rest = Vec::new();
                let _ = tcp.read_to_end(&mut rest);
                raw.extend_from_slice(&rest);
                return Err(format!(
                    "non-200 response:\n{}",
                    String::from_utf8_lossy(&raw)
                ));
            }
            let header = |name: &str| {
                text.lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim() == name)
                    .map(|(_, v)| v.trim().to_string())
            };
            let framing = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
                Framing::Chunked
            } else if let Some(len) = header("content-length").and_then(|v| v.parse().ok()) {
                Framing::Length(len)
            } else {
                Framing::UntilClose
            };
            head = Some((end + 4, framing));
        }
        let Some((body_start, framing)) = &head else {
            continue;
        };
        let body = &raw[*body_start..];
        match framing {
            Framing::Chunked => {
                finished = dechunk(body, &mut consumed, &mut decoded)?;
            }
            Framing::Length(len) => {
                decoded.clear();
                decoded.extend_from_slice(&body[..body.len().min(*len)]);
                finished = body.len() >= *len;
            }
            Framing::UntilClose => {
                decoded.clear();
                decoded.extend_from_slice(body);
            }
        }
        // Only the bytes new since the last read (plus an overlap) need a look.
        let from = scanned.saturating_sub(16).min(decoded.len());
        if first_event.is_none() && find(&decoded[from..], b"\n\n").is_some() {
            first_event = Some(now);
        }
        if done.is_none() && find(&decoded[from..], b"data: [DONE]").is_some() {
            done = Some(now);
        }
        scanned = decoded.len();
    }
    let total = start.elapsed();
    let ttfb = ttfb.unwrap_or(total);
    let shape = shape_of(&decoded);
    if !shape.done {
        return Err(format!(
            "the stream did not end with data: [DONE]; body:\n{}",
            String::from_utf8_lossy(&decoded)
        ));
    }
    Ok((
        Run {
            ttfb,
            first_event: first_event.unwrap_or(total),
            done: done.unwrap_or(total),
            total,
        },
        shape,
    ))
}

/// Decodes the complete chunks of `body` past `consumed` into `out`; true once the
/// terminating zero-size chunk has been seen.
fn dechunk(body: &[u8], consumed: &mut usize, out: &mut Vec<u8>) -> Result<bool, String> {
    loop {
        let rest = &body[*consumed..];
        let Some(line_end) = find(rest, b"\r\n") else {
            return Ok(false);
        };
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|e| format!("bad chunk size {size_text:?}: {e}"))?;
        if size == 0 {
            return Ok(true);
        }
        let data_start = line_end + 2;
        if rest.len() < data_start + size + 2 {
            return Ok(false);
        }
        out.extend_from_slice(&rest[data_start..data_start + size]);
        *consumed += data_start + size + 2;
    }
}

fn shape_of(body: &[u8]) -> Shape {
    let text = String::from_utf8_lossy(body);
    let mut shape = Shape::default();
    for event in text.split("\n\n") {
        let Some(data) = event.trim().strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            shape.done = true;
        } else {
            shape.events += 1;
            if data.contains("\"choices\":[]") && data.contains("\"usage\":{") {
                shape.usage = true;
            }
        }
    }
    shape
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
