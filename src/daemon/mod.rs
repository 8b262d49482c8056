//! `tollgate serve`: the streaming daemon. Spool scanner (decode → rate on rayon) and HTTP intake
//! feed the poster through bounded channels; the poster is the one writer of rated calls (the
//! auto-recharge thread posts its credits, and the webhook deliverer its delivery records, each on
//! a store connection of its own). SIGTERM
//! or SIGINT stops intake, drains what was taken, commits it, and exits 0.

pub mod api_routes;
pub mod authorizer;
pub mod config;
pub mod http_calls;
pub mod http_intake;
pub mod http_layers;
pub mod metrics;
pub mod poster;
pub mod rating_state;
pub mod spool;
pub mod webhooks;

use crate::ingest::deck_files::load_decks;
use crate::limits::POSTER_QUEUE_MAX;
use crate::store::ledger_store::{DeckRecord, LedgerStore, StoreLocation, open_store};
use anyhow::{Context, anyhow};
use config::ServeConfig;
use metrics::Metrics;
use poster::PosterWork;
use rating_state::RatingState;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What every part of the daemon shares.
pub struct DaemonShared {
    pub config: ServeConfig,
    pub location: StoreLocation,
    pub metrics: Metrics,
    pub rating: RatingState,
    /// False from a failed post until the next successful one; HTTP intake answers 503 meanwhile.
    pub store_healthy: AtomicBool,
    /// Set on SIGTERM/SIGINT: intake stops taking new work.
    pub stopping: AtomicBool,
    pub poster_requests: crossbeam_channel::Sender<PosterWork>,
    pub poster_spool: crossbeam_channel::Sender<PosterWork>,
    /// A store connection for the HTTP side's reads (readiness), apart from the poster's.
    pub reader_store: Mutex<Option<Box<dyn LedgerStore>>>,
    /// Call authorizations for the authorizer thread (`limits::CALL_QUEUE_MAX`).
    pub call_work: crossbeam_channel::Sender<authorizer::CallWork>,
    pub trunk_eligibility: crate::credit::trunks::TrunkEligibility,
    /// Permits to rate an HTTP request (`limits::HTTP_RATING_CONCURRENCY_MAX`).
    pub http_rating_slots: tokio::sync::Semaphore,
    /// Usage exports streaming now (see `limits::EXPORTS_CONCURRENT_MAX`).
    pub export_slots: Arc<tokio::sync::Semaphore>,
    /// Each portal token's request budget (`portal_requests_per_second`, `portal_request_burst`).
    pub portal_request_budgets: crate::portal::request_budget::RequestBudgets,
}

