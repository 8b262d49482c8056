//! The canonical CDR CSV: `cdr_id,account,direction,caller,callee,start_time,answer_time,end_time,
//! billsec,disposition` (any order, extra columns allowed, an optional `source` column).
//!
//! Decoding a record either gives a [`Cdr`] or names what is wrong with it; it never panics on
//! any bytes.

use crate::cdr::{
    Cdr, Direction, NumberProblem, RejectReason, is_plausible_identifier, normalize_number,
};
use crate::ingest::timestamp::parse_timestamp_micros;
use chrono_tz::Tz;
use std::borrow::Cow;

pub const CANONICAL_COLUMNS: [&str; 10] = [
    "cdr_id",
    "account",
    "direction",
    "caller",
    "callee",
    "start_time",
    "answer_time",
    "end_time",
    "billsec",
    "disposition",
];

/// Where the canonical columns sit in one file's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalColumns {
    pub n_columns: usize,
    /// Positions of [`CANONICAL_COLUMNS`], in that order.
    pub positions: [usize; 10],
    pub source: Option<usize>,
}

impl CanonicalColumns {
    /// Reads a header row. A file without every canonical column is unusable as a whole.
    pub fn from_header<'h>(
        header: impl IntoIterator<Item = &'h [u8]>,
    ) -> Result<CanonicalColumns, String> {
        let names = crate::text::normalized_header_names(header);
        let position = |wanted: &str| names.iter().position(|name| name == wanted);
        let missing: Vec<&str> = CANONICAL_COLUMNS
            .iter()
            .copied()
            .filter(|wanted| position(wanted).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "the header lacks the canonical column{} {} (header: {})",
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", "),
                names.join(",")
            ));
        }
        Ok(CanonicalColumns {
            n_columns: names.len(),
            positions: CANONICAL_COLUMNS.map(|wanted| position(wanted).expect("checked above")),
            source: position("source"),
        })
    }
}

/// A CSV file's header as found in its first bytes `head`: the canonical columns, the bytes and
/// lines it takes. `Ok(None)` for an empty file.
pub struct CanonicalHeader {
    pub columns: CanonicalColumns,
    pub header_bytes: usize,
    pub header_lines: u64,
}

pub fn read_canonical_header(head: &[u8]) -> Result<Option<CanonicalHeader>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(head);
    let mut header = csv::ByteRecord::new();
    let has_header = reader
        .read_byte_record(&mut header)
        .map_err(|error| format!("cannot read the header: {error}"))?;
    if !has_header {
        return Ok(None);
    }
    Ok(Some(CanonicalHeader {
        columns: CanonicalColumns::from_header(header.iter())?,
        header_bytes: reader.position().byte() as usize,
        header_lines: reader.position().line() - 1,
    }))
}

/// Decodes one record, given as its fields (already valid UTF-8). `default_source` names the feed
/// when the file has no `source` column.
pub fn decode_canonical_fields<'a>(
    columns: &CanonicalColumns,
    fields: &[&'a str],
    default_source: &'a str,
    input_time_zone: Tz,
) -> Result<Cdr<'a>, RejectReason> {
    if fields.len() != columns.n_columns {
        return Err(RejectReason::WrongColumnCount);
    }
    let text = |column: usize| -> &'a str { fields[columns.positions[column]].trim_ascii() };
    let source = match columns.source.map(|position| fields[position].trim_ascii()) {
        Some(source) if !source.is_empty() => source,
        _ => default_source,
    };
    let cdr_id = text(0);
    if cdr_id.is_empty() {
        return Err(RejectReason::MissingCdrId);
    }
    let account = text(1);
    if account.is_empty() {
        return Err(RejectReason::MissingAccount);
    }
    if ![source, cdr_id, account]
        .into_iter()
        .all(is_plausible_identifier)
    {
        return Err(RejectReason::InvalidIdentifier);
    }
    let direction = Direction::parse(text(2)).ok_or(RejectReason::InvalidDirection)?;
    let caller_text = text(3);
    let caller = match normalize_number(caller_text) {
        Ok(number) => number,
        Err(_)
            if caller_text.len() > crate::limits::CALLER_TEXT_BYTES_MAX
                || caller_text.chars().any(char::is_control) =>
        {
            return Err(RejectReason::InvalidCaller);
        }
        Err(_) => Cow::Borrowed(caller_text),
    };
    let callee = normalize_number(text(4)).map_err(|problem| match problem {
        NumberProblem::Empty => RejectReason::EmptyCallee,
        NumberProblem::NotDigits | NumberProblem::TooLong => RejectReason::InvalidCallee,
    })?;
    let start_time_micros =
        parse_timestamp_micros(text(5), input_time_zone).ok_or(RejectReason::InvalidStartTime)?;
    let optional_time =
        |column: usize, reason: RejectReason| -> Result<Option<i64>, RejectReason> {
            match text(column) {
                "" => Ok(None),
                time => parse_timestamp_micros(time, input_time_zone)
                    .map(Some)
                    .ok_or(reason),
            }
        };
    let answer_time_micros = optional_time(6, RejectReason::InvalidAnswerTime)?;
    let end_time_micros = optional_time(7, RejectReason::InvalidEndTime)?;
    let billsec = parse_billsec(text(8))?;
    if end_time_micros.is_some_and(|end| end < start_time_micros) {
        return Err(RejectReason::EndBeforeStart);
    }
    if answer_time_micros.is_some_and(|answer| answer < start_time_micros) {
        return Err(RejectReason::AnswerBeforeStart);
    }
    let disposition = text(9);
    if !crate::cdr::is_known_disposition(disposition) {
        return Err(RejectReason::InvalidDisposition);
    }
    Ok(Cdr {
        source,
        cdr_id,
        account,
        direction,
        caller,
        callee,
        start_time_micros,
        answer_time_micros,
        end_time_micros,
        billsec,
        disposition,
    })
}

