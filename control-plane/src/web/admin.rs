//! The admin console: accounts (search, detail, credit, suspend, sessions, delete),
//! models and routing, announcements, the audit log. Every change goes through
//! [`crate::actions`], which writes the audit log.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use minijinja::context;
use tokenroute_domain::clock::now_ms;

use super::forms::{self, Fields};
use super::{done, flash, Page, PageAdmin, WebError};
use crate::{actions, ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(accounts))
        .route("/admin/accounts/{id}", get(account))
        .route("/admin/accounts/{id}/credit", post(credit))
        .route("/admin/accounts/{id}/suspend", post(suspend))
        .route("/admin/accounts/{id}/unsuspend", post(unsuspend))
        .route("/admin/accounts/{id}/sessions/end", post(end_sessions))
        .route("/admin/accounts/{id}/delete", post(delete))
        .route("/admin/keys/{id}/suspend", post(suspend_key))
        .route("/admin/keys/{id}/unsuspend", post(unsuspend_key))
        .route("/admin/models", get(models))
        .route("/admin/announcements", get(announcements).post(announce))
        .route("/admin/announcements/{id}/retire", post(retire))
        .route("/admin/audit", get(audit))
}

fn page<'a>(
    template: &'a str,
    title: &'a str,
    flash: Option<String>,
    error: Option<String>,
) -> Page<'a> {
    Page {
        template,
        title,
        nav: "admin",
        flash,
        error,
    }
}

async fn accounts(
    State(app): State<AppState>,
    PageAdmin(admin): PageAdmin,
    Query(q): Query<forms::Query>,
) -> Result<Response, WebError> {
    let query = q.get("q").map(|s| s.trim()).unwrap_or("");
    let found = if query.is_empty() {
        app.store.list_accounts(200, 0).await?
    } else {
        app.store.search_accounts(query, 200).await?
    };
    let rows: Vec<_> = found
        .iter()
        .map(|a| {
            context! {
                id => a.account.id, email => a.account.email,
                display_name => a.account.display_name, status => a.account.status,
                balance => a.balance.to_string(),
                last_sign_in_at => a.account.last_sign_in_at_ms.map(forms::time),
            }
        })
        .collect();
    page(
        "admin_accounts.html",
        "Accounts",
        flash(q.get("done").map(String::as_str)),
        None,
    )
    .render(
        &app,
        Some(&admin),
        context! { sub => "accounts", q => query, accounts => rows },
    )
    .await
}

