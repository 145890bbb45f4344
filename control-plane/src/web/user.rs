//! The signed-in user's pages: overview, keys, usage, credits, account.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Serialize;
use tokenroute_domain::clock::{month_start_ms, now_ms};
use tokenroute_domain::{KeyLimits, NanoUsd};
use tokenroute_store::{KeyRecord, UsageFilter, UsageTotals};
use tower_sessions::Session;

use super::charts::{self, Bar};
use super::forms::{self, Fields};
use super::{done, flash, Page, PageUser, WebError};
use crate::session::{SignedIn, USER_KEY};
use crate::{actions, AppState};

const PAGE_ROWS: i64 = 50;
const DAY_MS: i64 = 86_400_000;

#[derive(Serialize)]
struct TotalsView {
    group: String,
    requests: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost: String,
}

impl From<&UsageTotals> for TotalsView {
    fn from(t: &UsageTotals) -> Self {
        TotalsView {
            group: t.group.clone(),
            requests: t.requests,
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            cost: t.cost.to_string(),
        }
    }
}

#[derive(Serialize)]
struct LimitsForm {
    rpm: Option<u64>,
    tpm: Option<u64>,
    daily: Option<String>,
    monthly: Option<String>,
    total: Option<String>,
    models: Option<Vec<String>>,
}

impl From<&KeyLimits> for LimitsForm {
    fn from(l: &KeyLimits) -> Self {
        LimitsForm {
            rpm: l.rpm,
            tpm: l.tpm,
            daily: l.spend_per_day.map(NanoUsd::to_decimal),
            monthly: l.spend_per_month.map(NanoUsd::to_decimal),
            total: l.spend_total.map(NanoUsd::to_decimal),
            models: l.allowed_models.clone(),
        }
    }
}

#[derive(Serialize)]
struct KeyRow {
    id: String,
    name: String,
    prefix: String,
    last_four: String,
    created_at: String,
    last_used_at: Option<String>,
    revoked: bool,
    revoked_at: Option<String>,
    suspended: bool,
    debug: bool,
    limits_summary: String,
    limits: LimitsForm,
}

impl From<&KeyRecord> for KeyRow {
    fn from(k: &KeyRecord) -> Self {
        KeyRow {
            id: k.id.clone(),
            name: k.name.clone(),
            prefix: k.display_prefix.clone(),
            last_four: k.last_four.clone(),
            created_at: forms::time(k.created_at_ms),
            last_used_at: k.last_used_at_ms.map(forms::time),
            revoked: k.revoked_at_ms.is_some(),
            revoked_at: k.revoked_at_ms.map(forms::time),
            suspended: k.suspended_at_ms.is_some(),
            debug: k.debug_enabled,
            limits_summary: forms::limits_summary(&k.limits),
            limits: LimitsForm::from(&k.limits),
        }
    }
}

fn chat_models(app: &AppState) -> Vec<String> {
    app.config.models.iter().map(|m| m.id.clone()).collect()
}

fn api_base(app: &AppState) -> String {
    format!("http://{}", app.config.proxy.listen)
}

