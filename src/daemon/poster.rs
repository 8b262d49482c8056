//! The poster: the one thread that writes to the store. It gathers a spool file's rated blocks
//! into batches of up to `batch_cdrs_max` CDRs or `batch_wait_milliseconds`, whichever comes
//! first, posts HTTP batches as they come, retries a failed post a bounded number of times, and
//! finishes spool files (rejects file, move to `done/`) once their last batch is committed.

use super::DaemonShared;
use super::spool::{SpoolFile, fail_spool_file, finish_spool_file};
use crate::batch::rated_block::RatedBlock;
use crate::credit::posting::{PostingBatch, PostingOutcome};
use crate::store::ledger_store::{LedgerStore, open_store};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A rated block of a spool file, in file order.
pub struct SpoolBlock {
    pub file: Arc<SpoolFile>,
    /// File line of the block's first line.
    pub first_line: u64,
    pub start_offset: u64,
    pub end_offset: u64,
    pub block: RatedBlock,
    /// The file's last block: its batch completes the file.
    pub is_last: bool,
}

pub enum PosterWork {
    SpoolBlock(Box<SpoolBlock>),
    Request {
        batch: Box<PostingBatch>,
        reply: tokio::sync::oneshot::Sender<Result<PostingOutcome, String>>,
    },
    /// Intake has stopped: post what is pending and exit.
    Shutdown,
}

/// Blocks of one file waiting to become a batch.
struct PendingSpoolBatch {
    file: Arc<SpoolFile>,
    blocks: Vec<(u64, RatedBlock)>,
    start_offset: u64,
    end_offset: u64,
    n_rows: usize,
    is_last: bool,
    first_arrival: Instant,
}

/// Runs until `Shutdown` arrives (on the request channel, after intake has stopped). HTTP
/// requests go first: a busy spool never makes a waiting request wait behind more than the batch
/// being posted.
pub fn run_poster(
    shared: Arc<DaemonShared>,
    requests: Receiver<PosterWork>,
    spool_blocks: Receiver<PosterWork>,
) {
    let mut store: Option<Box<dyn LedgerStore>> = None;
    let mut pending: Option<PendingSpoolBatch> = None;
    let wait = Duration::from_millis(shared.config.batch_wait_milliseconds);
    loop {
        let mut timeout = pending.as_ref().map_or(Duration::from_secs(3600), |batch| {
            wait.saturating_sub(batch.first_arrival.elapsed())
        });
        if !shared.store_healthy.load(Ordering::SeqCst) {
            timeout = timeout.min(STORE_PROBE_INTERVAL);
        }
        let work = match requests.try_recv() {
            Ok(work) => Ok(work),
            Err(_) => crossbeam_channel::select! {
                recv(requests) -> work => work.map_err(|_| RecvTimeoutError::Disconnected),
                recv(spool_blocks) -> work => work.map_err(|_| RecvTimeoutError::Disconnected),
                default(timeout) => Err(RecvTimeoutError::Timeout),
            },
        };
        shared
            .metrics
            .poster_queue_depth
            .set((requests.len() + spool_blocks.len()) as i64);
        match work {
            Ok(PosterWork::SpoolBlock(block)) => {
                take_spool_block(&shared, &mut store, &mut pending, block)
            }
            Ok(PosterWork::Request { batch, reply }) => {
                let result = post_with_retries(&shared, &mut store, &batch);
                let _ = reply.send(result.map_err(|failure| failure.to_string()));
            }
            Ok(PosterWork::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                // Intake has stopped: what the spool already handed over is posted too.
                while let Ok(work) = spool_blocks.try_recv() {
                    if let PosterWork::SpoolBlock(block) = work {
                        take_spool_block(&shared, &mut store, &mut pending, block);
                    }
                }
                flush(&shared, &mut store, pending.take());
                break;
            }
            Err(RecvTimeoutError::Timeout) => {
                flush(&shared, &mut store, pending.take());
                probe_store(&shared, &mut store);
            }
        }
    }
}

