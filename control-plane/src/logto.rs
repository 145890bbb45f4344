//! Logto's Management API, for one thing: deleting the user of a deleted account, so
//! the identity provider forgets them too ([P11] [P14] [P19]). A machine-to-machine
//! app gets a token by the client-credentials grant; `DELETE /api/users/{id}` removes
//! the user. Deleted accounts whose user is not deleted yet are retried hourly by the
//! retention job.

use std::time::Duration;

use serde::Deserialize;
use tokenroute_domain::config::LogtoManagement;
use tokenroute_store::Store;

pub struct Logto {
    config: LogtoManagement,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Token {
    access_token: String,
}

impl Logto {
    pub fn new(config: LogtoManagement) -> Result<Logto, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Logto { config, http })
    }

    async fn token(&self) -> Result<String, String> {
        let response = self
            .http
            .post(format!("{}/oidc/token", self.config.endpoint))
            .basic_auth(
                &self.config.client_id,
                Some(self.config.client_secret.expose()),
            )
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", self.config.resource.as_str()),
                ("scope", "all"),
            ])
            .send()
            .await
            .map_err(|e| format!("token request: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("token request refused: {}", response.status()));
        }
        Ok(response
            .json::<Token>()
            .await
            .map_err(|e| format!("token answer: {e}"))?
            .access_token)
    }

    /// Deletes the user; one already gone counts as deleted.
    pub async fn delete_user(&self, subject: &str) -> Result<(), String> {
        let token = self.token().await?;
        let mut url = url::Url::parse(&format!("{}/api/users/", self.config.endpoint))
            .map_err(|e| e.to_string())?;
        url.path_segments_mut()
            .map_err(|_| "endpoint cannot be a base URL".to_string())?
            .pop_if_empty()
            .push(subject);
        let response = self
            .http
            .delete(url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| format!("delete request: {e}"))?;
        match response.status().as_u16() {
            200..=299 | 404 => Ok(()),
            status => Err(format!("Logto refused to delete the user: HTTP {status}")),
        }
    }
}

/// Asks Logto to delete the user of every deleted account not done yet. Returns how
/// many were deleted; failures are logged and retried next time.
pub async fn delete_pending(store: &Store, logto: &Logto, now_ms: i64) -> u64 {
    let pending = match store.accounts_awaiting_idp_deletion().await {
        Ok(pending) => pending,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list accounts awaiting deletion at Logto");
            return 0;
        }
    };
    let mut done = 0;
    for (account, subject) in pending {
        match logto.delete_user(&subject).await {
            Ok(()) => {
                if store.mark_idp_deleted(&account, now_ms).await.is_ok() {
                    done += 1;
                }
            }
            Err(e) => {
                tracing::warn!(%account, error = %e, "deleting the user at Logto failed; will retry")
            }
        }
    }
    done
}
