//! Email, for one thing so far: telling every active account about a policy change
//! ([P21]) when an SMTP server is configured (`[email]`). The dashboard banner is
//! shown either way. Sent in the background when an admin announces the change, and
//! retried hourly by the retention job until every recipient got it (at least once:
//! a retry after a partial failure may send some twice).

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokenroute_domain::config::EmailConfig;
use tokenroute_store::{Announcement, Store};

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(config: &EmailConfig) -> Result<Mailer, String> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.smtp_url)
            .map_err(|e| format!("email.smtp-url: {e}"))?;
        if let (Some(password), Ok(url)) = (&config.password, url::Url::parse(&config.smtp_url)) {
            builder = builder.credentials(Credentials::new(
                url.username().to_string(),
                password.expose().clone(),
            ));
        }
        Ok(Mailer {
            transport: builder.build(),
            from: config
                .from
                .parse()
                .map_err(|e| format!("email.from: {e}"))?,
        })
    }

    async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), String> {
        let message = Message::builder()
            .from(self.from.clone())
            .to(to.parse().map_err(|e| format!("{to}: {e}"))?)
            .subject(subject)
            .body(body)
            .map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

async fn email_one(
    store: &Store,
    mailer: &Mailer,
    a: &Announcement,
    public_url: &str,
) -> Result<usize, String> {
    let recipients = store
        .active_account_emails()
        .await
        .map_err(|e| e.to_string())?;
    let effective = a
        .effective_at_ms
        .map(tokenroute_domain::clock::ymd)
        .unwrap_or_default();
    let subject = format!("TokenRoute: a policy change takes effect on {effective}");
    let body = format!(
        "{}\n\nThis change takes effect on {effective} (UTC). Sign in at {public_url} for details.\n\n\
         You receive this because you have a TokenRoute account; policy changes are announced \
         at least 14 days ahead.\n",
        a.message
    );
    for to in &recipients {
        mailer.send(to, &subject, body.clone()).await?;
    }
    Ok(recipients.len())
}

/// Emails every pending policy change to every active account; returns how many emails
/// went out.
pub async fn email_policy_changes(
    store: &Store,
    mailer: &Mailer,
    public_url: &str,
    now_ms: i64,
) -> usize {
    let pending = match store.policy_changes_to_email().await {
        Ok(pending) => pending,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list policy changes to email");
            return 0;
        }
    };
    let mut sent = 0;
    for announcement in pending {
        match email_one(store, mailer, &announcement, public_url).await {
            Ok(n) => {
                sent += n;
                if let Err(e) = store
                    .mark_announcement_emailed(&announcement.id, now_ms)
                    .await
                {
                    tracing::warn!(error = %e, "cannot record a policy email as sent");
                }
                tracing::info!(announcement = %announcement.id, recipients = n, "policy change emailed");
            }
            Err(e) => {
                tracing::warn!(announcement = %announcement.id, error = %e, "emailing a policy change failed; will retry")
            }
        }
    }
    sent
}
