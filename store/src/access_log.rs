//! Access logs ([P5] [P16]): one JSON line per request on both planes — time, client
//! IP, method, URL without secrets, status, user agent — in daily files
//! (`access-YYYY-MM-DD.log`) under one folder, deleted after 30 days by the retention
//! job. A background thread writes; a request never waits for the disk (a line is
//! dropped, with a warning, if the writer is 64k lines behind).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio::sync::mpsc::{self, error::TrySendError, Receiver, Sender};

const DAY_MS: i64 = 86_400_000;
/// Access logs are kept this long ([P16]).
pub const ACCESS_LOG_RETENTION_MS: i64 = 30 * DAY_MS;
/// Lines waiting for the writer, at most. Tokio's channel allocates its slots 32 at a
/// time as lines wait (std's `sync_channel` would make all 65,536 resident at start:
/// 12 MiB of a proxy's memory at rest).
const QUEUE: usize = 65_536;
/// How long the writer lets lines gather when they come more than one at a time.
const BUSY_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// One request, as logged.
#[derive(Debug, Clone, Serialize)]
pub struct AccessEntry {
    /// `api` (the data plane) or `dashboard` (the control plane).
    pub plane: &'static str,
    pub time_ms: i64,
    /// TokenRoute's id of the request (the `x-request-id` it answered with).
    pub request_id: String,
    /// The `x-request-id` the client sent, when it sent a well-formed one: the two ids
    /// join the client's logs to ours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
    pub client_ip: String,
    pub method: String,
    /// Path and query, every query value replaced by `***` ([`redact`]).
    pub url: String,
    pub status: u16,
    pub user_agent: String,
    pub duration_ms: u64,
}

/// A handle to the writer; clones share it.
#[derive(Clone, Debug)]
pub struct AccessLog {
    tx: Sender<AccessEntry>,
    dir: PathBuf,
}

impl AccessLog {
    /// Creates the folder and starts the writer thread.
    pub fn open(dir: &Path) -> std::io::Result<AccessLog> {
        std::fs::create_dir_all(dir)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer_dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(&writer_dir, rx))?;
        Ok(AccessLog {
            tx,
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn write(&self, entry: AccessEntry) {
        match self.tx.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!("access log line dropped: the writer is behind");
            }
            Err(TrySendError::Closed(_)) => {}
        }
    }
}

fn file_name(time_ms: i64) -> String {
    format!("access-{}.log", tokenroute_domain::clock::ymd(time_ms))
}

fn write_lines(dir: &Path, mut rx: Receiver<AccessEntry>) {
    let mut current: Option<(String, BufWriter<File>)> = None;
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        let mut written = 0;
        while let Some(entry) = next.take() {
            written += 1;
            let name = file_name(entry.time_ms);
            if current.as_ref().is_none_or(|(n, _)| *n != name) {
                if let Some((_, mut old)) = current.take() {
                    let _ = old.flush();
                }
                match OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(&name))
                {
                    Ok(file) => current = Some((name, BufWriter::new(file))),
                    Err(e) => tracing::warn!(error = %e, "cannot open the access log"),
                }
            }
            if let Some((_, out)) = current.as_mut() {
                if let Ok(mut line) = serde_json::to_vec(&entry) {
                    line.push(b'\n');
                    let _ = out.write_all(&line);
                }
            }
            next = rx.try_recv().ok();
        }
        // Flushed whenever the queue runs dry: lines reach the file within moments.
        if let Some((_, out)) = current.as_mut() {
            let _ = out.flush();
        }
        if written > 1 {
            // Busy: let lines gather instead of waiting on the queue, where every
            // request's line would have to wake this thread (a system call on the
            // request path, measured at ~5% of the data plane's CPU under load).
            std::thread::sleep(BUSY_PAUSE);
        }
    }
    if let Some((_, mut out)) = current {
        let _ = out.flush();
    }
}