/// Adds a rated block to its file's pending batch, posting the batch when it is full or the file
/// ends (or first, when the block belongs to another file).
fn take_spool_block(
    shared: &DaemonShared,
    store: &mut Option<Box<dyn LedgerStore>>,
    pending: &mut Option<PendingSpoolBatch>,
    block: Box<SpoolBlock>,
) {
    if block.file.abandoned.load(Ordering::SeqCst) {
        return;
    }
    if pending
        .as_ref()
        .is_some_and(|batch| !Arc::ptr_eq(&batch.file, &block.file))
    {
        flush(shared, store, pending.take());
    }
    let batch = pending.get_or_insert_with(|| PendingSpoolBatch {
        file: Arc::clone(&block.file),
        blocks: Vec::new(),
        start_offset: block.start_offset,
        end_offset: block.start_offset,
        n_rows: 0,
        is_last: false,
        first_arrival: Instant::now(),
    });
    batch.n_rows += block.block.n_records as usize;
    batch.end_offset = block.end_offset;
    batch.is_last = block.is_last;
    batch.blocks.push((block.first_line, block.block));
    if batch.is_last || batch.n_rows >= shared.config.batch_cdrs_max {
        flush(shared, store, pending.take());
    }
}

fn flush(
    shared: &DaemonShared,
    store: &mut Option<Box<dyn LedgerStore>>,
    pending: Option<PendingSpoolBatch>,
) {
    let Some(pending) = pending else { return };
    let file = pending.file;
    let batch = PostingBatch::from_rated_blocks(
        file.origin.clone(),
        &file.context,
        &pending.blocks,
        pending.start_offset,
        pending.end_offset,
        pending.is_last,
    );
    match post_with_retries(shared, store, &batch) {
        Ok(_) if pending.is_last => {
            if let Some(store) = store.as_deref_mut()
                && let Err(error) = finish_spool_file(shared, store, &file)
            {
                tracing::error!(file = %file.name, "cannot finish the spool file: {error:#}");
            }
            file.mark_settled();
        }
        Ok(_) => {}
        Err(failure) => {
            file.abandoned.store(true, Ordering::SeqCst);
            if failure.store_answers {
                // The store is up but refuses this batch every time: the file cannot be posted
                // as it is. Its earlier batches stay posted; the rest waits in failed/.
                let reason = format!(
                    "the store refused the batch from byte {} to {}: {:#}",
                    pending.start_offset, pending.end_offset, failure.error
                );
                if let Err(error) = fail_spool_file(shared, &file.path, &file.name, &reason) {
                    tracing::error!(file = %file.name, "cannot move the file to failed/: {error:#}");
                } else {
                    file.failed.store(true, Ordering::SeqCst);
                }
            } else {
                // The file stays in the spool; the next scan resumes it from the recorded progress.
                shared
                    .metrics
                    .spool_files
                    .with_label_values(&["interrupted"])
                    .inc();
                tracing::error!(file = %file.name, "posting failed, the file is left in the spool: {:#}", failure.error);
            }
            file.mark_settled();
        }
    }
}

/// While the store is marked unhealthy and no batch is waiting, the poster checks on it this
/// often, so HTTP intake reopens as soon as the store is back.
const STORE_PROBE_INTERVAL: Duration = Duration::from_secs(1);

fn probe_store(shared: &DaemonShared, store: &mut Option<Box<dyn LedgerStore>>) {
    if shared.store_healthy.load(Ordering::SeqCst) {
        return;
    }
    if store_answers(shared, store) {
        shared.store_healthy.store(true, Ordering::SeqCst);
        tracing::info!("the store answers again: intake reopened");
    }
}

