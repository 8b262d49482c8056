//! KAZOO CDR documents (JSON, one per line or in an array): one document per call leg.

use super::unanswered_disposition;
use crate::cdr::RejectReason;
use serde_json::{Map, Value};

/// Seconds from 0000-01-01 (KAZOO's Gregorian seconds) to the Unix epoch.
const GREGORIAN_TO_UNIX_SECONDS: i64 = 62_167_219_200;

/// Maps one JSON document onto the canonical fields (owned: a document is parsed into values).
///
/// The dedupe key is `call_id`. KAZOO writes one document per leg, with `call_direction`
/// relative to the switch; a call is billed once, on the leg that entered the switch
/// (`inbound`), and the legs the switch placed (`outbound`) are `secondary_record`s. That leg is
/// the account's inbound call when it came from a carrier (custom channel variable
/// `resource_type` = `offnet-origination` or `authorizing_type` = `resource`), else its
/// outbound call.
pub fn map_document(raw: &[u8]) -> Result<[String; 10], RejectReason> {
    let text = std::str::from_utf8(raw).map_err(|_| RejectReason::InvalidUtf8)?;
    let document: Value = serde_json::from_str(text).map_err(|_| RejectReason::InvalidJson)?;
    let document = document.as_object().ok_or(RejectReason::InvalidJson)?;
    map_object(document)
}

fn map_object(document: &Map<String, Value>) -> Result<[String; 10], RejectReason> {
    let no_variables = Map::new();
    let variables = ["custom_channel_vars", "Custom-Channel-Vars"]
        .iter()
        .find_map(|key| document.get(*key).and_then(Value::as_object))
        .unwrap_or(&no_variables);
    let text = |object: &Map<String, Value>, key: &str| -> String {
        match object.get(key) {
            Some(Value::String(text)) => text.trim().to_string(),
            Some(Value::Number(number)) => number.to_string(),
            _ => String::new(),
        }
    };
    match text(document, "call_direction").as_str() {
        "inbound" => {}
        "outbound" => return Err(RejectReason::SecondaryRecord),
        _ => return Err(RejectReason::InvalidDirection),
    }
    let from_carrier = text(variables, "resource_type") == "offnet-origination"
        || text(variables, "authorizing_type") == "resource";
    let direction = if from_carrier { "inbound" } else { "outbound" };
    let account = match text(variables, "account_id") {
        account if account.is_empty() => {
            account_of_database_id(&text(document, "pvt_account_id")).to_string()
        }
        account => account,
    };
    let callee = ["request", "to_uri", "callee_id_number"]
        .iter()
        .map(|key| uri_user(&text(document, key)).to_string())
        .find(|user| !user.is_empty())
        .unwrap_or_default();
    let billsec_text = text(document, "billing_seconds");
    let billsec = billsec_text.parse::<i64>().ok();
    let end_unix_seconds = [text(document, "timestamp"), text(document, "pvt_created")]
        .iter()
        .find_map(|gregorian| gregorian.parse::<i64>().ok())
        .and_then(|gregorian| gregorian.checked_sub(GREGORIAN_TO_UNIX_SECONDS));
    let duration = text(document, "duration_seconds").parse::<i64>().ok();
    // Checked: the numbers are whatever the document says.
    let start_unix_seconds =
        end_unix_seconds.and_then(|end| end.checked_sub(duration.or(billsec)?.max(0)));
    let answer_unix_seconds = match (end_unix_seconds, billsec) {
        (Some(end), Some(billsec)) if billsec > 0 => end.checked_sub(billsec),
        _ => None,
    };
    let disposition = if billsec.is_some_and(|billsec| billsec > 0) {
        "ANSWERED"
    } else {
        unanswered_disposition(&text(document, "hangup_cause"))
    };
    Ok([
        text(document, "call_id"),
        account,
        direction.to_string(),
        text(document, "caller_id_number"),
        callee,
        utc_text(start_unix_seconds),
        utc_text(answer_unix_seconds),
        utc_text(end_unix_seconds),
        billsec_text,
        disposition.to_string(),
    ])
}

