//! CGRateS CDR CSV exports (cdre `*file_csv`): the default field template, a template named by
//! `--input-columns`, or a file whose first row names its fields.

use super::{CanonicalFields, ColumnNames, Layout, switch_time};
use crate::cdr::RejectReason;
use std::borrow::Cow;

/// The CGRateS CDR fields a mapping reads, by (lower-case) name.
pub const FIELDS: [&str; 12] = [
    "cgrid",
    "runid",
    "tor",
    "originid",
    "originhost",
    "direction",
    "account",
    "subject",
    "destination",
    "setuptime",
    "answertime",
    "usage",
];
const CGRID: usize = 0;
const RUNID: usize = 1;
const TOR: usize = 2;
const ORIGINID: usize = 3;
const ORIGINHOST: usize = 4;
const DIRECTION: usize = 5;
const ACCOUNT: usize = 6;
const SUBJECT: usize = 7;
const DESTINATION: usize = 8;
const SETUPTIME: usize = 9;
const ANSWERTIME: usize = 10;
const USAGE: usize = 11;

/// What named columns must include: a record without them cannot be rated.
pub const REQUIRED: [&[&str]; 5] = [
    &["cgrid", "originid"],
    &["account"],
    &["destination"],
    &["setuptime", "answertime"],
    &["usage"],
];

/// The default cdre export template since CGRateS v0.10 (no header row).
const CDRE_DEFAULT: [&str; 14] = [
    "cgrid",
    "runid",
    "tor",
    "originid",
    "requesttype",
    "tenant",
    "category",
    "account",
    "subject",
    "destination",
    "setuptime",
    "answertime",
    "usage",
    "cost",
];

/// The two stock layouts: the current one, and the older one with `Direction` after the request
/// type (v0.9, whose names `CgrId`, `AccId`, `ReqType` mean the same fields).
pub fn cdre_layouts() -> Vec<ColumnNames> {
    let mut with_direction = CDRE_DEFAULT.to_vec();
    with_direction.insert(5, "direction");
    vec![
        ColumnNames::of(&CDRE_DEFAULT),
        ColumnNames::of(&with_direction),
    ]
}

/// Column names as this module knows them: lower case, older names replaced by current ones.
pub fn canonical_field_names(names: &ColumnNames) -> ColumnNames {
    ColumnNames(
        names
            .0
            .iter()
            .map(|name| {
                let name = name
                    .trim()
                    .trim_start_matches('\u{feff}')
                    .to_ascii_lowercase();
                match name.as_str() {
                    "accid" => "originid".to_string(),
                    "cdrhost" => "originhost".to_string(),
                    "reqtype" => "requesttype".to_string(),
                    "mediationrunid" => "runid".to_string(),
                    _ => name,
                }
            })
            .collect(),
    )
}

/// True when a file's first row is a header naming CGRateS fields rather than a CDR.
pub fn is_header_row(fields: &[&str]) -> bool {
    let names = canonical_field_names(&ColumnNames::of(fields));
    ["account", "destination", "usage"]
        .iter()
        .all(|name| names.position(name).is_some())
}

/// Maps a CGRateS record. Only the `*default` charging run of a `*voice` record is rated. The
/// dedupe key is OriginID and OriginHost (`OriginID@OriginHost`) when the export has OriginHost,
/// else CGRID, which CGRateS computes as the SHA-1 of OriginID and OriginHost. The caller is the
/// rating Subject; the direction `*out` unless an older export says `*in`.
pub fn map<'a>(layout: &Layout, fields: &[&'a str]) -> Result<CanonicalFields<'a>, RejectReason> {
    let text = |field: usize| layout.text(fields, field);
    if !matches!(text(RUNID), "" | "*default") {
        return Err(RejectReason::SecondaryRecord);
    }
    if !matches!(text(TOR), "" | "*voice") {
        return Err(RejectReason::NotAVoiceCall);
    }
    let cdr_id = match (text(ORIGINID), text(ORIGINHOST), text(CGRID)) {
        (origin_id, origin_host, _) if !origin_id.is_empty() && !origin_host.is_empty() => {
            Cow::Owned(format!("{origin_id}@{origin_host}"))
        }
        (_, _, cgrid) if !cgrid.is_empty() => Cow::Borrowed(cgrid),
        (origin_id, _, _) => Cow::Borrowed(origin_id),
    };
    let direction = match text(DIRECTION) {
        "" | "*out" => "outbound",
        "*in" => "inbound",
        other => other,
    };
    let answer_time = known_time(text(ANSWERTIME));
    let start_time = match known_time(text(SETUPTIME)) {
        "" => answer_time,
        setup => setup,
    };
    let billsec = usage_seconds(text(USAGE))?;
    let disposition = if answer_time.is_empty() {
        "NO ANSWER"
    } else {
        "ANSWERED"
    };
    Ok([
        cdr_id,
        Cow::Borrowed(text(ACCOUNT)),
        Cow::Borrowed(direction),
        Cow::Borrowed(text(SUBJECT)),
        Cow::Borrowed(text(DESTINATION)),
        switch_time(start_time),
        switch_time(answer_time),
        Cow::Borrowed(""),
        Cow::Owned(billsec.to_string()),
        Cow::Borrowed(disposition),
    ])
}

