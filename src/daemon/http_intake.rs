//! The daemon's HTTP side: `POST /v1/cdrs` (canonical CSV or JSON lines, one batch per request,
//! answered after commit), `/healthz`, `/readyz` and `/metrics`. A request is known by its
//! `Idempotency-Key` (or `X-Request-Id`) together with the digest of its body: sent again, it
//! charges nothing twice and gets the first answer back.

use super::DaemonShared;
use super::http_layers::error_response;
use super::poster::PosterWork;
use crate::batch::rated_block::{RatingContext, rate_csv_block, rate_decoded_records};
use crate::cdr::RejectReason;
use crate::credit::posting::{Origin, OriginKind, PostingBatch, PostingOutcome};
use crate::ingest::canonical_csv::{CANONICAL_COLUMNS, CanonicalColumns, read_canonical_header};
use crate::money::ledger_decimal;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub async fn readyz(State(shared): State<Arc<DaemonShared>>) -> Response {
    let checked = tokio::task::spawn_blocking(move || {
        let mut store = shared.reader_store.lock().expect("reader store lock");
        if store.is_none() {
            *store = Some(crate::store::ledger_store::open_store(&shared.location)?);
        }
        let result = store.as_mut().expect("opened above").ping();
        if result.is_err() {
            *store = None;
        }
        result
    })
    .await;
    match checked {
        Ok(Ok(())) => "ready\n".into_response(),
        Ok(Err(error)) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store does not answer: {error:#}"),
        ),
        Err(_) => error_response(StatusCode::SERVICE_UNAVAILABLE, "readiness check failed"),
    }
}

pub async fn metrics(State(shared): State<Arc<DaemonShared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
        .into_response()
}

/// What a request body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyKind {
    Csv,
    JsonLines,
}

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("text/csv");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "text/csv" | "" => Ok(BodyKind::Csv),
        "application/x-ndjson"
        | "application/jsonl"
        | "application/json"
        | "application/jsonlines" => Ok(BodyKind::JsonLines),
        other => Err(format!(
            "content type {other} is not supported: send text/csv (canonical CSV with a header) or application/x-ndjson (one JSON object per line)"
        )),
    }
}

fn request_origin(headers: &HeaderMap, body: &[u8]) -> Result<Origin, String> {
    let given = ["idempotency-key", "x-request-id"]
        .iter()
        .find_map(|name| headers.get(*name))
        .map(|value| {
            value
                .to_str()
                .map(str::trim)
                .map(str::to_string)
                .map_err(|_| "the Idempotency-Key (or X-Request-Id) header is not text".to_string())
        })
        .transpose()?;
    let id = match given {
        Some(id) if id.is_empty() || id.len() > 200 => {
            return Err(
                "the Idempotency-Key (or X-Request-Id) header must have 1 to 200 characters".into(),
            );
        }
        Some(id) => id,
        None => "(no key)".to_string(),
    };
    // The body's digest is part of the origin: a retry (same key, same body) is answered from
    // the record, while a key reused for another body is a new request, whose CDRs are posted
    // rather than dropped.
    Ok(Origin {
        key: format!("request:{id}:{:032x}", xxhash_rust::xxh3::xxh3_128(body)),
        label: id,
        kind: OriginKind::HttpRequest,
    })
}

/// A refused request: the status and the message.
type Refusal = (StatusCode, String);

/// Decodes and rates a request body into one batch. A malformed body is a 400; CDRs of accounts
/// tollgate does not know make the whole request a 422 (nothing is posted, so the sender can fix
/// and resend).
fn rate_request(
    context: &RatingContext,
    kind: BodyKind,
    body: &[u8],
    origin: Origin,
) -> Result<PostingBatch, Refusal> {
    let bad_request = |message: String| (StatusCode::BAD_REQUEST, message);
    let (first_line, block) = match kind {
        BodyKind::Csv => {
            let header = read_canonical_header(body)
                .map_err(bad_request)?
                .ok_or_else(|| {
                    bad_request("the body is empty: send a CSV header and CDRs".into())
                })?;
            let block = rate_csv_block(context, &header.columns, &body[header.header_bytes..]);
            (header.header_lines + 1, block)
        }
        BodyKind::JsonLines => {
            let (columns, records) = decode_json_lines(body).map_err(bad_request)?;
            (1, rate_decoded_records(context, &columns, &records))
        }
    };
    let mut unknown_accounts: Vec<String> = Vec::new();
    for reject in &block.rejected_records {
        if reject.reason == RejectReason::UnknownAccount
            && let Some(row) = reject.row
        {
            unknown_accounts.push(block.account_of_row(row).to_string());
        }
    }
    if !unknown_accounts.is_empty() {
        unknown_accounts.sort();
        unknown_accounts.dedup();
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "unknown account{}: {} (import them with `tollgate accounts import` first; nothing in this request was posted)",
                if unknown_accounts.len() == 1 { "" } else { "s" },
                unknown_accounts.join(", ")
            ),
        ));
    }
    Ok(PostingBatch::from_rated_blocks(
        origin,
        context,
        &[(first_line, block)],
        0,
        body.len() as u64,
        true,
    ))
}

