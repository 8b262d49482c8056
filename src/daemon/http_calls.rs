//! Real-time authorization over HTTP: `POST /v1/calls/authorize`, `POST /v1/calls/{id}/keepalive`
//! and `POST /v1/calls/{id}/end`. The decision is made inside one store transaction (see
//! `credit::authorization`) by the authorizer thread, many calls per transaction; this module
//! reads and checks requests, queues them, and prices calls with the daemon's rating context.

use super::DaemonShared;
use super::authorizer::{CallWork, Reply};
use super::http_layers::error_response;
use crate::batch::rated_block::RatingContext;
use crate::cdr::{Direction, is_plausible_identifier, normalize_number};
use crate::credit::authorization::{Authorization, AuthorizationRequest, ChainLevel, decide};
use crate::ingest::timestamp::parse_timestamp_micros;
use crate::money::ledger_decimal;
use crate::rate::pricing::price_call;
use crate::store::ledger_store::{CallRecord, CallRefusal, now_micros};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorizeBody {
    call_id: String,
    account: String,
    direction: String,
    caller: String,
    callee: String,
    /// RFC 3339, or a local time in the input time zone; now when absent.
    time: Option<String>,
}

/// Reads and checks an authorization request; the error names the field.
fn authorization_request(
    body: &[u8],
    input_time_zone: chrono_tz::Tz,
) -> Result<AuthorizationRequest, String> {
    let body: AuthorizeBody =
        serde_json::from_slice(body).map_err(|error| format!("malformed request: {error}"))?;
    for (field, value) in [("call_id", &body.call_id), ("account", &body.account)] {
        if !is_plausible_identifier(value) {
            return Err(format!(
                "{field} must be 1 to 256 bytes without control characters"
            ));
        }
    }
    let direction = Direction::parse(&body.direction)
        .ok_or_else(|| format!("direction {:?} is not inbound or outbound", body.direction))?;
    let number = |field: &str, value: &str| {
        normalize_number(value)
            .map(|number| number.into_owned())
            .map_err(|_| format!("{field} {value:?} is not a phone number"))
    };
    let time_micros = match &body.time {
        None => now_micros(),
        Some(text) => parse_timestamp_micros(text, input_time_zone)
            .ok_or_else(|| format!("time {text:?} is not an RFC 3339 time"))?,
    };
    Ok(AuthorizationRequest {
        call_id: body.call_id,
        account: body.account,
        direction,
        caller: number("caller", &body.caller)?,
        callee: number("callee", &body.callee)?,
        time_micros,
    })
}

/// Decides with the account's deck for the call's direction: the rate of the callee at the
/// call's time prices any length of call.
pub(super) fn decide_with_rates(
    shared: &DaemonShared,
    context: &RatingContext,
    request: &AuthorizationRequest,
    chain: &[ChainLevel],
) -> Authorization {
    let deck = context
        .deck_choice
        .deck_for(&request.account, request.direction)
        .ok()
        .map(|index| &context.decks[usize::from(index)]);
    let rate = deck.and_then(|deck| {
        deck.find_rate(&request.callee, request.time_micros, request.direction)
            .map(|rate_id| (deck, rate_id))
    });
    // Saturating: a price beyond i64 ledger units (an absurd deck or duration cap) is simply more
    // than any balance, never a panic.
    let cost_units = |seconds: u32| -> i64 {
        let (deck, rate_id) = rate.expect("priced only when rated");
        let charge = price_call(
            deck,
            rate_id,
            request.time_micros,
            seconds,
            request.direction,
        );
        let factor = crate::money::pow10(
            crate::money::LEDGER_DECIMALS
                - deck.rounding.decimals.min(crate::money::LEDGER_DECIMALS),
        );
        i64::try_from(charge.cost_mantissa.saturating_mul(factor)).unwrap_or(i64::MAX / 4)
    };
    let priced: Option<&dyn Fn(u32) -> i64> = rate.map(|_| &cost_units as &dyn Fn(u32) -> i64);
    decide(
        request,
        chain,
        &shared.trunk_eligibility,
        priced,
        shared.config.call_max_duration_seconds,
    )
}

