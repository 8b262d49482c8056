//! Decoding and rating one block of records into columns, in parallel with other blocks.
//! Duplicates are decided later, in file order (see `pipeline`), so rating columns stay plain
//! vectors here until then.

use super::deck_choice::{DeckChoice, DeckIndex};
use crate::cdr::RejectReason;
use crate::ingest::canonical_csv::{CanonicalColumns, decode_canonical_record};
use crate::limits::REJECT_RAW_BYTES_MAX;
use crate::rate::deck::{Deck, RateId};
use crate::rate::pricing::rate_cdr;
use arrow::array::{ArrayRef, Int64Array, StringBuilder, TimestampMicrosecondArray};
use chrono_tz::Tz;
use std::sync::Arc;

/// Everything a worker needs to rate records; shared read-only by all workers.
pub struct RatingContext {
    pub decks: Vec<Deck>,
    pub deck_choice: DeckChoice,
    pub input_time_zone: Tz,
    pub default_source: String,
}

/// What became of a parsed CDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowStatus {
    Rated,
    Rejected(RejectReason),
    /// The dedupe key was seen earlier in the run; `same_content` tells a harmless resend from a
    /// conflicting one that someone should look at.
    Duplicate {
        same_content: bool,
    },
}

impl RowStatus {
    pub fn status_text(self) -> &'static str {
        match self {
            RowStatus::Rated => "rated",
            RowStatus::Rejected(_) => "rejected",
            RowStatus::Duplicate { .. } => "duplicate",
        }
    }

    pub fn reason_text(self) -> Option<&'static str> {
        match self {
            RowStatus::Rated => None,
            RowStatus::Rejected(reason) => Some(reason.as_str()),
            RowStatus::Duplicate { same_content: true } => Some("duplicate_cdr_id"),
            RowStatus::Duplicate {
                same_content: false,
            } => Some("conflicting_content"),
        }
    }
}

/// A record that goes to the rejects file.
#[derive(Clone, Debug)]
pub struct RejectedRecord {
    /// Line of the record's start, counted from the start of its block (1-based).
    pub line_in_block: u64,
    pub raw: Vec<u8>,
    pub reason: RejectReason,
    /// For a record that decoded but could not be rated: its row, so a duplicate can withdraw it.
    pub row: Option<usize>,
}

/// No deck (the CDR was rejected before a deck was chosen).
pub const NO_DECK: DeckIndex = DeckIndex::MAX;
/// No rate (rejected, or an unanswered call to an unrated number).
pub const NO_RATE: RateId = RateId::MAX;

/// One block, decoded and rated.
pub struct RatedBlock {
    pub n_records: u64,
    pub n_lines: u64,
    pub rejected_records: Vec<RejectedRecord>,
    /// The input columns, finished: source, cdr_id, account, direction, caller, callee,
    /// start_time, answer_time, end_time, billsec, disposition.
    pub input_columns: Vec<ArrayRef>,
    pub deck: Vec<DeckIndex>,
    pub rate: Vec<RateId>,
    pub billable_seconds: Vec<u32>,
    /// Cost mantissa at the row's deck's rounding decimals.
    pub cost_mantissa: Vec<i64>,
    pub status: Vec<RowStatus>,
    /// Dedupe key (source, cdr_id) and content digests, for the in-order duplicate pass.
    pub key_digest: Vec<u128>,
    pub content_digest: Vec<u64>,
}

impl RatedBlock {
    pub fn n_rows(&self) -> usize {
        self.status.len()
    }
}

/// Builds a [`RatedBlock`] record by record.
struct RatedBlockBuilder<'c> {
    context: &'c RatingContext,
    block: RatedBlock,
    source: StringBuilder,
    cdr_id: StringBuilder,
    account: StringBuilder,
    direction: StringBuilder,
    caller: StringBuilder,
    callee: StringBuilder,
    start_time: Vec<i64>,
    answer_time: Vec<Option<i64>>,
    end_time: Vec<Option<i64>>,
    billsec: Vec<i64>,
    disposition: StringBuilder,
}

impl<'c> RatedBlockBuilder<'c> {
    fn new(context: &'c RatingContext, rows_hint: usize) -> Self {
        let strings = || StringBuilder::with_capacity(rows_hint, rows_hint * 12);
        RatedBlockBuilder {
            context,
            block: RatedBlock {
                n_records: 0,
                n_lines: 0,
                rejected_records: Vec::new(),
                input_columns: Vec::new(),
                deck: Vec::with_capacity(rows_hint),
                rate: Vec::with_capacity(rows_hint),
                billable_seconds: Vec::with_capacity(rows_hint),
                cost_mantissa: Vec::with_capacity(rows_hint),
                status: Vec::with_capacity(rows_hint),
                key_digest: Vec::with_capacity(rows_hint),
                content_digest: Vec::with_capacity(rows_hint),
            },
            source: strings(),
            cdr_id: strings(),
            account: strings(),
            direction: strings(),
            caller: strings(),
            callee: strings(),
            start_time: Vec::with_capacity(rows_hint),
            answer_time: Vec::with_capacity(rows_hint),
            end_time: Vec::with_capacity(rows_hint),
            billsec: Vec::with_capacity(rows_hint),
            disposition: strings(),
        }
    }

