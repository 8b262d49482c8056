//! FreeSWITCH mod_cdr_csv records: the stock `example` template, or any template whose columns
//! `--input-columns` names.

use super::{CanonicalFields, Layout, switch_time, unanswered_disposition};
use crate::cdr::RejectReason;
use std::borrow::Cow;

/// The FreeSWITCH channel variables a mapping reads, by name.
pub const FIELDS: [&str; 11] = [
    "uuid",
    "accountcode",
    "caller_id_number",
    "destination_number",
    "start_stamp",
    "answer_stamp",
    "end_stamp",
    "billsec",
    "billmsec",
    "hangup_cause",
    "context",
];
const UUID: usize = 0;
const ACCOUNTCODE: usize = 1;
const CALLER_ID_NUMBER: usize = 2;
const DESTINATION_NUMBER: usize = 3;
const START_STAMP: usize = 4;
const ANSWER_STAMP: usize = 5;
const END_STAMP: usize = 6;
const BILLSEC: usize = 7;
const BILLMSEC: usize = 8;
const HANGUP_CAUSE: usize = 9;
const CONTEXT: usize = 10;

/// What named columns must include: a record without them cannot be rated.
pub const REQUIRED: [&[&str]; 5] = [
    &["uuid"],
    &["accountcode"],
    &["destination_number"],
    &["start_stamp"],
    &["billsec", "billmsec"],
];

/// The stock `example` template of `cdr_csv.conf.xml`.
pub const EXAMPLE_TEMPLATE: [&str; 15] = [
    "caller_id_name",
    "caller_id_number",
    "destination_number",
    "context",
    "start_stamp",
    "answer_stamp",
    "end_stamp",
    "duration",
    "billsec",
    "hangup_cause",
    "uuid",
    "bleg_uuid",
    "accountcode",
    "read_codec",
    "write_codec",
];

/// Maps a FreeSWITCH record. The dedupe key is the uuid, the account the accountcode (FreeSWITCH's
/// directory sets it per user; a record without one is refused, `missing_account`). mod_cdr_csv
/// writes the A leg, billed to its account: outbound, unless `direction_of` says the record's
/// dialplan `context` is inbound (`--inbound-context public`). Billable seconds are `billsec`;
/// `billmsec` rounded up to whole seconds only when the template has no `billsec` (see
/// `docs/cdr-formats.md` for why).
pub fn map<'a>(
    layout: &Layout,
    fields: &[&'a str],
    direction_of: impl Fn(&str) -> &'static str,
) -> Result<CanonicalFields<'a>, RejectReason> {
    let text = |field: usize| layout.text(fields, field);
    let billsec: Cow<'a, str> = if layout.has(BILLSEC) {
        Cow::Borrowed(text(BILLSEC))
    } else {
        Cow::Owned(billmsec_as_billsec(text(BILLMSEC))?)
    };
    let answered = if layout.has(ANSWER_STAMP) {
        !text(ANSWER_STAMP).is_empty()
    } else {
        billsec.parse::<u64>().is_ok_and(|seconds| seconds > 0)
    };
    let disposition = if answered {
        "ANSWERED"
    } else {
        unanswered_disposition(text(HANGUP_CAUSE))
    };
    Ok([
        Cow::Borrowed(text(UUID)),
        Cow::Borrowed(text(ACCOUNTCODE)),
        Cow::Borrowed(direction_of(text(CONTEXT))),
        Cow::Borrowed(text(CALLER_ID_NUMBER)),
        Cow::Borrowed(text(DESTINATION_NUMBER)),
        switch_time(text(START_STAMP)),
        switch_time(text(ANSWER_STAMP)),
        switch_time(text(END_STAMP)),
        billsec,
        Cow::Borrowed(disposition),
    ])
}

