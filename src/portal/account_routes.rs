//! `GET /v1/accounts/{id}`, `/children`, `/unbilled-calls` and `/rejects`: an account's profile
//! and balance, the accounts below it, its rated calls newest first with times in the caller's
//! zone, and (for operators) its refused CDRs.

use super::query_params::{QueryParams, encode_cursor, encode_opaque, next_cursor};
use super::{
    ApiError, ApiResult, authorize_read, bearer_token, covered_accounts, not_found, read_store,
    require_operator, unavailable,
};
use crate::credit::accounts::Account;
use crate::credit::trunks::{TrunkKind, trunks_of};
use crate::daemon::DaemonShared;
use crate::limits::{PORTAL_PAGE_DEFAULT, PORTAL_PAGE_MAX};
use crate::money::{ledger_decimal, ledger_units};
use crate::store::ledger_store::{CallsQuery, LedgerStore, StoredAccount, StoredCall, TokenScope};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono_tz::Tz;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// An account a token may see: its profile and balance, and the token's scope.
pub struct VisibleAccount {
    pub stored: StoredAccount,
    pub scope: TokenScope,
}

/// Answers a route of account `id`: checks the bearer token, then runs `read` on the reader
/// connection with the account, if the token may see it.
pub async fn read_visible_account(
    shared: Arc<DaemonShared>,
    headers: HeaderMap,
    id: String,
    read: impl FnOnce(&mut dyn LedgerStore, VisibleAccount) -> ApiResult + Send + 'static,
) -> Response {
    let answered = match bearer_token(&shared, &headers) {
        Ok(token) => {
            read_store(&shared, move |store| {
                let scope = authorize_read(store, &token, &id)?;
                let stored = store
                    .account(&id)
                    .map_err(unavailable)?
                    .ok_or_else(|| not_found(&id))?;
                read(store, VisibleAccount { stored, scope })
            })
            .await
        }
        Err(refusal) => Err(refusal),
    };
    answered.unwrap_or_else(IntoResponse::into_response)
}

pub async fn account(
    State(shared): State<Arc<DaemonShared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    read_visible_account(shared, headers, id, |store, visible| {
        let stored = visible.stored;
        let holds = store
            .account_holds(&stored.account.id)
            .map_err(unavailable)?;
        Ok(Json(account_view(&stored.account, stored.balance_units, &holds)).into_response())
    })
    .await
}

/// An account as the portal shows it: money as exact decimal strings, `available` = balance +
/// credit limit − reservations (`null` when credit is unlimited).
fn account_view(account: &Account, balance_units: i64, holds: &[(String, i64, i64)]) -> Value {
    let reserved_units: i64 = holds.iter().map(|(_, _, reserved)| reserved).sum();
    let in_use = |kind: TrunkKind| {
        holds
            .iter()
            .filter(|(held_kind, _, _)| held_kind == kind.as_str())
            .map(|(_, calls, _)| calls)
            .sum::<i64>()
    };
    let trunks = |counts: &dyn Fn(TrunkKind) -> i64| {
        json!({
            "inbound": counts(TrunkKind::Inbound),
            "outbound": counts(TrunkKind::Outbound),
            "two_way": counts(TrunkKind::TwoWay),
        })
    };
    let available = account.credit_limit.map(|limit| {
        ledger_decimal(balance_units + ledger_units(limit).unwrap_or(0) - reserved_units)
            .to_string()
    });
    json!({
        "id": account.id,
        "name": account.name,
        "parent": account.parent,
        "currency": account.currency,
        "time_zone": account.time_zone,
        "status": account.status.as_str(),
        "balance": ledger_decimal(balance_units).to_string(),
        "credit_limit": account.credit_limit.map(|limit| limit.normalize().to_string()),
        "reserved": ledger_decimal(reserved_units).to_string(),
        "available": available,
        "allow_per_minute": account.allow_per_minute,
        "trunks": {
            "configured": trunks(&|kind| i64::from(trunks_of(account, kind))),
            "in_use": trunks(&in_use),
        },
        "thresholds": account.thresholds.iter().map(|threshold| threshold.normalize().to_string()).collect::<Vec<_>>(),
        "auto_recharge": account.auto_recharge.as_ref().map(|recharge| json!({
            "threshold": recharge.threshold.normalize().to_string(),
            "amount": recharge.amount.normalize().to_string(),
            "local_time": recharge.local_time.format("%H:%M").to_string(),
        })),
        "webhook_url": account.webhook_url,
    })
}

pub async fn children(
    State(shared): State<Arc<DaemonShared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    read_visible_account(shared, headers, id, |store, visible| {
        let id = visible.stored.account.id;
        let child_ids: Vec<String> = store
            .account_subtree(&id)
            .map_err(unavailable)?
            .into_iter()
            .filter(|(_, parent)| parent.as_deref() == Some(id.as_str()))
            .map(|(child, _)| child)
            .collect();
        let mut shown = Vec::with_capacity(child_ids.len());
        for child in child_ids {
            if let Some(stored) = store.account(&child).map_err(unavailable)? {
                shown.push(json!({
                    "id": stored.account.id,
                    "name": stored.account.name,
                    "currency": stored.account.currency,
                    "status": stored.account.status.as_str(),
                    "balance": ledger_decimal(stored.balance_units).to_string(),
                }));
            }
        }
        Ok(Json(json!({ "account": id, "children": shown })).into_response())
    })
    .await
}

