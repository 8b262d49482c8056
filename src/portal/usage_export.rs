//! `GET /v1/exports/usage.csv` and `/v1/exports/usage.parquet`
//! (`?from&to&tz&account&include_sub_accounts`): every rated call of the range, streamed page by
//! page from a store connection of its own, so memory stays flat whatever the range. The CSV is
//! RFC 4180 with spreadsheet formulas neutralised; the Parquet file has typed columns (times in
//! `tz`, money as exact decimals). The `charged` column sums to what `/usage` reports for the same
//! query.

use super::query_params::QueryParams;
use super::{
    ApiError, authorize_read, bearer_token, covered_accounts, not_found, read_store, unavailable,
};
use crate::daemon::DaemonShared;
use crate::limits::{
    EXPORT_CACHE_KIBIBYTES, EXPORT_CALL_PAGES_QUEUED_MAX, EXPORT_PAGE_CALLS,
    EXPORT_PAGES_QUEUED_MAX, EXPORT_PARQUET_ROW_GROUP_ROWS, EXPORT_RANGE_DAYS_MAX, EXPORT_READERS,
    EXPORTS_CONCURRENT_MAX,
};
use crate::money::{LEDGER_DECIMALS, ledger_decimal};
use crate::store::ledger_store::{LedgerStore, StoredCall, charged_units, open_store};
use arrow::array::{
    ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono_tz::Tz;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// Money columns of the Parquet export: ledger units, exactly.
const MONEY_SCALE: i8 = LEDGER_DECIMALS as i8;

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

/// Text of one call's computed fields, reused from row to row: a row allocates only its times'
/// RFC 3339 text, and copies none of the call's own fields.
#[derive(Default)]
struct CsvRowText {
    start_time: String,
    answer_time: String,
    end_time: String,
    billsec: itoa::Buffer,
    billable_seconds: itoa::Buffer,
    cost: String,
    charged: String,
}

impl CsvRowText {
    /// Writes one call as a CSV record, its times in `time_zone`, every field neutralised.
    fn write_row(
        &mut self,
        writer: &mut csv::Writer<Vec<u8>>,
        call: &StoredCall,
        time_zone: Tz,
    ) -> anyhow::Result<()> {
        let local = |text: &mut String, micros: Option<i64>| {
            text.clear();
            if let Some(time) = micros.and_then(chrono::DateTime::from_timestamp_micros) {
                // chrono's own RFC 3339 writer: a format string would be parsed for every time.
                text.push_str(&time.with_timezone(&time_zone).to_rfc3339());
            }
        };
        local(&mut self.start_time, Some(call.start_time_micros));
        local(&mut self.answer_time, call.answer_time_micros);
        local(&mut self.end_time, call.end_time_micros);
        let money = |text: &mut String, units: i64| {
            text.clear();
            write!(text, "{}", ledger_decimal(units)).expect("writing to a String");
        };
        money(&mut self.cost, call.cost_units);
        money(
            &mut self.charged,
            charged_units(&call.billing_class, call.cost_units),
        );
        let fields: [&str; 17] = [
            &call.source,
            &call.cdr_id,
            &call.account,
            &call.direction,
            &call.caller,
            &call.callee,
            &self.start_time,
            &self.answer_time,
            &self.end_time,
            self.billsec.format(call.billsec),
            self.billable_seconds.format(call.billable_seconds),
            call.destination.as_deref().unwrap_or_default(),
            call.rate.as_deref().unwrap_or_default(),
            &self.cost,
            &self.charged,
            &call.currency,
            &call.billing_class,
        ];
        for field in fields {
            writer.write_field(neutralise_formula(field).as_bytes())?;
        }
        writer.write_record(None::<&[u8]>)?;
        Ok(())
    }
}

/// What an export covers: these accounts' calls that started in `[from, to)`.
struct ExportQuery {
    accounts: Vec<String>,
    from_micros: i64,
    to_micros: i64,
}

/// The file an export is written as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExportFormat {
    Csv,
    Parquet,
}

