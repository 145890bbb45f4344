//! What the JSON API returns and accepts. Money is a decimal USD string (`"12.5"`,
//! exact, never a float); times are RFC 3339 (UTC).

use serde::{Deserialize, Serialize};
use tokenroute_domain::usage::UsageEvent;
use tokenroute_domain::{KeyLimits, NanoUsd};
use tokenroute_store::{Account, AdminAction, KeyRecord, LedgerEntry, TopUp};
use utoipa::ToSchema;

use crate::error::ApiError;

pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

pub fn usd(n: NanoUsd) -> String {
    n.to_decimal()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    pub id: String,
    pub email: String,
    pub display_name: Option<String>,
    /// `active`, `suspended` or `deleted`.
    pub status: String,
    pub created_at: String,
    pub first_sign_in_at: Option<String>,
    pub last_sign_in_at: Option<String>,
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> Self {
        AccountView {
            id: a.id.clone(),
            email: a.email.clone(),
            display_name: a.display_name.clone(),
            status: a.status.clone(),
            created_at: time(a.created_at_ms),
            first_sign_in_at: a.first_sign_in_at_ms.map(time),
            last_sign_in_at: a.last_sign_in_at_ms.map(time),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    pub account: AccountView,
    pub balance_usd: String,
    pub is_admin: bool,
    /// Send this as the `x-csrf-token` header with every POST, PATCH and DELETE.
    pub csrf_token: String,
}

/// A key's limits as shown; `null` means no limit.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsView {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens (input + output) per minute.
    pub tpm: Option<u64>,
    pub spend_per_day_usd: Option<String>,
    pub spend_per_month_usd: Option<String>,
    pub spend_total_usd: Option<String>,
    /// Model ids the key may use; `null`: every model.
    pub allowed_models: Option<Vec<String>>,
}

impl From<&KeyLimits> for LimitsView {
    fn from(l: &KeyLimits) -> Self {
        LimitsView {
            rpm: l.rpm,
            tpm: l.tpm,
            spend_per_day_usd: l.spend_per_day.map(usd),
            spend_per_month_usd: l.spend_per_month.map(usd),
            spend_total_usd: l.spend_total.map(usd),
            allowed_models: l.allowed_models.clone(),
        }
    }
}

/// Limits as set; every field optional, `null` or absent means no limit.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsInput {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub spend_per_day_usd: Option<String>,
    pub spend_per_month_usd: Option<String>,
    pub spend_total_usd: Option<String>,
    pub allowed_models: Option<Vec<String>>,
}