/// Queues work for the authorizer and waits for its answer; a full queue or a stopping daemon
/// is a 503.
async fn through_authorizer<T>(
    shared: &DaemonShared,
    work: impl FnOnce(Reply<T>) -> CallWork,
) -> anyhow::Result<T> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    shared
        .call_work
        .try_send(work(reply))
        .map_err(|_| anyhow::anyhow!("the authorization queue is full"))?;
    answer
        .await
        .map_err(|_| anyhow::anyhow!("tollgate is stopping"))?
}

/// The answer for a store error: the refusals are the client's, anything else is the store's.
fn refusal_response(error: &anyhow::Error) -> Response {
    match error.downcast_ref::<CallRefusal>() {
        Some(refusal @ CallRefusal::UnknownAccount(_)) => {
            error_response(StatusCode::UNPROCESSABLE_ENTITY, refusal.to_string())
        }
        Some(refusal @ (CallRefusal::CallIdReused(_) | CallRefusal::CallEnded(_))) => {
            error_response(StatusCode::CONFLICT, refusal.to_string())
        }
        None => {
            tracing::warn!("call authorization store error: {error:#}");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store cannot take the request now; retry later",
            )
        }
    }
}

pub async fn authorize(State(shared): State<Arc<DaemonShared>>, body: Bytes) -> Response {
    let started = std::time::Instant::now();
    let request = match authorization_request(&body, shared.rating.context().input_time_zone) {
        Ok(request) => request,
        Err(problem) => return error_response(StatusCode::BAD_REQUEST, problem),
    };
    let answered = through_authorizer(&shared, |reply| CallWork::Authorize { request, reply })
        .await
        .and_then(|answer| answer.map_err(anyhow::Error::from));
    let answer = match answered {
        Ok(answer) => answer,
        Err(error) => return refusal_response(&error),
    };
    let authorization = &answer.authorization;
    shared
        .metrics
        .authorizations
        .with_label_values(&[authorization.decision.as_str()])
        .inc();
    shared
        .metrics
        .authorization_seconds
        .observe(started.elapsed().as_secs_f64());
    axum::Json(json!({
        "call_id": authorization.call_id,
        "decision": authorization.decision.as_str(),
        "reason": authorization.reason,
        "denied_by": authorization.denied_by,
        "max_duration_seconds": authorization.max_duration_seconds,
        "reservation": {
            "amount": ledger_decimal(authorization.reserved_units()).to_string(),
            "currency": authorization.currency,
            "holds": authorization.holds.iter().map(|hold| json!({
                "account": hold.account,
                "trunk": hold.trunk.map(|kind| kind.as_str()),
                "reserved": ledger_decimal(hold.reserved_units).to_string(),
            })).collect::<Vec<_>>(),
        },
        "replayed": answer.replayed,
    }))
    .into_response()
}

fn call_answer(record: Option<CallRecord>, call_id: &str) -> Response {
    match record {
        None => error_response(
            StatusCode::NOT_FOUND,
            format!("no call {call_id:?} was authorized"),
        ),
        Some(record) => axum::Json(json!({
            "call_id": record.call_id,
            "state": record.state,
            "decision": record.authorization.decision.as_str(),
            "expires_at": chrono::DateTime::from_timestamp_micros(record.expires_at_micros)
                .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        }))
        .into_response(),
    }
}

pub async fn keepalive(
    State(shared): State<Arc<DaemonShared>>,
    Path(call_id): Path<String>,
) -> Response {
    let id = call_id.clone();
    match through_authorizer(&shared, |reply| CallWork::Keepalive { call_id: id, reply }).await {
        Ok(record) => call_answer(record, &call_id),
        Err(error) => refusal_response(&error),
    }
}

pub async fn end(State(shared): State<Arc<DaemonShared>>, Path(call_id): Path<String>) -> Response {
    let id = call_id.clone();
    match through_authorizer(&shared, |reply| CallWork::End { call_id: id, reply }).await {
        Ok(record) => call_answer(record, &call_id),
        Err(error) => refusal_response(&error),
    }
}
