//! The batch job's trunk pass: when an account of `--accounts` has trunks or other limits, the
//! inputs are read once before rating proper, every rated call of those accounts is put in
//! call-start order across all files, and the trunk sweep gives each its billing class. The
//! second pass (the ordinary one) writes the classes. Runs without limits skip this pass.

use super::pipeline::{DedupeKey, DigestHasher, InputFile, WorkItem, rate_item, read_inputs};
use super::rated_block::{RatedBlock, RatingContext, RowStatus};
use crate::cdr::Direction;
use crate::credit::accounts::{Account, AccountBook};
use crate::credit::trunk_sweep::{BillingClass, SweepCall, TrunkSweep, chain_needs_sweep};
use crate::credit::trunks::TrunkEligibility;
use crate::limits::{BLOCKS_PER_GROUP, BLOCKS_QUEUED_MAX};
use anyhow::anyhow;
use arrow::array::{Array, Int64Array, StringArray, TimestampMicrosecondArray};
use crossbeam_channel::bounded;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;

/// Every dedupe key seen so far (the same set the ordered pass keeps).
type SeenKeys = HashSet<DedupeKey, BuildHasherDefault<DigestHasher>>;
use std::sync::Arc;

/// The class of every rated call that is not per-minute, by dedupe key digest.
#[derive(Debug, Default)]
pub struct BillingClasses {
    by_key: HashMap<u128, BillingClass>,
}

impl BillingClasses {
    /// The class of a rated row (per-minute unless the sweep said otherwise).
    pub fn of(&self, key_digest: u128) -> BillingClass {
        self.by_key
            .get(&key_digest)
            .copied()
            .unwrap_or(BillingClass::PerMinute)
    }
}

/// A call waiting for its place in start order.
struct PendingCall {
    start_micros: i64,
    /// Source and cdr_id joined by a unit separator: ties in start time go by them, as in the
    /// stores.
    source_and_id: Box<str>,
    key_digest: u128,
    /// Index of the account's chain in the pass's chain list.
    chain: u32,
    call: SweepCall,
}

/// Reads and rates every input once and classifies the calls of accounts whose chain has limits.
/// `None` when no account has any (every call is then per-minute and the pass is skipped).
pub(super) fn classify_by_trunk_sweep(
    context: &RatingContext,
    inputs: &Arc<Vec<InputFile>>,
    book: &AccountBook,
    eligibility: &TrunkEligibility,
) -> anyhow::Result<Option<BillingClasses>> {
    let chains: Vec<Vec<&Account>> = book
        .accounts
        .keys()
        .map(|id| book.chain(id))
        .filter(|chain| chain_needs_sweep(chain))
        .collect();
    if chains.is_empty() {
        return Ok(None);
    }
    let limited: HashMap<&str, u32> = chains
        .iter()
        .enumerate()
        .map(|(index, chain)| (chain[0].id.as_str(), index as u32))
        .collect();
    let (work_sender, work_receiver) = bounded::<Result<WorkItem, String>>(BLOCKS_QUEUED_MAX);
    let reader_inputs = Arc::clone(inputs);
    let reader_thread = std::thread::spawn(move || read_inputs(&reader_inputs, &work_sender));
    let mut seen = SeenKeys::default();
    let mut pending: Vec<PendingCall> = Vec::new();
    let mut failure = None;
    // While one group is rated, the previous one is collected in file order (as in pass two).
    let mut previous: Vec<RatedBlock> = Vec::new();
    loop {
        let mut group: Vec<WorkItem> = Vec::with_capacity(BLOCKS_PER_GROUP);
        while failure.is_none() && group.len() < BLOCKS_PER_GROUP {
            match work_receiver.recv() {
                Ok(Ok(item)) => group.push(item),
                Ok(Err(problem)) => failure = Some(anyhow!(problem)),
                Err(_) => break,
            }
        }
        let (rated, ()) = rayon::join(
            || {
                group
                    .par_iter()
                    .map(|item| rate_item(context, inputs, item))
                    .collect::<Vec<RatedBlock>>()
            },
            || {
                for block in &previous {
                    collect_limited_calls(block, &limited, eligibility, &mut seen, &mut pending);
                }
            },
        );
        if group.is_empty() || failure.is_some() {
            break;
        }
        previous = rated;
    }
    drop(work_receiver);
    reader_thread
        .join()
        .expect("the reader thread does not panic");
    if let Some(failure) = failure {
        return Err(failure);
    }
    pending.sort_unstable_by(|a, b| {
        (a.start_micros, &a.source_and_id).cmp(&(b.start_micros, &b.source_and_id))
    });
    let mut sweep = TrunkSweep::default();
    let mut classes = BillingClasses::default();
    for call in &pending {
        let classified = sweep.classify(&call.call, &chains[call.chain as usize]);
        if classified.class != BillingClass::PerMinute {
            classes.by_key.insert(call.key_digest, classified.class);
        }
    }
    Ok(Some(classes))
}

fn collect_limited_calls(
    block: &RatedBlock,
    limited: &HashMap<&str, u32>,
    eligibility: &TrunkEligibility,
    seen: &mut SeenKeys,
    pending: &mut Vec<PendingCall>,
) {
    let columns = &block.input_columns;
    let text = |index: usize| {
        columns[index]
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("input text column")
    };
    let time = |index: usize| {
        columns[index]
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("input time column")
    };
    let (source, cdr_id, account, direction, caller, callee) =
        (text(0), text(1), text(2), text(3), text(4), text(5));
    let (start, answer, end) = (time(6), time(7), time(8));
    let billsec = columns[9]
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("input billsec column");
    for row in 0..block.n_rows() {
        // As in the ordered pass: a key's first occurrence, rated or not, makes later ones
        // duplicates.
        let first_occurrence = seen.insert(DedupeKey::of(block.key_digest[row]));
        if !first_occurrence || block.status[row] != RowStatus::Rated {
            continue;
        }
        let Some(&chain) = limited.get(account.value(row)) else {
            continue;
        };
        let Some(direction) = Direction::parse(direction.value(row)) else {
            continue;
        };
        let start_micros = if answer.is_valid(row) {
            answer.value(row)
        } else {
            start.value(row)
        };
        let seconds = billsec.value(row);
        let end_micros = if end.is_valid(row) {
            end.value(row)
        } else {
            start_micros + seconds * 1_000_000
        };
        pending.push(PendingCall {
            start_micros,
            source_and_id: format!("{}\u{1f}{}", source.value(row), cdr_id.value(row)).into(),
            key_digest: block.key_digest[row],
            chain,
            call: SweepCall {
                direction,
                trunk_eligible: eligibility.call_is_eligible(
                    direction,
                    caller.value(row),
                    callee.value(row),
                ),
                start_micros,
                end_micros,
                billsec: u32::try_from(seconds).unwrap_or(u32::MAX),
            },
        });
    }
}
