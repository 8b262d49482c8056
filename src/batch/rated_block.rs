//! Decoding and rating one block of records into columns, in parallel with other blocks.
//! Duplicates are decided later, in file order (see `pipeline`), so rating columns stay plain
//! vectors here until then.

use super::deck_choice::{DeckChoice, DeckIndex};
use crate::cdr::RejectReason;
use crate::ingest::canonical_csv::{CanonicalColumns, decode_canonical_fields};
use crate::ingest::separator_scan::for_each_separator;
use crate::ingest::switch_cdrs::json_documents::JsonDocumentBatch;
use crate::ingest::switch_cdrs::{CanonicalFields, MAPPED_COLUMNS, SwitchCsvDecoder, kazoo};
use crate::limits::{LOOKUPS_PREFETCHED_AHEAD, REJECT_RAW_BYTES_MAX};
use crate::rate::cgrates_pricing::{CgratesCharge, CgratesTariff};
use crate::rate::deck::{Deck, RateId};
use crate::rate::pricing::{Charge, charge_for, rate_cdr};
use arrow::array::{ArrayRef, Int64Array, StringBuilder, TimestampMicrosecondArray};
use chrono_tz::Tz;
use std::borrow::Cow;
use std::sync::Arc;

/// Everything a worker needs to rate records; shared read-only by all workers.
pub struct RatingContext {
    pub decks: Arc<Vec<Deck>>,
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

/// A rate's prefix, destination and price per minute, as shown on a rated call.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShownRate {
    pub prefix_digits: u64,
    pub rate_per_minute_mantissa: i64,
    pub destination: u32,
    pub prefix_length: u8,
    /// The rate's jurisdiction code, 0 for a rate of every jurisdiction.
    pub jurisdiction: u8,
}

impl ShownRate {
    fn of(deck: &Deck, rate_id: Option<RateId>) -> ShownRate {
        rate_id.map_or_else(ShownRate::default, |rate_id| {
            let pricing = deck.pricing(rate_id);
            ShownRate {
                prefix_digits: pricing.prefix_digits,
                rate_per_minute_mantissa: pricing.rate_per_minute_mantissa,
                destination: pricing.destination,
                prefix_length: pricing.prefix_length,
                jurisdiction: pricing.jurisdiction,
            }
        })
    }
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
    /// What the rated-calls file shows of each row's rate, copied while pricing has it in cache.
    pub shown_rate: Vec<ShownRate>,
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