/// `/`: the overview when signed in, the landing page otherwise.
pub async fn overview(State(app): State<AppState>, session: Session) -> Result<Response, WebError> {
    let Some(user) = session
        .get::<SignedIn>(USER_KEY)
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?
    else {
        return Page {
            template: "landing.html",
            title: "Welcome",
            nav: "",
            flash: None,
            error: None,
        }
        .render(
            &app,
            None,
            context! { sign_in => app.oidc.is_some(), api_base => api_base(&app) },
        )
        .await;
    };
    let now = now_ms();
    let month = UsageFilter {
        from_ms: Some(month_start_ms(now)),
        ..Default::default()
    };
    let last_30 = UsageFilter {
        from_ms: Some((now / DAY_MS - 29) * DAY_MS),
        ..Default::default()
    };
    let store = &app.store;
    let balance = store.balance(&user.account_id).await?;
    let month_total = store.usage_total(&user.account_id, &month).await?;
    let days = fill_days(
        &store.usage_by_day(&user.account_id, &last_30).await?,
        now / DAY_MS - 29,
        now / DAY_MS,
    );
    let top_models: Vec<TotalsView> = store
        .usage_by_model(&user.account_id, &month)
        .await?
        .iter()
        .take(5)
        .map(TotalsView::from)
        .collect();
    let requests_chart = charts::bars(
        "Requests per day",
        &days
            .iter()
            .map(|(day, t)| Bar {
                label: forms::date(day * DAY_MS),
                value: t.requests as f64,
                shown: format!("{} requests", t.requests),
            })
            .collect::<Vec<_>>(),
    );
    let tokens_chart = charts::bars(
        "Tokens per day",
        &days
            .iter()
            .map(|(day, t)| Bar {
                label: forms::date(day * DAY_MS),
                value: (t.input_tokens + t.output_tokens) as f64,
                shown: format!("{} in, {} out", t.input_tokens, t.output_tokens),
            })
            .collect::<Vec<_>>(),
    );
    Page {
        template: "overview.html",
        title: "Overview",
        nav: "overview",
        flash: None,
        error: None,
    }
    .render(
        &app,
        Some(&user),
        context! {
            balance => balance.to_string(),
            month => TotalsView::from(&month_total),
            top_models,
            requests_chart,
            tokens_chart,
        },
    )
    .await
}

/// Every day from `first` to `last` (day numbers), zero where nothing happened.
fn fill_days(rows: &[UsageTotals], first: i64, last: i64) -> Vec<(i64, UsageTotals)> {
    (first..=last)
        .map(|day| {
            let found = rows
                .iter()
                .find(|r| r.group.parse::<i64>().ok() == Some(day * DAY_MS))
                .cloned()
                .unwrap_or_default();
            (day, found)
        })
        .collect()
}

