//! The one thread that writes call authorizations: it takes everything queued (up to
//! `limits::CALL_BATCH_MAX`) and answers it in one store transaction, so a burst of calls costs one
//! durable commit instead of one each (group commit). Requests come from the HTTP handlers through
//! a bounded channel; each carries a one-shot channel for its answer.

use super::DaemonShared;
use super::http_calls::decide_with_rates;
use crate::credit::authorization::AuthorizationRequest;
use crate::limits::CALL_BATCH_MAX;
use crate::store::ledger_store::{
    AuthorizationAnswer, CallRecord, CallRefusal, LedgerStore, now_micros, open_store,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::oneshot;

pub type Reply<T> = oneshot::Sender<anyhow::Result<T>>;

pub enum CallWork {
    Authorize {
        request: AuthorizationRequest,
        reply: Reply<Result<AuthorizationAnswer, CallRefusal>>,
    },
    Keepalive {
        call_id: String,
        reply: Reply<Option<CallRecord>>,
    },
    End {
        call_id: String,
        reply: Reply<Option<CallRecord>>,
    },
}

/// Runs until the daemon stops and nothing is queued.
pub fn run_authorizer(shared: Arc<DaemonShared>, queue: crossbeam_channel::Receiver<CallWork>) {
    let mut store: Option<Box<dyn LedgerStore>> = None;
    loop {
        let first = match queue.recv_timeout(Duration::from_millis(100)) {
            Ok(work) => work,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if shared.stopping.load(Ordering::SeqCst) {
                    return;
                }
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        batch.extend(queue.try_iter().take(CALL_BATCH_MAX - 1));
        let opened = match store.as_mut() {
            Some(opened) => Ok(opened),
            None => open_store(&shared.location).map(|opened| store.insert(opened)),
        };
        let result = match opened {
            Ok(opened) => answer_batch(&shared, opened.as_mut(), batch),
            Err(error) => {
                refuse_all(batch, &error);
                Err(error)
            }
        };
        if let Err(error) = result {
            tracing::warn!("call authorization store error: {error:#}");
            store = None;
        }
    }
}

/// Answers a batch: authorizations and ends in one transaction (one durable commit for both),
/// keepalives one by one.
/// A store error fails every request of the batch (answered 503) and comes back to the caller.
fn answer_batch(
    shared: &DaemonShared,
    store: &mut dyn LedgerStore,
    batch: Vec<CallWork>,
) -> anyhow::Result<()> {
    let mut authorizations = Vec::new();
    let mut ends = Vec::new();
    let mut keepalives = Vec::new();
    for work in batch {
        match work {
            CallWork::Authorize { request, reply } => authorizations.push((request, reply)),
            CallWork::End { call_id, reply } => ends.push((call_id, reply)),
            CallWork::Keepalive { call_id, reply } => keepalives.push((call_id, reply)),
        }
    }
    if !authorizations.is_empty() || !ends.is_empty() {
        let requests: Vec<AuthorizationRequest> = authorizations
            .iter()
            .map(|(request, _)| request.clone())
            .collect();
        let call_ids: Vec<String> = ends.iter().map(|(call_id, _)| call_id.clone()).collect();
        let now = now_micros();
        let expires_at = now + i64::from(shared.config.call_ttl_seconds) * 1_000_000;
        let settle_by = now + i64::from(shared.config.call_settle_seconds) * 1_000_000;
        // The whole batch is priced with the decks and accounts current when it is decided.
        let context = shared.rating.context();
        let answered = store.answer_calls(
            &requests,
            expires_at,
            &mut |request, chain| decide_with_rates(shared, &context, request, chain),
            &call_ids,
            now,
            settle_by,
        );
        match answered {
            Ok(answers) => {
                for ((_, reply), answer) in authorizations.into_iter().zip(answers.authorizations) {
                    let _ = reply.send(Ok(answer));
                }
                for ((_, reply), record) in ends.into_iter().zip(answers.ends) {
                    let _ = reply.send(Ok(record));
                }
            }
            Err(error) => {
                for (_, reply) in authorizations {
                    let _ = reply.send(Err(anyhow::anyhow!("{error:#}")));
                }
                for (_, reply) in ends {
                    let _ = reply.send(Err(anyhow::anyhow!("{error:#}")));
                }
                return Err(error);
            }
        }
    }
    let expires_at = now_micros() + i64::from(shared.config.call_ttl_seconds) * 1_000_000;
    for (call_id, reply) in keepalives {
        let _ = reply.send(store.keepalive_call(&call_id, expires_at));
    }
    Ok(())
}

fn refuse_all(batch: Vec<CallWork>, error: &anyhow::Error) {
    let refusal = || anyhow::anyhow!("the store cannot be opened: {error:#}");
    for work in batch {
        match work {
            CallWork::Authorize { reply, .. } => {
                let _ = reply.send(Err(refusal()));
            }
            CallWork::Keepalive { reply, .. } | CallWork::End { reply, .. } => {
                let _ = reply.send(Err(refusal()));
            }
        }
    }
}