/// Milliseconds rounded up to whole seconds: a started second is a second.
fn billmsec_as_billsec(text: &str) -> Result<String, RejectReason> {
    match text.parse::<u64>() {
        Ok(milliseconds) => Ok(milliseconds.div_ceil(1000).to_string()),
        Err(_) if text.starts_with('-') && text[1..].parse::<u64>().is_ok() => {
            Err(RejectReason::NegativeBillsec)
        }
        Err(_) => Err(RejectReason::InvalidBillsec),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{SwitchCsvDecoder, SwitchFormat, parse_column_names};
    use super::*;

    fn fields(line: &str) -> Vec<String> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(line.as_bytes());
        let record = reader.records().next().unwrap().unwrap();
        record.iter().map(str::to_string).collect()
    }

    /// `columns` is `--input-columns` (`None`: the example template); `expected` is the canonical
    /// fields joined by `|`, or the reject reason.
    fn check(columns: Option<&str>, line: &str, expected: Result<&str, RejectReason>) {
        let names = columns.map(|text| parse_column_names(text).unwrap());
        let decoder = SwitchCsvDecoder::new(SwitchFormat::Freeswitch, names.as_ref())
            .unwrap()
            .with_inbound_contexts(&["public".to_string()])
            .unwrap();
        let fields = fields(line);
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        let mapped = decoder.map(&fields).map(|mapped| mapped.join("|"));
        assert_eq!(
            mapped.as_deref().map_err(|reason| *reason),
            expected,
            "{line}"
        );
    }

    #[test]
    fn example_template_records() {
        check(
            None,
            r#""Alice","1001","+442071234567","default","2026-11-20 10:00:00","2026-11-20 10:00:04","2026-11-20 10:01:05","65","61","NORMAL_CLEARING","0b5c3c2e-8f0a-4c1e-9d7a-1a2b3c4d5e6f","","acct-1001","PCMU","PCMU""#,
            Ok(
                "0b5c3c2e-8f0a-4c1e-9d7a-1a2b3c4d5e6f|acct-1001|outbound|1001|+442071234567|2026-11-20 10:00:00|2026-11-20 10:00:04|2026-11-20 10:01:05|61|ANSWERED",
            ),
        );
        // Unanswered: the hangup cause names the disposition.
        check(
            None,
            r#""Alice","1001","442071234567","default","2026-11-20 10:05:00","","2026-11-20 10:05:20","20","0","USER_BUSY","u-2","","acct-1001","PCMU","PCMU""#,
            Ok(
                "u-2|acct-1001|outbound|1001|442071234567|2026-11-20 10:05:00||2026-11-20 10:05:20|0|BUSY",
            ),
        );
        check(
            None,
            r#""","0","1002","default","2026-11-20 10:06:00","","2026-11-20 10:06:02","2","0","NO_USER_RESPONSE","u-3","","","","""#,
            Ok("u-3||outbound|0|1002|2026-11-20 10:06:00||2026-11-20 10:06:02|0|NO ANSWER"),
        );
        // Re-saved by a spreadsheet: quotes gone, times without seconds.
        check(
            None,
            "Alice,1001,442071234567,default,2026/11/20 10:00,2026/11/20 10:00,2026/11/20 10:01,65,61,NORMAL_CLEARING,u-4,,acct-1001,PCMU,PCMU",
            Ok(
                "u-4|acct-1001|outbound|1001|442071234567|2026-11-20 10:00:00|2026-11-20 10:00:00|2026-11-20 10:01:00|61|ANSWERED",
            ),
        );
        // From a gateway into the public context: the account's inbound call.
        check(
            None,
            r#""Carrier","442071234567","13125550143","public","2026-11-20 10:08:00","2026-11-20 10:08:01","2026-11-20 10:08:31","31","30","NORMAL_CLEARING","u-9","","acct-f1","PCMU","PCMU""#,
            Ok(
                "u-9|acct-f1|inbound|442071234567|13125550143|2026-11-20 10:08:00|2026-11-20 10:08:01|2026-11-20 10:08:31|30|ANSWERED",
            ),
        );
        check(
            None,
            r#""Alice","1001","442071234567""#,
            Err(RejectReason::WrongColumnCount),
        );
    }

    #[test]
    fn named_templates() {
        // The stock `opencdrrate` template has billsec; this one has billmsec only.
        let columns = r#""${uuid}","${accountcode}","${caller_id_number}","${destination_number}","${start_stamp}","${end_stamp}","${billmsec}","${hangup_cause}""#;
        check(
            Some(columns),
            "u-5,acct-1,1001,4930901820,2026-11-20 10:00:00,2026-11-20 10:00:31,30001,NORMAL_CLEARING",
            Ok(
                "u-5|acct-1|outbound|1001|4930901820|2026-11-20 10:00:00||2026-11-20 10:00:31|31|ANSWERED",
            ),
        );
        check(
            Some(columns),
            "u-6,acct-1,1001,4930901820,2026-11-20 10:00:00,2026-11-20 10:00:31,0,ORIGINATOR_CANCEL",
            Ok(
                "u-6|acct-1|outbound|1001|4930901820|2026-11-20 10:00:00||2026-11-20 10:00:31|0|CANCEL",
            ),
        );
        check(
            Some(columns),
            "u-7,acct-1,1001,4930901820,2026-11-20 10:00:00,2026-11-20 10:00:31,-5,NORMAL_CLEARING",
            Err(RejectReason::NegativeBillsec),
        );
        check(
            Some(columns),
            "u-8,acct-1,1001,4930901820,2026-11-20 10:00:00,2026-11-20 10:00:31,3s,NORMAL_CLEARING",
            Err(RejectReason::InvalidBillsec),
        );
    }

    #[test]
    fn named_columns_must_hold_what_rating_needs() {
        let names = parse_column_names("uuid,accountcode,destination_number,start_stamp").unwrap();
        let problem = SwitchCsvDecoder::new(SwitchFormat::Freeswitch, Some(&names)).unwrap_err();
        assert!(problem.contains("billsec or billmsec"), "{problem}");
    }
}