/// Runs the daemon until a signal stops it. Start-up problems (bad config, unreachable store,
/// refused deck, address in use) come back as errors before anything is taken in.
pub fn run_daemon(config: ServeConfig) -> anyhow::Result<()> {
    config.check()?;
    let location = StoreLocation::from_settings(config.database_url.as_deref(), &config.data_dir)?;
    let mut store = open_store(&location)?;
    let deck_paths = config.deck_paths()?;
    config
        .deck_format
        .check_outside_batch()
        .map_err(|problem| anyhow!(problem))?;
    let decks =
        load_decks(config.deck_format, &deck_paths, None).map_err(|problems| anyhow!(problems))?;
    store.record_decks(
        &decks
            .iter()
            .map(|deck| DeckRecord {
                name: deck.name.clone(),
                version: deck.version.clone(),
                currency: deck.currency.clone(),
            })
            .collect::<Vec<_>>(),
    )?;
    let input_time_zone: chrono_tz::Tz = config.input_time_zone.parse().map_err(|_| {
        anyhow!(
            "input_time_zone {:?} is not an IANA zone",
            config.input_time_zone
        )
    })?;
    let rating = RatingState::new(
        decks,
        input_time_zone,
        config.default_source.clone(),
        store.as_mut(),
    )?;
    for folder in [
        config.spool_dir.clone(),
        config.spool_dir.join("done"),
        config.spool_dir.join("failed"),
    ] {
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("cannot create the spool folder {}", folder.display()))?;
    }
    let listener = std::net::TcpListener::bind(&config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    listener.set_nonblocking(true)?;

    let (request_sender, request_receiver) = crossbeam_channel::bounded(POSTER_QUEUE_MAX);
    let (spool_sender, spool_receiver) = crossbeam_channel::bounded(POSTER_QUEUE_MAX);
    let (call_sender, call_receiver) = crossbeam_channel::bounded(crate::limits::CALL_QUEUE_MAX);
    let shared = Arc::new(DaemonShared {
        location,
        metrics: Metrics::new(),
        rating,
        store_healthy: AtomicBool::new(true),
        stopping: AtomicBool::new(false),
        poster_requests: request_sender,
        poster_spool: spool_sender,
        reader_store: Mutex::new(Some(store)),
        call_work: call_sender,
        trunk_eligibility: config.trunk_eligibility(),
        http_rating_slots: tokio::sync::Semaphore::new(crate::limits::HTTP_RATING_CONCURRENCY_MAX),
        export_slots: Arc::new(tokio::sync::Semaphore::new(
            crate::limits::EXPORTS_CONCURRENT_MAX,
        )),
        portal_request_budgets: crate::portal::request_budget::RequestBudgets::new(
            config.portal_requests_per_second,
            config.portal_request_burst,
        ),
        config,
    });
    tracing::info!(
        listen = %shared.config.listen,
        store = shared.location.backend_name(),
        spool = %shared.config.spool_dir.display(),
        "tollgate serve started"
    );
    let poster_shared = Arc::clone(&shared);
    let poster_thread = std::thread::Builder::new()
        .name("poster".into())
        .spawn(move || poster::run_poster(poster_shared, request_receiver, spool_receiver))?;
    let recharge_shared = Arc::clone(&shared);
    let recharge_thread = std::thread::Builder::new()
        .name("recharge".into())
        .spawn(move || run_recharge_checks(&recharge_shared))?;
    let authorizer_shared = Arc::clone(&shared);
    let authorizer_thread = std::thread::Builder::new()
        .name("authorizer".into())
        .spawn(move || authorizer::run_authorizer(authorizer_shared, call_receiver))?;
    let expiry_shared = Arc::clone(&shared);
    let expiry_thread = std::thread::Builder::new()
        .name("call-expiry".into())
        .spawn(move || run_call_expiry(&expiry_shared))?;
    let sweep_shared = Arc::clone(&shared);
    let sweep_thread = std::thread::Builder::new()
        .name("trunk-sweep".into())
        .spawn(move || run_trunk_sweeps(&sweep_shared))?;
    let webhook_shared = Arc::clone(&shared);
    let webhook_thread = std::thread::Builder::new()
        .name("webhooks".into())
        .spawn(move || webhooks::run_webhook_deliverer(&webhook_shared))?;
    let spool_shared = Arc::clone(&shared);
    let spool_thread = std::thread::Builder::new()
        .name("spool".into())
        .spawn(move || spool::run_spool_scanner(spool_shared))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let http_shared = Arc::clone(&shared);
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let app = api_routes::router(Arc::clone(&http_shared));
        axum::serve(listener, app)
            .with_graceful_shutdown(stop_signal(http_shared))
            .await
    });
    shared.stopping.store(true, Ordering::SeqCst);
    tracing::info!("stopping: draining intake");
    spool_thread
        .join()
        .map_err(|_| anyhow!("the spool thread panicked"))?;
    recharge_thread
        .join()
        .map_err(|_| anyhow!("the recharge thread panicked"))?;
    webhook_thread
        .join()
        .map_err(|_| anyhow!("the webhook thread panicked"))?;
    expiry_thread
        .join()
        .map_err(|_| anyhow!("the call expiry thread panicked"))?;
    sweep_thread
        .join()
        .map_err(|_| anyhow!("the trunk sweep thread panicked"))?;
    authorizer_thread
        .join()
        .map_err(|_| anyhow!("the authorizer thread panicked"))?;
    let _ = shared.poster_requests.send(PosterWork::Shutdown);
    poster_thread
        .join()
        .map_err(|_| anyhow!("the poster thread panicked"))?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    served.context("the HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// The daily auto-recharge, checked at start (catching up a run missed while the daemon was
/// down) and every `RECHARGE_CHECK_SECONDS`.
fn run_recharge_checks(shared: &DaemonShared) {
    run_periodically(
        shared,
        "auto-recharge check",
        std::time::Duration::from_secs(crate::limits::RECHARGE_CHECK_SECONDS),
        |store| {
            crate::credit::recharge::run_due_recharges(store, chrono::Utc::now(), None).map(drop)
        },
    );
}

/// Releases authorized calls whose keepalive stopped (their trunks and reservations).
fn run_call_expiry(shared: &DaemonShared) {
    run_periodically(
        shared,
        "call expiry",
        std::time::Duration::from_secs(crate::limits::CALL_EXPIRY_CHECK_SECONDS),
        |store| {
            let expired = store.expire_calls(crate::store::ledger_store::now_micros())?;
            if expired > 0 {
                shared.metrics.calls_expired.inc_by(expired);
                tracing::warn!(
                    expired,
                    "calls released: no keepalive or end within their TTL"
                );
            }
            Ok(())
        },
    );
}

/// Classifies the unauthorized calls held for the trunk sweep once their settle window has passed.
fn run_trunk_sweeps(shared: &DaemonShared) {
    run_periodically(
        shared,
        "trunk sweep",
        std::time::Duration::from_secs(crate::limits::SWEEP_CHECK_SECONDS),
        |store| {
            let cutoff = crate::store::ledger_store::now_micros()
                - i64::from(shared.config.trunk_settle_seconds) * 1_000_000;
            let report = crate::credit::trunk_sweep::run_trunk_sweep(
                store,
                cutoff,
                &shared.trunk_eligibility,
            )?;
            for (class, calls) in &report.classified {
                shared
                    .metrics
                    .calls_classified
                    .with_label_values(&[class.as_str()])
                    .inc_by(*calls);
            }
            shared.metrics.cdrs_classified_late.inc_by(report.late);
            let limit_exceeded = report
                .classified
                .get(&crate::credit::trunk_sweep::BillingClass::LimitExceeded)
                .copied()
                .unwrap_or(0);
            shared.metrics.calls_limit_exceeded.inc_by(limit_exceeded);
            if !report.classified.is_empty() {
                tracing::info!(
                    classified = ?report.classified,
                    late = report.late,
                    charged_units = report.charged_units,
                    "trunk sweep classified held calls"
                );
            }
            Ok(())
        },
    );
}

/// Runs `work` at once and then every `interval` until the daemon stops, on a store connection
/// of its own, reopened after a failure (logged; the work is tried again next time).
pub fn run_periodically(
    shared: &DaemonShared,
    name: &str,
    interval: std::time::Duration,
    mut work: impl FnMut(&mut dyn LedgerStore) -> anyhow::Result<()>,
) {
    let mut store: Option<Box<dyn LedgerStore>> = None;
    while !shared.stopping.load(Ordering::SeqCst) {
        let result = match store.as_mut() {
            Some(opened) => Ok(opened),
            None => open_store(&shared.location).map(|opened| store.insert(opened)),
        }
        .and_then(|opened| work(opened.as_mut()));
        if let Err(error) = result {
            store = None;
            tracing::warn!("{name} failed, tried again later: {error:#}");
        }
        let deadline = std::time::Instant::now() + interval;
        while std::time::Instant::now() < deadline && !shared.stopping.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(50).min(interval));
        }
    }
}

/// Resolves on SIGTERM or SIGINT, and marks the daemon stopping at once so intake refuses work
/// while in-flight requests finish.
async fn stop_signal(shared: Arc<DaemonShared>) {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler can be installed");
    tokio::select! {
        _ = interrupt => {},
        _ = terminate.recv() => {},
    }
    tracing::info!("signal received");
    shared.stopping.store(true, Ordering::SeqCst);
}
