//! Delivers the alerts outbox to each account's webhook: claims due alerts from the store, POSTs
//! each one's signed JSON body, and records the outcome: delivered on a 2xx answer, else retried
//! with doubling waits until the attempts allowed are spent, then failed. At least once: an
//! instance that dies mid-delivery leaves its claim to expire and the alert is sent again, with
//! the same id and body.

use super::DaemonShared;
use super::metrics::Metrics;
use crate::credit::alert_events::{
    ATTEMPT_HEADER, EVENT_ID_HEADER, SIGNATURE_HEADER, alert_body, retry_wait_milliseconds,
    signature,
};
use crate::limits::{
    WEBHOOK_CLAIM_MAX, WEBHOOK_LEASE_SECONDS, WEBHOOK_RETRY_WAIT_SECONDS_MAX,
    WEBHOOK_TIMEOUT_SECONDS,
};
use crate::money::ledger_decimal;
use crate::store::ledger_store::{AlertDelivery, AlertToDeliver, LedgerStore, now_micros};
use std::time::Duration;

/// How deliveries are retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts_max: i64,
    /// The wait after the first failure; doubled after each further one.
    pub first_wait_milliseconds: u64,
}

/// The HTTP client for webhooks: a bounded time per request, no redirects followed.
pub fn webhook_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(WEBHOOK_TIMEOUT_SECONDS)))
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Claims the alerts due now and delivers each once; returns how many were claimed.
pub fn deliver_due_alerts(
    store: &mut dyn LedgerStore,
    agent: &ureq::Agent,
    policy: RetryPolicy,
    metrics: Option<&Metrics>,
) -> anyhow::Result<usize> {
    let claimed = store.claim_alerts_to_deliver(
        now_micros(),
        WEBHOOK_LEASE_SECONDS as i64 * 1_000_000,
        WEBHOOK_CLAIM_MAX,
    )?;
    for alert in &claimed {
        if alert.alert.attempts == 1 {
            announce(alert, metrics);
        }
        let delivery = deliver_one(agent, alert, policy);
        if let Some(metrics) = metrics {
            let result = match &delivery {
                AlertDelivery::Delivered { .. } => "delivered",
                AlertDelivery::RetryAt { .. } => "retry",
                AlertDelivery::Failed { .. } => "failed",
                AlertDelivery::NoWebhook => "no_webhook",
            };
            metrics
                .webhook_deliveries
                .with_label_values(&[result])
                .inc();
        }
        match &delivery {
            AlertDelivery::RetryAt { error, .. } => tracing::warn!(
                alert = alert.alert.id,
                account = %alert.alert.account,
                attempt = alert.alert.attempts,
                "webhook delivery failed, will retry: {error}"
            ),
            AlertDelivery::Failed { error } => tracing::error!(
                alert = alert.alert.id,
                account = %alert.alert.account,
                attempts = alert.alert.attempts,
                "webhook delivery failed for good: {error}"
            ),
            _ => {}
        }
        store.record_alert_delivery(alert.alert.id, alert.alert.attempts, &delivery)?;
    }
    Ok(claimed.len())
}

/// The alert's one log line and count, at its first claim.
fn announce(claimed: &AlertToDeliver, metrics: Option<&Metrics>) {
    let alert = &claimed.alert;
    tracing::info!(
        alert = alert.id,
        kind = %alert.kind,
        account = %alert.account,
        threshold = %ledger_decimal(alert.threshold_units),
        balance = %ledger_decimal(alert.balance_units),
        currency = %claimed.currency,
        "alert"
    );
    if let Some(metrics) = metrics {
        metrics.alerts.with_label_values(&[&alert.kind]).inc();
    }
}

fn deliver_one(
    agent: &ureq::Agent,
    claimed: &AlertToDeliver,
    policy: RetryPolicy,
) -> AlertDelivery {
    let Some(url) = claimed.webhook_url.as_deref() else {
        return AlertDelivery::NoWebhook;
    };
    let body = alert_body(claimed);
    let mut request = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header(EVENT_ID_HEADER, claimed.alert.id.to_string())
        .header(ATTEMPT_HEADER, claimed.alert.attempts.to_string());
    if let Some(secret) = claimed.webhook_secret.as_deref() {
        request = request.header(SIGNATURE_HEADER, signature(secret, body.as_bytes()));
    }
    let error = match request.send(body.as_str()) {
        Ok(response) if response.status().is_success() => {
            return AlertDelivery::Delivered {
                at_micros: now_micros(),
            };
        }
        Ok(response) => format!("the webhook answered HTTP {}", response.status()),
        Err(error) => format!("cannot reach the webhook: {error}"),
    };
    if claimed.alert.attempts >= policy.attempts_max {
        return AlertDelivery::Failed { error };
    }
    let wait = retry_wait_milliseconds(
        claimed.alert.attempts,
        policy.first_wait_milliseconds,
        WEBHOOK_RETRY_WAIT_SECONDS_MAX * 1000,
    );
    AlertDelivery::RetryAt {
        at_micros: now_micros() + wait as i64 * 1000,
        error,
    }
}

/// The daemon's deliverer loop, on a store connection of its own, until the daemon stops.
pub fn run_webhook_deliverer(shared: &DaemonShared) {
    let agent = webhook_agent();
    let policy = RetryPolicy {
        attempts_max: i64::from(shared.config.webhook_attempts_max),
        first_wait_milliseconds: shared.config.webhook_retry_milliseconds,
    };
    super::run_periodically(
        shared,
        "webhook delivery",
        Duration::from_millis(crate::limits::WEBHOOK_POLL_MILLISECONDS),
        |store| deliver_due_alerts(store, &agent, policy, Some(&shared.metrics)).map(drop),
    );
}
