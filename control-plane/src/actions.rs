//! What people do, once: each action checks its input, changes the store and, for
//! admins, writes the audit log (before and after). The HTML pages and the JSON API
//! both call these, so a form and its API twin cannot drift apart.

use serde_json::json;
use tokenroute_domain::{ApiKey, KeyLimits, NanoUsd};
use tokenroute_store::{
    Account, Announcement, KeyRecord, LedgerKind, NewAdminAction, NewAnnouncement, NewKey,
};

use crate::error::ApiError;
use crate::session::SignedIn;
use crate::AppState;

const MAX_NAME_CHARS: usize = 100;
/// A policy change is announced at least this long before it takes effect ([P21]).
pub const POLICY_NOTICE_MS: i64 = 14 * 86_400_000;

/// A name a person typed: trimmed, 1–100 printable characters.
pub fn valid_name<'a>(what: &str, name: &'a str) -> Result<&'a str, ApiError> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::BadRequest(format!(
            "{what} must be 1 to {MAX_NAME_CHARS} printable characters"
        )));
    }
    Ok(name)
}

// ---- keys of the signed-in account ----

/// The key, if it is the signed-in account's (someone else's is "not found", not
/// "forbidden": key ids of other accounts are not confirmed to exist).
pub async fn own_key(app: &AppState, user: &SignedIn, key_id: &str) -> Result<KeyRecord, ApiError> {
    app.store
        .key_by_id(key_id)
        .await?
        .filter(|k| k.account_id == user.account_id)
        .ok_or_else(|| ApiError::NotFound(format!("no key {key_id}")))
}

/// Creates a key; returns it and its secret (shown once, never stored: [P13]).
pub async fn create_key(
    app: &AppState,
    user: &SignedIn,
    name: &str,
    limits: KeyLimits,
) -> Result<(KeyRecord, ApiKey), ApiError> {
    let name = valid_name("name", name)?;
    let secret = ApiKey::generate();
    let record = app
        .store
        .create_key(
            &NewKey {
                account_id: &user.account_id,
                name,
                limits,
            },
            &secret,
        )
        .await?;
    Ok((record, secret))
}

/// Renames a key and/or replaces its limits.
pub async fn update_key(
    app: &AppState,
    user: &SignedIn,
    key_id: &str,
    name: Option<&str>,
    limits: Option<KeyLimits>,
) -> Result<KeyRecord, ApiError> {
    let key = own_key(app, user, key_id).await?;
    if key.revoked_at_ms.is_some() {
        return Err(ApiError::Conflict("a revoked key cannot be changed".into()));
    }
    if let Some(name) = name {
        app.store
            .rename_key(&key.id, valid_name("name", name)?)
            .await?;
    }
    if let Some(limits) = limits {
        app.store.set_key_limits(&key.id, &limits).await?;
    }
    own_key(app, user, key_id).await
}

/// Turns request debugging on or off ([P6]): while on, the proxy keeps the key's
/// request and answer bodies for 7 days; revoking the key deletes them.
pub async fn set_key_debug(
    app: &AppState,
    user: &SignedIn,
    key_id: &str,
    enabled: bool,
) -> Result<KeyRecord, ApiError> {
    let key = own_key(app, user, key_id).await?;
    if key.revoked_at_ms.is_some() {
        return Err(ApiError::Conflict("a revoked key cannot be changed".into()));
    }
    app.store.set_key_debug(&key.id, enabled).await?;
    own_key(app, user, key_id).await
}

/// The key's captured exchanges, newest first.
pub async fn key_debug_logs(
    app: &AppState,
    user: &SignedIn,
    key_id: &str,
) -> Result<(KeyRecord, Vec<tokenroute_store::DebugLog>), ApiError> {
    let key = own_key(app, user, key_id).await?;
    let logs = app.store.debug_logs_of_key(&key.id, 100).await?;
    Ok((key, logs))
}

/// Revokes a key for good ([P17]).
pub async fn revoke_key(
    app: &AppState,
    user: &SignedIn,
    key_id: &str,
) -> Result<KeyRecord, ApiError> {
    let key = own_key(app, user, key_id).await?;
    app.store.revoke_key(&key.id).await?;
    own_key(app, user, key_id).await
}

// ---- the signed-in account ([P19]) ----

pub async fn set_display_name(app: &AppState, user: &SignedIn, name: &str) -> Result<(), ApiError> {
    let name = valid_name("display name", name)?;
    app.store.set_display_name(&user.account_id, name).await?;
    Ok(())
}

