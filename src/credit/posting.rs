//! A rated batch on its way into the ledger, and the store-independent rules of posting it: which
//! calls are new, duplicates or conflicts, and how much each account and its ancestors are charged.
//! Both stores apply exactly these rules inside one transaction.

use crate::batch::rated_block::{RatedBlock, RatingContext, RowStatus};
use crate::batch::trunk_pass::BillingClasses;
use crate::credit::trunk_sweep::{BillingClass, HELD_FOR_SWEEP};
use crate::money::cost_in_ledger_units;
use crate::store::ledger_store::IngestProgress;
use crate::store::rated_output::{MoneyScales, rated_record_batch, rated_schema};
use arrow::array::{
    Array, BooleanArray, Decimal128Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Where a batch came from. The key identifies the input by content (a spool file's digest) or by
/// the client's request id, so the same input arriving twice is recognised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub key: String,
    /// What a person recognises: the file name, or the request id.
    pub label: String,
    pub kind: OriginKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OriginKind {
    SpoolFile,
    HttpRequest,
}

/// A record refused before rating: it lands in the rejects table with its line and reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RejectToPost {
    pub line: u64,
    /// The CDR's account, when the record decoded far enough to name one.
    pub account: Option<String>,
    pub reason: String,
    pub raw_record: String,
}

/// One batch for the store: the rated calls (the rated-calls schema, rated rows only, with their
/// dedupe and content digests and costs in ledger units), the rejects, and how far into its origin
/// the batch reaches.
pub struct PostingBatch {
    pub origin: Origin,
    pub start_offset: u64,
    pub end_offset: u64,
    /// True for an origin's last batch: the file or request is then fully posted.
    pub origin_complete: bool,
    pub calls: RecordBatch,
    pub key_digest: Vec<u128>,
    pub content_digest: Vec<u64>,
    pub cost_units: Vec<i64>,
    pub rejects: Vec<RejectToPost>,
}

/// What posting a batch did. Stored with the origin's progress, so a retried request gets the
/// first answer back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingOutcome {
    pub batch_id: i64,
    pub rated: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub conflicts: u64,
    /// Sum of the new calls' costs in ledger units (charged once to each account of each chain).
    pub charged_units: i64,
    /// True when the origin had been posted before and nothing was done this time.
    #[serde(default)]
    pub replayed: bool,
    /// Calls denied at authorization whose CDR came anyway (charged, flagged, alerted).
    #[serde(default)]
    pub limit_exceeded: u64,
}

impl PostingOutcome {
    pub fn add(&mut self, other: &PostingOutcome) {
        self.batch_id = other.batch_id;
        self.rated += other.rated;
        self.rejected += other.rejected;
        self.duplicates += other.duplicates;
        self.conflicts += other.conflicts;
        self.charged_units += other.charged_units;
        self.limit_exceeded += other.limit_exceeded;
    }
}

impl PostingBatch {
    /// Builds a batch from rated blocks. `first_line` is the file line of each block's first line,
    /// so rejects carry lines of the file, not of the block.
    pub fn from_rated_blocks(
        origin: Origin,
        context: &RatingContext,
        blocks: &[(u64, RatedBlock)],
        start_offset: u64,
        end_offset: u64,
        origin_complete: bool,
    ) -> PostingBatch {
        let scales = MoneyScales::for_context(context);
        let schema = rated_schema(scales);
        let mut parts = Vec::with_capacity(blocks.len());
        let mut key_digest = Vec::new();
        let mut content_digest = Vec::new();
        let mut cost_units = Vec::new();
        let mut rejects = Vec::new();
        for (first_line, block) in blocks {
            let rated: Vec<bool> = block
                .status
                .iter()
                .map(|status| *status == RowStatus::Rated)
                .collect();
            for (row, is_rated) in rated.iter().enumerate() {
                if *is_rated {
                    key_digest.push(block.key_digest[row]);
                    content_digest.push(block.content_digest[row]);
                    let deck = &context.decks[usize::from(block.deck[row])];
                    cost_units.push(cost_in_ledger_units(
                        block.cost_mantissa[row],
                        deck.rounding.decimals,
                    ));
                }
            }
            // Classes are the store's to decide (authorizations, the trunk sweep): per-minute here.
            let all_rows =
                rated_record_batch(block, context, scales, &schema, &BillingClasses::default());
            parts.push(
                arrow::compute::filter_record_batch(&all_rows, &BooleanArray::from(rated))
                    .expect("the filter has one entry per row"),
            );
            rejects.extend(block.rejected_records.iter().map(|reject| RejectToPost {
                line: first_line + reject.line_in_block - 1,
                account: reject.row.map(|row| block.account_of_row(row).to_string()),
                reason: reject.reason.as_str().to_string(),
                // PostgreSQL text cannot hold NUL; the rejects file of a spool file keeps it.
                raw_record: String::from_utf8_lossy(&reject.raw).replace('\0', "\u{fffd}"),
            }));
        }
        let calls = arrow::compute::concat_batches(&schema, &parts)
            .expect("every part has the rated-calls schema");
        PostingBatch {
            origin,
            start_offset,
            end_offset,
            origin_complete,
            calls,
            key_digest,
            content_digest,
            cost_units,
            rejects,
        }
    }

