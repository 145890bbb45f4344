//! The real OpenID Connect provider of the sign-in tests: `tests/oidc/server.mjs`, the
//! npm package `oidc-provider` configured like Logto (issuer `/oidc`, ES384), run as a
//! child process. `./scripts/test` installs it (`npm ci --prefix tests/oidc`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

pub struct OidcServer {
    /// `http://127.0.0.1:PORT/oidc`
    pub issuer: String,
    /// `http://127.0.0.1:PORT/test`: the control endpoints.
    pub control: String,
    child: Child,
}

impl OidcServer {
    /// Starts the provider with one client whose redirect URI is
    /// `{dashboard}/auth/callback` and post-logout URI `{dashboard}/`.
    pub fn start(dashboard: &str) -> OidcServer {
        let dir = format!("{}/oidc", env!("CARGO_MANIFEST_DIR"));
        assert!(
            std::path::Path::new(&format!("{dir}/node_modules/oidc-provider")).exists(),
            "the test OIDC provider is not installed: run `npm ci --prefix tests/oidc` (./scripts/test does)"
        );
        let mut child = Command::new("node")
            .arg(format!("{dir}/server.mjs"))
            .env("REDIRECT_URIS", format!("{dashboard}/auth/callback"))
            .env("POST_LOGOUT_REDIRECT_URIS", format!("{dashboard}/"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node (Node.js 20+) must be installed");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the OIDC server's first line");
        let started: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("OIDC server said {line:?}: {e}"));
        OidcServer {
            issuer: started["issuer"].as_str().expect("issuer").to_string(),
            control: started["control"].as_str().expect("control").to_string(),
            child,
        }
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.control))
            .json(&body)
            .send()
            .await
            .expect("OIDC control endpoint");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.expect("JSON")
    }

    /// The next sign-ins are as this person.
    pub async fn next_login(&self, sub: &str, email: &str, name: &str, roles: &[&str]) {
        self.control(
            "/next-login",
            json!({"sub": sub, "email": email, "name": name, "roles": roles}),
        )
        .await;
    }

    /// The next ID token is spoiled in one way: `signature`, `issuer`, `audience`,
    /// `expired` or `nonce`.
    pub async fn tamper_next_token(&self, mode: &str) {
        self.control("/tamper", json!({ "mode": mode })).await;
    }

    /// Rotates the signing key; returns the new key id.
    pub async fn rotate_key(&self) -> String {
        self.control("/rotate", json!({})).await["kid"]
            .as_str()
            .expect("kid")
            .to_string()
    }
}

impl Drop for OidcServer {
    fn drop(&mut self) {
        // Closing stdin stops it; kill in case it hangs.
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