/// `path?query` with every query value replaced by `***`: keys, authorization codes,
/// tokens and ids never reach the log, whatever a client puts in a URL.
pub fn redact(path_and_query: &str) -> String {
    match path_and_query.split_once('?') {
        None => path_and_query.to_string(),
        Some((path, query)) => {
            let redacted: Vec<String> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let name = pair.split_once('=').map_or(pair, |(k, _)| k);
                    format!("{name}=***")
                })
                .collect();
            format!("{path}?{}", redacted.join("&"))
        }
    }
}

/// The client's address: the peer, unless the peer is a trusted proxy — then the
/// right-most address of `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[ipnet::IpNet],
) -> String {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let Some(peer) = peer else {
        return String::new();
    };
    if !is_trusted(&peer) {
        return peer.to_string();
    }
    forwarded_for
        .into_iter()
        .flat_map(|v| v.rsplit(','))
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
        .to_string()
}

/// Deletes access log files of days that ended more than 30 days before `now_ms`.
pub fn purge_access_logs(dir: &Path, now_ms: i64) -> std::io::Result<usize> {
    let mut deleted = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(day_start_ms) = name
            .to_str()
            .and_then(|n| n.strip_prefix("access-"))
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(tokenroute_domain::clock::parse_ymd)
        else {
            continue;
        };
        let day_end_ms = day_start_ms + DAY_MS;
        if day_end_ms + ACCESS_LOG_RETENTION_MS <= now_ms {
            std::fs::remove_file(entry.path())?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// A client-sent `x-request-id` worth logging: 1 to 128 characters of `[A-Za-z0-9._:-]`
/// (anything else could forge log lines or carry data).
pub fn client_request_id(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        })
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_client_request_ids_are_kept() {
        assert_eq!(
            client_request_id(Some(" req-42:a_b.c ")).as_deref(),
            Some("req-42:a_b.c")
        );
        assert_eq!(client_request_id(Some("a b")), None);
        assert_eq!(client_request_id(Some("x\n{\"forged\":1}")), None);
        assert_eq!(client_request_id(Some(&"x".repeat(129))), None);
        assert_eq!(client_request_id(None), None);
    }

    #[test]
    fn query_values_never_reach_the_log() {
        assert_eq!(
            redact("/auth/callback?code=abc&state=xyz&iss=http%3A%2F%2Fa"),
            "/auth/callback?code=***&state=***&iss=***"
        );
        assert_eq!(redact("/v1/models"), "/v1/models");
        assert_eq!(redact("/x?flag"), "/x?flag=***");
    }

    #[test]
    fn forwarded_for_counts_only_behind_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(
            client_ip(Some(proxy), Some("198.51.100.7, 10.9.9.9"), &trusted),
            "198.51.100.7"
        );
        // A client that is not a trusted proxy cannot claim another address.
        assert_eq!(
            client_ip(Some(stranger), Some("198.51.100.7"), &trusted),
            "203.0.113.9"
        );
        assert_eq!(client_ip(Some(proxy), None, &trusted), "10.1.2.3");
    }

    #[test]
    fn files_go_30_days_after_their_day() {
        let dir = tempfile::tempdir().unwrap();
        let day = |d: &str| dir.path().join(format!("access-{d}.log"));
        for d in ["2026-10-01", "2026-10-29", "2026-10-30"] {
            std::fs::write(day(d), "x").unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "kept").unwrap();
        // 2026-11-29T00:00Z: 2026-10-29 ended 30 days ago exactly; 10-30 did not.
        let now = chrono::NaiveDate::from_ymd_opt(2026, 11, 29)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis();
        assert_eq!(purge_access_logs(dir.path(), now).unwrap(), 2);
        assert!(!day("2026-10-01").exists());
        assert!(!day("2026-10-29").exists());
        assert!(day("2026-10-30").exists());
        assert!(dir.path().join("notes.txt").exists());
    }
}