pub async fn unbilled_calls(
    State(shared): State<Arc<DaemonShared>>,
    Path(id): Path<String>,
    Query(parameters): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    read_visible_account(shared, headers, id, |store, visible| {
        let stored = visible.stored;
        let id = stored.account.id.clone();
        let mut parameters = QueryParams::new(parameters);
        let (time_zone, from, to) = parameters
            .zone_and_range(&stored.account.time_zone)
            .map_err(ApiError::bad_parameter)?;
        let direction = parameters
            .one_of("direction", &["inbound", "outbound"])
            .map_err(ApiError::bad_parameter)?;
        let include_sub_accounts = parameters
            .boolean("include_sub_accounts")
            .map_err(ApiError::bad_parameter)?;
        let limit = parameters
            .limit("limit", PORTAL_PAGE_DEFAULT, PORTAL_PAGE_MAX)
            .map_err(ApiError::bad_parameter)?;
        let before = parameters
            .cursor("cursor")
            .map_err(ApiError::bad_parameter)?;
        parameters.finish().map_err(ApiError::bad_parameter)?;
        let query = CallsQuery {
            accounts: covered_accounts(store, &id, include_sub_accounts)?,
            from_micros: from.unwrap_or(i64::MIN),
            to_micros: to.unwrap_or(i64::MAX),
            direction,
            before,
            limit,
            unbilled_only: true,
        };
        if query.from_micros >= query.to_micros {
            return Err(ApiError::bad_parameter(
                "from: must be before to".to_string(),
            ));
        }
        let calls = store.calls_newest_first(&query).map_err(unavailable)?;
        let next_cursor = next_cursor(&calls, limit, |call| encode_cursor(&call.cursor()));
        Ok(Json(json!({
            "account": id,
            "time_zone": time_zone.name(),
            "calls": calls.iter().map(|call| call_view(call, time_zone)).collect::<Vec<_>>(),
            "next_cursor": next_cursor,
        }))
        .into_response())
    })
    .await
}

/// A rated call with its times in `time_zone`.
fn call_view(call: &StoredCall, time_zone: Tz) -> Value {
    let local = |micros: Option<i64>| {
        micros
            .and_then(chrono::DateTime::from_timestamp_micros)
            .map(|time| time.with_timezone(&time_zone).to_rfc3339())
    };
    json!({
        "source": call.source,
        "cdr_id": call.cdr_id,
        "account": call.account,
        "direction": call.direction,
        "caller": call.caller,
        "callee": call.callee,
        "start_time": local(Some(call.start_time_micros)),
        "answer_time": local(call.answer_time_micros),
        "end_time": local(call.end_time_micros),
        "billsec": call.billsec,
        "billable_seconds": call.billable_seconds,
        "destination": call.destination,
        "rate": call.rate,
        "cost": ledger_decimal(call.cost_units).to_string(),
        "currency": call.currency,
        "billing_class": call.billing_class,
    })
}

/// `GET /v1/accounts/{id}/rejects?limit&cursor` (operator tokens): the account's CDRs that were
/// refused, newest first, each with its file or request, line, reason and the record as sent.
pub async fn rejects(
    State(shared): State<Arc<DaemonShared>>,
    Path(id): Path<String>,
    Query(parameters): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    read_visible_account(shared, headers, id, |store, visible| {
        require_operator(&visible.scope, "listing rejects")?;
        let mut parameters = QueryParams::new(parameters);
        let limit = parameters
            .limit("limit", PORTAL_PAGE_DEFAULT, PORTAL_PAGE_MAX)
            .map_err(ApiError::bad_parameter)?;
        let before = parameters
            .reject_cursor("cursor")
            .map_err(ApiError::bad_parameter)?;
        parameters.finish().map_err(ApiError::bad_parameter)?;
        let id = visible.stored.account.id;
        let rejects = store
            .rejects_of_account(&id, before, limit)
            .map_err(unavailable)?;
        let next_cursor = next_cursor(&rejects, limit, |last| {
            encode_opaque(&(last.batch_id, last.reject.line as i64))
        });
        let shown: Vec<Value> = rejects
            .iter()
            .map(|listed| {
                json!({
                    "origin": listed.reject.origin_label,
                    "line": listed.reject.line,
                    "reason": listed.reject.reason,
                    "raw_record": listed.reject.raw_record,
                    "rejected_at": chrono::DateTime::from_timestamp_micros(listed.rejected_at_micros)
                        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
                })
            })
            .collect();
        Ok(Json(json!({ "account": id, "rejects": shown, "next_cursor": next_cursor })).into_response())
    })
    .await
}