/// A CGRateS time, or empty for Go's zero time (`0001-01-01T00:00:00Z`: never answered).
fn known_time(text: &str) -> &str {
    if text.starts_with("0001-01-01") {
        ""
    } else {
        text
    }
}

/// Usage as whole seconds, rounded up (a started second is a second). CGRateS writes a Go
/// duration (`1m30s`, `90.5s`, `250ms`, `0s`) or, in older exports, a number of seconds.
pub fn usage_seconds(text: &str) -> Result<u64, RejectReason> {
    let nanoseconds = parse_usage_nanoseconds(text)?;
    if nanoseconds < 0 {
        return Err(RejectReason::NegativeBillsec);
    }
    u64::try_from(nanoseconds.unsigned_abs().div_ceil(1_000_000_000))
        .map_err(|_| RejectReason::InvalidBillsec)
}

/// A Go duration or a plain number of seconds, in nanoseconds; integer arithmetic only.
fn parse_usage_nanoseconds(text: &str) -> Result<i128, RejectReason> {
    let text = text.trim();
    if text.is_empty() || text.len() > crate::limits::USAGE_TEXT_BYTES_MAX {
        return Err(RejectReason::InvalidBillsec);
    }
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let is_plain_seconds = rest.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let number_length = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let (number, after_number) = rest.split_at(number_length);
        let unit_length = after_number
            .bytes()
            .take_while(|b| !(b.is_ascii_digit() || *b == b'.'))
            .count();
        let (unit, after_unit) = after_number.split_at(unit_length);
        let unit_nanoseconds: i128 = match unit {
            "" if is_plain_seconds => 1_000_000_000,
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" | "μs" => 1_000,
            "ns" => 1,
            _ => return Err(RejectReason::InvalidBillsec),
        };
        total = total
            .checked_add(decimal_times(number, unit_nanoseconds)?)
            .ok_or(RejectReason::InvalidBillsec)?;
        rest = after_unit;
    }
    Ok(if negative { -total } else { total })
}

