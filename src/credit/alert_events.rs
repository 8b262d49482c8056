//! What an alert's webhook receives: the JSON body, its HMAC-SHA256 signature under the account's
//! secret, and when a failed delivery is tried again. Pure; the deliverer (`daemon::webhooks`)
//! sends it.
//!
//! The body of an alert is the same on every attempt (the attempt number travels in a header), so
//! its signature is too, and a receiver drops repeats by the alert id.

use crate::money::ledger_decimal;
use crate::store::ledger_store::{ALERT_KIND_RECHARGE, AlertToDeliver, StoredAlert};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header carrying `sha256=` and the hex HMAC-SHA256 of the body under the account's secret.
pub const SIGNATURE_HEADER: &str = "X-Tollgate-Signature";
/// The header carrying the alert id (also in the body), for receivers that dedupe on headers.
pub const EVENT_ID_HEADER: &str = "X-Tollgate-Event-Id";
/// The header carrying the attempt number, 1 for the first.
pub const ATTEMPT_HEADER: &str = "X-Tollgate-Attempt";

/// The JSON body sent for an alert. Money is a decimal string, exact; the time is RFC 3339 UTC.
pub fn alert_body(claimed: &AlertToDeliver) -> String {
    alert_event(&claimed.alert, &claimed.currency).to_string()
}

/// An alert as an event: what its webhook receives, and what listings show before adding the
/// delivery record.
pub fn alert_event(alert: &StoredAlert, currency: &str) -> serde_json::Value {
    let time = chrono::DateTime::from_timestamp_micros(alert.created_at_micros)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut event = serde_json::json!({
        "id": alert.id,
        "type": alert.kind,
        "account": alert.account,
        "threshold": ledger_decimal(alert.threshold_units).to_string(),
        "balance": ledger_decimal(alert.balance_units).to_string(),
        "currency": currency,
        "time": time,
    });
    if alert.kind == ALERT_KIND_RECHARGE {
        event["amount"] = ledger_decimal(alert.amount_units.unwrap_or(0))
            .to_string()
            .into();
        event["local_date"] = alert.local_date.clone().into();
    }
    if let Some(call_id) = &alert.call_id {
        event["call_id"] = call_id.clone().into();
    }
    event
}

/// An alert with its delivery record, for `tollgate alerts` (and the portal).
pub fn alert_listing(alert: &StoredAlert, currency: &str) -> serde_json::Value {
    let mut listing = alert_event(alert, currency);
    listing["delivery"] = serde_json::json!({
        "state": alert.delivery_state,
        "attempts": alert.attempts,
        "last_error": alert.last_error,
        "delivered_at": alert.delivered_at_micros
            .and_then(chrono::DateTime::from_timestamp_micros)
            .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
    });
    listing
}

/// `sha256=` and the lowercase hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut text = String::with_capacity(7 + digest.len() * 2);
    text.push_str("sha256=");
    for byte in digest {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// How long to wait after failed attempt number `attempts` (1 for the first): the base doubled
/// for each further attempt, capped at `max_wait_milliseconds`.
pub fn retry_wait_milliseconds(
    attempts: i64,
    base_milliseconds: u64,
    max_wait_milliseconds: u64,
) -> u64 {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 32)).unwrap_or(32);
    base_milliseconds
        .saturating_mul(1u64 << doublings)
        .min(max_wait_milliseconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(kind: &str) -> AlertToDeliver {
        AlertToDeliver {
            alert: StoredAlert {
                id: 42,
                kind: kind.to_string(),
                account: "acme".to_string(),
                threshold_units: 10_00000000,
                balance_units: -3_50000000,
                amount_units: (kind == ALERT_KIND_RECHARGE).then_some(25_00000000),
                local_date: (kind == ALERT_KIND_RECHARGE).then(|| "2026-11-22".to_string()),
                batch_id: None,
                created_at_micros: 1_795_000_000_000_000,
                delivery_state: "pending".to_string(),
                attempts: 1,
                last_error: None,
                delivered_at_micros: None,
                call_id: None,
            },
            currency: "USD".to_string(),
            webhook_url: Some("http://127.0.0.1:1/hook".to_string()),
            webhook_secret: Some("s3cret".to_string()),
        }
    }

    #[test]
    fn bodies_carry_exact_money_and_the_alert_id() {
        let threshold: serde_json::Value =
            serde_json::from_str(&alert_body(&claimed("threshold_crossed"))).unwrap();
        assert_eq!(threshold["id"], 42);
        assert_eq!(threshold["type"], "threshold_crossed");
        assert_eq!(threshold["threshold"], "10");
        assert_eq!(threshold["balance"], "-3.5");
        assert_eq!(threshold["currency"], "USD");
        assert_eq!(threshold["time"], "2026-11-18T11:06:40.000000Z");
        assert!(threshold.get("amount").is_none());
        let recharge: serde_json::Value =
            serde_json::from_str(&alert_body(&claimed(ALERT_KIND_RECHARGE))).unwrap();
        assert_eq!(recharge["amount"], "25");
        assert_eq!(recharge["local_date"], "2026-11-22");
    }

    #[test]
    fn signature_matches_the_published_hmac_sha256_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn retries_back_off_doubling_up_to_the_cap() {
        let cases = [
            (1, 1000),
            (2, 2000),
            (3, 4000),
            (6, 32_000),
            (20, 60_000),
            (400, 60_000),
        ];
        for (attempts, expected) in cases {
            assert_eq!(
                retry_wait_milliseconds(attempts, 1000, 60_000),
                expected,
                "after attempt {attempts}"
            );
        }
    }
}
