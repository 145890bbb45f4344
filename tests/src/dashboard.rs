//! A TokenRoute with its control plane wired to a real OpenID Connect provider and a
//! fake Stripe, and the sign-in walk a browser does.

use reqwest::StatusCode;
use serde_json::Value;

use crate::browser::{redirect_target, Browser};
use crate::gateway::Options;
use crate::{Backend, FakeOpenAi, FakeStripe, Gateway, OidcServer};

/// Emails configured as admins in [`Dashboard::start`].
pub const ADMIN_EMAIL: &str = "root@example.com";

pub struct Dashboard {
    pub gateway: Gateway,
    pub oidc: OidcServer,
    pub stripe: FakeStripe,
    /// Logto's Management API (account deletions delete the user there).
    pub logto: crate::fake_logto::FakeLogto,
    /// Where policy-change emails go.
    pub smtp: crate::fake_smtp::FakeSmtp,
    /// `http://127.0.0.1:PORT`, the control plane.
    pub url: String,
    _provider: FakeOpenAi,
}

impl Dashboard {
    pub async fn start(backend: Backend) -> Dashboard {
        Self::start_with(backend, Options::default()).await
    }

    pub async fn start_with(backend: Backend, mut opts: Options) -> Dashboard {
        // Bound now and handed to the control plane: the OIDC redirect URI names this
        // port before TokenRoute starts, and no other test can take it meanwhile.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // `localhost`, not 127.0.0.1: cookies are scoped by host, not port, and the
        // identity provider (on 127.0.0.1) sets its own; a browser test must see only
        // the dashboard's.
        let url = format!("http://localhost:{port}");
        let oidc = OidcServer::start(&url);
        let stripe = FakeStripe::start().await;
        let logto = crate::fake_logto::FakeLogto::start().await;
        let smtp = crate::fake_smtp::FakeSmtp::start().await;
        let provider = FakeOpenAi::start().await;
        opts.control_plane_toml =
            format!("public-url = \"{url}\"\nadmin-emails = [\"{ADMIN_EMAIL}\"]\n");
        opts.extra_toml = format!(
            "[oidc]\nissuer = \"{}\"\nclient-id = \"tokenroute\"\n\
             client-secret-env = \"OIDC_SECRET\"\nadmin-role = \"admin\"\n\n{}\n{}\n\
             [email]\nsmtp-url = \"{}\"\nfrom = \"TokenRoute <noreply@tokenroute.test>\"\n",
            oidc.issuer,
            logto.toml(),
            stripe.toml(),
            smtp.url
        );
        opts.env = FakeStripe::env();
        opts.env
            .push(("OIDC_SECRET".into(), "tokenroute-secret".into()));
        opts.env.push((
            "LOGTO_M2M_SECRET".into(),
            crate::fake_logto::M2M_SECRET.into(),
        ));
        let gateway = Gateway::start_with_listener(backend, &provider, opts, Some(listener)).await;
        stripe.deliver_to(&format!("{url}/stripe/webhook"));
        Dashboard {
            gateway,
            oidc,
            stripe,
            logto,
            smtp,
            url,
            _provider: provider,
        }
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Walks `/auth/login` through the provider to the callback URL it sends the
    /// browser back to (not yet visited).
    pub async fn start_sign_in(&self, browser: &Browser) -> String {
        browser
            .follow_until(&self.at("/auth/login"), &self.at("/auth/callback"))
            .await
    }

    /// Signs `browser` in as this person; returns the callback's response headers.
    pub async fn sign_in(
        &self,
        browser: &Browser,
        email: &str,
        name: &str,
        roles: &[&str],
    ) -> reqwest::header::HeaderMap {
        self.oidc.next_login(email, email, name, roles).await;
        let callback = self.start_sign_in(browser).await;
        let response = browser.get(&callback).await;
        let headers = response.headers().clone();
        assert_eq!(
            redirect_target(&response, &callback),
            self.at("/"),
            "sign-in should land on the dashboard"
        );
        headers
    }

    /// Signs `browser` in and gives the account `credits_usd` of credit (an admin
    /// adjustment); returns the account id.
    pub async fn sign_in_with_credit(
        &self,
        browser: &Browser,
        email: &str,
        name: &str,
        credits_usd: &str,
    ) -> String {
        self.sign_in(browser, email, name, &[]).await;
        let store = &self.gateway.store;
        let account = store.account_by_email(email).await.unwrap().unwrap();
        store
            .book(
                &account.id,
                tokenroute_store::LedgerKind::Adjustment,
                tokenroute_domain::NanoUsd::parse_usd(credits_usd).unwrap(),
                &format!("test-credit-{email}"),
                Some("test credit"),
            )
            .await
            .unwrap();
        account.id
    }

    /// GET an API path as the browser; (status, JSON body).
    pub async fn api_get(&self, browser: &Browser, path: &str) -> (StatusCode, Value) {
        let response = browser.get(&self.at(path)).await;
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The CSRF token of the browser's session (from GET /api/me).
    pub async fn csrf(&self, browser: &Browser) -> String {
        let (status, me) = self.api_get(browser, "/api/me").await;
        assert_eq!(status, StatusCode::OK, "{me}");
        me["csrf_token"].as_str().unwrap().to_string()
    }

    /// A state-changing API call with the CSRF header; (status, JSON body).
    pub async fn api_send(
        &self,
        browser: &Browser,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let csrf = self.csrf(browser).await;
        let mut request = browser
            .client
            .request(method, self.at(path))
            .header("x-csrf-token", csrf);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}
