//! Asterisk CDRs: cdr_csv `Master.csv` (16 base columns and the optional uniqueid, userfield,
//! peeraccount, linkedid and sequence) and cdr_custom with its stock `Master.csv` mapping.

use super::{CanonicalFields, ColumnNames, Layout, switch_time};
use crate::cdr::RejectReason;
use std::borrow::Cow;

/// The Asterisk CDR fields a mapping reads, by name.
pub const FIELDS: [&str; 13] = [
    "accountcode",
    "src",
    "dst",
    "channel",
    "dstchannel",
    "start",
    "answer",
    "end",
    "billsec",
    "disposition",
    "uniqueid",
    "sequence",
    "dcontext",
];
const ACCOUNTCODE: usize = 0;
const SRC: usize = 1;
const DST: usize = 2;
const CHANNEL: usize = 3;
const DSTCHANNEL: usize = 4;
const START: usize = 5;
const ANSWER: usize = 6;
const END: usize = 7;
const BILLSEC: usize = 8;
const DISPOSITION: usize = 9;
const UNIQUEID: usize = 10;
const SEQUENCE: usize = 11;
const DCONTEXT: usize = 12;

/// What named columns must include: a record without them cannot be rated.
pub const REQUIRED: [&[&str]; 5] = [
    &["dst"],
    &["start"],
    &["billsec"],
    &["disposition"],
    &["channel", "uniqueid"],
];

/// cdr_csv's columns before the optional ones.
const CDR_CSV_BASE: [&str; 16] = [
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
];

/// cdr_csv's layouts, told apart by column count: `loguniqueid` adds uniqueid, `loguserfield`
/// userfield, `newcdrcolumns` peeraccount, linkedid and sequence. A 17 or 20 column file is
/// taken to log uniqueid rather than userfield (Asterisk's sample `cdr.conf` turns uniqueid on);
/// `--input-columns` names any other choice.
pub fn cdr_csv_layouts() -> Vec<ColumnNames> {
    let optional_sets: [&[&str]; 6] = [
        &[],
        &["uniqueid"],
        &["uniqueid", "userfield"],
        &["peeraccount", "linkedid", "sequence"],
        &["uniqueid", "peeraccount", "linkedid", "sequence"],
        &[
            "uniqueid",
            "userfield",
            "peeraccount",
            "linkedid",
            "sequence",
        ],
    ];
    optional_sets
        .iter()
        .map(|optional| {
            let mut names = CDR_CSV_BASE.to_vec();
            names.extend_from_slice(optional);
            ColumnNames::of(&names)
        })
        .collect()
}

/// The stock cdr_custom mapping of `cdr_custom.conf` (`Master.csv => ${CSV_QUOTE(${CDR(clid)})},…`).
pub const CDR_CUSTOM_STOCK: [&str; 19] = [
    "clid",
    "src",
    "dst",
    "dcontext",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "accountcode",
    "uniqueid",
    "userfield",
    "sequence",
];

/// Maps an Asterisk record. The dedupe key is `uniqueid-sequence`; without both, a hash of the
/// fields that name one CDR of one channel (see [`hashed_cdr_id`]). The account is the
/// accountcode, else the calling channel's device (`SIP/alice-0000002a` → `SIP/alice`). Asterisk
/// records no direction: `direction_of` gives it from the record's `dcontext` (outbound unless
/// `--inbound-context` names that context).
pub fn map<'a>(
    layout: &Layout,
    fields: &[&'a str],
    direction_of: impl Fn(&str) -> &'static str,
) -> Result<CanonicalFields<'a>, RejectReason> {
    let text = |field: usize| layout.text(fields, field);
    let uniqueid = text(UNIQUEID);
    let sequence = text(SEQUENCE);
    let cdr_id = if !uniqueid.is_empty() && !sequence.is_empty() {
        Cow::Owned(format!("{uniqueid}-{sequence}"))
    } else if text(CHANNEL).is_empty() && uniqueid.is_empty() {
        return Err(RejectReason::MissingCdrId);
    } else {
        Cow::Owned(hashed_cdr_id(
            text(CHANNEL),
            text(DSTCHANNEL),
            text(START),
            uniqueid,
        ))
    };
    let account = match text(ACCOUNTCODE) {
        "" => Cow::Borrowed(channel_device(text(CHANNEL))),
        accountcode => Cow::Borrowed(accountcode),
    };
    Ok([
        cdr_id,
        account,
        Cow::Borrowed(direction_of(text(DCONTEXT))),
        Cow::Borrowed(text(SRC)),
        Cow::Borrowed(text(DST)),
        switch_time(text(START)),
        switch_time(text(ANSWER)),
        switch_time(text(END)),
        Cow::Borrowed(text(BILLSEC)),
        Cow::Borrowed(text(DISPOSITION)),
    ])
}

