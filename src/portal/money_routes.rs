//! `GET /v1/accounts/{id}/usage`, `/transactions`, `/alerts` and `POST /credits`: totals grouped
//! by local day, month, destination or account; ledger entries with the balance after each; the
//! account's alerts; and operator credits made once per `Idempotency-Key`.

use super::account_routes::read_visible_account;
use super::query_params::{QueryParams, next_cursor};
use super::{ApiError, covered_accounts, require_operator, unavailable};
use crate::credit::alert_events::alert_listing;
use crate::daemon::DaemonShared;
use crate::limits::{PORTAL_PAGE_DEFAULT, PORTAL_PAGE_MAX};
use crate::money::{ledger_decimal, ledger_units};
use crate::store::ledger_store::{
    IdempotencyKeyReused, PeriodAlreadyClosed, UsageGrouping, UsageQuery, now_micros,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{Datelike, TimeZone};
use chrono_tz::Tz;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The ledger kinds a transactions filter may name.
const ENTRY_KINDS: &[&str] = &["usage", "credit", "auto_recharge", "rerate"];

/// Midnight of the first of the month of `now` in `time_zone`: where month-to-date starts.
fn start_of_month_micros(now_micros: i64, time_zone: Tz) -> i64 {
    let local = chrono::DateTime::from_timestamp_micros(now_micros)
        .expect("now is a valid time")
        .with_timezone(&time_zone);
    let first = chrono::NaiveDate::from_ymd_opt(local.year(), local.month(), 1)
        .expect("the first of a month is a date");
    crate::ingest::timestamp::local_midnight_micros(first, time_zone)
}

pub async fn usage(
    State(shared): State<Arc<DaemonShared>>,
    Path(id): Path<String>,
    Query(parameters): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    read_visible_account(shared, headers, id, move |store, visible| {
        let id = visible.stored.account.id.clone();
        let mut parameters = QueryParams::new(parameters);
        let (time_zone, from, to) = parameters
            .zone_and_range(&visible.stored.account.time_zone)
            .map_err(ApiError::bad_parameter)?;
        let now = now_micros();
        let from = from.unwrap_or_else(|| start_of_month_micros(now, time_zone));
        let to = to.unwrap_or(now);
        let group_by = parameters
            .one_of("group_by", &["day", "month", "destination", "account"])
            .map_err(ApiError::bad_parameter)?
            .unwrap_or_else(|| "day".to_string());
        let include_sub_accounts = parameters
            .boolean("include_sub_accounts")
            .map_err(ApiError::bad_parameter)?;
        parameters.finish().map_err(ApiError::bad_parameter)?;
        if from >= to {
            return Err(ApiError::bad_parameter("from: must be before to".into()));
        }
        // A breakdown by account is of the sub-accounts, whether asked for or not.
        let subtree = include_sub_accounts || group_by == "account";
        let accounts = covered_accounts(store, &id, subtree)?;
        let grouping = match group_by.as_str() {
            "destination" => UsageGrouping::Destination,
            "account" => UsageGrouping::Account,
            _ => UsageGrouping::QuarterHour,
        };
        let rows = store
            .usage_totals(&UsageQuery {
                accounts,
                subtree_of: subtree.then(|| id.clone()),
                from_micros: from,
                to_micros: to,
                grouping,
            })
            .map_err(unavailable)?;
        // (group key, currency) → (calls, billable seconds, cost units)
        let mut groups: BTreeMap<(String, String), (i64, i64, i64)> = BTreeMap::new();
        let mut totals: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
        for row in rows {
            let key = match grouping {
                UsageGrouping::QuarterHour => {
                    let start: i64 = row.key.parse().map_err(|_| {
                        unavailable(anyhow::anyhow!("usage key {:?} is not a time", row.key))
                    })?;
                    let local = time_zone.timestamp_micros(start).single().ok_or_else(|| {
                        unavailable(anyhow::anyhow!("usage time {start} is out of range"))
                    })?;
                    let format = if group_by == "month" {
                        "%Y-%m"
                    } else {
                        "%Y-%m-%d"
                    };
                    local.format(format).to_string()
                }
                _ => row.key,
            };
            for sums in [
                groups.entry((key, row.currency.clone())).or_default(),
                totals.entry(row.currency).or_default(),
            ] {
                sums.0 += row.calls;
                sums.1 += row.billable_seconds;
                sums.2 += row.cost_units;
            }
        }
        let shown = |(calls, seconds, cost): (i64, i64, i64)| {
            json!({
                "calls": calls,
                "billable_seconds": seconds,
                "cost": ledger_decimal(cost).to_string(),
            })
        };
        let local_time = |micros: i64| {
            chrono::DateTime::from_timestamp_micros(micros)
                .map(|time| time.with_timezone(&time_zone).to_rfc3339())
        };
        Ok(Json(json!({
            "account": id,
            "time_zone": time_zone.name(),
            "from": local_time(from),
            "to": local_time(to),
            "group_by": group_by,
            "groups": groups.into_iter().map(|((key, currency), sums)| {
                let mut group = shown(sums);
                group["key"] = key.into();
                group["currency"] = currency.into();
                group
            }).collect::<Vec<_>>(),
            "totals": totals.into_iter().map(|(currency, sums)| {
                let mut total = shown(sums);
                total["currency"] = currency.into();
                total
            }).collect::<Vec<_>>(),
        }))
        .into_response())
    })
    .await
}

pub async fn transactions(
    State(shared): State<Arc<DaemonShared>>,
    Path(id): Path<String>,
    Query(parameters): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    read_visible_account(shared, headers, id, move |store, visible| {
        let account = &visible.stored.account;
        let mut parameters = QueryParams::new(parameters);
        let (time_zone, from, to) = parameters
            .zone_and_range(&account.time_zone)
            .map_err(ApiError::bad_parameter)?;
        let kind = parameters
            .one_of("kind", ENTRY_KINDS)
            .map_err(ApiError::bad_parameter)?;
        let limit = parameters
            .limit("limit", PORTAL_PAGE_DEFAULT, PORTAL_PAGE_MAX)
            .map_err(ApiError::bad_parameter)?;
        let after_id = match parameters.text("cursor") {
            None => 0,
            Some(text) => text.parse::<i64>().map_err(|_| {
                ApiError::bad_parameter(format!(
                    "cursor: {text:?} is not a cursor this API gave out"
                ))
            })?,
        };
        parameters.finish().map_err(ApiError::bad_parameter)?;
        let entries = store
            .ledger_entries_of(
                &account.id,
                from.unwrap_or(i64::MIN),
                to.unwrap_or(i64::MAX),
                kind.as_deref(),
                after_id,
                limit,
            )
            .map_err(unavailable)?;
        let next_cursor = next_cursor(&entries, limit, |entry| entry.id.to_string());
        let shown: Vec<serde_json::Value> = entries
            .iter()
            .map(|entry| {
                json!({
                    "id": entry.id,
                    "time": chrono::DateTime::from_timestamp_micros(entry.created_at_micros)
                        .map(|time| time.with_timezone(&time_zone).to_rfc3339()),
                    "kind": entry.kind,
                    "amount": ledger_decimal(entry.amount_units).to_string(),
                    "balance_after": ledger_decimal(entry.balance_after_units).to_string(),
                    "reference": entry.reference,
                })
            })
            .collect();
        Ok(Json(json!({
            "account": account.id,
            "currency": account.currency,
            "entries": shown,
            "next_cursor": next_cursor,
        }))
        .into_response())
    })
    .await
}

pub async fn alerts(
    State(shared): State<Arc<DaemonShared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    read_visible_account(shared, headers, id, move |store, visible| {
        let account = &visible.stored.account;
        let shown: Vec<serde_json::Value> = store
            .alerts_of(&account.id)
            .map_err(unavailable)?
            .iter()
            .map(|alert| alert_listing(alert, &account.currency))
            .collect();
        Ok(Json(json!({ "account": account.id, "alerts": shown })).into_response())
    })
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    /// RFC 3339, or a date (its midnight in the account's zone); now when absent.
    at: Option<String>,
}

/// `POST /v1/accounts/{id}/billing-periods/close` (operator tokens), `{"at"?}`: the calls that
/// started before `at` are billed and no longer listed as unbilled. Closing at the same time
/// again changes nothing; at a time before the last close is 409.
pub async fn close_billing_period(
    State(shared): State<Arc<DaemonShared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    read_visible_account(shared, headers, id, move |store, visible| {
        require_operator(&visible.scope, "closing a billing period")?;
        let body: CloseBody = if body.is_empty() {
            CloseBody { at: None }
        } else {
            serde_json::from_slice(&body)
                .map_err(|error| ApiError::bad_parameter(format!("body: {error}")))?
        };
        let account = visible.stored.account;
        let time_zone: Tz = account.time_zone.parse().unwrap_or(chrono_tz::UTC);
        let now = now_micros();
        let at = match &body.at {
            None => now,
            Some(text) => crate::ingest::timestamp::parse_time_bound_micros(text, time_zone)
                .ok_or_else(|| {
                    ApiError::bad_parameter(format!(
                        "at: {text:?} is not a date (YYYY-MM-DD) or a time (RFC 3339)"
                    ))
                })?,
        };
        if at > now {
            return Err(ApiError::bad_parameter(
                "at: a billing period cannot be closed in the future".into(),
            ));
        }
        let open_from = store
            .close_billing_period(&account.id, at)
            .map_err(|error| match error.downcast_ref::<PeriodAlreadyClosed>() {
                Some(closed) => ApiError::new(StatusCode::CONFLICT, closed.to_string()),
                None => unavailable(error),
            })?;
        let shown = chrono::DateTime::from_timestamp_micros(open_from)
            .map(|time| time.with_timezone(&time_zone).to_rfc3339());
        Ok(Json(json!({ "account": account.id, "open_from": shown })).into_response())
    })
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreditBody {
    amount: String,
    reason: String,
}

/// `POST /v1/accounts/{id}/credits` (operator tokens): `{"amount", "reason"}` with an
/// `Idempotency-Key` header. The same key again credits nothing and answers the first credit;
/// the same key for another credit is 409.
pub async fn credit(
    State(shared): State<Arc<DaemonShared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = headers
        .get("Idempotency-Key")
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|key| !key.is_empty() && key.len() <= 256)
        .map(str::to_string);
    read_visible_account(shared, headers, id, move |store, visible| {
        require_operator(&visible.scope, "crediting an account")?;
        let key = key.ok_or_else(|| {
            ApiError::bad_parameter(
                "Idempotency-Key: the header is required (1 to 256 characters)".into(),
            )
        })?;
        let body: CreditBody = serde_json::from_slice(&body)
            .map_err(|error| ApiError::bad_parameter(format!("body: {error}")))?;
        let amount_units = body
            .amount
            .parse::<rust_decimal::Decimal>()
            .ok()
            .filter(|amount| amount.is_sign_positive() && !amount.is_zero())
            .and_then(ledger_units)
            .ok_or_else(|| {
                ApiError::bad_parameter(format!(
                    "amount: {:?} is not a positive amount with at most 8 decimals",
                    body.amount
                ))
            })?;
        if body.reason.trim().is_empty() || body.reason.len() > 1024 {
            return Err(ApiError::bad_parameter(
                "reason: say why, in 1 to 1024 characters".into(),
            ));
        }
        let account = visible.stored.account;
        let outcome = store
            .credit(&account.id, amount_units, &body.reason, &key)
            .map_err(|error| match error.downcast_ref::<IdempotencyKeyReused>() {
                Some(reused) => ApiError::new(StatusCode::CONFLICT, reused.to_string()),
                None => unavailable(error),
            })?;
        let status = if outcome.replayed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        Ok((
            status,
            Json(json!({
                "account": account.id,
                "entry_id": outcome.entry_id,
                "amount": ledger_decimal(amount_units).to_string(),
                "currency": account.currency,
                "balance_after": ledger_decimal(outcome.balance_after_units).to_string(),
                "replayed": outcome.replayed,
            })),
        )
            .into_response())
    })
    .await
}