    pub fn n_calls(&self) -> usize {
        self.calls.num_rows()
    }

    /// A text column of the calls by name.
    pub fn text_column(&self, name: &str) -> &StringArray {
        self.calls
            .column_by_name(name)
            .and_then(|column| column.as_any().downcast_ref::<StringArray>())
            .unwrap_or_else(|| panic!("rated calls have a text column {name}"))
    }

    /// For each call: `None` for a key's first occurrence in the batch, or the index of that first
    /// occurrence. Only first occurrences are offered to the store.
    pub fn repeats_within_batch(&self) -> Vec<Option<usize>> {
        let mut first_index: HashMap<u128, usize> = HashMap::with_capacity(self.key_digest.len());
        self.key_digest
            .iter()
            .enumerate()
            .map(|(index, key)| match first_index.entry(*key) {
                std::collections::hash_map::Entry::Occupied(first) => Some(*first.get()),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(index);
                    None
                }
            })
            .collect()
    }
}

/// What becomes of each call of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallFate {
    /// New: stored and charged.
    Charged,
    /// New, and authorized onto a trunk: stored at its list price, no per-minute charge.
    OnTrunk,
    /// New, unauthorized, of an account with limits: stored, charged once the sweep classified it.
    Held,
    /// Its key was already rated with the same content: neither stored again nor charged.
    Duplicate,
    /// Its key was already rated with other content: kept for review, not charged.
    Conflict { stored_content_digest: u64 },
}

/// Decides every call's fate. `stored_digest[i]` is, for a first occurrence `i`, the content digest
/// already stored under its key (`None` when the store took the call as new).
pub fn decide_fates(
    batch: &PostingBatch,
    repeats: &[Option<usize>],
    stored_digest: &HashMap<usize, u64>,
) -> Vec<CallFate> {
    let compare = |stored: u64, index: usize| {
        if stored == batch.content_digest[index] {
            CallFate::Duplicate
        } else {
            CallFate::Conflict {
                stored_content_digest: stored,
            }
        }
    };
    repeats
        .iter()
        .enumerate()
        .map(|(index, repeat)| {
            let first = repeat.unwrap_or(index);
            // What the store holds for this key once the first occurrence is through.
            let effective_stored = stored_digest
                .get(&first)
                .copied()
                .or(repeat.map(|first| batch.content_digest[first]));
            match effective_stored {
                None => CallFate::Charged,
                Some(stored) => compare(stored, index),
            }
        })
        .collect()
}

/// Usage per account: each charged call's cost goes to its account and every ancestor. `parents`
/// maps every account id to its parent. The result is sorted by account id; the PostgreSQL store
/// locks those balances with `ORDER BY id`, one order for every instance. An account tree with a cycle (which imports refuse) is an error, not a hang.
pub fn usage_by_account(
    batch: &PostingBatch,
    fates: &[CallFate],
    parents: &HashMap<String, Option<String>>,
) -> anyhow::Result<BTreeMap<String, i64>> {
    let accounts = batch.text_column("account");
    usage_up_the_tree(
        fates
            .iter()
            .enumerate()
            .filter(|(_, fate)| **fate == CallFate::Charged)
            .map(|(index, _)| (accounts.value(index), batch.cost_units[index])),
        parents,
    )
}