/// The dedupe key of a record without uniqueid and sequence: `h` and the 128-bit XXH3 hash, in
/// hex, of channel, dstchannel, start and uniqueid joined by the unit separator (0x1f). These
/// name one CDR of one call on one switch and do not change when a record is sent again, so a
/// resend is a duplicate and a changed resend (another billsec) a conflict.
pub fn hashed_cdr_id(channel: &str, dstchannel: &str, start: &str, uniqueid: &str) -> String {
    let identity = [channel, dstchannel, start, uniqueid].join("\u{1f}");
    format!("h{:032x}", xxhash_rust::xxh3::xxh3_128(identity.as_bytes()))
}

/// The device of an Asterisk channel name: without the `-0000002a` suffix Asterisk adds per
/// channel (and a Local channel's `;1`/`;2`).
pub fn channel_device(channel: &str) -> &str {
    let channel = match channel.rsplit_once(';') {
        Some((device, half)) if half.bytes().all(|b| b.is_ascii_digit()) => device,
        _ => channel,
    };
    match channel.rsplit_once('-') {
        Some((device, suffix))
            if !device.is_empty()
                && !suffix.is_empty()
                && suffix.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            device
        }
        _ => channel,
    }
}

#[cfg(test)]
mod tests {
    use super::super::SwitchCsvDecoder;
    use super::super::SwitchFormat;
    use super::*;