/// Posts a batch, reopening the store and retrying after errors, at most `store_attempts_max`
/// times with doubling waits. While it fails the store is marked unhealthy (HTTP intake answers
/// 503) and every failure is counted.
/// A batch that could not be posted.
pub struct PostFailure {
    pub error: anyhow::Error,
    /// The store answered a ping after the last failure: the batch itself is the problem.
    pub store_answers: bool,
}

impl std::fmt::Display for PostFailure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{:#}", self.error)
    }
}

/// True when the store is reachable, reopening it when needed.
fn store_answers(shared: &DaemonShared, store: &mut Option<Box<dyn LedgerStore>>) -> bool {
    let answered = match store {
        Some(store) => store.ping(),
        None => open_store(&shared.location).and_then(|opened| store.insert(opened).ping()),
    };
    if answered.is_err() {
        *store = None;
    }
    answered.is_ok()
}

pub fn post_with_retries(
    shared: &DaemonShared,
    store: &mut Option<Box<dyn LedgerStore>>,
    batch: &PostingBatch,
) -> Result<PostingOutcome, PostFailure> {
    let mut backoff = Duration::from_millis(crate::limits::STORE_RETRY_BACKOFF_MILLISECONDS);
    let mut attempt = 1;
    loop {
        let started = Instant::now();
        let result = match store {
            Some(store) => store.post_batch(batch),
            None => open_store(&shared.location)
                .and_then(|opened| store.insert(opened).post_batch(batch)),
        };
        match result {
            Ok(outcome) => {
                shared.store_healthy.store(true, Ordering::SeqCst);
                record_outcome(shared, batch, &outcome, started.elapsed());
                return Ok(outcome);
            }
            Err(error) => {
                shared.metrics.store_errors.inc();
                // A store that still answers stays healthy for intake: the failure was this
                // batch's (or a passing lock conflict), not an outage.
                let answers = store_answers(shared, store);
                shared.store_healthy.store(answers, Ordering::SeqCst);
                if attempt >= shared.config.store_attempts_max {
                    return Err(PostFailure {
                        error,
                        store_answers: answers,
                    });
                }
                tracing::warn!(
                    origin = %batch.origin.label,
                    attempt,
                    "posting failed, retrying in {} ms: {error:#}",
                    backoff.as_millis()
                );
                shared.metrics.store_retries.inc();
                std::thread::sleep(backoff);
                backoff *= 2;
                attempt += 1;
            }
        }
    }
}

fn record_outcome(
    shared: &DaemonShared,
    batch: &PostingBatch,
    outcome: &PostingOutcome,
    took: Duration,
) {
    let metrics = &shared.metrics;
    if outcome.replayed {
        tracing::info!(origin = %batch.origin.label, "request already posted: answered from the record");
        return;
    }
    metrics.batch_commit_seconds.observe(took.as_secs_f64());
    metrics
        .cdrs_in
        .inc_by(batch.n_calls() as u64 + batch.rejects.len() as u64);
    metrics.cdrs_rated.inc_by(outcome.rated);
    metrics.cdrs_duplicate.inc_by(outcome.duplicates);
    metrics.cdrs_conflict.inc_by(outcome.conflicts);
    metrics.calls_limit_exceeded.inc_by(outcome.limit_exceeded);
    if outcome.limit_exceeded > 0 {
        tracing::warn!(
            origin = %batch.origin.label,
            calls = outcome.limit_exceeded,
            "calls denied at authorization happened anyway: charged per minute, flagged limit_exceeded"
        );
    }
    for reject in &batch.rejects {
        metrics
            .cdrs_rejected
            .with_label_values(&[reject.reason.as_str()])
            .inc();
    }
    tracing::info!(
        origin = %batch.origin.label,
        batch_id = outcome.batch_id,
        rated = outcome.rated,
        rejected = outcome.rejected,
        duplicates = outcome.duplicates,
        conflicts = outcome.conflicts,
        end_offset = batch.end_offset,
        commit_ms = took.as_millis() as u64,
        "batch committed"
    );
}