/// Charges of (account, units) summed on each account and every ancestor, sorted by account id.
pub fn usage_up_the_tree<'a>(
    charges: impl Iterator<Item = (&'a str, i64)>,
    parents: &HashMap<String, Option<String>>,
) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut by_account: HashMap<&str, i64> = HashMap::new();
    for (account, units) in charges {
        *by_account.entry(account).or_default() += units;
    }
    let mut with_ancestors: BTreeMap<String, i64> = BTreeMap::new();
    for (account, amount) in by_account {
        for id in account_chain(account, parents)? {
            *with_ancestors.entry(id).or_default() += amount;
        }
    }
    Ok(with_ancestors)
}

/// What applying a sweep's classes does to the ledger.
pub struct SweepCharges<'a> {
    /// Usage per account, up the tree, of the charged calls (sorted by account id).
    pub usage: BTreeMap<String, i64>,
    /// (call id, account) of the calls over a limit.
    pub over_limit: Vec<(&'a str, &'a str)>,
    /// The charged calls' costs.
    pub charged_units: i64,
}

pub fn sweep_charges<'a>(
    classes: &'a [(crate::store::ledger_store::HeldCall, BillingClass)],
    parents: &HashMap<String, Option<String>>,
) -> anyhow::Result<SweepCharges<'a>> {
    let charged = || classes.iter().filter(|(_, class)| class.is_charged());
    Ok(SweepCharges {
        usage: usage_up_the_tree(
            charged().map(|(call, _)| (call.account.as_str(), call.cost_units)),
            parents,
        )?,
        over_limit: classes
            .iter()
            .filter(|(_, class)| *class == BillingClass::LimitExceeded)
            .map(|(call, _)| (call.cdr_id.as_str(), call.account.as_str()))
            .collect(),
        charged_units: charged().map(|(call, _)| call.cost_units).sum(),
    })
}

/// The account and every account above it, nearest first: who a call's money moves on.
pub fn account_chain(
    account: &str,
    parents: &HashMap<String, Option<String>>,
) -> anyhow::Result<Vec<String>> {
    let mut chain = Vec::new();
    let mut next = Some(account.to_string());
    while let Some(id) = next {
        next = parents.get(&id).cloned().flatten();
        chain.push(id);
        if chain.len() > parents.len() + 1 {
            anyhow::bail!("the stored account tree has a cycle through account {account}");
        }
    }
    Ok(chain)
}

/// (index, cdr_id, account) of a batch's new calls: those a call authorization may be waiting for.
pub fn new_calls<'b>(
    batch: &'b PostingBatch,
    fates: &[CallFate],
) -> Vec<(usize, &'b str, &'b str)> {
    let cdr_ids = batch.text_column("cdr_id");
    let accounts = batch.text_column("account");
    fates
        .iter()
        .enumerate()
        .filter(|(_, fate)| **fate == CallFate::Charged)
        .map(|(index, _)| (index, cdr_ids.value(index), accounts.value(index)))
        .collect()
}

/// What posting a batch found of its new calls' classes, by index into the batch: from their
/// authorizations, or held for the trunk sweep.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettledCalls {
    /// Authorized onto a trunk: stored at list price, not charged.
    pub on_trunk: Vec<usize>,
    /// Denied at authorization, yet the call happened: charged per minute, flagged and alerted.
    pub over_limit: Vec<usize>,
    /// Authorized per minute: charged now.
    pub per_minute: Vec<usize>,
    /// Not authorized, of a chain with trunks or limits: stored, charged when the sweep has
    /// classified them.
    pub held_for_sweep: Vec<usize>,
}

impl SettledCalls {
    /// Sorts one settled authorization by its decision.
    pub fn add(&mut self, index: usize, decision: &str) {
        match decision {
            "trunk" => self.on_trunk.push(index),
            "deny" => self.over_limit.push(index),
            _ => self.per_minute.push(index),
        }
    }

