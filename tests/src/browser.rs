//! A browser without a screen: a cookie jar and manual redirects, so tests can walk a
//! sign-in across the dashboard and the identity provider and look at every hop.

use std::sync::Arc;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::redirect::Policy;
use reqwest::{Response, StatusCode};

pub struct Browser {
    pub client: reqwest::Client,
    pub jar: Arc<Jar>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(Policy::none())
            .build()
            .unwrap();
        Browser { client, jar }
    }

    pub async fn get(&self, url: &str) -> Response {
        self.client.get(url).send().await.unwrap()
    }

    /// Follows redirects from `url` until one points at a URL starting with `stop_at`
    /// (returned, not visited) or a response is not a redirect (then panics).
    pub async fn follow_until(&self, url: &str, stop_at: &str) -> String {
        let mut next = url.to_string();
        for _ in 0..20 {
            let response = self.get(&next).await;
            let status = response.status();
            assert!(
                status.is_redirection(),
                "{next}: expected a redirect on the way to {stop_at}, got {status}: {}",
                response.text().await.unwrap_or_default()
            );
            let location = location(&response, &next);
            if location.starts_with(stop_at) {
                return location;
            }
            next = location;
        }
        panic!("more than 20 redirects from {url}");
    }

    /// The value of cookie `name` the jar would send to `url`.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        let url = url.parse().unwrap();
        let header = self.jar.cookies(&url)?;
        header.to_str().ok()?.split("; ").find_map(|pair| {
            pair.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }
}

/// The absolute URL a redirect points at.
pub fn location(response: &Response, base: &str) -> String {
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .unwrap_or_else(|| panic!("no Location in the {} redirect", response.status()))
        .to_str()
        .unwrap();
    url::Url::parse(base)
        .unwrap()
        .join(location)
        .unwrap()
        .to_string()
}

/// Asserts a redirect and returns where to.
pub fn redirect_target(response: &Response, base: &str) -> String {
    assert!(
        matches!(
            response.status(),
            StatusCode::SEE_OTHER | StatusCode::FOUND | StatusCode::TEMPORARY_REDIRECT
        ),
        "expected a redirect, got {}",
        response.status()
    );
    location(response, base)
}