/// Everything held about the account, as one JSON document.
pub async fn export(app: &AppState, user: &SignedIn) -> Result<serde_json::Value, ApiError> {
    use crate::api::views::*;
    let store = &app.store;
    let account = store
        .account(&user.account_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let keys = store.keys_of_account(&account.id).await?;
    let usage = store.usage_of_account(&account.id, i64::MAX).await?;
    let ledger = store.ledger(&account.id, i64::MAX).await?;
    let topups = store.topups_of_account(&account.id).await?;
    let mut debug_logs = Vec::new();
    for key in &keys {
        for log in store.debug_logs_of_key(&key.id, i64::MAX).await? {
            debug_logs.push(DebugLogView::from(&log));
        }
    }
    let sessions: Vec<serde_json::Value> = store
        .sessions_of_account(&account.id, tokenroute_domain::clock::now_ms())
        .await?
        .into_iter()
        .map(|(created, expires)| json!({"signed_in_at": time(created), "expires_at": time(expires)}))
        .collect();
    Ok(json!({
        "exported_at": time(tokenroute_domain::clock::now_ms()),
        "notice": "Everything TokenRoute holds about this account. API keys are stored only as SHA-256 hashes, so their secrets cannot be exported; prompts and completions are not stored.",
        "account": AccountView::from(&account),
        "balance_usd": usd(store.balance(&account.id).await?),
        "sessions": sessions,
        "keys": keys.iter().map(KeyView::from).collect::<Vec<_>>(),
        "usage": usage.iter().map(UsageView::from).collect::<Vec<_>>(),
        "ledger": ledger.iter().map(LedgerView::from).collect::<Vec<_>>(),
        "topups": topups.iter().map(TopUpView::from).collect::<Vec<_>>(),
        "debug_logs": debug_logs,
    }))
}

/// Deletes the signed-in account. `confirm` must be its email.
pub async fn delete_own_account(
    app: &AppState,
    user: &SignedIn,
    confirm: &str,
) -> Result<(), ApiError> {
    if !confirm.trim().eq_ignore_ascii_case(&user.email) {
        return Err(ApiError::BadRequest(
            "type your email address to confirm the deletion".into(),
        ));
    }
    app.store.delete_account(&user.account_id).await?;
    app.forget_at_identity_provider();
    tracing::info!(account = %user.account_id, "account deleted by its owner");
    Ok(())
}

// ---- admin ----

async fn audit(
    app: &AppState,
    admin: &SignedIn,
    action: &str,
    target: &str,
    detail: Option<&str>,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> Result<(), ApiError> {
    let before = before.map(|v| v.to_string());
    let after = after.map(|v| v.to_string());
    app.store
        .record_admin_action(&NewAdminAction {
            admin_email: &admin.email,
            action,
            target,
            detail,
            before: before.as_deref(),
            after: after.as_deref(),
        })
        .await?;
    Ok(())
}

async fn live_account(app: &AppState, account_id: &str) -> Result<Account, ApiError> {
    app.store
        .account(account_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no account {account_id}")))
}

/// What an admin credit did.
pub struct Credited {
    pub booked: bool,
    pub reference: String,
    pub balance: NanoUsd,
}

/// Credits (or debits) an account with a required reason: an `adjustment` entry. The
/// same idempotency key books once.
pub async fn admin_credit(
    app: &AppState,
    admin: &SignedIn,
    account_id: &str,
    amount_usd: &str,
    reason: &str,
    idempotency_key: Option<&str>,
) -> Result<Credited, ApiError> {
    let amount = NanoUsd::parse_usd(amount_usd)
        .ok()
        .filter(|n| n.nanos() != 0)
        .ok_or_else(|| ApiError::BadRequest("the amount must be a non-zero USD amount".into()))?;
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ApiError::BadRequest("a reason is required".into()));
    }
    live_account(app, account_id).await?;
    let reference = match idempotency_key.map(str::trim) {
        Some(key) if !key.is_empty() => format!("admin:{key}"),
        _ => format!("admin:{}", tokenroute_store::new_id()),
    };
    let before = app.store.balance(account_id).await?;
    let booked = app
        .store
        .book(
            account_id,
            LedgerKind::Adjustment,
            amount,
            &reference,
            Some(reason),
        )
        .await?;
    let balance = app.store.balance(account_id).await?;
    if booked {
        audit(
            app,
            admin,
            "credit",
            account_id,
            Some(&format!("{} — {reason}", usd_text(amount))),
            Some(json!({"balance_usd": usd_text(before)})),
            Some(json!({"balance_usd": usd_text(balance), "reference": reference})),
        )
        .await?;
    }
    Ok(Credited {
        booked,
        reference,
        balance,
    })
}

fn usd_text(n: NanoUsd) -> String {
    n.to_decimal()
}

/// Ends every dashboard session of the account ([P18]).
pub async fn admin_end_sessions(
    app: &AppState,
    admin: &SignedIn,
    account_id: &str,
) -> Result<u64, ApiError> {
    let ended = app.store.end_sessions_of_account(account_id).await?;
    audit(
        app,
        admin,
        "end_sessions",
        account_id,
        Some(&format!("{ended} session(s)")),
        None,
        None,
    )
    .await?;
    Ok(ended)
}

/// Suspends or reactivates an account (its keys are refused while it is suspended).
pub async fn admin_set_account_suspended(
    app: &AppState,
    admin: &SignedIn,
    account_id: &str,
    suspended: bool,
) -> Result<(), ApiError> {
    let before = live_account(app, account_id).await?.status;
    let after = if suspended { "suspended" } else { "active" };
    app.store.set_account_status(account_id, after).await?;
    audit(
        app,
        admin,
        if suspended {
            "suspend_account"
        } else {
            "unsuspend_account"
        },
        account_id,
        None,
        Some(json!({"status": before})),
        Some(json!({"status": after})),
    )
    .await
}

/// Suspends or unsuspends one key.
pub async fn admin_set_key_suspended(
    app: &AppState,
    admin: &SignedIn,
    key_id: &str,
    suspended: bool,
) -> Result<KeyRecord, ApiError> {
    let before = app
        .store
        .key_by_id(key_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no key {key_id}")))?;
    app.store.set_key_suspended(key_id, suspended).await?;
    audit(
        app,
        admin,
        if suspended {
            "suspend_key"
        } else {
            "unsuspend_key"
        },
        key_id,
        Some(&format!("account {}", before.account_id)),
        Some(json!({"suspended": before.suspended_at_ms.is_some()})),
        Some(json!({"suspended": suspended})),
    )
    .await?;
    app.store
        .key_by_id(key_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no key {key_id}")))
}

/// Deletes an account (e.g. reported as a minor's, [P20]) with a required reason.
pub async fn admin_delete_account(
    app: &AppState,
    admin: &SignedIn,
    account_id: &str,
    reason: &str,
) -> Result<(), ApiError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ApiError::BadRequest("a reason is required".into()));
    }
    let before = live_account(app, account_id).await?;
    app.store.delete_account(account_id).await?;
    app.forget_at_identity_provider();
    audit(
        app,
        admin,
        "delete_account",
        account_id,
        Some(reason),
        // No email here: the audit log outlives the account's personal data ([P14]).
        Some(json!({"status": before.status})),
        Some(json!({"status": "deleted"})),
    )
    .await
}