    /// (index, billing class) of the calls whose class is not `per_minute`.
    pub fn billing_classes(&self) -> Vec<(usize, &'static str)> {
        let class = |indices: &[usize], class: &'static str| {
            indices
                .iter()
                .map(move |index| (*index, class))
                .collect::<Vec<_>>()
        };
        [
            class(&self.on_trunk, BillingClass::Trunk.as_str()),
            class(&self.over_limit, BillingClass::LimitExceeded.as_str()),
            class(&self.held_for_sweep, HELD_FOR_SWEEP),
        ]
        .concat()
    }

    /// Holds the new calls no authorization settled whose chain has limits, for the sweep.
    pub fn hold_unauthorized(
        &mut self,
        batch: &PostingBatch,
        fates: &[CallFate],
        links: &AccountLinks,
    ) -> anyhow::Result<()> {
        let settled: std::collections::HashSet<usize> = self
            .on_trunk
            .iter()
            .chain(&self.over_limit)
            .chain(&self.per_minute)
            .copied()
            .collect();
        for (index, _, account) in new_calls(batch, fates) {
            if !settled.contains(&index) && links.chain_needs_sweep(account)? {
                self.held_for_sweep.push(index);
            }
        }
        Ok(())
    }

    /// (call id, account) of the calls over a limit, for their alerts.
    pub fn over_limit_calls<'b>(&self, batch: &'b PostingBatch) -> Vec<(&'b str, &'b str)> {
        let (cdr_ids, accounts) = (batch.text_column("cdr_id"), batch.text_column("account"));
        self.over_limit
            .iter()
            .map(|index| (cdr_ids.value(*index), accounts.value(*index)))
            .collect()
    }

    /// Marks the calls on a trunk and those held for the sweep: stored, not charged (yet).
    pub fn apply_to(&self, fates: &mut [CallFate]) {
        for index in &self.on_trunk {
            fates[*index] = CallFate::OnTrunk;
        }
        for index in &self.held_for_sweep {
            fates[*index] = CallFate::Held;
        }
    }
}

/// Counts of a batch's fates, for its outcome.
pub fn outcome_of(batch: &PostingBatch, fates: &[CallFate], batch_id: i64) -> PostingOutcome {
    let mut outcome = PostingOutcome {
        batch_id,
        rejected: batch.rejects.len() as u64,
        ..PostingOutcome::default()
    };
    for (index, fate) in fates.iter().enumerate() {
        match fate {
            CallFate::Charged => {
                outcome.rated += 1;
                outcome.charged_units += batch.cost_units[index];
            }
            CallFate::OnTrunk | CallFate::Held => outcome.rated += 1,
            CallFate::Duplicate => outcome.duplicates += 1,
            CallFate::Conflict { .. } => outcome.conflicts += 1,
        }
    }
    outcome
}

/// When `batch` repeats an HTTP request already posted in full, the answer to give again.
pub fn replayed_outcome(
    batch: &PostingBatch,
    previous: Option<&IngestProgress>,
) -> Option<PostingOutcome> {
    previous
        .filter(|progress| batch.origin.kind == OriginKind::HttpRequest && progress.complete)
        .map(|progress| PostingOutcome {
            replayed: true,
            ..progress.outcome.clone()
        })
}

/// The origin's progress once `batch` is posted: offsets only move forward, a complete origin
/// stays complete, outcomes add up.
pub fn progress_after(
    batch: &PostingBatch,
    previous: Option<&IngestProgress>,
    outcome: &PostingOutcome,
) -> IngestProgress {
    let mut total = previous
        .map(|progress| progress.outcome.clone())
        .unwrap_or_default();
    total.add(outcome);
    IngestProgress {
        byte_offset: previous
            .map_or(0, |progress| progress.byte_offset)
            .max(batch.end_offset),
        complete: batch.origin_complete || previous.is_some_and(|progress| progress.complete),
        outcome: total,
    }
}

/// What posting needs of every account, read once per accounts generation: its parent (usage
/// goes up the tree) and its thresholds in ledger units (alerts).
#[derive(Debug, Default)]
pub struct AccountLinks {
    pub parents: HashMap<String, Option<String>>,
    pub thresholds: HashMap<String, Vec<i64>>,
    /// Accounts with trunks, without per-minute calls, or not active.
    pub limiting: std::collections::HashSet<String>,
}

impl AccountLinks {
    pub fn add(&mut self, account: &crate::credit::accounts::Account) {
        let thresholds: Vec<i64> = account
            .thresholds
            .iter()
            .filter_map(|threshold| crate::money::ledger_units(*threshold))
            .collect();
        if !thresholds.is_empty() {
            self.thresholds.insert(account.id.clone(), thresholds);
        }
        if crate::credit::trunks::account_limits_calls(account) {
            self.limiting.insert(account.id.clone());
        }
        self.parents
            .insert(account.id.clone(), account.parent.clone());
    }

