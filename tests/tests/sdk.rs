//! The official `openai` and `anthropic` Python SDKs against TokenRoute, with an
//! upstream of each dialect: plain chat, streaming, tool calls, JSON mode, embeddings
//! and errors (`tests/sdk/test_sdks.py`; `scripts/test` installs the SDKs from PyPI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tokenroute_tests::{Backend, FakeProvider, Gateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdks_work_against_every_dialect() {
    let fake = FakeProvider::start().await;
    let gw = Gateway::start(Backend::Sqlite, &fake).await;
    let (key, account, _) = gw.key_with_credits("sdk@example.com", "10").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/test_sdks.py");
    let base = gw.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .env("TOKENROUTE_BASE", base)
            .env("TOKENROUTE_KEY", key)
            .output()
            .expect("python3 (scripts/test installs it with the openai and anthropic SDKs)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("SDK checks passed"), "{stdout}");
    // Every call the SDKs made with the key was metered: per model 7 (chat, stream,
    // JSON mode, Anthropic whole and streamed, a tool call from each SDK), 3 tool-call
    // streams, 2 embeddings, the unknown model's refusal and 6 unreachable providers.
    let rows = gw.wait_usage(&account, 3 * 7 + 3 + 2 + 1 + 6).await;
    assert_eq!(rows.iter().filter(|r| r.status == 400).count(), 1);
    assert_eq!(rows.iter().filter(|r| r.status == 502).count(), 6);
    assert!(rows
        .iter()
        .filter(|r| r.status == 200)
        .all(|r| r.cost.is_positive()));
}
