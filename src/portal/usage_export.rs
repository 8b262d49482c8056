//! `GET /v1/exports/usage.csv?from&to&tz&account&include_sub_accounts`: every rated call of the
//! range as RFC 4180 CSV, streamed page by page from a store connection of its own (memory stays
//! flat whatever the range), with spreadsheet formulas neutralised. The `charged` column sums to
//! what `/usage` reports for the same query.

use super::query_params::QueryParams;
use super::{ApiError, authorize_read, bearer_token, not_found, read_store, subtree, unavailable};
use crate::daemon::DaemonShared;
use crate::limits::{
    EXPORT_PAGE_CALLS, EXPORT_PAGES_QUEUED_MAX, EXPORT_RANGE_DAYS_MAX, EXPORTS_CONCURRENT_MAX,
};
use crate::money::ledger_decimal;
use crate::store::ledger_store::{CallsQuery, LedgerStore, StoredCall, charged_units, open_store};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono_tz::Tz;
use std::collections::HashMap;
use std::sync::Arc;

pub const EXPORT_COLUMNS: [&str; 17] = [
    "source",
    "cdr_id",
    "account",
    "direction",
    "caller",
    "callee",
    "start_time",
    "answer_time",
    "end_time",
    "billsec",
    "billable_seconds",
    "destination",
    "rate",
    "cost",
    "charged",
    "currency",
    "billing_class",
];

/// A field a spreadsheet would run as a formula gets a leading `'` (OWASP's advice for CSV
/// injection): one starting with `=`, `+`, `-`, `@`, a tab or a carriage return.
pub fn neutralise_formula(field: &str) -> std::borrow::Cow<'_, str> {
    match field.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{field}").into(),
        _ => field.into(),
    }
}

fn csv_row(call: &StoredCall, time_zone: Tz) -> [String; 17] {
    let local = |micros: Option<i64>| {
        micros
            .and_then(chrono::DateTime::from_timestamp_micros)
            .map(|time| time.with_timezone(&time_zone).to_rfc3339())
            .unwrap_or_default()
    };
    [
        call.source.clone(),
        call.cdr_id.clone(),
        call.account.clone(),
        call.direction.clone(),
        call.caller.clone(),
        call.callee.clone(),
        local(Some(call.start_time_micros)),
        local(call.answer_time_micros),
        local(call.end_time_micros),
        call.billsec.to_string(),
        call.billable_seconds.to_string(),
        call.destination.clone().unwrap_or_default(),
        call.rate.clone().unwrap_or_default(),
        ledger_decimal(call.cost_units).to_string(),
        ledger_decimal(charged_units(&call.billing_class, call.cost_units)).to_string(),
        call.currency.clone(),
        call.billing_class.clone(),
    ]
}

fn encode(rows: impl Iterator<Item = [String; 17]>, header: bool) -> anyhow::Result<Bytes> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    if header {
        writer.write_record(EXPORT_COLUMNS)?;
    }
    for row in rows {
        writer.write_record(
            row.iter()
                .map(|field| neutralise_formula(field))
                .map(|field| field.into_owned()),
        )?;
    }
    Ok(Bytes::from(
        writer
            .into_inner()
            .map_err(|error| anyhow::anyhow!("{error}"))?,
    ))
}

pub async fn usage_csv(
    State(shared): State<Arc<DaemonShared>>,
    Query(parameters): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match start_export(shared, parameters, headers).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    }
}

async fn start_export(
    shared: Arc<DaemonShared>,
    parameters: HashMap<String, String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = bearer_token(&headers)?;
    let mut parameters = QueryParams::new(parameters);
    let account = parameters
        .text("account")
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_parameter("account: required".into()))?;
    // The token and parameters are checked on the shared reader connection; only an export
    // that may run opens a connection of its own, and only a few run at once.
    let (query, time_zone) = read_store(&shared, move |store| {
        let (_, parents) = authorize_read(store, &token, &account)?;
        let stored = store
            .account(&account)
            .map_err(unavailable)?
            .ok_or_else(|| not_found(&account))?;
        let (time_zone, from, to) = parameters
            .zone_and_range(&stored.account.time_zone)
            .map_err(ApiError::bad_parameter)?;
        let include_sub_accounts = parameters
            .boolean("include_sub_accounts")
            .map_err(ApiError::bad_parameter)?;
        parameters.finish().map_err(ApiError::bad_parameter)?;
        let (Some(from), Some(to)) = (from, to) else {
            return Err(ApiError::bad_parameter(
                "from: from and to are both required".into(),
            ));
        };
        // Whole days, so a range of local days across a DST change is not an hour too long.
        let whole_days = (i128::from(to) - i128::from(from)) / 86_400_000_000;
        if from >= to || whole_days > i128::from(EXPORT_RANGE_DAYS_MAX) {
            return Err(ApiError::bad_parameter(format!(
                "from: the range must run forward and span at most {EXPORT_RANGE_DAYS_MAX} days"
            )));
        }
        let query = CallsQuery {
            accounts: if include_sub_accounts {
                subtree(&account, &parents)
            } else {
                vec![account]
            },
            from_micros: from,
            to_micros: to,
            direction: None,
            before: None,
            limit: EXPORT_PAGE_CALLS,
            unbilled_only: false,
        };
        Ok((query, time_zone))
    })
    .await?;
    let slot = Arc::clone(&shared.export_slots)
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{EXPORTS_CONCURRENT_MAX} exports are running; try again shortly"),
            )
        })?;
    let location = shared.location.clone();
    let store = tokio::task::spawn_blocking(move || open_store(&location))
        .await
        .map_err(|_| unavailable(anyhow::anyhow!("the export could not start")))?
        .map_err(unavailable)?;
    let (sender, receiver) = tokio::sync::mpsc::channel(EXPORT_PAGES_QUEUED_MAX);
    tokio::task::spawn_blocking(move || {
        stream_pages(store, query, time_zone, sender);
        drop(slot);
    });
    let mut response =
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"usage.csv\""),
    );
    Ok(response)
}

/// Sends the header and then one encoded page at a time; a client that goes away stops it.
fn stream_pages(
    mut store: Box<dyn LedgerStore>,
    mut query: CallsQuery,
    time_zone: Tz,
    sender: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let mut first = true;
    loop {
        let page = match store.calls_newest_first(&query) {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!("usage export stopped: {error:#}");
                let _ = sender.blocking_send(Err(std::io::Error::other(format!("{error:#}"))));
                return;
            }
        };
        let encoded = encode(page.iter().map(|call| csv_row(call, time_zone)), first);
        first = false;
        let done = page.len() < query.limit;
        query.before = page.last().map(StoredCall::cursor);
        let sent = match encoded {
            Ok(bytes) => sender.blocking_send(Ok(bytes)),
            Err(error) => sender.blocking_send(Err(std::io::Error::other(format!("{error:#}")))),
        };
        if sent.is_err() || done {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_plain_fields_left_alone() {
        let cases = [
            ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"),
            ("+14155550100", "'+14155550100"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("14155550100", "14155550100"),
            ("United Kingdom, London", "United Kingdom, London"),
            ("", ""),
        ];
        for (field, shown) in cases {
            assert_eq!(neutralise_formula(field), shown, "{field:?}");
        }
    }
}
