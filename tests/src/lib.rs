//! The end-to-end harness: a real TokenRoute (both planes, in-process, real sockets),
//! a fake provider speaking OpenAI's, Anthropic's and Gemini's wire formats (the
//! shapes of `fixtures/providers/`),
//! and a fresh store per test on SQLite or Postgres.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod browser;
pub mod chrome;
pub mod dashboard;
pub mod db;
pub mod evidence;
pub mod fake_logto;
pub mod fake_provider;
pub mod fake_smtp;
pub mod fake_stripe;
pub mod gateway;
pub mod oidc_server;

pub use browser::Browser;
pub use db::{Backend, TestDb};
pub use fake_provider::{Dialect, FakeOpenAi, FakeProvider, Reply};
pub use fake_stripe::FakeStripe;
pub use gateway::Gateway;
pub use oidc_server::OidcServer;

/// Reads a provider fixture from `fixtures/providers/`.
pub fn fixture(path: &str) -> Vec<u8> {
    let full = format!(
        "{}/../fixtures/providers/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&full).unwrap_or_else(|e| panic!("fixture {full}: {e}"))
}

/// A free TCP port on 127.0.0.1 (bound, then released for the server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port on 127.0.0.1 that refuses connections for as long as the socket lives: bound
/// and never listening. A port from [`free_port`] would do only until another test's
/// server is given it (then a "dead" provider answers, with that server's 404).
pub fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// Generates one `#[tokio::test]` per store backend (modules `sqlite` and `postgres`)
/// for each `async fn name(backend: Backend)` listed.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await
                }
            )*
        }
    };
}