    fn push_record(
        &mut self,
        columns: &CanonicalColumns,
        record: &csv::ByteRecord,
        line: u64,
        raw: &[u8],
    ) {
        self.block.n_records += 1;
        let context = self.context;
        let cdr = match decode_canonical_record(
            columns,
            record,
            &context.default_source,
            context.input_time_zone,
        ) {
            Ok(cdr) => cdr,
            Err(reason) => {
                self.reject(line, raw, reason, None);
                return;
            }
        };
        let row = self.block.status.len();
        let mut key = xxhash_rust::xxh3::Xxh3::new();
        key.update(cdr.source.as_bytes());
        key.update(&[0x1f]);
        key.update(cdr.cdr_id.as_bytes());
        self.block.key_digest.push(key.digest128());
        self.block
            .content_digest
            .push(xxhash_rust::xxh3::xxh3_64(raw));

        self.source.append_value(cdr.source);
        self.cdr_id.append_value(cdr.cdr_id);
        self.account.append_value(cdr.account);
        self.direction.append_value(cdr.direction.as_str());
        self.caller.append_value(&cdr.caller);
        self.callee.append_value(&cdr.callee);
        self.start_time.push(cdr.start_time_micros);
        self.answer_time.push(cdr.answer_time_micros);
        self.end_time.push(cdr.end_time_micros);
        self.billsec.push(i64::from(cdr.billsec));
        self.disposition.append_value(cdr.disposition);

        let rated = context
            .deck_choice
            .deck_for(cdr.account, cdr.direction)
            .and_then(|deck_index| {
                let charge = rate_cdr(&context.decks[usize::from(deck_index)], &cdr)?;
                Ok((deck_index, charge))
            });
        match rated {
            Ok((deck_index, charge)) => {
                self.block.deck.push(deck_index);
                self.block.rate.push(charge.rate_id.unwrap_or(NO_RATE));
                self.block.billable_seconds.push(charge.billable_seconds);
                self.block
                    .cost_mantissa
                    .push(i64::try_from(charge.cost_mantissa).expect("a call's cost fits in i64"));
                self.block.status.push(RowStatus::Rated);
            }
            Err(reason) => {
                let deck_index = context
                    .deck_choice
                    .deck_for(cdr.account, cdr.direction)
                    .unwrap_or(NO_DECK);
                self.block.deck.push(deck_index);
                self.block.rate.push(NO_RATE);
                self.block.billable_seconds.push(0);
                self.block.cost_mantissa.push(0);
                self.block.status.push(RowStatus::Rejected(reason));
                self.reject(line, raw, reason, Some(row));
            }
        }
    }

    fn reject(&mut self, line: u64, raw: &[u8], reason: RejectReason, row: Option<usize>) {
        let raw = &raw[..raw.len().min(REJECT_RAW_BYTES_MAX)];
        self.block.rejected_records.push(RejectedRecord {
            line_in_block: line,
            raw: trim_line_end(raw).to_vec(),
            reason,
            row,
        });
    }

    fn finish(mut self, n_lines: u64) -> RatedBlock {
        let timestamps = |values: Vec<Option<i64>>| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
        };
        self.block.n_lines = n_lines;
        self.block.input_columns = vec![
            Arc::new(self.source.finish()),
            Arc::new(self.cdr_id.finish()),
            Arc::new(self.account.finish()),
            Arc::new(self.direction.finish()),
            Arc::new(self.caller.finish()),
            Arc::new(self.callee.finish()),
            Arc::new(TimestampMicrosecondArray::from(self.start_time).with_timezone("UTC")),
            timestamps(self.answer_time),
            timestamps(self.end_time),
            Arc::new(Int64Array::from(self.billsec)),
            Arc::new(self.disposition.finish()),
        ];
        self.block
    }
}

fn trim_line_end(raw: &[u8]) -> &[u8] {
    let mut end = raw.len();
    while end > 0 && matches!(raw[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &raw[..end]
}

/// Decodes and rates the CSV records in `bytes` (whole records, no header).
pub fn rate_csv_block(
    context: &RatingContext,
    columns: &CanonicalColumns,
    bytes: &[u8],
) -> RatedBlock {
    let mut builder = RatedBlockBuilder::new(context, bytes.len() / 100);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    loop {
        let start = reader.position().clone();
        match reader.read_byte_record(&mut record) {
            Ok(true) => {
                let end = reader.position().byte() as usize;
                let raw = &bytes[start.byte() as usize..end];
                if is_blank_line(raw) {
                    continue;
                }
                builder.push_record(columns, &record, start.line(), raw);
            }
            Ok(false) => break,
            Err(error) => {
                // The csv reader reports invalid UTF-8 only for string records; byte records
                // fail only on I/O, which a slice cannot. Keep the record anyway, named.
                let end = error
                    .position()
                    .map(|position| position.byte() as usize)
                    .unwrap_or(bytes.len());
                builder.block.n_records += 1;
                let raw = bytes[start.byte() as usize..end.max(start.byte() as usize)].to_vec();
                builder.reject(start.line(), &raw, RejectReason::WrongColumnCount, None);
                if end <= start.byte() as usize {
                    break;
                }
            }
        }
    }
    let n_lines = memchr::memchr_iter(b'\n', bytes).count() as u64;
    builder.finish(n_lines)
}

/// Rates records that were decoded elsewhere (a Parquet file) into canonical string fields.
pub fn rate_decoded_records(
    context: &RatingContext,
    columns: &CanonicalColumns,
    records: &[(u64, csv::ByteRecord)],
) -> RatedBlock {
    let mut builder = RatedBlockBuilder::new(context, records.len());
    let mut raw = Vec::new();
    for (line, record) in records {
        raw.clear();
        for (position, field) in record.iter().enumerate() {
            if position > 0 {
                raw.push(b',');
            }
            raw.extend_from_slice(field);
        }
        builder.push_record(columns, record, *line, &raw);
    }
    builder.finish(0)
}

fn is_blank_line(raw: &[u8]) -> bool {
    raw.iter().all(|byte| matches!(byte, b'\n' | b'\r'))
}
