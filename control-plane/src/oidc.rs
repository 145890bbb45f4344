//! Sign-in with Logto (or any OpenID Connect issuer), by the `openidconnect` crate.
//!
//! Authorization code flow with PKCE (S256), `state` and `nonce`. The ID token is
//! verified against the issuer's JWKS: signature (asymmetric algorithms only — Logto
//! signs ES384), issuer, audience, expiry and nonce. Discovery happens on first use (a
//! provider that is down at start-up does not stop the control plane) and the JWKS is
//! fetched again when a token names a key we do not have, so key rotation is followed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, JsonWebKeySet, LogoutRequest, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadataWithLogout,
    RedirectUrl, Scope, SignatureVerificationError, TokenResponse,
};
use serde::{Deserialize, Serialize};
use tokenroute_domain::config::OidcConfig;
use tokio::sync::Mutex;

/// A new JWKS is fetched at most this often (a token with an unknown key id is either
/// rotation, which one fetch resolves, or an attack, which must not make us hammer the
/// issuer).
const JWKS_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(1);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a sign-in failed. Shown to the person signing in; details go to the log.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("the identity provider cannot be reached: {0}")]
    Discovery(String),
    #[error("this sign-in link is not the one we started (state mismatch); start again")]
    StateMismatch,
    #[error("no sign-in was in progress, or it took too long; start again")]
    NoPendingSignIn,
    #[error("the identity provider refused: {0}")]
    ProviderError(String),
    #[error("the identity provider refused the authorization code: {0}")]
    CodeExchange(String),
    #[error("the identity provider sent no ID token")]
    NoIdToken,
    #[error("the ID token is not valid: {0}")]
    InvalidIdToken(String),
    #[error("the identity provider did not share a verified email address")]
    NoEmail,
}

/// What the browser must bring back from the provider, kept in the session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingSignIn {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// Who signed in, from a verified ID token.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The provider's id of the user (`sub`).
    pub subject: String,
    pub email: String,
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub id_token: String,
}

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

struct Discovered {
    metadata: ProviderMetadataWithLogout,
    fetched_jwks_at: Instant,
}

/// The control plane's OpenID Connect relying party.
pub struct Oidc {
    config: OidcConfig,
    redirect_url: RedirectUrl,
    post_logout_url: String,
    http: reqwest::Client,
    discovered: Mutex<Option<Arc<Discovered>>>,
}