/// Publishes a banner. A policy change must take effect at least 14 days after now.
pub async fn admin_announce(
    app: &AppState,
    admin: &SignedIn,
    kind: &str,
    message: &str,
    starts_at_ms: Option<i64>,
    ends_at_ms: Option<i64>,
    effective_at_ms: Option<i64>,
) -> Result<Announcement, ApiError> {
    let now = tokenroute_domain::clock::now_ms();
    let message = message.trim();
    if message.is_empty() || message.chars().count() > 500 {
        return Err(ApiError::BadRequest(
            "the message must be 1 to 500 characters".into(),
        ));
    }
    let starts = starts_at_ms.unwrap_or(now);
    if ends_at_ms.is_some_and(|end| end <= starts) {
        return Err(ApiError::BadRequest("it must end after it starts".into()));
    }
    let effective_at_ms = match kind {
        "notice" => None,
        "policy" => {
            let effective = effective_at_ms.ok_or_else(|| {
                ApiError::BadRequest("a policy change needs the date it takes effect".into())
            })?;
            if effective < now + POLICY_NOTICE_MS || effective < starts + POLICY_NOTICE_MS {
                return Err(ApiError::BadRequest(
                    "a policy change must be announced at least 14 days before it takes effect"
                        .into(),
                ));
            }
            Some(effective)
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "kind must be `notice` or `policy`, not `{other}`"
            )))
        }
    };
    let created = app
        .store
        .create_announcement(&NewAnnouncement {
            kind,
            message,
            starts_at_ms: starts,
            ends_at_ms,
            effective_at_ms,
            created_by: &admin.email,
        })
        .await?;
    if kind == "policy" {
        app.email_policy_changes();
    }
    audit(
        app,
        admin,
        "announce",
        &created.id,
        Some(message),
        None,
        Some(json!({"kind": kind, "starts_at_ms": starts, "effective_at_ms": effective_at_ms})),
    )
    .await?;
    Ok(created)
}

pub async fn admin_retire_announcement(
    app: &AppState,
    admin: &SignedIn,
    id: &str,
) -> Result<(), ApiError> {
    app.store.retire_announcement(id).await?;
    audit(app, admin, "retire_announcement", id, None, None, None).await
}