    pub fn thresholds_of(&self, account: &str) -> &[i64] {
        self.thresholds.get(account).map_or(&[], Vec::as_slice)
    }

    /// True when some account of the chain has trunks or other limits: the trunk sweep then
    /// decides the class of the account's unauthorized calls.
    pub fn chain_needs_sweep(&self, account: &str) -> anyhow::Result<bool> {
        if self.limiting.is_empty() {
            return Ok(false);
        }
        Ok(account_chain(account, &self.parents)?
            .iter()
            .any(|id| self.limiting.contains(id)))
    }
}

/// The account links as cached by a store, shared with each batch.
pub type SharedAccountLinks = std::sync::Arc<AccountLinks>;

/// One call of the batch as JSON, for the conflicts table (someone reviews it there).
pub fn call_as_json(batch: &PostingBatch, index: usize) -> String {
    let mut fields = serde_json::Map::new();
    for (column, field) in batch
        .calls
        .columns()
        .iter()
        .zip(batch.calls.schema().fields())
    {
        let value = arrow::util::display::array_value_to_string(column, index).unwrap_or_default();
        let value = if column.is_null(index) {
            serde_json::Value::Null
        } else {
            serde_json::Value::String(value)
        };
        fields.insert(field.name().clone(), value);
    }
    serde_json::Value::Object(fields).to_string()
}

/// Typed views of a batch's call columns, as the stores bind them.
pub struct CallColumns<'a> {
    pub source: &'a StringArray,
    pub cdr_id: &'a StringArray,
    pub account: &'a StringArray,
    pub direction: &'a StringArray,
    pub caller: &'a StringArray,
    pub callee: &'a StringArray,
    pub start_time: &'a TimestampMicrosecondArray,
    pub answer_time: &'a TimestampMicrosecondArray,
    pub end_time: &'a TimestampMicrosecondArray,
    pub billsec: &'a Int64Array,
    pub disposition: &'a StringArray,
    pub deck: &'a StringArray,
    pub rate_prefix: &'a StringArray,
    pub destination: &'a StringArray,
    pub rate: &'a Decimal128Array,
    pub billable_seconds: &'a Int64Array,
    pub currency: &'a StringArray,
}

impl<'a> CallColumns<'a> {
    pub fn of(batch: &'a PostingBatch) -> CallColumns<'a> {
        fn column<'b, T: 'static>(batch: &'b PostingBatch, name: &str) -> &'b T {
            batch
                .calls
                .column_by_name(name)
                .and_then(|column| column.as_any().downcast_ref::<T>())
                .unwrap_or_else(|| panic!("rated calls have a column {name} of the rated schema"))
        }
        CallColumns {
            source: column(batch, "source"),
            cdr_id: column(batch, "cdr_id"),
            account: column(batch, "account"),
            direction: column(batch, "direction"),
            caller: column(batch, "caller"),
            callee: column(batch, "callee"),
            start_time: column(batch, "start_time"),
            answer_time: column(batch, "answer_time"),
            end_time: column(batch, "end_time"),
            billsec: column(batch, "billsec"),
            disposition: column(batch, "disposition"),
            deck: column(batch, "deck"),
            rate_prefix: column(batch, "rate_prefix"),
            destination: column(batch, "destination"),
            rate: column(batch, "rate"),
            billable_seconds: column(batch, "billable_seconds"),
            currency: column(batch, "currency"),
        }
    }

    /// The call's rate per minute as a decimal (`None` for a call to an unrated number that was
    /// not answered).
    pub fn rate_decimal(&self, index: usize) -> Option<rust_decimal::Decimal> {
        self.rate.is_valid(index).then(|| {
            rust_decimal::Decimal::from_i128_with_scale(
                self.rate.value(index),
                self.rate.scale() as u32,
            )
            .normalize()
        })
    }

    pub fn text(array: &'a StringArray, index: usize) -> Option<&'a str> {
        array.is_valid(index).then(|| array.value(index))
    }

    pub fn time(array: &TimestampMicrosecondArray, index: usize) -> Option<i64> {
        array.is_valid(index).then(|| array.value(index))
    }
}
