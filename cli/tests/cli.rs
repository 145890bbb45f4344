//! The `tokenroute` binary as a user runs it: `keys create` against a data directory,
//! a running `serve` accepting that key, the README's curl, `config check`, `--help`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

mod common;

use common::{default_config_on_free_ports, last_line, tokenroute, wait_for_port, Serve, BIN};

#[test]
fn keys_create_uses_the_default_data_dir_and_stores_only_the_hash() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokenroute(
        dir.path(),
        &[
            "keys",
            "create",
            "--email",
            "Ann@Example.com",
            "--credits",
            "2.50",
        ],
    );
    let key = last_line(&out);
    assert!(
        key.starts_with("tr-") && key.len() == 46,
        "the key alone on the last line: {key:?}"
    );
    let db = dir.path().join("data/tokenroute.db");
    assert!(db.exists(), "embedded default keeps its data under ./data");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("$2.50"), "{stdout}");

    // Only the SHA-256 is stored ([P13]): the plaintext is nowhere in the database files.
    for file in ["data/tokenroute.db", "data/tokenroute.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
            let secret = &key.as_bytes()[3..];
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "{file} holds the key"
            );
        }
    }

    let listed = tokenroute(dir.path(), &["keys", "list", "--email", "ann@example.com"]);
    let listing = String::from_utf8(listed.stdout).unwrap();
    assert!(
        listing.contains(&key[..7]) && listing.contains("active"),
        "{listing}"
    );
    assert!(!listing.contains(&key), "listings never show the key");

    let bad = tokenroute(
        dir.path(),
        &["keys", "create", "--email", "x@y.z", "--credits", "lots"],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--credits"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_serve_accepts_a_key_created_by_the_cli_and_meters_the_readme_curl() {
    let dir = tempfile::tempdir().unwrap();
    let (config, port) = default_config_on_free_ports(dir.path());
    let config = config.to_str().unwrap().to_string();
    let serve = Serve(
        Command::new(BIN)
            .args(["--config", &config, "serve"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port);

    // Created while serve runs, by another process on the same data directory.
    let out = tokenroute(
        dir.path(),
        &[
            "--config",
            &config,
            "keys",
            "create",
            "--email",
            "you@example.com",
            "--credits",
            "5",
        ],
    );
    let key = last_line(&out);

    // The README's curl, as reqwest.
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(r#"{"model":"mock/echo","messages":[{"role":"user","content":"Hello"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Echo: Hello");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    let models: Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "mock/echo");

    // SIGTERM stops it cleanly (and writes the usage it metered).
    let mut serve = serve;
    serve.signal("-TERM");
    let status = serve.exited(Duration::from_secs(20)).await;
    assert!(status.success(), "{status:?}");
    let stderr = std::io::read_to_string(serve.0.stderr.take().unwrap()).unwrap();
    assert!(
        stderr.contains(&format!("http://127.0.0.1:{port}/v1")),
        "serve logs where it listens: {stderr}"
    );

    let listed = tokenroute(
        dir.path(),
        &[
            "--config",
            &config,
            "keys",
            "list",
            "--email",
            "you@example.com",
        ],
    );
    assert!(listed.status.success());
    // The balance went down by the metered cost: keys create on the account shows it.
    let again = tokenroute(
        dir.path(),
        &[
            "--config",
            &config,
            "keys",
            "create",
            "--email",
            "you@example.com",
        ],
    );
    let text = String::from_utf8(again.stdout).unwrap();
    assert!(text.contains("Account balance: $4.99"), "{text}");
}

#[test]
fn config_check_accepts_every_shipped_config_and_names_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf");
    for entry in std::fs::read_dir(conf).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = tokenroute(dir.path(), &["config", "check", path.to_str().unwrap()]);
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[providers]]\nid = \"x\"\nkind = \"carrier-pigeon\"\n",
    )
    .unwrap();
    let out = tokenroute(dir.path(), &["config", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("providers[0].kind") && stderr.contains("carrier-pigeon"),
        "{stderr}"
    );

    // A bad config stops start-up with the same message.
    let out = tokenroute(dir.path(), &["--config", bad.to_str().unwrap(), "serve"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("providers[0].kind"));
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["proxy", "--help"],
        &["control-plane", "--help"],
        &["migrate", "--help"],
        &["keys", "--help"],
        &["keys", "create", "--help"],
        &["keys", "list", "--help"],
        &["keys", "revoke", "--help"],
        &["config", "check", "--help"],
        &["route", "--help"],
        &["route", "simulate", "--help"],
    ] {
        let out = tokenroute(dir.path(), args);
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}