/// RFC 3339 in UTC, or empty when unknown or out of range (the canonical decoder then names
/// the missing time).
fn utc_text(unix_seconds: Option<i64>) -> String {
    unix_seconds
        .and_then(|seconds| chrono::DateTime::from_timestamp(seconds, 0))
        .map(|time| time.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// The user part of a SIP URI or request (`sip:+4930901820@realm` → `+4930901820`).
fn uri_user(uri: &str) -> &str {
    let uri = uri.strip_prefix("sip:").unwrap_or(uri);
    uri.split('@').next().unwrap_or_default().trim()
}

/// An account id from a `pvt_account_id`, without the `-YYYYMM` of a monthly database.
fn account_of_database_id(id: &str) -> &str {
    match id.rsplit_once('-') {
        Some((account, month)) if month.len() == 6 && month.bytes().all(|b| b.is_ascii_digit()) => {
            account
        }
        _ => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `expected` is the canonical fields joined by `|`, or the reject reason.
    fn check(document: &str, expected: Result<&str, RejectReason>) {
        let mapped = map_document(document.as_bytes()).map(|fields| fields.join("|"));
        assert_eq!(
            mapped.as_deref().map_err(|reason| *reason),
            expected,
            "{document}"
        );
    }

    // 63_946_490_465 Gregorian seconds is 2026-05-20T10:01:05Z.
    #[test]
    fn documents() {
        check(
            r#"{"call_id":"leg-1","call_direction":"inbound","caller_id_number":"+14155550001","request":"+442071234567@realm.example","timestamp":63946490465,"duration_seconds":65,"billing_seconds":60,"hangup_cause":"NORMAL_CLEARING","custom_channel_vars":{"account_id":"acct-k1","authorizing_type":"device"}}"#,
            Ok(
                "leg-1|acct-k1|outbound|+14155550001|+442071234567|2026-05-20T10:00:00Z|2026-05-20T10:00:05Z|2026-05-20T10:01:05Z|60|ANSWERED",
            ),
        );
        // Numbers as strings, a carrier-originated leg, the account from pvt_account_id.
        check(
            r#"{"call_id":"leg-2","call_direction":"inbound","caller_id_number":"442071234567","to_uri":"sip:14155550001@realm","timestamp":"63946490465","duration_seconds":"20","billing_seconds":"0","hangup_cause":"NO_ANSWER","pvt_account_id":"acct-k2-202605","custom_channel_vars":{"resource_type":"offnet-origination"}}"#,
            Ok(
                "leg-2|acct-k2|inbound|442071234567|14155550001|2026-05-20T10:00:45Z||2026-05-20T10:01:05Z|0|NO ANSWER",
            ),
        );
        check(
            r#"{"call_id":"leg-3","call_direction":"outbound","request":"1@r"}"#,
            Err(RejectReason::SecondaryRecord),
        );
        check(
            r#"{"call_id":"leg-4","request":"1@r"}"#,
            Err(RejectReason::InvalidDirection),
        );
        // What rating lacks is left for the canonical decoder to name, in its order.
        check(
            r#"{"call_id":"leg-5","call_direction":"inbound","request":"*97@realm"}"#,
            Ok("leg-5||outbound||*97|||||NO ANSWER"),
        );
        // Numbers at the edge of i64: no overflow, the times are simply unknown.
        check(
            r#"{"call_id":"leg-6","call_direction":"inbound","request":"44@r","timestamp":-9223372036854775808,"duration_seconds":9223372036854775807,"billing_seconds":-9223372036854775808}"#,
            Ok("leg-6||outbound||44||||-9223372036854775808|NO ANSWER"),
        );
        check(
            r#"{"call_id":"leg-7","call_direction":"inbound","request":"44@r","timestamp":9223372036854775807,"duration_seconds":9223372036854775807,"billing_seconds":9223372036854775807}"#,
            Ok(
                "leg-7||outbound||44|0000-01-01T00:00:00Z|0000-01-01T00:00:00Z||9223372036854775807|ANSWERED",
            ),
        );
        check(r#"[1,2]"#, Err(RejectReason::InvalidJson));
        check(r#"{"call_id":"#, Err(RejectReason::InvalidJson));
        check("oops", Err(RejectReason::InvalidJson));
        check(
            &format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
            Err(RejectReason::InvalidJson),
        );
        assert_eq!(
            map_document(b"{\"call_id\":\"\xff\"}"),
            Err(RejectReason::InvalidUtf8)
        );
    }
}