impl LimitsInput {
    /// Checks the input: positive amounts, known models.
    pub fn into_limits(self, known_model: impl Fn(&str) -> bool) -> Result<KeyLimits, ApiError> {
        let amount = |field: &str, text: Option<String>| -> Result<Option<NanoUsd>, ApiError> {
            text.map(|t| {
                NanoUsd::parse_usd(&t)
                    .ok()
                    .filter(|n| n.is_positive())
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "limits.{field}: `{t}` is not a positive USD amount"
                        ))
                    })
            })
            .transpose()
        };
        if self.rpm == Some(0) || self.tpm == Some(0) {
            return Err(ApiError::BadRequest(
                "limits.rpm and limits.tpm must be positive (null for no limit)".into(),
            ));
        }
        if let Some(models) = &self.allowed_models {
            if let Some(unknown) = models.iter().find(|m| !known_model(m)) {
                return Err(ApiError::BadRequest(format!(
                    "limits.allowed_models: `{unknown}` is not a model of this gateway"
                )));
            }
        }
        Ok(KeyLimits {
            rpm: self.rpm,
            tpm: self.tpm,
            spend_per_day: amount("spend_per_day_usd", self.spend_per_day_usd)?,
            spend_per_month: amount("spend_per_month_usd", self.spend_per_month_usd)?,
            spend_total: amount("spend_total_usd", self.spend_total_usd)?,
            allowed_models: self.allowed_models,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    /// The key's first characters, e.g. `tr-AbCd`.
    pub prefix: String,
    pub last_four: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    /// Suspended by the operator: refused until unsuspended.
    pub suspended: bool,
    /// Request debugging ([P6]): bodies kept 7 days, deleted when the key is revoked.
    pub debug: bool,
    pub limits: LimitsView,
}

impl From<&KeyRecord> for KeyView {
    fn from(k: &KeyRecord) -> Self {
        KeyView {
            id: k.id.clone(),
            name: k.name.clone(),
            prefix: k.display_prefix.clone(),
            last_four: k.last_four.clone(),
            created_at: time(k.created_at_ms),
            last_used_at: k.last_used_at_ms.map(time),
            revoked_at: k.revoked_at_ms.map(time),
            suspended: k.suspended_at_ms.is_some(),
            debug: k.debug_enabled,
            limits: LimitsView::from(&k.limits),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKeyRequest {
    pub name: String,
    #[serde(default)]
    pub limits: Option<LimitsInput>,
}

/// The new key. `secret` appears in this response only: TokenRoute keeps its SHA-256.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub key: KeyView,
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyRequest {
    pub name: Option<String>,
    /// Replaces every limit (absent fields become "no limit").
    pub limits: Option<LimitsInput>,
    /// Request debugging on or off ([P6]).
    pub debug: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    pub request_id: String,
    pub key_id: String,
    pub created_at: String,
    pub model: String,
    pub provider: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub cost_usd: String,
    pub status: u16,
    pub streamed: bool,
    pub cancelled: bool,
    /// The provider reported no usage; the cost is TokenRoute's estimate.
    pub estimated: bool,
    pub duration_ms: i64,
}

impl From<&UsageEvent> for UsageView {
    fn from(u: &UsageEvent) -> Self {
        UsageView {
            request_id: u.request_id.clone(),
            key_id: u.key_id.clone(),
            created_at: time(u.created_at_ms),
            model: u.model.clone(),
            provider: u.provider.clone(),
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cached_input_tokens: u.cached_input_tokens,
            cost_usd: usd(u.cost),
            status: u.status,
            streamed: u.streamed,
            cancelled: u.cancelled,
            estimated: u.estimated,
            duration_ms: u.duration_ms,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageList {
    pub usage: Vec<UsageView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerView {
    /// `topup`, `usage`, `adjustment`, `refund`, `dispute`, `dispute_reversal`.
    pub kind: String,
    /// Positive credits, negative debits.
    pub amount_usd: String,
    /// The request id, Stripe Checkout Session id, refund or dispute id, ...
    pub reference: String,
    pub note: Option<String>,
    pub created_at: String,
}

impl From<&LedgerEntry> for LedgerView {
    fn from(e: &LedgerEntry) -> Self {
        LedgerView {
            kind: e.kind.clone(),
            amount_usd: usd(e.amount),
            reference: e.reference.clone(),
            note: e.note.clone(),
            created_at: time(e.created_at_ms),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerList {
    pub balance_usd: String,
    pub entries: Vec<LedgerView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopUpView {
    pub session_id: String,
    pub amount_usd: String,
    /// `pending` or `paid`.
    pub status: String,
    pub created_at: String,
    pub paid_at: Option<String>,
}

impl From<&TopUp> for TopUpView {
    fn from(t: &TopUp) -> Self {
        TopUpView {
            session_id: t.stripe_session_id.clone(),
            amount_usd: usd(t.amount),
            status: t.status.clone(),
            created_at: time(t.created_at_ms),
            paid_at: t.paid_at_ms.map(time),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopUpList {
    pub topups: Vec<TopUpView>,
    pub min_usd: Option<String>,
    pub max_usd: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// Whole cents within the configured bounds, e.g. `"20"` or `"12.50"`.
    pub amount_usd: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckoutView {
    pub session_id: String,
    /// Send the browser here to pay.
    pub checkout_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountSummaryView {
    pub account: AccountView,
    pub balance_usd: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountList {
    pub accounts: Vec<AccountSummaryView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditRequest {
    /// Positive to credit, negative to debit.
    pub amount_usd: String,
    /// Why; kept in the ledger entry's note and the audit log.
    pub reason: String,
    /// The same key books once, however often the request is sent.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreditView {
    pub booked: bool,
    pub reference: String,
    pub balance_usd: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndedSessions {
    pub ended: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminActionView {
    pub admin_email: String,
    pub action: String,
    pub target: String,
    pub detail: Option<String>,
    /// The state before and after the action (JSON text), when it changed one.
    pub before: Option<String>,
    pub after: Option<String>,
    pub created_at: String,
}

impl From<&AdminAction> for AdminActionView {
    fn from(a: &AdminAction) -> Self {
        AdminActionView {
            admin_email: a.admin_email.clone(),
            action: a.action.clone(),
            target: a.target.clone(),
            detail: a.detail.clone(),
            before: a.before.clone(),
            after: a.after.clone(),
            created_at: time(a.created_at_ms),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub actions: Vec<AdminActionView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    /// Your name as shown in the dashboard ([P19]: correct your data).
    pub display_name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteMeRequest {
    /// Your email address, to confirm.
    pub confirm: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Done {
    pub done: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnnouncementView {
    pub id: String,
    /// `notice` or `policy`.
    pub kind: String,
    pub message: String,
    pub starts_at: String,
    pub ends_at: Option<String>,
    /// Policy changes: when they take effect (at least 14 days after announced).
    pub effective_at: Option<String>,
    pub retired: bool,
}

impl From<&tokenroute_store::Announcement> for AnnouncementView {
    fn from(a: &tokenroute_store::Announcement) -> Self {
        AnnouncementView {
            id: a.id.clone(),
            kind: a.kind.clone(),
            message: a.message.clone(),
            starts_at: time(a.starts_at_ms),
            ends_at: a.ends_at_ms.map(time),
            effective_at: a.effective_at_ms.map(time),
            retired: a.retired_at_ms.is_some(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnnouncementList {
    pub announcements: Vec<AnnouncementView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnounceRequest {
    /// `notice` or `policy`.
    pub kind: String,
    pub message: String,
    /// RFC 3339 or `YYYY-MM-DD` (UTC); default now.
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    /// Required for `policy`, at least 14 days ahead.
    pub effective_at: Option<String>,
}

/// RFC 3339, or a `YYYY-MM-DD` day (UTC midnight), as Unix ms.
pub fn parse_time(field: &str, text: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp_millis())
        .ok()
        .or_else(|| tokenroute_domain::clock::parse_ymd(text))
        .ok_or_else(|| ApiError::BadRequest(format!("{field}: `{text}` is not a date or time")))
}

/// One captured exchange of a key with request debugging on ([P6]).
#[derive(Debug, Serialize, ToSchema)]
pub struct DebugLogView {
    pub request_id: String,
    pub key_id: String,
    pub created_at: String,
    pub status: u16,
    pub model: String,
    pub request_body: String,
    pub response_body: String,
    /// A body was cut at 256 KiB.
    pub truncated: bool,
}

impl From<&tokenroute_store::DebugLog> for DebugLogView {
    fn from(l: &tokenroute_store::DebugLog) -> Self {
        DebugLogView {
            request_id: l.request_id.clone(),
            key_id: l.key_id.clone(),
            created_at: time(l.created_at_ms),
            status: l.status,
            model: l.model.clone(),
            request_body: l.request_body.clone(),
            response_body: l.response_body.clone(),
            truncated: l.truncated,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DebugLogList {
    pub debug_logs: Vec<DebugLogView>,
}
