//! TLS end to end: clients reach the API over TLS with HTTP/1.1 and HTTP/2 (ALPN); a
//! renewed certificate is served without a restart; TokenRoute verifies a provider's
//! certificate against a configured CA and refuses one it cannot verify. The
//! TLS-speaking provider here is a second TokenRoute (it speaks OpenAI's API).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use serde_json::{json, Value};
use tokenroute_tests::gateway::Options;
use tokenroute_tests::{Backend, FakeOpenAi, Gateway};

/// A CA and a server certificate it signed for 127.0.0.1: (ca pem, cert pem, key pem).
fn issue(ca_name: &str) -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

fn write_pair(dir: &Path, cert: &str, key: &str) {
    // The key first: a reload that sees the new certificate sees its key too.
    std::fs::write(dir.join("key.pem"), key).unwrap();
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
}

fn client(ca_pem: &str, http1_only: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .pool_max_idle_per_host(0);
    if http1_only {
        b = b.http1_only();
    }
    b.build().unwrap()
}

async fn tls_gateway(fake: &FakeOpenAi, dir: &Path, extra: Options) -> Gateway {
    Gateway::start_with(
        Backend::Sqlite,
        fake,
        Options {
            proxy_toml: format!(
                "tls-cert = \"{}\"\ntls-key = \"{}\"\n{}",
                dir.join("cert.pem").display(),
                dir.join("key.pem").display(),
                extra.proxy_toml
            ),
            ..extra
        },
    )
    .await
}

fn https(gw: &Gateway, path: &str) -> String {
    format!("{}{path}", gw.base.replace("http://", "https://"))
}

/// Whether plain HTTP to a TLS port goes unanswered (no 200).
async fn plain_http_is_not_answered(url: String) -> bool {
    reqwest::Client::new()
        .get(url)
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
}

/// Writes a pair issued by a new CA called `ca_name` over the served one, waits (up to
/// 15 s) until `url` is served with it, and returns that CA.
async fn renew_and_wait(dir: &Path, ca_name: &str, url: &str) -> String {
    let (ca, cert, key) = issue(ca_name);
    write_pair(dir, &cert, &key);
    let deadline = Instant::now() + Duration::from_secs(15);
    while client(&ca, false).get(url).send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ca
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reach_the_api_over_tls_with_http1_and_http2_and_renewals_need_no_restart() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (ca1, cert1, key1) = issue("Test CA one");
    write_pair(dir.path(), &cert1, &key1);
    let gw = tls_gateway(&fake, dir.path(), Options::default()).await;
    let (key, _, _) = gw.key_with_credits("tls@example.com", "5").await;

    let resp = client(&ca1, true)
        .post(https(&gw, "/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat("openai/gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.version()),
        (200, reqwest::Version::HTTP_11)
    );
    let resp = client(&ca1, false)
        .post(https(&gw, "/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat("openai/gpt-4o-mini", true))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.version()),
        (200, reqwest::Version::HTTP_2),
        "ALPN chose h2"
    );
    assert!(resp
        .text()
        .await
        .unwrap()
        .trim_end()
        .ends_with("data: [DONE]"));
    // Plain HTTP to the TLS port gets no answer.
    assert!(plain_http_is_not_answered(gw.url("/healthz")).await);

    // A renewed certificate (another CA, to tell them apart) is served within seconds.
    let ca2 = renew_and_wait(dir.path(), "Test CA two", &https(&gw, "/healthz")).await;
    assert!(
        client(&ca1, false)
            .get(https(&gw, "/healthz"))
            .send()
            .await
            .is_err(),
        "the old certificate is gone"
    );
    // A broken renewal is refused; the current certificate keeps serving.
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        client(&ca2, false)
            .get(https(&gw, "/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_are_verified_against_the_configured_ca_and_a_bad_certificate_is_refused() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = issue("Private provider CA");
    write_pair(dir.path(), &cert, &key);
    std::fs::write(dir.path().join("ca.pem"), &ca).unwrap();
    // The "provider": a TokenRoute serving OpenAI's API over TLS.
    let upstream = tls_gateway(&fake, dir.path(), Options::default()).await;
    let (upstream_key, _, _) = upstream.key_with_credits("upstream@example.com", "5").await;
    let provider = |ca_line: &str| Options {
        proxy_toml: ca_line.to_string(),
        extra_toml: format!(
            r#"
[[providers]]
id = "private"
kind = "openai"
base-url = "{}/v1"
api-key-env = "PRIVATE_KEY"

[[models]]
id = "private/gpt"
upstream = "openai/gpt-4o-mini"
input-usd-per-mtok = "1"
output-usd-per-mtok = "1"
context-window = 100000
max-output-tokens = 1000
"#,
            upstream.base.replace("http://", "https://")
        ),
        env: vec![("PRIVATE_KEY".into(), upstream_key.clone())],
        ..Options::default()
    };

    let trusting = Gateway::start_with(
        Backend::Sqlite,
        &fake,
        provider(&format!(
            "upstream-ca-file = \"{}\"\n",
            dir.path().join("ca.pem").display()
        )),
    )
    .await;
    let (key, _, _) = trusting.key_with_credits("trusting@example.com", "5").await;
    let resp = reqwest::Client::new()
        .post(trusting.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat("private/gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    // Without the CA, the provider's certificate does not verify: refused, not used.
    let calls = fake.requests().len();
    let strict = Gateway::start_with(Backend::Sqlite, &fake, provider("")).await;
    let (key, _, _) = strict.key_with_credits("strict@example.com", "5").await;
    let resp = reqwest::Client::new()
        .post(strict.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat("private/gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_unavailable", "{v}");
    assert_eq!(
        fake.requests().len(),
        calls,
        "nothing went through the unverified provider"
    );
}

/// The dashboard serves TLS itself when `control-plane.tls-cert` / `tls-key` are set:
/// HTTP/1.1 and HTTP/2 by ALPN, HSTS on every response, a renewed certificate without
/// a restart, and no plain HTTP on its port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_serves_tls_with_hsts_and_renewals_need_no_restart() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (ca1, cert1, key1) = issue("Dashboard CA one");
    write_pair(dir.path(), &cert1, &key1);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let gw = Gateway::start_with_listener(
        Backend::Sqlite,
        &fake,
        Options {
            control_plane_toml: format!(
                "public-url = \"https://127.0.0.1:{port}\"\ntls-cert = \"{}\"\ntls-key = \"{}\"\n",
                dir.path().join("cert.pem").display(),
                dir.path().join("key.pem").display(),
            ),
            ..Options::default()
        },
        Some(listener),
    )
    .await;
    let dashboard = format!("https://127.0.0.1:{port}");

    let resp = client(&ca1, true)
        .get(format!("{dashboard}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.version()),
        (200, reqwest::Version::HTTP_11)
    );
    let page = client(&ca1, false)
        .get(format!("{dashboard}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.version(), reqwest::Version::HTTP_2, "ALPN chose h2");
    assert_eq!(
        page.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    assert!(page.headers().contains_key("content-security-policy"));
    // The session cookie of an HTTPS dashboard is Secure.
    let cookies: Vec<_> = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_string())
        .collect();
    assert!(cookies.iter().all(|c| c.contains("Secure")), "{cookies:?}");
    // Plain HTTP to the TLS port gets no answer.
    assert!(plain_http_is_not_answered(format!("http://127.0.0.1:{port}/healthz")).await);

    // A renewed certificate is served within seconds, without a restart.
    renew_and_wait(
        dir.path(),
        "Dashboard CA two",
        &format!("{dashboard}/healthz"),
    )
    .await;
    drop(gw);
}