/// Billable seconds as the switch wrote them: a whole number, `0` for unanswered calls.
pub fn parse_billsec(text: &str) -> Result<u32, RejectReason> {
    if let Ok(billsec) = text.parse::<u32>() {
        return if billsec <= crate::limits::BILLSEC_MAX {
            Ok(billsec)
        } else {
            Err(RejectReason::InvalidBillsec)
        };
    }
    match text.parse::<i64>() {
        Ok(negative) if negative < 0 => Err(RejectReason::NegativeBillsec),
        _ => Err(RejectReason::InvalidBillsec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "cdr_id,account,direction,caller,callee,start_time,answer_time,end_time,billsec,disposition";

    fn record(line: &str) -> csv::StringRecord {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(line.as_bytes());
        let mut record = csv::StringRecord::new();
        reader.read_record(&mut record).unwrap();
        record
    }

    fn columns() -> CanonicalColumns {
        CanonicalColumns::from_header(record(HEADER).iter().map(str::as_bytes)).unwrap()
    }

    fn check(line: &str, expected: Result<&str, RejectReason>) {
        let record = record(line);
        let fields: Vec<&str> = record.iter().collect();
        let decoded = decode_canonical_fields(&columns(), &fields, "test", chrono_tz::UTC);
        assert_eq!(
            decoded
                .as_ref()
                .map(|cdr| cdr.callee.as_ref())
                .map_err(|reason| *reason),
            expected,
            "{line}"
        );
    }

    #[test]
    fn decoding_and_reasons() {
        let good = "c1,a1,outbound,+12125550100,+44 20 7123 4567,2026-11-20T10:00:00Z,2026-11-20T10:00:05Z,2026-11-20T10:01:05Z,60,ANSWERED";
        check(good, Ok("442071234567"));
        check(
            "c1,a1,outbound,1,44,2026-11-20T10:00:00Z,,,0,NO ANSWER",
            Ok("44"),
        );
        check(
            "c1,a1,outbound,1,44,2026-11-20T10:00:00Z,,,0",
            Err(RejectReason::WrongColumnCount),
        );
        check(
            ",a1,outbound,1,44,2026-11-20T10:00:00Z,,,0,BUSY",
            Err(RejectReason::MissingCdrId),
        );
        check(
            "c1,,outbound,1,44,2026-11-20T10:00:00Z,,,0,BUSY",
            Err(RejectReason::MissingAccount),
        );
        check(
            "c1,a1,sideways,1,44,2026-11-20T10:00:00Z,,,0,BUSY",
            Err(RejectReason::InvalidDirection),
        );
        check(
            "c1,a1,outbound,1,,2026-11-20T10:00:00Z,,,0,BUSY",
            Err(RejectReason::EmptyCallee),
        );
        check(
            "c1,a1,outbound,1,4x4,2026-11-20T10:00:00Z,,,0,BUSY",
            Err(RejectReason::InvalidCallee),
        );
        check(
            "c1,a1,outbound,1,44,20-11-2026,,,0,BUSY",
            Err(RejectReason::InvalidStartTime),
        );
        check(
            "c1,a1,outbound,1,44,2026-11-20T10:00:00Z,soon,,0,BUSY",
            Err(RejectReason::InvalidAnswerTime),
        );
        check(
            "c1,a1,outbound,1,44,2026-11-20T10:00:00Z,,later,0,BUSY",
            Err(RejectReason::InvalidEndTime),
        );
        check(
            "c1,a1,outbound,1,44,2026-11-20T10:00:00Z,,,-5,BUSY",
            Err(RejectReason::NegativeBillsec),
        );
        check(
            "c1,a1,outbound,1,44,2026-11-20T10:00:00Z,,,12s,BUSY",
            Err(RejectReason::InvalidBillsec),
        );
        check(
            "c1,a1,outbound,1,44,2026-11-20T10:00:00Z,,2026-11-20T09:00:00Z,0,BUSY",
            Err(RejectReason::EndBeforeStart),
        );
        check(
            "c1,a1,outbound,1,44,2026-11-20T10:00:00Z,2026-11-20T09:59:00Z,,0,BUSY",
            Err(RejectReason::AnswerBeforeStart),
        );
        check(
            "c1,a1,outbound,1,44,2026-11-20T10:00:00Z,,,0,CANCELLED",
            Err(RejectReason::InvalidDisposition),
        );
        check(
            "c1,a1,outbound,1,44,2026-11-20T10:00:00Z,,,0,",
            Err(RejectReason::InvalidDisposition),
        );
    }

    #[test]
    fn header_needs_every_canonical_column() {
        let problem = CanonicalColumns::from_header(
            record("cdr_id,account,callee").iter().map(str::as_bytes),
        )
        .unwrap_err();
        assert!(
            problem.contains("direction, caller, start_time"),
            "{problem}"
        );
        let reordered = CanonicalColumns::from_header(
            record("source,disposition,billsec,end_time,answer_time,start_time,callee,caller,direction,account,cdr_id,extra")
                .iter()
                .map(str::as_bytes),
        )
        .unwrap();
        assert_eq!(reordered.positions[0], 10);
        assert_eq!(reordered.source, Some(0));
    }
}
