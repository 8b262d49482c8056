//! The daemon's Prometheus metrics, in one registry served at `GET /metrics`.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub cdrs_in: IntCounter,
    pub cdrs_rated: IntCounter,
    pub cdrs_rejected: IntCounterVec,
    pub cdrs_duplicate: IntCounter,
    pub cdrs_conflict: IntCounter,
    pub batch_commit_seconds: Histogram,
    pub poster_queue_depth: IntGauge,
    pub store_errors: IntCounter,
    pub store_retries: IntCounter,
    pub spool_files: IntCounterVec,
    pub http_requests_refused: IntCounterVec,
    pub alerts: IntCounterVec,
    pub webhook_deliveries: IntCounterVec,
    pub authorizations: IntCounterVec,
    pub authorization_seconds: Histogram,
    pub calls_expired: IntCounter,
    pub calls_limit_exceeded: IntCounter,
    pub calls_classified: IntCounterVec,
    pub cdrs_classified_late: IntCounter,
    pub http_requests: IntCounterVec,
    pub http_request_seconds: HistogramVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        fn registered<M: Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
            registry
                .register(Box::new(metric.clone()))
                .expect("metric registered once");
            metric
        }
        let counter = |name: &str, help: &str| {
            registered(
                &registry,
                IntCounter::new(name, help).expect("valid metric"),
            )
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            registered(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let options = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            registered(
                &registry,
                Histogram::with_opts(options).expect("valid metric"),
            )
        };
        let batch_commit_seconds = histogram(
            "tollgate_batch_commit_seconds",
            "Time to post one batch to the store, commit included",
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ],
        );
        let poster_queue_depth = registered(
            &registry,
            IntGauge::new(
                "tollgate_poster_queue_depth",
                "Work items waiting for the store poster",
            )
            .expect("valid metric"),
        );
        let authorization_seconds = histogram(
            "tollgate_call_authorization_seconds",
            "Time to answer POST /v1/calls/authorize, store transaction included",
            &[
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ],
        );
        let request_labels = ["method", "route", "status"];
        let http_requests = counter_vec(
            "tollgate_http_requests_total",
            "HTTP requests answered, by method, route pattern and status",
            &request_labels,
        );
        let http_request_seconds = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "tollgate_http_request_seconds",
                    "Time from a request to its answer's headers, by method, route pattern and status",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
                &request_labels,
            )
            .expect("valid metric"),
        );
        Metrics {
            http_requests,
            http_request_seconds,
            cdrs_in: counter("tollgate_cdrs_in_total", "CDRs received (spool and HTTP)"),
            cdrs_rated: counter("tollgate_cdrs_rated_total", "CDRs rated and charged"),
            cdrs_rejected: counter_vec(
                "tollgate_cdrs_rejected_total",
                "CDRs rejected, by reason",
                &["reason"],
            ),
            cdrs_duplicate: counter(
                "tollgate_cdrs_duplicate_total",
                "CDRs already rated with the same content (not charged again)",
            ),
            cdrs_conflict: counter(
                "tollgate_cdrs_conflict_total",
                "CDRs whose key was rated with other content (kept for review)",
            ),
            batch_commit_seconds,
            poster_queue_depth,
            store_errors: counter(
                "tollgate_store_errors_total",
                "Failed attempts at posting a batch",
            ),
            store_retries: counter(
                "tollgate_store_retries_total",
                "Retries of a batch after a store error",
            ),
            spool_files: counter_vec(
                "tollgate_spool_files_total",
                "Spool files finished, by result (done, failed, interrupted)",
                &["result"],
            ),
            http_requests_refused: counter_vec(
                "tollgate_http_requests_refused_total",
                "POST /v1/cdrs requests refused, by HTTP status",
                &["status"],
            ),
            alerts: counter_vec(
                "tollgate_alerts_total",
                "Alerts raised (threshold crossings, auto-recharges), by kind",
                &["kind"],
            ),
            webhook_deliveries: counter_vec(
                "tollgate_webhook_deliveries_total",
                "Webhook delivery attempts, by result (delivered, retry, failed, no_webhook)",
                &["result"],
            ),
            authorizations: counter_vec(
                "tollgate_call_authorizations_total",
                "Call authorizations answered, by decision (trunk, per_minute, deny)",
                &["decision"],
            ),
            authorization_seconds,
            calls_limit_exceeded: counter(
                "tollgate_calls_limit_exceeded_total",
                "Calls over a limit, denied yet happened or found over by the trunk sweep (charged, flagged, alerted)",
            ),
            calls_expired: counter(
                "tollgate_calls_expired_total",
                "Authorized calls released because neither keepalive nor end came in time",
            ),
            calls_classified: counter_vec(
                "tollgate_calls_classified_total",
                "Unauthorized calls given a billing class by the trunk sweep, by class",
                &["class"],
            ),
            cdrs_classified_late: counter(
                "tollgate_cdrs_classified_late_total",
                "CDRs that came after the trunk sweep had passed their call's start",
            ),
            registry,
        }
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding of metrics does not fail");
        String::from_utf8(buffer).expect("metrics text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_listed_in_the_metrics_document() {
        let metrics = Metrics::new();
        // Labelled families appear once they have a child.
        for family in [
            &metrics.cdrs_rejected,
            &metrics.spool_files,
            &metrics.http_requests_refused,
            &metrics.alerts,
            &metrics.webhook_deliveries,
            &metrics.authorizations,
            &metrics.calls_classified,
        ] {
            family.with_label_values(&["x"]).inc();
        }
        metrics
            .http_requests
            .with_label_values(&["get", "/x", "200"])
            .inc();
        metrics
            .http_request_seconds
            .with_label_values(&["get", "/x", "200"])
            .observe(0.1);
        let document = include_str!("../../docs/metrics.md");
        let families = metrics.registry.gather();
        assert!(families.len() >= 21);
        for family in families {
            let name = family.name();
            assert!(
                document.contains(&format!("`{name}`")),
                "docs/metrics.md does not list {name}"
            );
        }
    }
}