    /// The account of a decoded row (the third input column).
    pub fn account_of_row(&self, row: usize) -> &str {
        self.input_columns[2]
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .expect("the account column is text")
            .value(row)
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
    key_buffer: Vec<u8>,
    pending: Vec<PendingCall>,
}

/// A decoded call whose rate lookup and pricing wait for the rest of its block.
struct PendingCall {
    row: u32,
    deck: DeckIndex,
    direction: crate::cdr::Direction,
    callee: [u8; crate::cdr::NUMBER_DIGITS_MAX],
    callee_length: u8,
    /// The call's jurisdiction code, for decks with rates per jurisdiction.
    jurisdiction: u8,
    pricing_time_micros: i64,
    billsec: u32,
    answered: bool,
    line: u64,
    raw_offset: u32,
    raw_length: u32,
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
                shown_rate: Vec::with_capacity(rows_hint),
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
            key_buffer: Vec::with_capacity(64),
            pending: Vec::with_capacity(rows_hint),
        }
    }

    /// Decodes and rates one record. `raw` is the record as it stood in the file, without its
    /// line terminator: it goes to the rejects file and its digest tells resends from conflicts.
    /// `raw_offset` is where `raw` starts in the block when the block outlives this call, which
    /// lets the lookup be deferred to [`Self::rate_pending_calls`].
    fn push_record(
        &mut self,
        columns: &CanonicalColumns,
        fields: &[&str],
        line: u64,
        raw: &[u8],
        raw_offset: Option<usize>,
    ) {
        let content_digest = xxhash_rust::xxh3::xxh3_64(raw);
        self.push_record_with_content(columns, fields, line, raw, raw_offset, content_digest);
    }

    /// [`Self::push_record`] with the digest that tells a resend from a conflict given.
    fn push_record_with_content(
        &mut self,
        columns: &CanonicalColumns,
        fields: &[&str],
        line: u64,
        raw: &[u8],
        raw_offset: Option<usize>,
        content_digest: u64,
    ) {
        self.block.n_records += 1;
        let context = self.context;
        let cdr = match decode_canonical_fields(
            columns,
            fields,
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
        self.key_buffer.clear();
        self.key_buffer.extend_from_slice(cdr.source.as_bytes());
        self.key_buffer.push(0x1f);
        self.key_buffer.extend_from_slice(cdr.cdr_id.as_bytes());
        self.block
            .key_digest
            .push(xxhash_rust::xxh3::xxh3_128(&self.key_buffer));
        self.block.content_digest.push(content_digest);

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

        let deck_index = match context.deck_choice.deck_for(cdr.account, cdr.direction) {
            Ok(deck_index) => deck_index,
            Err(reason) => {
                self.push_rating(NO_DECK, Err(reason), ShownRate::default());
                self.reject(line, raw, reason, Some(row));
                return;
            }
        };
        if let DeckChoice::Cgrates(tariff) = &context.deck_choice {
            self.push_cgrates_rating(tariff, &cdr, line, raw, row);
            return;
        }
        let deck = &context.decks[usize::from(deck_index)];
        match raw_offset {
            Some(raw_offset) if cdr.callee.len() <= crate::cdr::NUMBER_DIGITS_MAX => {
                // Looked up later, in a tight loop over the block (see `rate_pending_calls`).
                let mut callee = [0u8; crate::cdr::NUMBER_DIGITS_MAX];
                callee[..cdr.callee.len()].copy_from_slice(cdr.callee.as_bytes());
                self.pending.push(PendingCall {
                    row: row as u32,
                    deck: deck_index,
                    direction: cdr.direction,
                    callee,
                    callee_length: cdr.callee.len() as u8,
                    jurisdiction: deck.jurisdiction_of_call(&cdr.caller, &cdr.callee).code(),
                    pricing_time_micros: cdr.pricing_time_micros(),
                    billsec: cdr.billsec,
                    answered: cdr.is_answered(),
                    line,
                    raw_offset: raw_offset as u32,
                    raw_length: raw.len() as u32,
                });
                let placeholder = Charge {
                    rate_id: None,
                    billable_seconds: 0,
                    cost_mantissa: 0,
                };
                self.push_rating(deck_index, Ok(placeholder), ShownRate::default());
            }
            _ => {
                let rated = rate_cdr(deck, &cdr);
                let shown = ShownRate::of(deck, rated.ok().and_then(|charge| charge.rate_id));
                self.push_rating(deck_index, rated, shown);
                if let Err(reason) = rated {
                    self.reject(line, raw, reason, Some(row));
                }
            }
        }
    }

    /// Prices a CDR against a CGRateS plan (deck 0 stands for the plan).
    fn push_cgrates_rating(
        &mut self,
        tariff: &CgratesTariff,
        cdr: &crate::cdr::Cdr<'_>,
        line: u64,
        raw: &[u8],
        row: usize,
    ) {
        let rated = tariff.price(cdr);
        let shown = match &rated {
            Ok(CgratesCharge {
                matched: Some(matched),
                ..
            }) => ShownRate {
                prefix_digits: cdr.callee[..matched.prefix_length].parse().unwrap_or(0),
                rate_per_minute_mantissa: i64::try_from(matched.price_per_minute_mantissa)
                    .unwrap_or(i64::MAX),
                destination: tariff.destination_position(matched.destination),
                prefix_length: matched.prefix_length as u8,
                jurisdiction: 0,
            },
            _ => ShownRate::default(),
        };
        let rated = rated.map(|charge| Charge {
            rate_id: charge.matched.map(|_| 0),
            billable_seconds: charge.billable_seconds,
            cost_mantissa: charge.cost_mantissa,
        });
        self.push_rating(0, rated, shown);
        if let Err(reason) = rated {
            self.reject(line, raw, reason, Some(row));
        }
    }

    fn push_rating(
        &mut self,
        deck_index: DeckIndex,
        rated: Result<Charge, RejectReason>,
        shown: ShownRate,
    ) {
        self.block.deck.push(deck_index);
        self.block.shown_rate.push(shown);
        match rated {
            Ok(charge) => {
                self.block.rate.push(charge.rate_id.unwrap_or(NO_RATE));
                self.block.billable_seconds.push(charge.billable_seconds);
                self.block.cost_mantissa.push(
                    i64::try_from(charge.cost_mantissa)
                        .expect("prices and billsec are capped, so a cost fits in i64"),
                );
                self.block.status.push(RowStatus::Rated);
            }
            Err(reason) => {
                self.block.rate.push(NO_RATE);
                self.block.billable_seconds.push(0);
                self.block.cost_mantissa.push(0);
                self.block.status.push(RowStatus::Rejected(reason));
            }
        }
    }

    /// Rates the calls whose rating was deferred. Lookups run first as their own tight loop: each
    /// is a few dependent cache misses, and with little work between them the processor overlaps
    /// the misses of many calls instead of waiting on each in turn.
    fn rate_pending_calls(&mut self, bytes: &[u8]) {
        let pending = std::mem::take(&mut self.pending);
        let decks = &self.context.decks;
        fn callee_digits(call: &PendingCall) -> &[u8] {
            &call.callee[..usize::from(call.callee_length)]
        }
        fn callee(call: &PendingCall) -> &str {
            std::str::from_utf8(callee_digits(call)).expect("copied from a str")
        }
        let rate_ids: Vec<Option<RateId>> = pending
            .iter()
            .enumerate()
            .map(|(index, call)| {
                // Two steps of prefetching: the index slots of a call two strides ahead, then
                // (those slots now in cache) the pricing record of the call one stride ahead.
                if let Some(ahead) = pending.get(index + 2 * LOOKUPS_PREFETCHED_AHEAD) {
                    decks[usize::from(ahead.deck)].prefetch_index_slots(callee_digits(ahead));
                }
                if let Some(ahead) = pending.get(index + LOOKUPS_PREFETCHED_AHEAD) {
                    decks[usize::from(ahead.deck)].prefetch_pricing(callee_digits(ahead));
                }
                decks[usize::from(call.deck)].find_rate_in_jurisdiction(
                    callee(call),
                    call.pricing_time_micros,
                    call.direction,
                    call.jurisdiction,
                )
            })
            .collect();
        for (call, rate_id) in pending.iter().zip(rate_ids) {
            let row = call.row as usize;
            let deck = &decks[usize::from(call.deck)];
            let rated = charge_for(
                deck,
                rate_id,
                call.pricing_time_micros,
                call.billsec,
                call.answered,
                call.direction,
            );
            match rated {
                Ok(charge) => {
                    self.block.rate[row] = charge.rate_id.unwrap_or(NO_RATE);
                    self.block.shown_rate[row] = ShownRate::of(deck, charge.rate_id);
                    self.block.billable_seconds[row] = charge.billable_seconds;
                    self.block.cost_mantissa[row] = i64::try_from(charge.cost_mantissa)
                        .expect("prices and billsec are capped, so a cost fits in i64");
                }
                Err(reason) => {
                    self.block.status[row] = RowStatus::Rejected(reason);
                    let raw = &bytes
                        [call.raw_offset as usize..(call.raw_offset + call.raw_length) as usize];
                    self.reject(call.line, raw, reason, Some(row));
                }
            }
        }
        // Rejects must stay in file order for the rejects file.
        self.block
            .rejected_records
            .sort_by_key(|reject| reject.line_in_block);
    }

    fn reject(&mut self, line: u64, raw: &[u8], reason: RejectReason, row: Option<usize>) {
        let raw = &raw[..raw.len().min(REJECT_RAW_BYTES_MAX)];
        self.block.rejected_records.push(RejectedRecord {
            line_in_block: line,
            raw: raw.to_vec(),
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
///
/// CDR files almost never quote fields, so a block without a quote character is split by lines
/// and commas directly (several times faster than a general CSV parser); a block with quotes goes
/// through the `csv` crate, which handles quoted commas and line breaks.
pub fn rate_csv_block(
    context: &RatingContext,
    columns: &CanonicalColumns,
    bytes: &[u8],
) -> RatedBlock {
    let mut builder = RatedBlockBuilder::new(context, bytes.len() / 100);
    if memchr::memchr(b'"', bytes).is_none() {
        rate_unquoted_lines(&mut builder, columns, bytes);
        builder.rate_pending_calls(bytes);
    } else {
        rate_quoted_records(&mut builder, columns, bytes);
    }
    let n_lines = memchr::memchr_iter(b'\n', bytes).count() as u64;
    builder.finish(n_lines)
}

fn rate_unquoted_lines(
    builder: &mut RatedBlockBuilder<'_>,
    columns: &CanonicalColumns,
    bytes: &[u8],
) {
    // One UTF-8 check and one scan for commas and line ends over the whole block: per-line checks
    // and per-line comma searches cost more in set-up than in work on 100-byte lines.
    let Ok(text) = simdutf8::basic::from_utf8(bytes) else {
        rate_unquoted_lines_checking_each(builder, columns, bytes);
        return;
    };
    let mut fields: Vec<&str> = Vec::with_capacity(columns.n_columns + 4);
    let mut line_start = 0;
    let mut field_start = 0;
    let mut line_number = 0;
    let mut on_separator = |position: usize, is_line_end: bool| {
        if !is_line_end {
            fields.push(&text[field_start..position]);
            field_start = position + 1;
            return;
        }
        line_number += 1;
        let raw = trim_line_end(&bytes[line_start..position]);
        let raw_end = line_start + raw.len();
        if !raw.is_empty() {
            // The line end's `\r` is not part of the last field (`trim_line_end` strips only
            // what follows the last comma, so `field_start <= raw_end` unless that field is empty).
            fields.push(&text[field_start.min(raw_end)..raw_end]);
            builder.push_record(columns, &fields, line_number, raw, Some(line_start));
        }
        fields.clear();
        line_start = position + 1;
        field_start = line_start;
    };
    for_each_separator(bytes, &mut on_separator);
    if bytes.last().is_some_and(|last| *last != b'\n') {
        // The block's last line has no line end: end it at the end of the block.
        on_separator(bytes.len(), true);
    }
}

/// [`rate_unquoted_lines`] for a block that is not valid UTF-8 as a whole: each line is checked on
/// its own, so only the broken lines are rejected.
fn rate_unquoted_lines_checking_each(
    builder: &mut RatedBlockBuilder<'_>,
    columns: &CanonicalColumns,
    bytes: &[u8],
) {
    let mut fields: Vec<&str> = Vec::with_capacity(columns.n_columns + 4);
    let mut line_start = 0;
    let mut line_number = 0;
    let line_ends = memchr::memchr_iter(b'\n', bytes)
        .chain((bytes.last() != Some(&b'\n')).then_some(bytes.len()));
    for line_end in line_ends {
        line_number += 1;
        let raw = trim_line_end(&bytes[line_start..line_end]);
        let raw_offset = line_start;
        line_start = line_end + 1;
        if raw.is_empty() {
            continue;
        }
        match std::str::from_utf8(raw) {
            Ok(text) => {
                split_fields(text, &mut fields);
                builder.push_record(columns, &fields, line_number, raw, Some(raw_offset));
            }
            Err(_) => {
                builder.block.n_records += 1;
                builder.reject(line_number, raw, RejectReason::InvalidUtf8, None);
            }
        }
    }
}

/// Splits an unquoted CSV line at its commas.
fn split_fields<'a>(line: &'a str, fields: &mut Vec<&'a str>) {
    fields.clear();
    let mut field_start = 0;
    for comma in memchr::memchr_iter(b',', line.as_bytes()) {
        fields.push(&line[field_start..comma]);
        field_start = comma + 1;
    }
    fields.push(&line[field_start..]);
}

fn rate_quoted_records(
    builder: &mut RatedBlockBuilder<'_>,
    columns: &CanonicalColumns,
    bytes: &[u8],
) {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    loop {
        let start = reader.position().clone();
        // Reading from a slice cannot fail: the csv crate's only errors here are I/O and UTF-8,
        // and byte records skip the UTF-8 check.
        if !reader.read_byte_record(&mut record).unwrap_or(false) {
            break;
        }
        let end = reader.position().byte() as usize;
        let raw = trim_line_end(&bytes[start.byte() as usize..end]);
        if raw.is_empty() {
            continue;
        }
        match csv::StringRecord::from_byte_record(std::mem::take(&mut record)) {
            Ok(text_record) => {
                let fields: Vec<&str> = text_record.iter().collect();
                builder.push_record(columns, &fields, start.line(), raw, None);
                record = text_record.into_byte_record();
            }
            Err(error) => {
                builder.block.n_records += 1;
                builder.reject(start.line(), raw, RejectReason::InvalidUtf8, None);
                record = error.into_byte_record();
            }
        }
    }
}

/// Rates records that were decoded elsewhere (a Parquet file) into canonical text fields.
pub fn rate_decoded_records(
    context: &RatingContext,
    columns: &CanonicalColumns,
    records: &[(u64, csv::StringRecord)],
) -> RatedBlock {
    let mut builder = RatedBlockBuilder::new(context, records.len());
    let mut fields: Vec<&str> = Vec::with_capacity(columns.n_columns);
    let mut raw = Vec::new();
    for (line, record) in records {
        fields.clear();
        fields.extend(record.iter());
        raw.clear();
        raw.extend_from_slice(fields.join(",").as_bytes());
        builder.push_record(columns, &fields, *line, &raw, None);
    }
    builder.finish(0)
}

/// Decodes, maps and rates the records of a block of a header-less switch CSV (whole records).
/// Rejects show each record as it stood in the file, not its canonical mapping.
pub fn rate_switch_csv_block(
    context: &RatingContext,
    decoder: &SwitchCsvDecoder,
    bytes: &[u8],
) -> RatedBlock {
    let mut builder = RatedBlockBuilder::new(context, bytes.len() / 150);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    loop {
        let start = reader.position().clone();
        // Reading from a slice cannot fail (see `rate_quoted_records`).
        if !reader.read_byte_record(&mut record).unwrap_or(false) {
            break;
        }
        let end = reader.position().byte() as usize;
        let with_leading_blank_lines = trim_line_end(&bytes[start.byte() as usize..end]);
        let raw = with_leading_blank_lines.trim_ascii_start();
        let skipped_lines = memchr::memchr_iter(
            b'\n',
            &with_leading_blank_lines[..with_leading_blank_lines.len() - raw.len()],
        )
        .count() as u64;
        let line = start.line() + skipped_lines;
        if raw.is_empty() {
            continue;
        }
        match csv::StringRecord::from_byte_record(std::mem::take(&mut record)) {
            Ok(text_record) => {
                let mut fields: Vec<&str> = text_record.iter().collect();
                if let Some(first) = fields.first_mut() {
                    *first = first.trim_start_matches('\u{feff}');
                }
                builder.push_mapped(decoder.map(&fields), line, raw);
                drop(fields);
                record = text_record.into_byte_record();
            }
            Err(error) => {
                // Only the columns the mapping reads must be UTF-8; a caller name in another
                // encoding does not make a call unratable.
                let byte_record = error.into_byte_record();
                let unreadable_column_read =
                    byte_record.iter().enumerate().any(|(column, field)| {
                        std::str::from_utf8(field).is_err()
                            && decoder.reads_column(byte_record.len(), column)
                    });
                if unreadable_column_read {
                    builder.block.n_records += 1;
                    builder.reject(line, raw, RejectReason::InvalidUtf8, None);
                } else {
                    let fields: Vec<Cow<'_, str>> =
                        byte_record.iter().map(String::from_utf8_lossy).collect();
                    let fields: Vec<&str> = fields.iter().map(Cow::as_ref).collect();
                    builder.push_mapped(decoder.map(&fields), line, raw);
                }
                record = byte_record;
            }
        }
    }
    let n_lines = memchr::memchr_iter(b'\n', bytes).count() as u64;
    builder.finish(n_lines)
}

/// Decodes, maps and rates a batch of KAZOO JSON documents; lines are the documents' own.
pub fn rate_kazoo_documents(context: &RatingContext, batch: &JsonDocumentBatch) -> RatedBlock {
    let mut builder = RatedBlockBuilder::new(context, batch.documents.len());
    for document in &batch.documents {
        let raw = batch.bytes[document.range.clone()].trim_ascii();
        let mapped = kazoo::map_document(raw).map(|fields| fields.map(Cow::Owned));
        builder.push_mapped(mapped, document.line, raw);
    }
    builder.finish(0)
}

impl RatedBlockBuilder<'_> {
    /// Rates a record a switch decoder mapped onto the canonical fields, or rejects it with the
    /// reason the mapping gave. `raw` is the source record. A resend is told from a conflict by
    /// the mapped fields, not the source text: the same call written again in another shape (a
    /// pretty-printed JSON document, a CSV whose quotes a spreadsheet removed) is a duplicate.
    fn push_mapped(
        &mut self,
        mapped: Result<CanonicalFields<'_>, RejectReason>,
        line: u64,
        raw: &[u8],
    ) {
        match mapped {
            Ok(mapped) => {
                let fields: [&str; 10] = mapped.each_ref().map(|field| field.as_ref());
                let content_digest = xxhash_rust::xxh3::xxh3_64(fields.join("\u{1f}").as_bytes());
                self.push_record_with_content(
                    &MAPPED_COLUMNS,
                    &fields,
                    line,
                    raw,
                    None,
                    content_digest,
                );
            }
            Err(reason) => {
                self.block.n_records += 1;
                self.reject(line, raw, reason, None);
            }
        }
    }
}