impl Oidc {
    /// `public_url` is where the dashboard is reached; the callback is
    /// `{public_url}/auth/callback`.
    pub fn new(config: OidcConfig, public_url: &str) -> Result<Oidc, String> {
        let http = reqwest::Client::builder()
            // The flow must not follow redirects on the back channel (SSRF hardening,
            // and the crate's documented requirement).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Oidc {
            redirect_url: RedirectUrl::new(format!("{public_url}/auth/callback"))
                .map_err(|e| e.to_string())?,
            post_logout_url: format!("{public_url}/"),
            config,
            http,
            discovered: Mutex::new(None),
        })
    }

    async fn discovered(&self) -> Result<Arc<Discovered>, SignInError> {
        let mut slot = self.discovered.lock().await;
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| SignInError::Discovery(e.to_string()))?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer, &self.http)
            .await
            .map_err(|e| SignInError::Discovery(error_chain(&e)))?;
        let d = Arc::new(Discovered {
            metadata,
            fetched_jwks_at: Instant::now(),
        });
        *slot = Some(d.clone());
        Ok(d)
    }

    /// Fetches the JWKS again (rotation), unless that was done a moment ago.
    async fn refresh_jwks(&self, seen: &Arc<Discovered>) -> Result<Arc<Discovered>, SignInError> {
        let mut slot = self.discovered.lock().await;
        if let Some(current) = slot.as_ref() {
            if !Arc::ptr_eq(current, seen)
                || current.fetched_jwks_at.elapsed() < JWKS_REFRESH_MIN_INTERVAL
            {
                return Ok(current.clone());
            }
        }
        let jwks: CoreJsonWebKeySet =
            JsonWebKeySet::fetch_async(seen.metadata.jwks_uri(), &self.http)
                .await
                .map_err(|e| SignInError::Discovery(error_chain(&e)))?;
        tracing::info!(issuer = %self.config.issuer, "fetched the identity provider's keys again");
        let d = Arc::new(Discovered {
            metadata: seen.metadata.clone().set_jwks(jwks),
            fetched_jwks_at: Instant::now(),
        });
        *slot = Some(d.clone());
        Ok(d)
    }

    fn client(&self, d: &Discovered) -> Client {
        CoreClient::from_provider_metadata(
            d.metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(
                self.config.client_secret.expose().clone(),
            )),
        )
        .set_redirect_uri(self.redirect_url.clone())
    }

    /// Where to send the browser to sign in, and what to remember until it comes back.
    pub async fn start(&self) -> Result<(url::Url, PendingSignIn), SignInError> {
        let d = self.discovered().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.client(&d);
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok((
            url,
            PendingSignIn {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
            },
        ))
    }

    /// Exchanges the code for tokens and verifies the ID token. The caller has already
    /// matched `state`.
    pub async fn finish(
        &self,
        pending: &PendingSignIn,
        code: &str,
    ) -> Result<Identity, SignInError> {
        let mut d = self.discovered().await?;
        let response = self
            .client(&d)
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| SignInError::CodeExchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| SignInError::CodeExchange(error_chain(&e)))?;
        let id_token = response.id_token().ok_or(SignInError::NoIdToken)?;
        let nonce = Nonce::new(pending.nonce.clone());
        let mut refreshed = false;
        let claims = loop {
            let client = self.client(&d);
            let verifier = client
                .id_token_verifier()
                .set_allowed_algs(asymmetric_algs(&d.metadata));
            match id_token.claims(&verifier, &nonce) {
                Ok(claims) => break claims.clone(),
                Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )) if !refreshed => {
                    refreshed = true;
                    d = self.refresh_jwks(&d).await?;
                }
                Err(e) => return Err(SignInError::InvalidIdToken(error_chain(&e))),
            }
        };
        let email = claims
            .email()
            .map(|e| e.as_str().trim().to_lowercase())
            .filter(|e| e.contains('@'))
            .ok_or(SignInError::NoEmail)?;
        if claims.email_verified() == Some(false) {
            return Err(SignInError::NoEmail);
        }
        let name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_string());
        let raw = id_token.to_string();
        Ok(Identity {
            subject: claims.subject().as_str().to_string(),
            email,
            name,
            roles: roles_claim(&raw),
            id_token: raw,
        })
    }

    /// The provider's end-session URL (RP-initiated logout), when it has one.
    pub async fn sign_out_url(&self, id_token: Option<&str>) -> Option<url::Url> {
        let d = self.discovered().await.ok()?;
        let endpoint = d
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        let mut request = LogoutRequest::from(endpoint)
            .set_client_id(ClientId::new(self.config.client_id.clone()));
        if let Ok(url) = PostLogoutRedirectUrl::new(self.post_logout_url.clone()) {
            request = request.set_post_logout_redirect_uri(url);
        }
        let mut url = request.http_get_url();
        if let Some(token) = id_token {
            // `set_id_token_hint` wants a parsed token; the hint is the raw string.
            url.query_pairs_mut().append_pair("id_token_hint", token);
        }
        Some(url)
    }

    pub fn admin_role(&self) -> Option<&str> {
        self.config.admin_role.as_deref()
    }
}

/// The algorithms the issuer advertises, minus symmetric ones and `none`: an ID token
/// must be signed with the issuer's key, never with our own client secret.
fn asymmetric_algs(metadata: &ProviderMetadataWithLogout) -> Vec<CoreJwsSigningAlgorithm> {
    metadata
        .id_token_signing_alg_values_supported()
        .iter()
        .filter(|a| {
            !matches!(
                a,
                CoreJwsSigningAlgorithm::HmacSha256
                    | CoreJwsSigningAlgorithm::HmacSha384
                    | CoreJwsSigningAlgorithm::HmacSha512
                    | CoreJwsSigningAlgorithm::None
            )
        })
        .cloned()
        .collect()
}

/// Logto's `roles` claim (a list of role names). Read from the token's payload after
/// the token has been verified, so the crate's standard claim types need no extension.
fn roles_claim(verified_token: &str) -> Vec<String> {
    use base64::Engine;
    let Some(payload) = verified_token.split('.').nth(1) else {
        return Vec::new();
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|claims| claims.get("roles").cloned())
        .and_then(|roles| serde_json::from_value(roles).ok())
        .unwrap_or_default()
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