/// `number` (digits with at most one point) times `unit`, truncated to whole units of 1.
fn decimal_times(number: &str, unit: i128) -> Result<i128, RejectReason> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(RejectReason::InvalidBillsec);
    }
    let whole: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| RejectReason::InvalidBillsec)?
    };
    let mut value = whole
        .checked_mul(unit)
        .ok_or(RejectReason::InvalidBillsec)?;
    let mut scale = unit;
    for digit in fraction.bytes() {
        scale /= 10;
        value = value
            .checked_add(i128::from(digit - b'0') * scale)
            .ok_or(RejectReason::InvalidBillsec)?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::super::{SwitchCsvDecoder, SwitchFormat, parse_column_names};
    use super::*;

    /// `columns` is `--input-columns` (`None`: the stock layouts); `expected` is the canonical
    /// fields joined by `|`, or the reject reason.
    fn check(columns: Option<&str>, line: &str, expected: Result<&str, RejectReason>) {
        let names = columns.map(|text| parse_column_names(text).unwrap());
        let decoder = SwitchCsvDecoder::new(SwitchFormat::Cgrates, names.as_ref()).unwrap();
        let fields: Vec<&str> = line.split(',').collect();
        let mapped = decoder.map(&fields).map(|mapped| mapped.join("|"));
        assert_eq!(
            mapped.as_deref().map_err(|reason| *reason),
            expected,
            "{line}"
        );
    }

    #[test]
    fn default_export_records() {
        check(
            None,
            "9e1f0b6c0d,*default,*voice,call-1,*postpaid,cgrates.org,call,1001,1001,442071234567,2026-11-20T10:00:00Z,2026-11-20T10:00:05Z,1m30s,0.45",
            Ok(
                "9e1f0b6c0d|1001|outbound|1001|442071234567|2026-11-20T10:00:00Z|2026-11-20T10:00:05Z||90|ANSWERED",
            ),
        );
        // Unanswered: Go's zero time and a zero usage.
        check(
            None,
            "9e1f0b6c0e,*default,*voice,call-2,*postpaid,cgrates.org,call,1001,1001,442071234567,2026-11-20T10:05:00+01:00,0001-01-01T00:00:00Z,0s,0",
            Ok(
                "9e1f0b6c0e|1001|outbound|1001|442071234567|2026-11-20T10:05:00+01:00|||0|NO ANSWER",
            ),
        );
        // The older layout with Direction.
        check(
            None,
            "9e1f0b6c0f,*default,*voice,call-3,*rated,*in,cgrates.org,call,1001,1001,15551230000,2026-11-20 10:00:00,2026-11-20 10:00:01,10.2,0.01",
            Ok(
                "9e1f0b6c0f|1001|inbound|1001|15551230000|2026-11-20 10:00:00|2026-11-20 10:00:01||11|ANSWERED",
            ),
        );
        check(
            None,
            "9e1f0b6c10,*raw,*voice,call-4,*postpaid,cgrates.org,call,1001,1001,442071234567,2026-11-20T10:00:00Z,2026-11-20T10:00:05Z,1m30s,0",
            Err(RejectReason::SecondaryRecord),
        );
        check(
            None,
            "9e1f0b6c11,*default,*sms,call-5,*postpaid,cgrates.org,sms,1001,1001,442071234567,2026-11-20T10:00:00Z,2026-11-20T10:00:00Z,1,0.05",
            Err(RejectReason::NotAVoiceCall),
        );
        check(
            None,
            "9e1f0b6c12,*default,*voice,call-6,*postpaid,cgrates.org,call,1001,1001,442071234567,2026-11-20T10:00:00Z,2026-11-20T10:00:05Z,-3s,0",
            Err(RejectReason::NegativeBillsec),
        );
        check(
            None,
            "9e1f0b6c13,*default,*voice,call-7,*postpaid,cgrates.org,call,1001,1001,442071234567,2026-11-20T10:00:00Z,2026-11-20T10:00:05Z,soon,0",
            Err(RejectReason::InvalidBillsec),
        );
        check(None, "a,b,c", Err(RejectReason::WrongColumnCount));
    }

    #[test]
    fn named_templates_key_on_origin_id_and_host() {
        let columns = "OriginID,OriginHost,Account,Destination,SetupTime,AnswerTime,Usage";
        check(
            Some(columns),
            "call-8,10.0.0.1,1002,4930901820,2026-11-20T10:00:00Z,2026-11-20T10:00:02Z,45s",
            Ok(
                "call-8@10.0.0.1|1002|outbound||4930901820|2026-11-20T10:00:00Z|2026-11-20T10:00:02Z||45|ANSWERED",
            ),
        );
        // Older names mean the same fields.
        check(
            Some("AccId,CdrHost,Account,Destination,SetupTime,AnswerTime,Usage"),
            "call-8,10.0.0.1,1002,4930901820,2026-11-20T10:00:00Z,2026-11-20T10:00:02Z,45s",
            Ok(
                "call-8@10.0.0.1|1002|outbound||4930901820|2026-11-20T10:00:00Z|2026-11-20T10:00:02Z||45|ANSWERED",
            ),
        );
    }

    #[test]
    fn usages() {
        let check = |text: &str, expected: Result<u64, RejectReason>| {
            assert_eq!(usage_seconds(text), expected, "{text}");
        };
        check("0s", Ok(0));
        check("0", Ok(0));
        check("90", Ok(90));
        check("1m30s", Ok(90));
        check("1h0m0s", Ok(3600));
        check("90.000000001s", Ok(91));
        check("1.5s", Ok(2));
        check("250ms", Ok(1));
        check("999999999ns", Ok(1));
        check("2µs", Ok(1));
        check(".5s", Ok(1));
        check("10.2", Ok(11));
        check("-1s", Err(RejectReason::NegativeBillsec));
        check("", Err(RejectReason::InvalidBillsec));
        check("1x", Err(RejectReason::InvalidBillsec));
        check("1.2.3s", Err(RejectReason::InvalidBillsec));
        check("s", Err(RejectReason::InvalidBillsec));
        check("1m30", Err(RejectReason::InvalidBillsec));
        check(&"9".repeat(65), Err(RejectReason::InvalidBillsec));
        check(
            &format!("{}h", "9".repeat(30)),
            Err(RejectReason::InvalidBillsec),
        );
    }

    #[test]
    fn header_rows() {
        assert!(is_header_row(&[
            "CGRID",
            "RunID",
            "OriginID",
            "Account",
            "Destination",
            "Usage"
        ]));
        assert!(!is_header_row(&[
            "9e1f",
            "*default",
            "1001",
            "442071234567",
            "90s"
        ]));
    }
}