    fn fields(line: &str) -> Vec<String> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(line.as_bytes());
        let record = reader.records().next().unwrap().unwrap();
        record.iter().map(str::to_string).collect()
    }

    /// `expected` is the canonical fields joined by `|`, or the reject reason. Calls in the
    /// context `from-pstn` are inbound.
    fn check(format: SwitchFormat, line: &str, expected: Result<&str, RejectReason>) {
        let decoder = SwitchCsvDecoder::new(format, None)
            .unwrap()
            .with_inbound_contexts(&["from-pstn".to_string()])
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
    fn cdr_csv_records() {
        use SwitchFormat::Asterisk;
        // All 21 columns: dedupe key uniqueid-sequence, empty accountcode → the channel's device.
        check(
            Asterisk,
            r#""","442071234567","15551230000","from-internal","""Alice"" <442071234567>","SIP/alice-0000001a","SIP/trunk-0000001b","Dial","SIP/trunk/15551230000","2026-11-20 10:00:00","2026-11-20 10:00:05","2026-11-20 10:01:05",65,60,"ANSWERED","DOCUMENTATION","1763632800.26","","","1763632800.26",4"#,
            Ok(
                "1763632800.26-4|SIP/alice|outbound|442071234567|15551230000|2026-11-20 10:00:00|2026-11-20 10:00:05|2026-11-20 10:01:05|60|ANSWERED",
            ),
        );
        // 16 base columns, accountcode set, unanswered (empty answer): a hashed key.
        check(
            Asterisk,
            r#""acct-7","100","4930901820","ctx","","PJSIP/100-00000001","","Dial","","2026-11-20 11:00:00",,"2026-11-20 11:00:20",20,0,"NO ANSWER","DOCUMENTATION""#,
            Ok(&format!(
                "{}|acct-7|outbound|100|4930901820|2026-11-20 11:00:00||2026-11-20 11:00:20|0|NO ANSWER",
                hashed_cdr_id("PJSIP/100-00000001", "", "2026-11-20 11:00:00", "")
            )),
        );
        // 18 columns: uniqueid and userfield but no sequence, so still a hashed key.
        check(
            Asterisk,
            r#""acct-7","100","4930901820","ctx","","PJSIP/100-00000001","","Dial","","2026-11-20 11:00:00",,"2026-11-20 11:00:20",20,0,"BUSY","DOCUMENTATION","1763636400.1","note""#,
            Ok(&format!(
                "{}|acct-7|outbound|100|4930901820|2026-11-20 11:00:00||2026-11-20 11:00:20|0|BUSY",
                hashed_cdr_id(
                    "PJSIP/100-00000001",
                    "",
                    "2026-11-20 11:00:00",
                    "1763636400.1"
                )
            )),
        );
        // A call that came in from the carrier's context is inbound.
        check(
            Asterisk,
            r#""acct-7","4930901820","15551230000","from-pstn","","SIP/carrier-00000003","SIP/100-00000004","Dial","SIP/100","2026-11-20 11:00:00","2026-11-20 11:00:02","2026-11-20 11:00:20",20,18,"ANSWERED","DOCUMENTATION","1763636400.3","","","1763636400.3",6"#,
            Ok(
                "1763636400.3-6|acct-7|inbound|4930901820|15551230000|2026-11-20 11:00:00|2026-11-20 11:00:02|2026-11-20 11:00:20|18|ANSWERED",
            ),
        );
        check(
            Asterisk,
            r#""acct-7","100","4930901820""#,
            Err(RejectReason::WrongColumnCount),
        );
        // No channel and no uniqueid: nothing names the record.
        check(
            Asterisk,
            r#""acct-7","100","4930901820","ctx","","","","Dial","","2026-11-20 11:00:00",,"2026-11-20 11:00:20",20,0,"BUSY","DOCUMENTATION""#,
            Err(RejectReason::MissingCdrId),
        );
    }

    #[test]
    fn cdr_custom_records() {
        use SwitchFormat::AsteriskCustom;
        check(
            AsteriskCustom,
            r#""""Bob"" <200>","200","442079460123","default","PJSIP/200-00000004","PJSIP/trunk-00000005","Dial","PJSIP/trunk","2026-11-20 12:00:00","2026-11-20 12:00:03","2026-11-20 12:00:33","33","30","ANSWERED","DOCUMENTATION","acct-9","1763640000.4","",2"#,
            Ok(
                "1763640000.4-2|acct-9|outbound|200|442079460123|2026-11-20 12:00:00|2026-11-20 12:00:03|2026-11-20 12:00:33|30|ANSWERED",
            ),
        );
        // A cdr_csv line is not a cdr_custom line.
        check(
            AsteriskCustom,
            r#""","100","4930901820","ctx","","PJSIP/100-00000001","","Dial","","2026-11-20 11:00:00",,"2026-11-20 11:00:20",20,0,"NO ANSWER","DOCUMENTATION""#,
            Err(RejectReason::WrongColumnCount),
        );
    }

    #[test]
    fn hashed_keys_ignore_what_a_changed_resend_changes() {
        let first = hashed_cdr_id("SIP/a-01", "", "2026-11-20 11:00:00", "");
        assert_eq!(
            first,
            hashed_cdr_id("SIP/a-01", "", "2026-11-20 11:00:00", "")
        );
        assert_ne!(
            first,
            hashed_cdr_id("SIP/a-02", "", "2026-11-20 11:00:00", "")
        );
        assert_ne!(
            first,
            hashed_cdr_id("SIP/a-01", "", "2026-11-20 11:00:01", "")
        );
        assert_eq!(first.len(), 33);
    }

    #[test]
    fn channel_devices() {
        assert_eq!(channel_device("SIP/211474-00000000"), "SIP/211474");
        assert_eq!(channel_device("PJSIP/client1-0000000a"), "PJSIP/client1");
        assert_eq!(
            channel_device("Local/ch1@TimeDelay-00000000;2"),
            "Local/ch1@TimeDelay"
        );
        assert_eq!(channel_device("DAHDI/1-1"), "DAHDI/1");
        assert_eq!(channel_device("SIP/my-trunk"), "SIP/my-trunk");
        assert_eq!(channel_device(""), "");
        assert_eq!(channel_device("-00a"), "-00a");
    }
}