async fn keys_page(
    app: &AppState,
    user: &SignedIn,
    flash: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, WebError> {
    let keys: Vec<KeyRow> = app
        .store
        .keys_of_account(&user.account_id)
        .await?
        .iter()
        .map(KeyRow::from)
        .collect();
    let mut response = Page {
        template: "keys.html",
        title: "API keys",
        nav: "keys",
        flash,
        error,
    }
    .render(
        app,
        Some(user),
        context! { keys, models => chat_models(app) },
    )
    .await?;
    *response.status_mut() = status;
    Ok(response)
}

pub async fn keys(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    Query(q): Query<forms::Query>,
) -> Result<Response, WebError> {
    keys_page(
        &app,
        &user,
        flash(q.get("done").map(String::as_str)),
        None,
        StatusCode::OK,
    )
    .await
}

/// Re-shows a form's page with the problem, instead of a bare error page.
async fn keys_with_error(
    app: &AppState,
    user: &SignedIn,
    e: crate::ApiError,
) -> Result<Response, WebError> {
    match e {
        crate::ApiError::BadRequest(m) | crate::ApiError::Conflict(m) => {
            keys_page(app, user, None, Some(m), StatusCode::BAD_REQUEST).await
        }
        other => Err(other.into()),
    }
}

/// Creates a key and shows it — once.
pub async fn create_key(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    fields: Fields,
) -> Result<Response, WebError> {
    let created = match fields.limits(|m| app.config.model(m).is_some()) {
        Ok(limits) => {
            actions::create_key(&app, &user, fields.get("name").unwrap_or(""), limits).await
        }
        Err(e) => Err(e),
    };
    let (record, secret) = match created {
        Ok(created) => created,
        Err(e) => return keys_with_error(&app, &user, e).await,
    };
    Page {
        template: "key_created.html",
        title: "Key created",
        nav: "keys",
        flash: None,
        error: None,
    }
    .render(
        &app,
        Some(&user),
        context! {
            name => record.name,
            secret => secret.plaintext(),
            secret_prefix => record.display_prefix,
            api_base => api_base(&app),
        },
    )
    .await
}

pub async fn rename_key(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Response, WebError> {
    match actions::update_key(
        &app,
        &user,
        &id,
        Some(fields.get("name").unwrap_or("")),
        None,
    )
    .await
    {
        Ok(_) => Ok(done("/keys", "renamed")),
        Err(e) => keys_with_error(&app, &user, e).await,
    }
}

pub async fn set_limits(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Response, WebError> {
    let updated = match fields.limits(|m| app.config.model(m).is_some()) {
        Ok(limits) => actions::update_key(&app, &user, &id, None, Some(limits)).await,
        Err(e) => Err(e),
    };
    match updated {
        Ok(_) => Ok(done("/keys", "limits")),
        Err(e) => keys_with_error(&app, &user, e).await,
    }
}

/// Asks before revoking (no script needed for the confirmation).
pub async fn confirm_revoke(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let key = actions::own_key(&app, &user, &id).await?;
    Page {
        template: "key_revoke.html",
        title: "Revoke key",
        nav: "keys",
        flash: None,
        error: None,
    }
    .render(&app, Some(&user), context! { key => KeyRow::from(&key) })
    .await
}

pub async fn revoke_key(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    actions::revoke_key(&app, &user, &id).await?;
    Ok(done("/keys", "revoked"))
}

/// Turns request debugging on or off ([P6]).
pub async fn set_debug(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Response, WebError> {
    let on = fields.get("enabled") == Some("on");
    match actions::set_key_debug(&app, &user, &id, on).await {
        Ok(_) => Ok(done("/keys", if on { "debug-on" } else { "debug-off" })),
        Err(e) => keys_with_error(&app, &user, e).await,
    }
}

/// The key's captured exchanges.
pub async fn debug_log(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let (key, logs) = actions::key_debug_logs(&app, &user, &id).await?;
    let logs: Vec<_> = logs
        .into_iter()
        .map(|l| {
            context! {
                time => forms::time(l.created_at_ms), model => l.model, status => l.status,
                request_id => l.request_id, request_body => l.request_body,
                response_body => l.response_body, truncated => l.truncated,
            }
        })
        .collect();
    Page {
        template: "key_debug.html",
        title: "Debug log",
        nav: "keys",
        flash: None,
        error: None,
    }
    .render(
        &app,
        Some(&user),
        context! { key => KeyRow::from(&key), logs },
    )
    .await
}

/// The usage filter of a query string, and the same as a query string again.
fn usage_filter(q: &forms::Query) -> (UsageFilter, String) {
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let filter = UsageFilter {
        key_id: get("key").map(str::to_string),
        model: get("model").map(str::to_string),
        from_ms: get("from").and_then(forms::parse_date),
        to_ms: get("to").and_then(forms::parse_date).map(|d| d + DAY_MS),
    };
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for k in ["key", "model", "from", "to"] {
        if let Some(v) = get(k) {
            query.append_pair(k, v);
        }
    }
    (filter, query.finish())
}

#[derive(Serialize)]
struct UsageRow {
    time: String,
    key: String,
    model: String,
    provider: String,
    input_tokens: i64,
    output_tokens: i64,
    cost: String,
    status: u16,
    estimated: bool,
    cancelled: bool,
}

pub async fn usage(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    Query(q): Query<forms::Query>,
) -> Result<Response, WebError> {
    let (filter, query) = usage_filter(&q);
    let page: i64 = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let store = &app.store;
    let keys = store.keys_of_account(&user.account_id).await?;
    let key_name = |id: &str| {
        keys.iter()
            .find(|k| k.id == id)
            .map(|k| k.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let total = store.usage_total(&user.account_id, &filter).await?;
    let rows: Vec<UsageRow> = store
        .usage_page(&user.account_id, &filter, PAGE_ROWS, (page - 1) * PAGE_ROWS)
        .await?
        .iter()
        .map(|u| UsageRow {
            time: forms::time(u.created_at_ms),
            key: key_name(&u.key_id),
            model: u.model.clone(),
            provider: u.provider.clone(),
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cost: u.cost.to_string(),
            status: u.status,
            estimated: u.estimated,
            cancelled: u.cancelled,
        })
        .collect();
    let pages = ((total.requests + PAGE_ROWS - 1) / PAGE_ROWS).max(1);
    let page_link = |p: i64| {
        let sep = if query.is_empty() { "" } else { "&" };
        format!("{query}{sep}page={p}")
    };
    let cost_bars = |totals: &[UsageTotals], label: &dyn Fn(&str) -> String| -> Vec<Bar> {
        totals
            .iter()
            .map(|t| Bar {
                label: label(&t.group),
                value: t.cost.nanos() as f64,
                shown: format!("{} ({} requests)", t.cost, t.requests),
            })
            .collect()
    };
    let mut by_day = store.usage_by_day(&user.account_id, &filter).await?;
    if by_day.len() > 92 {
        by_day = by_day.split_off(by_day.len() - 92);
    }
    let day_chart = charts::bars(
        "Cost by day",
        &cost_bars(&by_day, &|g| forms::date(g.parse().unwrap_or(0))),
    );
    let model_chart = charts::bars(
        "Cost by model",
        &cost_bars(
            &store.usage_by_model(&user.account_id, &filter).await?,
            &|g| g.to_string(),
        ),
    );
    let key_chart = charts::bars(
        "Cost by key",
        &cost_bars(
            &store.usage_by_key(&user.account_id, &filter).await?,
            &key_name,
        ),
    );
    let key_options: Vec<KeyRow> = keys.iter().map(KeyRow::from).collect();
    Page {
        template: "usage.html",
        title: "Usage",
        nav: "usage",
        flash: None,
        error: None,
    }
    .render(
        &app,
        Some(&user),
        context! {
            keys => key_options,
            models => chat_models(&app),
            filter => context! {
                key => q.get("key"), model => q.get("model"),
                from => q.get("from"), to => q.get("to"),
            },
            query => query.clone(),
            total => TotalsView::from(&total),
            rows,
            page,
            pages,
            prev_page => (page > 1).then(|| page_link(page - 1)),
            next_page => (page < pages).then(|| page_link(page + 1)),
            day_chart,
            model_chart,
            key_chart,
        },
    )
    .await
}

/// The filtered usage as CSV (up to 100,000 rows, newest first).
pub async fn usage_csv(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    Query(q): Query<forms::Query>,
) -> Result<Response, WebError> {
    let (filter, _) = usage_filter(&q);
    let rows = app
        .store
        .usage_page(&user.account_id, &filter, 100_000, 0)
        .await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let write = |out: &mut csv::Writer<Vec<u8>>, record: &[String]| {
        out.write_record(record)
            .map_err(|e| WebError::Internal(e.to_string()))
    };
    write(
        &mut out,
        &[
            "time_utc",
            "request_id",
            "key_id",
            "model",
            "provider",
            "upstream_model",
            "input_tokens",
            "cached_input_tokens",
            "output_tokens",
            "cost_usd",
            "status",
            "streamed",
            "cancelled",
            "estimated",
            "duration_ms",
        ]
        .map(String::from),
    )?;
    for u in &rows {
        write(
            &mut out,
            &[
                forms::time(u.created_at_ms),
                u.request_id.clone(),
                u.key_id.clone(),
                u.model.clone(),
                u.provider.clone(),
                u.upstream_model.clone(),
                u.input_tokens.to_string(),
                u.cached_input_tokens.to_string(),
                u.output_tokens.to_string(),
                u.cost.to_decimal(),
                u.status.to_string(),
                u.streamed.to_string(),
                u.cancelled.to_string(),
                u.estimated.to_string(),
                u.duration_ms.to_string(),
            ],
        )?;
    }
    let body = out
        .into_inner()
        .map_err(|e| WebError::Internal(e.to_string()))?;
    Ok(download(
        "text/csv; charset=utf-8",
        "attachment; filename=\"tokenroute-usage.csv\"",
        body,
    ))
}

/// A file the browser saves rather than shows.
fn download(content_type: &'static str, disposition: &'static str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

#[derive(Serialize)]
struct LedgerRow {
    time: String,
    kind: String,
    amount: String,
    note: Option<String>,
    reference: String,
}

pub async fn credits(
    State(app): State<AppState>,
    PageUser(user): PageUser,
) -> Result<Response, WebError> {
    let store = &app.store;
    let entries: Vec<LedgerRow> = store
        .ledger(&user.account_id, 500)
        .await?
        .into_iter()
        .map(|e| LedgerRow {
            time: forms::time(e.created_at_ms),
            kind: e.kind,
            amount: e.amount.to_string(),
            note: e.note,
            reference: e.reference,
        })
        .collect();
    let topups: Vec<_> = store
        .topups_of_account(&user.account_id)
        .await?
        .into_iter()
        .map(|t| {
            context! {
                time => forms::time(t.created_at_ms),
                amount => t.amount.to_string(),
                status => t.status,
                session => t.stripe_session_id,
            }
        })
        .collect();
    Page {
        template: "credits.html",
        title: "Credits",
        nav: "credits",
        flash: None,
        error: None,
    }
    .render(
        &app,
        Some(&user),
        context! {
            balance => store.balance(&user.account_id).await?.to_string(),
            entries,
            topups,
            stripe => app.stripe.is_some(),
            min => app.stripe.as_ref().map(|s| s.config.min_topup.to_string()),
            max => app.stripe.as_ref().map(|s| s.config.max_topup.to_string()),
        },
    )
    .await
}

async fn account_page(
    app: &AppState,
    user: &SignedIn,
    flash: Option<String>,
    error: Option<String>,
) -> Result<Response, WebError> {
    let account = app
        .store
        .account(&user.account_id)
        .await?
        .ok_or(WebError::SignIn)?;
    let view = context! {
        email => account.email,
        display_name => account.display_name,
        created_at => forms::date(account.created_at_ms),
        first_sign_in_at => account.first_sign_in_at_ms.map(forms::time),
        last_sign_in_at => account.last_sign_in_at_ms.map(forms::time),
    };
    Page {
        template: "account.html",
        title: "Account",
        nav: "account",
        flash,
        error,
    }
    .render(app, Some(user), context! { account => view })
    .await
}

pub async fn account(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    Query(q): Query<forms::Query>,
) -> Result<Response, WebError> {
    account_page(&app, &user, flash(q.get("done").map(String::as_str)), None).await
}

pub async fn set_name(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    fields: Fields,
) -> Result<Response, WebError> {
    match actions::set_display_name(&app, &user, fields.get("display_name").unwrap_or("")).await {
        Ok(()) => Ok(done("/account", "name")),
        Err(crate::ApiError::BadRequest(m)) => {
            let mut r = account_page(&app, &user, None, Some(m)).await?;
            *r.status_mut() = StatusCode::BAD_REQUEST;
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

/// Everything held about the account, as a JSON download ([P19]).
pub async fn export(
    State(app): State<AppState>,
    PageUser(user): PageUser,
) -> Result<Response, WebError> {
    let data = actions::export(&app, &user).await?;
    let body = serde_json::to_vec_pretty(&data).map_err(|e| WebError::Internal(e.to_string()))?;
    Ok(download(
        "application/json",
        "attachment; filename=\"tokenroute-account.json\"",
        body,
    ))
}

pub async fn confirm_delete(
    State(app): State<AppState>,
    PageUser(user): PageUser,
) -> Result<Response, WebError> {
    let balance = app.store.balance(&user.account_id).await?;
    Page {
        template: "account_delete.html",
        title: "Delete account",
        nav: "account",
        flash: None,
        error: None,
    }
    .render(
        &app,
        Some(&user),
        context! { balance => balance.to_string(), email => user.email.clone() },
    )
    .await
}

/// Deletes the account and ends this session (all its sessions end with it).
pub async fn delete(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    session: Session,
    fields: Fields,
) -> Result<Response, WebError> {
    actions::delete_own_account(&app, &user, fields.get("confirm").unwrap_or("")).await?;
    session
        .flush()
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    Ok(Redirect::to("/?done=deleted").into_response())
}