/// JSON lines, one CDR object per line with the canonical names (and optionally `source`), into
/// canonical text records. Numbers are taken as their text; a line that is not an object is a 400.
fn decode_json_lines(
    body: &[u8],
) -> Result<(CanonicalColumns, Vec<(u64, csv::StringRecord)>), String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
    let mut names: Vec<&str> = CANONICAL_COLUMNS.to_vec();
    names.push("source");
    let columns = CanonicalColumns::from_header(names.iter().map(|name| name.as_bytes()))?;
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|error| format!("line {line_number}: not JSON: {error}"))?;
        let object = value
            .as_object()
            .ok_or_else(|| format!("line {line_number}: not a JSON object"))?;
        let mut record = csv::StringRecord::new();
        for name in &names {
            let field = match object.get(*name) {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(text)) => text.clone(),
                Some(serde_json::Value::Number(number)) => number.to_string(),
                Some(other) => {
                    return Err(format!(
                        "line {line_number}: field {name} is {other}, not text or a number"
                    ));
                }
            };
            record.push_field(&field);
        }
        records.push((line_number, record));
    }
    if records.is_empty() {
        return Err("the body has no CDRs".into());
    }
    Ok((columns, records))
}

pub async fn post_cdrs(
    State(shared): State<Arc<DaemonShared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let refuse = |status: StatusCode, message: String| {
        shared
            .metrics
            .http_requests_refused
            .with_label_values(&[status.as_str()])
            .inc();
        error_response(status, message)
    };
    if shared.stopping.load(Ordering::SeqCst) {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "tollgate is shutting down".into(),
        );
    }
    if !shared.store_healthy.load(Ordering::SeqCst) {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store is failing; retry later, nothing of this request was posted".into(),
        );
    }
    let kind = match body_kind(&headers) {
        Ok(kind) => kind,
        Err(message) => return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, message),
    };
    let origin = match request_origin(&headers, &body) {
        Ok(origin) => origin,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, message),
    };
    let request_id = origin.label.clone();
    let context = shared.rating.context();
    let Ok(_rating_slot) = shared.http_rating_slots.acquire().await else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "tollgate is shutting down".into(),
        );
    };
    let rated =
        tokio::task::spawn_blocking(move || rate_request(&context, kind, &body, origin)).await;
    let batch = match rated {
        Ok(Ok(batch)) => batch,
        Ok(Err((status, message))) => return refuse(status, message),
        Err(_) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, "rating failed".into()),
    };
    let rejects: Vec<serde_json::Value> = batch
        .rejects
        .iter()
        .map(|reject| json!({ "line": reject.line, "reason": reject.reason }))
        .collect();
    let (reply, answer) = tokio::sync::oneshot::channel();
    let work = PosterWork::Request {
        batch: Box::new(batch),
        reply,
    };
    if let Err(crossbeam_channel::TrySendError::Full(_)) = shared.poster_requests.try_send(work) {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "tollgate is busy; retry later, nothing of this request was posted".into(),
        );
    }
    match answer.await {
        Ok(Ok(outcome)) => answer_json(&request_id, &outcome, rejects),
        Ok(Err(message)) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the store failed; retry later with the same Idempotency-Key, a request is never charged twice ({message})"
            ),
        ),
        Err(_) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "tollgate is shutting down; retry later".into(),
        ),
    }
}

fn answer_json(
    request_id: &str,
    outcome: &PostingOutcome,
    rejects: Vec<serde_json::Value>,
) -> Response {
    axum::Json(json!({
        "request_id": request_id,
        "rated": outcome.rated,
        "rejected": outcome.rejected,
        "duplicates": outcome.duplicates,
        "conflicts": outcome.conflicts,
        "charged": ledger_decimal(outcome.charged_units).to_string(),
        "replayed": outcome.replayed,
        "limit_exceeded": outcome.limit_exceeded,
        "rejects": rejects,
    }))
    .into_response()
}