async fn account_page(
    app: &AppState,
    admin: &crate::session::SignedIn,
    id: &str,
    flash: Option<String>,
    error: Option<String>,
) -> Result<Response, WebError> {
    let store = &app.store;
    let account = store
        .account(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no account {id}")))?;
    let keys: Vec<_> = store
        .keys_of_account(id)
        .await?
        .iter()
        .map(|k| {
            context! {
                id => k.id, name => k.name, prefix => k.display_prefix, last_four => k.last_four,
                created_at => forms::time(k.created_at_ms),
                last_used_at => k.last_used_at_ms.map(forms::time),
                revoked => k.revoked_at_ms.is_some(), suspended => k.suspended_at_ms.is_some(),
            }
        })
        .collect();
    let usage: Vec<_> = store
        .usage_of_account(id, 20)
        .await?
        .iter()
        .map(|u| {
            context! {
                time => forms::time(u.created_at_ms), model => u.model,
                input_tokens => u.input_tokens, output_tokens => u.output_tokens,
                cost => u.cost.to_string(), status => u.status,
            }
        })
        .collect();
    let entries: Vec<_> = store
        .ledger(id, 50)
        .await?
        .into_iter()
        .map(|e| {
            context! {
                time => forms::time(e.created_at_ms), kind => e.kind,
                amount => e.amount.to_string(), note => e.note, reference => e.reference,
            }
        })
        .collect();
    let view = context! {
        id => account.id, email => account.email, display_name => account.display_name,
        status => account.status, created_at => forms::date(account.created_at_ms),
        first_sign_in_at => account.first_sign_in_at_ms.map(forms::time),
        last_sign_in_at => account.last_sign_in_at_ms.map(forms::time),
    };
    page("admin_account.html", "Account", flash, error)
        .render(
            app,
            Some(admin),
            context! {
                sub => "accounts",
                account => view,
                balance => store.balance(id).await?.to_string(),
                sessions => store.count_sessions_of_account(id, now_ms()).await?,
                // One key per form: a double submit books once.
                idempotency_key => tokenroute_store::new_id(),
                keys, usage, entries,
            },
        )
        .await
}

async fn account(
    State(app): State<AppState>,
    PageAdmin(admin): PageAdmin,
    Path(id): Path<String>,
    Query(q): Query<forms::Query>,
) -> Result<Response, WebError> {
    account_page(
        &app,
        &admin,
        &id,
        flash(q.get("done").map(String::as_str)),
        None,
    )
    .await
}

/// Done: back to the account with a message; a refused input: the account page again
/// with the reason.
async fn after(
    app: &AppState,
    admin: &crate::session::SignedIn,
    id: &str,
    result: Result<(), ApiError>,
    code: &str,
) -> Result<Response, WebError> {
    match result {
        Ok(()) => Ok(done(&format!("/admin/accounts/{id}"), code)),
        Err(ApiError::BadRequest(m)) => {
            let mut r = account_page(app, admin, id, None, Some(m)).await?;
            *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

async fn credit(
    State(app): State<AppState>,
    PageAdmin(admin): PageAdmin,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Response, WebError> {
    let result = actions::admin_credit(
        &app,
        &admin,
        &id,
        fields.get("amount_usd").unwrap_or(""),
        fields.get("reason").unwrap_or(""),
        fields.get("idempotency_key"),
    )
    .await
    .map(|_| ());
    after(&app, &admin, &id, result, "credited").await
}

async fn suspend(
    State(app): State<AppState>,
    PageAdmin(admin): PageAdmin,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let result = actions::admin_set_account_suspended(&app, &admin, &id, true).await;
    after(&app, &admin, &id, result, "suspended").await
}

async fn unsuspend(
    State(app): State<AppState>,
    PageAdmin(admin): PageAdmin,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let result = actions::admin_set_account_suspended(&app, &admin, &id, false).await;
    after(&app, &admin, &id, result, "unsuspended").await
}

async fn end_sessions(
    State(app): State<AppState>,
    PageAdmin(admin): PageAdmin,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let result = actions::admin_end_sessions(&app, &admin, &id)
        .await
        .map(|_| ());
    after(&app, &admin, &id, result, "sessions").await
}

async fn delete(
    State(app): State<AppState>,
    PageAdmin(admin): PageAdmin,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Response, WebError> {
    let account = app
        .store
        .account(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no account {id}")))?;
    let result = if !fields
        .get("confirm")
        .is_some_and(|c| c.eq_ignore_ascii_case(&account.email))
    {
        Err(ApiError::BadRequest(
            "type the account's email address to confirm the deletion".into(),
        ))
    } else {
        actions::admin_delete_account(&app, &admin, &id, fields.get("reason").unwrap_or("")).await
    };
    after(&app, &admin, &id, result, "deleted").await
}

async fn key_suspension(
    app: AppState,
    admin: crate::session::SignedIn,
    key_id: String,
    suspended: bool,
) -> Result<Response, WebError> {
    let key = actions::admin_set_key_suspended(&app, &admin, &key_id, suspended).await?;
    Ok(done(
        &format!("/admin/accounts/{}", key.account_id),
        if suspended {
            "suspended"
        } else {
            "unsuspended"
        },
    ))
}

async fn suspend_key(
    State(app): State<AppState>,
    PageAdmin(admin): PageAdmin,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    key_suspension(app, admin, id, true).await
}

async fn unsuspend_key(
    State(app): State<AppState>,
    PageAdmin(admin): PageAdmin,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    key_suspension(app, admin, id, false).await
}

/// Models, prices and providers from the config, with the last 24 hours of traffic.
async fn models(
    State(app): State<AppState>,
    PageAdmin(admin): PageAdmin,
) -> Result<Response, WebError> {
    let traffic = app.store.traffic_since(now_ms() - 86_400_000).await?;
    let total: i64 = traffic.iter().map(|t| t.requests).sum();
    let mut by_provider: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    let mut by_model: BTreeMap<&str, i64> = BTreeMap::new();
    for t in &traffic {
        let entry = by_provider.entry(t.provider.as_str()).or_default();
        entry.0 += t.requests;
        entry.1 += t.upstream_errors;
        *by_model.entry(t.model.as_str()).or_default() += t.requests;
    }
    let providers: Vec<_> = app
        .config
        .providers
        .iter()
        .map(|p| {
            let (requests, errors) = by_provider.get(p.id.as_str()).copied().unwrap_or((0, 0));
            let health = if requests == 0 {
                "no traffic"
            } else if errors * 20 > requests {
                "degraded"
            } else {
                "healthy"
            };
            context! {
                id => p.id,
                kind => format!("{:?}", p.kind).to_lowercase(),
                endpoint => p.endpoints.iter().map(|ep| ep.url.as_ref().map_or_else(
                    || "built in".to_string(),
                    |e| format!("{}://{}:{}{}", if e.tls { "https" } else { "http" }, e.host, e.port, e.base_path),
                )).collect::<Vec<_>>().join(", "),
                requests, errors, health,
                share => if total > 0 { format!("{:.1}%", requests as f64 * 100.0 / total as f64) } else { "—".to_string() },
            }
        })
        .collect();
    let models: Vec<_> = app
        .config
        .models
        .iter()
        .map(|m| {
            context! {
                id => m.id, upstream => m.upstream,
                input => m.price.input_per_mtok.to_string(),
                cached => m.price.cached_input_per_mtok.unwrap_or(m.price.input_per_mtok).to_string(),
                output => m.price.output_per_mtok.to_string(),
                context => m.context_window,
                capabilities => m.capabilities.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "),
                requests => by_model.get(m.id.as_str()).copied().unwrap_or(0),
            }
        })
        .collect();
    page("admin_models.html", "Models and routing", None, None)
        .render(
            &app,
            Some(&admin),
            context! { sub => "models", providers, models },
        )
        .await
}

async fn announcements_page(
    app: &AppState,
    admin: &crate::session::SignedIn,
    flash: Option<String>,
    error: Option<String>,
) -> Result<Response, WebError> {
    let items: Vec<_> = app
        .store
        .announcements()
        .await?
        .into_iter()
        .map(|a| {
            context! {
                id => a.id, kind => a.kind, message => a.message,
                starts => forms::date(a.starts_at_ms), ends => a.ends_at_ms.map(forms::date),
                effective => a.effective_at_ms.map(forms::date), created_by => a.created_by,
                retired => a.retired_at_ms.is_some(),
            }
        })
        .collect();
    page("admin_announcements.html", "Announcements", flash, error)
        .render(app, Some(admin), context! { sub => "announcements", items })
        .await
}

async fn announcements(
    State(app): State<AppState>,
    PageAdmin(admin): PageAdmin,
    Query(q): Query<forms::Query>,
) -> Result<Response, WebError> {
    announcements_page(&app, &admin, flash(q.get("done").map(String::as_str)), None).await
}

async fn announce(
    State(app): State<AppState>,
    PageAdmin(admin): PageAdmin,
    fields: Fields,
) -> Result<Response, WebError> {
    let date = |name: &str| -> Result<Option<i64>, ApiError> {
        fields
            .get(name)
            .map(|d| {
                forms::parse_date(d).ok_or_else(|| {
                    ApiError::BadRequest(format!("`{d}` is not a date (YYYY-MM-DD)"))
                })
            })
            .transpose()
    };
    let result = match (date("starts"), date("ends"), date("effective")) {
        (Ok(starts), Ok(ends), Ok(effective)) => actions::admin_announce(
            &app,
            &admin,
            fields.get("kind").unwrap_or("notice"),
            fields.get("message").unwrap_or(""),
            starts,
            ends,
            effective,
        )
        .await
        .map(|_| ()),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(e),
    };
    match result {
        Ok(()) => Ok(done("/admin/announcements", "announced")),
        Err(ApiError::BadRequest(m)) => {
            let mut r = announcements_page(&app, &admin, None, Some(m)).await?;
            *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

async fn retire(
    State(app): State<AppState>,
    PageAdmin(admin): PageAdmin,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    actions::admin_retire_announcement(&app, &admin, &id).await?;
    Ok(done("/admin/announcements", "retired"))
}

async fn audit(
    State(app): State<AppState>,
    PageAdmin(admin): PageAdmin,
) -> Result<Response, WebError> {
    let actions: Vec<_> = app
        .store
        .admin_actions(500)
        .await?
        .into_iter()
        .map(|a| {
            context! {
                time => forms::time(a.created_at_ms), admin_email => a.admin_email,
                action => a.action, target => a.target, detail => a.detail,
                before => a.before, after => a.after,
            }
        })
        .collect();
    page("admin_audit.html", "Audit log", None, None)
        .render(&app, Some(&admin), context! { sub => "audit", actions })
        .await
}