pub async fn usage_csv(
    State(shared): State<Arc<DaemonShared>>,
    Query(parameters): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    start_export(shared, parameters, headers, ExportFormat::Csv)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub async fn usage_parquet(
    State(shared): State<Arc<DaemonShared>>,
    Query(parameters): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    start_export(shared, parameters, headers, ExportFormat::Parquet)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn start_export(
    shared: Arc<DaemonShared>,
    parameters: HashMap<String, String>,
    headers: HeaderMap,
    format: ExportFormat,
) -> Result<Response, ApiError> {
    let token = bearer_token(&shared, &headers)?;
    let mut parameters = QueryParams::new(parameters);
    let account = parameters
        .text("account")
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_parameter("account: required".into()))?;
    // The token and parameters are checked on the shared reader connection; only an export
    // that may run opens a connection of its own, and only a few run at once.
    let (query, time_zone) = read_store(&shared, move |store| {
        authorize_read(store, &token, &account)?;
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
        let query = ExportQuery {
            accounts: covered_accounts(store, &account, include_sub_accounts)?,
            from_micros: from,
            to_micros: to,
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
    let stores = tokio::task::spawn_blocking(move || {
        (0..EXPORT_READERS)
            .map(|_| {
                let mut store = open_store(&location)?;
                store.limit_page_cache(EXPORT_CACHE_KIBIBYTES)?;
                anyhow::Ok(store)
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await
    .map_err(|_| unavailable(anyhow::anyhow!("the export could not start")))?
    .map_err(unavailable)?;
    let (sender, receiver) = tokio::sync::mpsc::channel(EXPORT_PAGES_QUEUED_MAX);
    tokio::task::spawn_blocking(move || {
        let encoder: Box<dyn PageEncoder> = match format {
            ExportFormat::Csv => Box::new(CsvPages {
                time_zone,
                first: true,
                text: CsvRowText::default(),
            }),
            ExportFormat::Parquet => Box::new(ParquetPages::new(time_zone)),
        };
        stream_pages(stores, query, encoder, sender);
        drop(slot);
    });
    let (content_type, disposition) = match format {
        ExportFormat::Csv => (
            "text/csv; charset=utf-8",
            "attachment; filename=\"usage.csv\"",
        ),
        ExportFormat::Parquet => (
            "application/vnd.apache.parquet",
            "attachment; filename=\"usage.parquet\"",
        ),
    };
    let mut response =
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static(disposition),
    );
    Ok(response)
}

/// Turns pages of calls into the bytes of an export file.
trait PageEncoder: Send {
    /// The bytes to send for one page (the CSV header goes with the first).
    fn page(&mut self, calls: &[StoredCall]) -> anyhow::Result<Bytes>;
    /// The bytes that end the file (the Parquet footer).
    fn finish(&mut self) -> anyhow::Result<Bytes>;
}

struct CsvPages {
    time_zone: Tz,
    first: bool,
    text: CsvRowText,
}

/// About the length of one exported CSV row, to size a page's buffer once.
const CSV_ROW_BYTES_GUESS: usize = 200;

impl PageEncoder for CsvPages {
    fn page(&mut self, calls: &[StoredCall]) -> anyhow::Result<Bytes> {
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(Vec::with_capacity(calls.len() * CSV_ROW_BYTES_GUESS));
        if std::mem::take(&mut self.first) {
            writer.write_record(EXPORT_COLUMNS)?;
        }
        for call in calls {
            self.text.write_row(&mut writer, call, self.time_zone)?;
        }
        Ok(Bytes::from(
            writer
                .into_inner()
                .map_err(|error| anyhow::anyhow!("{error}"))?,
        ))
    }

    fn finish(&mut self) -> anyhow::Result<Bytes> {
        // An empty export still has its header.
        self.page(&[])
    }
}

/// Writes row groups into a buffer that is drained after each page: the writer keeps only the
/// row group in progress.
struct ParquetPages {
    time_zone: Tz,
    schema: SchemaRef,
    writer: Option<ArrowWriter<Vec<u8>>>,
}

impl ParquetPages {
    fn new(time_zone: Tz) -> ParquetPages {
        let times = || DataType::Timestamp(TimeUnit::Microsecond, Some(time_zone.name().into()));
        let money = DataType::Decimal128(38, MONEY_SCALE);
        let schema = Arc::new(Schema::new(
            EXPORT_COLUMNS
                .iter()
                .map(|name| {
                    let (data_type, nullable) = match *name {
                        "start_time" => (times(), false),
                        "answer_time" | "end_time" => (times(), true),
                        "billsec" | "billable_seconds" => (DataType::Int64, false),
                        "cost" | "charged" => (money.clone(), false),
                        "destination" | "rate" => (DataType::Utf8, true),
                        _ => (DataType::Utf8, false),
                    };
                    Field::new(*name, data_type, nullable)
                })
                .collect::<Vec<_>>(),
        ));
        ParquetPages {
            time_zone,
            schema,
            writer: None,
        }
    }

    fn batch(&self, calls: &[StoredCall]) -> anyhow::Result<RecordBatch> {
        let text = |value: fn(&StoredCall) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(calls.iter().map(value)))
        };
        let optional_text = |value: fn(&StoredCall) -> Option<&str>| -> ArrayRef {
            Arc::new(StringArray::from_iter(calls.iter().map(value)))
        };
        let zone = self.time_zone.name();
        let times = |value: fn(&StoredCall) -> Option<i64>| -> ArrayRef {
            Arc::new(
                TimestampMicrosecondArray::from_iter(calls.iter().map(value)).with_timezone(zone),
            )
        };
        let seconds = |value: fn(&StoredCall) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(calls.iter().map(value)))
        };
        let money = |units: &dyn Fn(&StoredCall) -> i64| -> anyhow::Result<ArrayRef> {
            Ok(Arc::new(
                Decimal128Array::from_iter_values(calls.iter().map(|call| i128::from(units(call))))
                    .with_precision_and_scale(38, MONEY_SCALE)?,
            ))
        };
        let columns: Vec<ArrayRef> = vec![
            text(|call| &call.source),
            text(|call| &call.cdr_id),
            text(|call| &call.account),
            text(|call| &call.direction),
            text(|call| &call.caller),
            text(|call| &call.callee),
            times(|call| Some(call.start_time_micros)),
            times(|call| call.answer_time_micros),
            times(|call| call.end_time_micros),
            seconds(|call| call.billsec),
            seconds(|call| call.billable_seconds),
            optional_text(|call| call.destination.as_deref()),
            optional_text(|call| call.rate.as_deref()),
            money(&|call| call.cost_units)?,
            money(&|call| charged_units(&call.billing_class, call.cost_units))?,
            text(|call| &call.currency),
            text(|call| &call.billing_class),
        ];
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    fn writer(&mut self) -> anyhow::Result<&mut ArrowWriter<Vec<u8>>> {
        if self.writer.is_none() {
            let properties = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(EXPORT_PARQUET_ROW_GROUP_ROWS))
                .build();
            self.writer = Some(ArrowWriter::try_new(
                Vec::new(),
                Arc::clone(&self.schema),
                Some(properties),
            )?);
        }
        Ok(self.writer.as_mut().expect("made above"))
    }
}

impl PageEncoder for ParquetPages {
    fn page(&mut self, calls: &[StoredCall]) -> anyhow::Result<Bytes> {
        let batch = self.batch(calls)?;
        let writer = self.writer()?;
        writer.write(&batch)?;
        // Taking the bytes written so far is safe: the writer counts offsets itself.
        Ok(Bytes::from(std::mem::take(writer.inner_mut())))
    }

    fn finish(&mut self) -> anyhow::Result<Bytes> {
        let writer = self.writer()?;
        writer.finish()?;
        Ok(Bytes::from(std::mem::take(writer.inner_mut())))
    }
}

/// What an export's reader sends its encoder: a page of one account's calls, then the end of
/// that account.
enum ReadPiece {
    Page(Vec<StoredCall>),
    AccountDone,
}

/// Sends one encoded page at a time, account by account (in the order given: the account, then
/// those below it level by level) and each account's calls oldest first, then the file's end.
/// Reader threads, one per store connection, fetch alternate accounts' pages while this thread
/// encodes, taking each account whole from its reader in turn, so an export uses every core and
/// keeps its order. A client that goes away stops them all. A store error mid-way aborts the
/// body, so the client sees a broken transfer, never a file that looks complete.
fn stream_pages(
    stores: Vec<Box<dyn LedgerStore>>,
    query: ExportQuery,
    mut encoder: Box<dyn PageEncoder>,
    sender: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let send_failure = |error: anyhow::Error| {
        tracing::warn!("usage export stopped: {error:#}");
        let _ = sender.blocking_send(Err(std::io::Error::other(format!("{error:#}"))));
    };
    let n_readers = stores.len();
    let query = &query;
    std::thread::scope(|scope| {
        let mut readers = Vec::with_capacity(n_readers);
        for (reader, store) in stores.into_iter().enumerate() {
            let (pieces, received) = crossbeam_channel::bounded(EXPORT_CALL_PAGES_QUEUED_MAX);
            let accounts = query.accounts.iter().skip(reader).step_by(n_readers);
            let started = std::thread::Builder::new()
                .name("export-reader".into())
                .spawn_scoped(scope, move || read_pages(store, accounts, query, &pieces));
            if let Err(error) = started {
                return send_failure(anyhow::anyhow!("cannot start an export reader: {error}"));
            }
            readers.push(received);
        }
        // Returning drops the receivers, which stops every reader at its next page.
        for reader in readers.iter().cycle().take(query.accounts.len()) {
            loop {
                let calls = match reader.recv() {
                    Ok(Ok(ReadPiece::Page(calls))) => calls,
                    Ok(Ok(ReadPiece::AccountDone)) => break,
                    Ok(Err(error)) => return send_failure(error),
                    Err(_) => return send_failure(anyhow::anyhow!("an export reader stopped")),
                };
                let encoded = match encoder.page(&calls) {
                    Ok(bytes) => bytes,
                    Err(error) => return send_failure(error),
                };
                if !encoded.is_empty() && sender.blocking_send(Ok(encoded)).is_err() {
                    return;
                }
            }
        }
        match encoder.finish() {
            Ok(bytes) => {
                let _ = sender.blocking_send(Ok(bytes));
            }
            Err(error) => send_failure(error),
        }
    });
}

/// Reads `accounts`' calls in the export's range page by page into `pieces`, each account ended
/// by [`ReadPiece::AccountDone`]; ends with the first store error, or when the encoder has gone.
fn read_pages<'a>(
    mut store: Box<dyn LedgerStore>,
    accounts: impl Iterator<Item = &'a String>,
    query: &ExportQuery,
    pieces: &crossbeam_channel::Sender<anyhow::Result<ReadPiece>>,
) {
    for account in accounts {
        let mut after = None;
        loop {
            let page = store.calls_oldest_first(
                account,
                query.from_micros,
                query.to_micros,
                after.as_ref(),
                EXPORT_PAGE_CALLS,
            );
            let page = match page {
                Ok(page) => page,
                Err(error) => {
                    let _ = pieces.send(Err(error));
                    return;
                }
            };
            let done = page.len() < EXPORT_PAGE_CALLS;
            after = page.last().map(StoredCall::cursor);
            if !page.is_empty() && pieces.send(Ok(ReadPiece::Page(page))).is_err() {
                return;
            }
            if done {
                break;
            }
        }
        if pieces.send(Ok(ReadPiece::AccountDone)).is_err() {
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
