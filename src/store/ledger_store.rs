//! The store contract: what the embedded (SQLite) and PostgreSQL stores both do, with the same
//! behaviour, checked by one contract test suite against both.

use crate::credit::accounts::Account;
use crate::credit::authorization::{Authorization, AuthorizationRequest, ChainLevel};
use crate::credit::posting::{PostingBatch, PostingOutcome};
use crate::credit::trunk_sweep::{BillingClass, TrunkSweep};
use anyhow::Context;

/// How far an origin (spool file or HTTP request) has been posted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestProgress {
    pub byte_offset: u64,
    pub complete: bool,
    /// The sum of every batch's outcome for this origin.
    pub outcome: PostingOutcome,
}

/// An account as stored: its profile and its balance in ledger units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAccount {
    pub account: Account,
    pub balance_units: i64,
}

/// A deck that rated stored calls, by version, so a call can be explained later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeckRecord {
    pub name: String,
    pub version: String,
    pub currency: String,
}

/// A rejected record as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredReject {
    pub origin_label: String,
    pub line: u64,
    pub reason: String,
    pub raw_record: String,
}

/// A reject listed for an account, with the batch that stored it and when that committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountReject {
    pub batch_id: i64,
    pub rejected_at_micros: i64,
    pub reject: StoredReject,
}

/// An account and its ancestors, nearest first (`$n` placeholders serve both stores). Import
/// refuses cycles; the depth cap (far beyond any real hierarchy) only guards the walk.
pub const ACCOUNT_ANCESTRY_SQL: &str = "WITH RECURSIVE chain (id, parent, depth) AS (
        SELECT id, parent, 0 FROM accounts WHERE id = $1
        UNION ALL
        SELECT a.id, a.parent, chain.depth + 1 FROM accounts a JOIN chain ON a.id = chain.parent
        WHERE chain.depth < 10000)
     SELECT id FROM chain ORDER BY depth";

/// An account and every account below it, with their parents, level by level.
pub const ACCOUNT_SUBTREE_SQL: &str = "WITH RECURSIVE tree (id, parent, depth) AS (
        SELECT id, parent, 0 FROM accounts WHERE id = $1
        UNION ALL
        SELECT a.id, a.parent, tree.depth + 1 FROM accounts a JOIN tree ON a.parent = tree.id
        WHERE tree.depth < 10000)
     SELECT id, parent FROM tree ORDER BY depth, id";

/// An account's rejects before a `(batch_id, line)` cursor, newest first; the same text in both
/// stores (`$n` is a positional parameter in SQLite too).
pub const REJECTS_OF_ACCOUNT_SQL: &str =
    "SELECT r.batch_id, b.committed_at_micros, r.origin_label, r.line, r.reason, r.raw_record
     FROM rejects r JOIN batches b ON b.id = r.batch_id
     WHERE r.account = $1 AND (r.batch_id, r.line) < ($2, $3)
     ORDER BY r.batch_id DESC, r.line DESC LIMIT $4";

/// A credit posted (or found posted before under the same idempotency key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreditOutcome {
    pub entry_id: i64,
    pub balance_after_units: i64,
    /// True when the key had been used for this very credit before: nothing was credited now.
    pub replayed: bool,
}

/// An event for the account's webhook, as stored (the outbox row): a threshold crossed by a
/// posting, or an auto-recharge credited. Written in the transaction that caused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAlert {
    pub id: i64,
    /// `threshold_crossed`, `auto_recharge` or `limit_exceeded`.
    pub kind: String,
    pub account: String,
    /// The threshold crossed, or the auto-recharge threshold the balance was below.
    pub threshold_units: i64,
    /// The balance right after the posting or the recharge.
    pub balance_units: i64,
    /// What an auto-recharge credited.
    pub amount_units: Option<i64>,
    /// The local date of an auto-recharge.
    pub local_date: Option<String>,
    pub batch_id: Option<i64>,
    pub created_at_micros: i64,
    /// `pending`, `delivered`, `failed` (attempts used up) or `no_webhook`.
    pub delivery_state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub delivered_at_micros: Option<i64>,
    /// The call of a `limit_exceeded` alert.
    pub call_id: Option<String>,
}

pub const ALERT_KIND_RECHARGE: &str = "auto_recharge";
/// A call that was denied at authorization but whose CDR came anyway: charged per minute, flagged.
pub const ALERT_KIND_LIMIT_EXCEEDED: &str = "limit_exceeded";

/// An alert claimed for delivery, with what delivering it needs from its account.
#[derive(Clone, Debug)]
pub struct AlertToDeliver {
    pub alert: StoredAlert,
    pub currency: String,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
}

/// What became of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlertDelivery {
    Delivered {
        at_micros: i64,
    },
    RetryAt {
        at_micros: i64,
        error: String,
    },
    Failed {
        error: String,
    },
    /// The account has no webhook: nothing to send.
    NoWebhook,
}

impl AlertDelivery {
    /// (delivery_state, next attempt, last error, delivered at) to store.
    pub fn stored_fields(&self) -> (&'static str, Option<i64>, Option<&str>, Option<i64>) {
        match self {
            AlertDelivery::Delivered { at_micros } => ("delivered", None, None, Some(*at_micros)),
            AlertDelivery::RetryAt { at_micros, error } => {
                ("pending", Some(*at_micros), Some(error.as_str()), None)
            }
            AlertDelivery::Failed { error } => ("failed", None, Some(error.as_str()), None),
            AlertDelivery::NoWebhook => ("no_webhook", None, None, None),
        }
    }
}

/// A rated call as stored, as rerating reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCall {
    pub source: String,
    pub cdr_id: String,
    pub account: String,
    pub direction: String,
    pub caller: String,
    pub callee: String,
    pub start_time_micros: i64,
    pub answer_time_micros: Option<i64>,
    pub end_time_micros: Option<i64>,
    pub billsec: i64,
    pub disposition: String,
    pub deck: String,
    pub rate: Option<String>,
    pub billable_seconds: i64,
    pub cost_units: i64,
    pub currency: String,
    pub revision: i64,
    /// `per_minute`, `trunk` (on a trunk, not charged), `limit_exceeded`, or `held` (waiting for
    /// the trunk sweep).
    pub billing_class: String,
    pub destination: Option<String>,
}

/// How usage totals are grouped by the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageGrouping {
    /// By quarter hour of start time (UTC): the portal folds these into local days and months
    /// in any zone, whole-hour, half-hour or quarter-hour offset alike.
    QuarterHour,
    Destination,
    Account,
}

/// Which calls a usage total covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageQuery {
    pub accounts: Vec<String>,
    /// `Some(id)` when `accounts` is `id` and every account below it: by quarter hour, the
    /// store may then answer whole quarter hours from the usage rollup of `id`.
    pub subtree_of: Option<String>,
    pub from_micros: i64,
    pub to_micros: i64,
    pub grouping: UsageGrouping,
}

/// One group's totals: `key` is the quarter hour's start (micros, as text), the destination or
/// the account. `cost_units` is what was charged (calls on trunks and held calls count 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRow {
    pub key: String,
    pub currency: String,
    pub calls: i64,
    pub billable_seconds: i64,
    pub cost_units: i64,
}

/// Microseconds in a quarter hour, the finest grouping of usage by time.
pub const QUARTER_HOUR_MICROS: i64 = 900_000_000;

impl UsageQuery {
    /// The SQL expression of the group key (both stores: integer division of BIGINTs).
    pub fn key_sql(&self) -> String {
        match self.grouping {
            UsageGrouping::QuarterHour => format!(
                "CAST((start_time_micros - ((start_time_micros % {QUARTER_HOUR_MICROS}) + {QUARTER_HOUR_MICROS}) % {QUARTER_HOUR_MICROS}) AS TEXT)"
            ),
            UsageGrouping::Destination => "coalesce(destination, '')".to_string(),
            UsageGrouping::Account => "account".to_string(),
        }
    }
}

/// What an authorizer batch gets back: one answer per authorization and one per end, in order.
#[derive(Debug)]
pub struct CallAnswers {
    pub authorizations: Vec<Result<AuthorizationAnswer, CallRefusal>>,
    pub ends: Vec<Option<CallRecord>>,
}

/// A ledger entry as the portal lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    pub id: i64,
    pub kind: String,
    pub amount_units: i64,
    pub balance_after_units: i64,
    pub reference: Option<String>,
    pub created_at_micros: i64,
}

/// What an API token may see: everything, or one account and the accounts below it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenScope {
    Operator,
    Account(String),
}

/// A page of an account's calls, newest first: which calls and where the page starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallsQuery {
    pub accounts: Vec<String>,
    pub from_micros: i64,
    pub to_micros: i64,
    pub direction: Option<String>,
    /// The last call of the previous page: this page holds calls before it.
    pub before: Option<CallCursor>,
    pub limit: usize,
    /// Only calls of each account's open billing period (started at or after its last close).
    pub unbilled_only: bool,
}

/// The SQL condition of [`CallsQuery::unbilled_only`], the same in both stores.
pub const UNBILLED_SQL: &str = "start_time_micros >= coalesce((SELECT b.open_from_micros \
    FROM billing_periods b WHERE b.account = rated_calls.account), start_time_micros)";

/// Refuses a close before the open period's start (`open_from`, `None` when never closed).
pub fn check_period_close(
    open_from: Option<i64>,
    account: &str,
    at_micros: i64,
) -> Result<(), PeriodAlreadyClosed> {
    match open_from {
        Some(open_from) if open_from > at_micros => Err(PeriodAlreadyClosed {
            account: account.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Closing a billing period at a time before the open period's start.
#[derive(Debug, thiserror::Error)]
#[error("the open billing period of {account} starts later than the time given")]
pub struct PeriodAlreadyClosed {
    pub account: String,
}

/// A rated call's charge: its cost, or nothing on a trunk (same SQL in both stores).
pub const CHARGED_UNITS_SQL: &str =
    "CASE WHEN billing_class IN ('trunk', 'held') THEN 0 ELSE cost_units END";

/// The same rule as [`CHARGED_UNITS_SQL`], for a call already read.
pub fn charged_units(billing_class: &str, cost_units: i64) -> i64 {
    match billing_class {
        "trunk" | "held" => 0,
        _ => cost_units,
    }
}

/// A call posted without authorization on an account with limits, waiting for the trunk sweep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldCall {
    pub source: String,
    pub cdr_id: String,
    pub account: String,
    pub direction: String,
    pub caller: String,
    pub callee: String,
    /// Answer time, else start time.
    pub start_micros: i64,
    /// End time, else start plus billsec.
    pub end_micros: i64,
    pub billsec: i64,
    pub cost_units: i64,
}

/// The columns of a [`HeldCall`], in its field order, from `rated_calls`.
pub const HELD_CALL_COLUMNS: &str = "source, cdr_id, account, direction, caller, callee, \
    coalesce(answer_time_micros, start_time_micros) AS call_start_micros, \
    coalesce(end_time_micros, coalesce(answer_time_micros, start_time_micros) + billsec * 1000000), \
    billsec, cost_units";

/// The trunk sweep's carried state and its version (moved on by each sweep applied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepState {
    pub version: i64,
    pub sweep: TrunkSweep,
}

impl SweepState {
    pub fn from_stored(version: i64, state_json: &str) -> anyhow::Result<SweepState> {
        Ok(SweepState {
            version,
            sweep: serde_json::from_str(state_json)
                .context("the stored trunk sweep state is not readable")?,
        })
    }
}

/// The stored-call columns in the order `StoredCall` lists them.
pub const STORED_CALL_COLUMNS: &str = "source, cdr_id, account, direction, caller, callee, \
    start_time_micros, answer_time_micros, end_time_micros, billsec, disposition, deck, \
    CAST(rate AS TEXT), billable_seconds, cost_units, currency, revision, billing_class, destination";

/// [`LedgerStore::calls_oldest_first`] in both stores: `$1` account, `$2`/`$3` the range, `$4` to
/// `$6` the cursor (its start time also bounds the index range), `$7` the limit.
pub fn calls_oldest_first_sql() -> String {
    format!(
        "SELECT {STORED_CALL_COLUMNS} FROM rated_calls
         WHERE account = $1 AND start_time_micros >= $2 AND start_time_micros < $3
           AND start_time_micros >= $4 AND (start_time_micros, source, cdr_id) > ($4, $5, $6)
         ORDER BY start_time_micros, source, cdr_id LIMIT $7"
    )
}

/// The cursor before an account's first call.
pub fn oldest_first_start(after: Option<&CallCursor>) -> CallCursor {
    after.cloned().unwrap_or(CallCursor {
        start_time_micros: i64::MIN,
        source: String::new(),
        cdr_id: String::new(),
    })
}

/// Where a page of calls ends: the next page starts after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallCursor {
    pub start_time_micros: i64,
    pub source: String,
    pub cdr_id: String,
}

impl CallCursor {
    /// Where a page starts: after `after`, or before every call that starts at `from_micros`
    /// (sources and ids are never empty).
    pub fn start_of(after: Option<&CallCursor>, from_micros: i64) -> CallCursor {
        after.cloned().unwrap_or(CallCursor {
            start_time_micros: from_micros,
            source: String::new(),
            cdr_id: String::new(),
        })
    }
}

/// Where a newest-first page starts: before the query's cursor, or before every call that starts
/// at `to` (no call at `to` is in range, and sources and ids are never empty).
pub fn newest_first_cursor(query: &CallsQuery) -> CallCursor {
    query.before.clone().unwrap_or(CallCursor {
        start_time_micros: query.to_micros,
        source: String::new(),
        cdr_id: String::new(),
    })
}

impl StoredCall {
    pub fn cursor(&self) -> CallCursor {
        CallCursor {
            start_time_micros: self.start_time_micros,
            source: self.source.clone(),
            cdr_id: self.cdr_id.clone(),
        }
    }
}

/// A rated call priced again at a different cost: applied only if the call is still at
/// `expected_revision` (so two rerates never both move its money).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRevision {
    pub source: String,
    pub cdr_id: String,
    pub account: String,
    pub expected_revision: i64,
    pub old_deck: String,
    pub new_deck: String,
    pub old_rate: Option<String>,
    pub new_rate: Option<rust_decimal::Decimal>,
    pub new_rate_prefix: Option<String>,
    pub new_destination: Option<String>,
    pub old_billable_seconds: i64,
    pub new_billable_seconds: i64,
    pub old_cost_units: i64,
    pub new_cost_units: i64,
}

/// A past revision of a call, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRevision {
    pub revision: i64,
    pub rerate_run: i64,
    pub old_deck: String,
    pub new_deck: String,
    pub old_cost_units: i64,
    pub new_cost_units: i64,
}

/// What applying revisions did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevisionsApplied {
    /// Revisions applied; the others had been revised meanwhile and were left alone.
    pub changed: u64,
    /// Money given back (old cost above the new) and charged more, in ledger units, both ≥ 0.
    pub refunded_units: i64,
    pub charged_more_units: i64,
}

impl RevisionsApplied {
    /// Counts one call's move of old − new cost.
    pub fn add_move(&mut self, old_minus_new_units: i64) {
        if old_minus_new_units > 0 {
            self.refunded_units += old_minus_new_units;
        } else {
            self.charged_more_units -= old_minus_new_units;
        }
    }

    pub fn add(&mut self, other: &RevisionsApplied) {
        self.changed += other.changed;
        self.refunded_units += other.refunded_units;
        self.charged_more_units += other.charged_more_units;
    }

    /// What the accounts got back overall (negative: they paid more).
    pub fn net_units(&self) -> i64 {
        self.refunded_units - self.charged_more_units
    }
}

/// Totals over the whole store that must agree; checked by tests and `tollgate check`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerTotals {
    pub rated_calls: u64,
    /// What the rated calls charged: their costs, but nothing for calls on a trunk.
    pub rated_cost_units: i64,
    pub conflicts: u64,
    pub rejects: u64,
    /// Accounts whose balance differs from the sum of their ledger entries.
    pub balance_mismatches: Vec<String>,
    /// Accounts whose running hold totals differ from the holds of their calls up.
    pub hold_mismatches: Vec<String>,
}

/// The accounts whose `account_holds` totals disagree with their `call_holds` (same SQL in both
/// stores).
pub const HOLD_MISMATCHES_SQL: &str =
    "SELECT DISTINCT coalesce(h.account, x.account) FROM account_holds h
    FULL OUTER JOIN (SELECT account, trunk_kind, count(*) AS calls,
                            sum(reserved_units) AS reserved
                     FROM call_holds GROUP BY account, trunk_kind) x
      ON x.account = h.account AND x.trunk_kind = h.trunk_kind
    WHERE coalesce(h.calls, 0) <> coalesce(x.calls, 0)
       OR coalesce(h.reserved_units, 0) <> coalesce(x.reserved, 0)
    ORDER BY 1";

pub trait LedgerStore: Send {
    /// "embedded" or "postgresql".
    fn backend_name(&self) -> &'static str;

    /// Answers when the store can take work (for `/readyz`).
    fn ping(&mut self) -> anyhow::Result<()>;

    /// Shrinks this connection's own page cache to `kibibytes`, for a connection that streams
    /// through many calls once (an export) and would otherwise fill a cache sized for posting.
    /// A no-op where the server owns the cache (PostgreSQL).
    fn limit_page_cache(&mut self, _kibibytes: i64) -> anyhow::Result<()> {
        Ok(())
    }

    /// Inserts or updates accounts (balances untouched). The caller has checked the merged tree.
    fn upsert_accounts(&mut self, accounts: &[Account]) -> anyhow::Result<()>;

    fn accounts(&mut self) -> anyhow::Result<Vec<Account>>;

    fn account(&mut self, id: &str) -> anyhow::Result<Option<StoredAccount>>;

    /// Bumped by every accounts change, so a running daemon knows to reload them.
    fn accounts_generation(&mut self) -> anyhow::Result<i64>;

    fn record_decks(&mut self, decks: &[DeckRecord]) -> anyhow::Result<()>;

    /// Posts a batch in one transaction: the new calls, conflicts, rejects, one usage entry per
    /// charged account (and ancestor) with the balance after it, and the origin's progress. All
    /// of it is visible, or none of it. A request origin already complete is not posted again:
    /// its stored outcome comes back with `replayed` set.
    fn post_batch(&mut self, batch: &PostingBatch) -> anyhow::Result<PostingOutcome>;

    fn ingest_progress(&mut self, origin_key: &str) -> anyhow::Result<Option<IngestProgress>>;

    /// The rejects of one origin, in line order.
    fn rejects_of(&mut self, origin_key: &str) -> anyhow::Result<Vec<StoredReject>>;

    /// `account` and its ancestors, nearest first; empty when there is no such account.
    fn account_ancestry(&mut self, account: &str) -> anyhow::Result<Vec<String>>;

    /// `account` and every account below it as (id, parent), level by level; empty when there
    /// is no such account.
    fn account_subtree(&mut self, account: &str) -> anyhow::Result<Vec<(String, Option<String>)>>;

    /// An account's rejects, newest first (by batch, then line, descending), before the cursor
    /// `(batch_id, line)`, at most `limit`.
    fn rejects_of_account(
        &mut self,
        account: &str,
        before: Option<(i64, i64)>,
        limit: usize,
    ) -> anyhow::Result<Vec<AccountReject>>;

    fn ledger_totals(&mut self) -> anyhow::Result<LedgerTotals>;

    /// Sum of the usage entries of one account, in ledger units (a debit is negative).
    fn usage_units(&mut self, account: &str) -> anyhow::Result<i64>;

    /// Credits `amount_units` (> 0) to one account: a `credit` ledger entry. The same key again
    /// with the same account and amount credits nothing and returns the first entry; the same key
    /// for anything else is refused.
    fn credit(
        &mut self,
        account: &str,
        amount_units: i64,
        reason: &str,
        idempotency_key: &str,
    ) -> anyhow::Result<CreditOutcome>;

    /// The threshold alerts of one account, oldest first.
    fn alerts_of(&mut self, account: &str) -> anyhow::Result<Vec<StoredAlert>>;

    /// The daily auto-recharge of one account for one local date, at most once whatever runs it:
    /// the first run of the date records itself and, when the balance is below the account's
    /// recharge threshold, credits the recharge amount (ledger kind `auto_recharge`).
    fn run_auto_recharge(
        &mut self,
        account: &str,
        local_date: chrono::NaiveDate,
    ) -> anyhow::Result<RechargeRun>;

    /// Claims up to `limit` pending alerts due at `now_micros`, oldest first: each claim counts an
    /// attempt and pushes the next one `lease_micros` out, so another instance does not send the
    /// same alert meanwhile, and one that died mid-delivery is sent again after the lease.
    fn claim_alerts_to_deliver(
        &mut self,
        now_micros: i64,
        lease_micros: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<AlertToDeliver>>;

    /// Records how attempt number `attempt` went. An alert already delivered stays delivered,
    /// and the outcome of an attempt whose claim was taken over (its lease ran out and another
    /// deliverer claimed the alert again) is not recorded over the newer one.
    fn record_alert_delivery(
        &mut self,
        alert_id: i64,
        attempt: i64,
        delivery: &AlertDelivery,
    ) -> anyhow::Result<()>;

    /// Starts a rerate run and returns its id (revisions name it).
    fn begin_rerate_run(
        &mut self,
        scope: &str,
        from_micros: i64,
        to_micros: i64,
        decks: &str,
    ) -> anyhow::Result<i64>;

    /// One page of an account's rated calls that started in `[from_micros, to_micros)`, in
    /// (start time, source, cdr_id) order, after `after`.
    fn rated_calls_of(
        &mut self,
        account: &str,
        from_micros: i64,
        to_micros: i64,
        after: Option<&CallCursor>,
        limit: usize,
    ) -> anyhow::Result<Vec<StoredCall>>;

    /// Applies revisions in one transaction: each call still at its expected revision gets its
    /// new price and a history row, and its account and every account above it a `rerate` entry
    /// reversing the old charge and one making the new (thresholds checked on the way).
    fn apply_call_revisions(
        &mut self,
        rerate_run: i64,
        revisions: &[CallRevision],
    ) -> anyhow::Result<RevisionsApplied>;

    fn finish_rerate_run(
        &mut self,
        rerate_run: i64,
        calls_examined: u64,
        applied: &RevisionsApplied,
    ) -> anyhow::Result<()>;

    /// Answers an authorizer batch in one transaction (group commit: one durable write for the
    /// whole batch): first its authorizations, then its ends.
    ///
    /// Authorizations, in order: for each, the chain is read (and, on PostgreSQL, locked) with
    /// what its calls up hold, including those authorized earlier in the same batch; `decide`
    /// answers; a call let through records its holds until `expires_at_micros` unless kept alive.
    /// The same call id again with the same call gets the first answer back (`replayed`); with
    /// another call it is refused, as is an unknown account, without failing the rest. A denial
    /// is kept (should the call happen anyway, its CDR is flagged `limit_exceeded`), but the same
    /// call id asked again is decided afresh, since money or a trunk may have come free.
    ///
    /// Ends: their trunks are free at once; the money they reserved stays held until their CDR
    /// is posted (which settles it in the same transaction as the charge) or, failing that, until
    /// `settle_by_micros`. Ending one again changes nothing; each answer is `None` for a call
    /// never authorized.
    #[allow(clippy::too_many_arguments)]
    fn answer_calls(
        &mut self,
        requests: &[AuthorizationRequest],
        expires_at_micros: i64,
        decide: &mut dyn FnMut(&AuthorizationRequest, &[ChainLevel]) -> Authorization,
        ended_call_ids: &[String],
        now_micros: i64,
        settle_by_micros: i64,
    ) -> anyhow::Result<CallAnswers>;

    /// Authorizations alone (see `answer_calls`).
    fn authorize_calls(
        &mut self,
        requests: &[AuthorizationRequest],
        expires_at_micros: i64,
        decide: &mut dyn FnMut(&AuthorizationRequest, &[ChainLevel]) -> Authorization,
    ) -> anyhow::Result<Vec<Result<AuthorizationAnswer, CallRefusal>>> {
        Ok(self
            .answer_calls(requests, expires_at_micros, decide, &[], 0, 0)?
            .authorizations)
    }

    /// One call's authorization (see `authorize_calls`).
    fn authorize_call(
        &mut self,
        request: &AuthorizationRequest,
        expires_at_micros: i64,
        decide: &mut dyn FnMut(&[ChainLevel]) -> Authorization,
    ) -> anyhow::Result<AuthorizationAnswer> {
        let mut decide_one = |_: &AuthorizationRequest, chain: &[ChainLevel]| decide(chain);
        self.authorize_calls(
            std::slice::from_ref(request),
            expires_at_micros,
            &mut decide_one,
        )?
        .pop()
        .expect("one answer per request")
        .map_err(anyhow::Error::from)
    }

    /// Pushes an active call's expiry out. `None` for a call never authorized.
    fn keepalive_call(
        &mut self,
        call_id: &str,
        expires_at_micros: i64,
    ) -> anyhow::Result<Option<CallRecord>>;

    /// Ends alone (see `answer_calls`).
    fn end_calls(
        &mut self,
        call_ids: &[String],
        now_micros: i64,
        settle_by_micros: i64,
    ) -> anyhow::Result<Vec<Option<CallRecord>>> {
        let mut no_decision = |_: &AuthorizationRequest, _: &[ChainLevel]| -> Authorization {
            unreachable!("no authorization is asked for")
        };
        Ok(self
            .answer_calls(
                &[],
                0,
                &mut no_decision,
                call_ids,
                now_micros,
                settle_by_micros,
            )?
            .ends)
    }

    fn end_call(
        &mut self,
        call_id: &str,
        now_micros: i64,
        settle_by_micros: i64,
    ) -> anyhow::Result<Option<CallRecord>> {
        Ok(self
            .end_calls(&[call_id.to_string()], now_micros, settle_by_micros)?
            .pop()
            .expect("one answer per call"))
    }

    /// Releases what calls past their time still hold: an active call without keepalive
    /// (`expired`), an ended call whose CDR never came (`unsettled`); returns how many. Denials
    /// older than `limits::DENIAL_KEPT_SECONDS` are closed too (not counted).
    fn expire_calls(&mut self, now_micros: i64) -> anyhow::Result<u64>;

    fn call_record(&mut self, call_id: &str) -> anyhow::Result<Option<CallRecord>>;

    /// Stores a new API token by its SHA-256 (hex); `account` `None` is an operator token.
    fn create_token(
        &mut self,
        token_sha256: &str,
        account: Option<&str>,
        label: &str,
    ) -> anyhow::Result<i64>;

    /// Revokes a token by id; false when there is no such token.
    fn revoke_token(&mut self, id: i64) -> anyhow::Result<bool>;

    /// What a token (by its SHA-256) may see; `None` when unknown or revoked.
    fn token_scope(&mut self, token_sha256: &str) -> anyhow::Result<Option<TokenScope>>;

    /// (trunk kind or `none`, calls up, money reserved) held on an account right now.
    fn account_holds(&mut self, account: &str) -> anyhow::Result<Vec<(String, i64, i64)>>;

    /// Rated calls of some accounts that started in `[from, to)`, newest first (start time, then
    /// source and cdr_id, descending), after the query's cursor.
    fn calls_newest_first(&mut self, query: &CallsQuery) -> anyhow::Result<Vec<StoredCall>>;

    /// One account's rated calls that started in `[from, to)`, oldest first (start time, then
    /// source and cdr_id), after `after`, at most `limit`: each page is one index range, however
    /// far into the account's calls it is.
    fn calls_oldest_first(
        &mut self,
        account: &str,
        from_micros: i64,
        to_micros: i64,
        after: Option<&CallCursor>,
        limit: usize,
    ) -> anyhow::Result<Vec<StoredCall>>;

    /// Closes an account's open billing period at `at_micros`: calls that started before it are
    /// billed (no longer listed as unbilled). Closing at the same time again changes nothing;
    /// at an earlier time than the last close is [`PeriodAlreadyClosed`]. Returns the open
    /// period's new start.
    fn close_billing_period(&mut self, account: &str, at_micros: i64) -> anyhow::Result<i64>;

    /// Usage totals of some accounts' calls that started in `[from, to)`, per group and currency,
    /// in no particular order.
    fn usage_totals(&mut self, query: &UsageQuery) -> anyhow::Result<Vec<UsageRow>>;

    /// An account's ledger entries made in `[from, to)`, oldest first, of one kind or all, after
    /// entry `after_id`, at most `limit`.
    fn ledger_entries_of(
        &mut self,
        account: &str,
        from_micros: i64,
        to_micros: i64,
        kind: Option<&str>,
        after_id: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<StoredEntry>>;

    /// The trunk sweep's state, and up to `limit` calls held for it that started by
    /// `cutoff_micros`, in start order (then source, cdr_id).
    fn held_calls(
        &mut self,
        cutoff_micros: i64,
        limit: usize,
    ) -> anyhow::Result<(SweepState, Vec<HeldCall>)>;

    /// In one transaction, if the sweep is still at `expected_version`: gives each held call its
    /// class, charges the charged ones to their account and every ancestor (thresholds checked,
    /// `limit_exceeded` alerted) and saves the sweep's new state. Returns the units charged, or
    /// `None` when another sweep moved first (nothing is then changed).
    fn apply_sweep(
        &mut self,
        expected_version: i64,
        sweep: &TrunkSweep,
        classes: &[(HeldCall, BillingClass)],
    ) -> anyhow::Result<Option<i64>>;

    /// The revisions of one call, oldest first.
    fn call_revisions_of(
        &mut self,
        source: &str,
        cdr_id: &str,
    ) -> anyhow::Result<Vec<StoredRevision>>;
}

/// An authorization's answer, and whether it was given before for the same call id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizationAnswer {
    pub authorization: Authorization,
    pub replayed: bool,
}

/// A call authorized, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    pub call_id: String,
    pub account: String,
    /// `active`, `ended` (trunk free, money held until its CDR), `settled` (its CDR charged),
    /// `expired` (no keepalive in time), `unsettled` (no CDR in time), `denied`, `limit_exceeded`
    /// (denied, and its CDR came) or `closed` (denied, and no CDR came within a day).
    pub state: String,
    pub authorization: Authorization,
    pub expires_at_micros: i64,
}

/// Why a call operation is refused, for the HTTP side to answer with the right status.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallRefusal {
    #[error("no account {0:?} in the store")]
    UnknownAccount(String),
    #[error("call id {0:?} was authorized before for another call")]
    CallIdReused(String),
    #[error("call {0:?} is not up: it ended, expired or was denied")]
    CallEnded(String),
}

/// A stored call from its columns (call_id, account, state, answer_json, expires_at).
pub fn call_record_from_columns(
    call_id: String,
    account: String,
    state: String,
    answer_json: &str,
    expires_at_micros: i64,
) -> anyhow::Result<CallRecord> {
    Ok(CallRecord {
        authorization: serde_json::from_str(answer_json)
            .with_context(|| format!("call {call_id}: stored answer"))?,
        call_id,
        account,
        state,
        expires_at_micros,
    })
}

/// Which of a call's holds to release: all, or only its trunks (an ended call keeps its money
/// reserved until its CDR is charged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldsReleased {
    All,
    TrunksOnly,
}

/// What an earlier authorization of the same call id answers now: the stored answer again
/// (`replayed`), a refusal when it was for another call, or `None` when it was a denial, which
/// is decided again.
pub fn earlier_answer(
    call_id: &str,
    identity: &str,
    stored_identity: &str,
    stored_answer: &str,
    stored_state: &str,
) -> anyhow::Result<Option<Result<AuthorizationAnswer, CallRefusal>>> {
    if stored_identity != identity {
        return Ok(Some(Err(CallRefusal::CallIdReused(call_id.to_string()))));
    }
    if stored_state == "denied" {
        return Ok(None);
    }
    Ok(Some(Ok(AuthorizationAnswer {
        authorization: serde_json::from_str(stored_answer).context("stored answer")?,
        replayed: true,
    })))
}

/// Calls the expiry releases.
pub const OPEN_CALL_STATES: &str = "('active', 'ended')";
/// Calls a posted CDR settles: the open ones, and the denied (a CDR for them is over a limit).
pub const SETTLEABLE_CALL_STATES: &str = "('active', 'ended', 'denied')";
/// A settled call's new state: `limit_exceeded` when it had been denied, else `settled`.
pub const SETTLED_STATE_SQL: &str =
    "CASE WHEN state = 'denied' THEN 'limit_exceeded' ELSE 'settled' END";

/// What a keepalive answers once the expiry is pushed: the call, or a refusal when it had ended.
pub fn kept_alive(record: Option<CallRecord>) -> anyhow::Result<Option<CallRecord>> {
    match record {
        Some(record) if record.state != "active" => {
            Err(CallRefusal::CallEnded(record.call_id).into())
        }
        found => Ok(found),
    }
}

pub const CALL_RECORD_COLUMNS: &str = "call_id, account, state, answer_json, expires_at_micros";

/// What one auto-recharge run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RechargeRun {
    /// The date had run before (another instance, an earlier start): nothing was done now.
    pub already_ran: bool,
    pub credited_units: i64,
    pub balance_after_units: i64,
}

/// The idempotency key of an account's auto-recharge entry for a local date.
pub fn recharge_key(account: &str, local_date: chrono::NaiveDate) -> String {
    format!("auto_recharge:{account}:{local_date}")
}

/// The ledger entry already holding a credit's idempotency key.
pub struct EntryWithKey {
    pub entry_id: i64,
    pub account: String,
    pub kind: String,
    pub amount_units: i64,
    pub balance_after_units: i64,
}

/// The rules of a credit before anything is written, the same in both stores: the amount must be
/// positive; a key already used for this very credit gives back that credit (`Some`); a key used
/// for anything else is refused; a new key goes ahead (`None`).
pub fn credit_already_made(
    earlier: Option<EntryWithKey>,
    account: &str,
    amount_units: i64,
    idempotency_key: &str,
) -> anyhow::Result<Option<CreditOutcome>> {
    if amount_units <= 0 {
        anyhow::bail!("a credit must be more than 0");
    }
    match earlier {
        None => Ok(None),
        Some(entry)
            if entry.account == account
                && entry.kind == "credit"
                && entry.amount_units == amount_units =>
        {
            Ok(Some(CreditOutcome {
                entry_id: entry.entry_id,
                balance_after_units: entry.balance_after_units,
                replayed: true,
            }))
        }
        Some(_) => Err(IdempotencyKeyReused {
            key: idempotency_key.to_string(),
        }
        .into()),
    }
}

/// A credit's idempotency key that was used before for a different credit.
#[derive(Debug, thiserror::Error)]
#[error("idempotency key {key:?} was already used for a different credit: nothing was credited")]
pub struct IdempotencyKeyReused {
    pub key: String,
}

/// Where the store lives: the embedded file, or a PostgreSQL URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    Embedded(std::path::PathBuf),
    Postgres(String),
}

impl StoreLocation {
    /// "embedded" or "postgresql", as `LedgerStore::backend_name` says.
    pub fn backend_name(&self) -> &'static str {
        match self {
            StoreLocation::Embedded(_) => "embedded",
            StoreLocation::Postgres(_) => "postgresql",
        }
    }

    /// A `postgres://` or `postgresql://` URL is PostgreSQL; anything else is rejected, so a typo
    /// never silently creates an embedded store.
    pub fn from_settings(
        database_url: Option<&str>,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<StoreLocation> {
        match database_url.map(str::trim).filter(|url| !url.is_empty()) {
            None => Ok(StoreLocation::Embedded(data_dir.join("tollgate.sqlite"))),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(StoreLocation::Postgres(url.to_string()))
            }
            Some(url) => anyhow::bail!(
                "database URL {url:?} is not a postgres:// URL (leave it out for the embedded store)"
            ),
        }
    }
}

/// Opens (creating and migrating as needed) the store at `location`.
pub fn open_store(location: &StoreLocation) -> anyhow::Result<Box<dyn LedgerStore>> {
    match location {
        StoreLocation::Embedded(path) => {
            if let Some(folder) = path.parent() {
                std::fs::create_dir_all(folder).with_context(|| {
                    format!("cannot create the data folder {}", folder.display())
                })?;
            }
            Ok(Box::new(super::sqlite_store::SqliteStore::open(path)?))
        }
        StoreLocation::Postgres(url) => Ok(Box::new(
            super::postgres_store::PostgresStore::connect(url)?,
        )),
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// An account's fields as both stores keep them: money in ledger units, lists as JSON text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRow {
    pub id: String,
    pub name: Option<String>,
    pub parent: Option<String>,
    pub currency: String,
    pub time_zone: String,
    pub status: String,
    pub credit_limit_units: Option<i64>,
    pub outbound_deck: Option<String>,
    pub inbound_deck: Option<String>,
    pub allow_per_minute: bool,
    pub trunks_inbound: i64,
    pub trunks_outbound: i64,
    pub trunks_two_way: i64,
    pub thresholds_json: String,
    pub recharge_threshold_units: Option<i64>,
    pub recharge_amount_units: Option<i64>,
    pub recharge_local_time: Option<String>,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
}

impl AccountRow {
    pub fn from_account(account: &Account) -> AccountRow {
        let units = |amount: rust_decimal::Decimal| {
            crate::money::ledger_units(amount).expect("account amounts are checked at parse")
        };
        let thresholds: Vec<String> = account.thresholds.iter().map(|t| t.to_string()).collect();
        AccountRow {
            id: account.id.clone(),
            name: account.name.clone(),
            parent: account.parent.clone(),
            currency: account.currency.clone(),
            time_zone: account.time_zone.clone(),
            status: account.status.as_str().to_string(),
            credit_limit_units: account.credit_limit.map(units),
            outbound_deck: account.outbound_deck.clone(),
            inbound_deck: account.inbound_deck.clone(),
            allow_per_minute: account.allow_per_minute,
            trunks_inbound: i64::from(account.trunks_inbound),
            trunks_outbound: i64::from(account.trunks_outbound),
            trunks_two_way: i64::from(account.trunks_two_way),
            thresholds_json: serde_json::to_string(&thresholds).expect("strings serialise"),
            recharge_threshold_units: account.auto_recharge.as_ref().map(|r| units(r.threshold)),
            recharge_amount_units: account.auto_recharge.as_ref().map(|r| units(r.amount)),
            recharge_local_time: account
                .auto_recharge
                .as_ref()
                .map(|r| r.local_time.format("%H:%M").to_string()),
            webhook_url: account.webhook_url.clone(),
            webhook_secret: account.webhook_secret.clone(),
        }
    }

    pub fn into_account(self) -> anyhow::Result<Account> {
        use crate::credit::accounts::{AccountStatus, AutoRecharge};
        use crate::money::ledger_decimal;
        let thresholds: Vec<String> = serde_json::from_str(&self.thresholds_json)
            .with_context(|| format!("account {}: stored thresholds are not a list", self.id))?;
        let auto_recharge = match (
            self.recharge_threshold_units,
            self.recharge_amount_units,
            self.recharge_local_time,
        ) {
            (Some(threshold), Some(amount), Some(time)) => Some(AutoRecharge {
                threshold: ledger_decimal(threshold),
                amount: ledger_decimal(amount),
                local_time: chrono::NaiveTime::parse_from_str(&time, "%H:%M")
                    .with_context(|| format!("account {}: stored recharge time", self.id))?,
            }),
            _ => None,
        };
        Ok(Account {
            status: AccountStatus::parse(&self.status)
                .with_context(|| format!("account {}: stored status {}", self.id, self.status))?,
            thresholds: thresholds
                .iter()
                .map(|text| text.parse())
                .collect::<Result<_, _>>()
                .with_context(|| format!("account {}: stored thresholds", self.id))?,
            id: self.id,
            name: self.name,
            parent: self.parent,
            currency: self.currency,
            time_zone: self.time_zone,
            credit_limit: self.credit_limit_units.map(ledger_decimal),
            outbound_deck: self.outbound_deck,
            inbound_deck: self.inbound_deck,
            allow_per_minute: self.allow_per_minute,
            trunks_inbound: self.trunks_inbound as u32,
            trunks_outbound: self.trunks_outbound as u32,
            trunks_two_way: self.trunks_two_way as u32,
            auto_recharge,
            webhook_url: self.webhook_url,
            webhook_secret: self.webhook_secret,
        })
    }
}

/// The account columns in the order both stores select and insert them.
pub const ACCOUNT_ROW_COLUMNS: &str = "id, name, parent, currency, time_zone, status, \
    credit_limit_units, outbound_deck, inbound_deck, allow_per_minute, trunks_inbound, \
    trunks_outbound, trunks_two_way, thresholds_json, recharge_threshold_units, \
    recharge_amount_units, recharge_local_time, webhook_url, webhook_secret";

pub const ACCOUNT_COLUMN_COUNT: usize = 19;

/// What an account import changes on an account already stored: every profile column, never the
/// balance. Both stores' `INSERT … ON CONFLICT (id) DO UPDATE SET` use it.
pub const ACCOUNT_UPSERT_CHANGES: &str = "name = excluded.name, parent = excluded.parent, \
    currency = excluded.currency, time_zone = excluded.time_zone, status = excluded.status, \
    credit_limit_units = excluded.credit_limit_units, outbound_deck = excluded.outbound_deck, \
    inbound_deck = excluded.inbound_deck, allow_per_minute = excluded.allow_per_minute, \
    trunks_inbound = excluded.trunks_inbound, trunks_outbound = excluded.trunks_outbound, \
    trunks_two_way = excluded.trunks_two_way, thresholds_json = excluded.thresholds_json, \
    recharge_threshold_units = excluded.recharge_threshold_units, \
    recharge_amount_units = excluded.recharge_amount_units, \
    recharge_local_time = excluded.recharge_local_time, webhook_url = excluded.webhook_url, \
    webhook_secret = excluded.webhook_secret, updated_at_micros = excluded.updated_at_micros";

/// The alert columns in the order both stores select them.
pub const ALERT_COLUMNS: &str = "id, kind, account, threshold_units, balance_units, \
    amount_units, local_date, batch_id, created_at_micros, delivery_state, attempts, last_error, \
    delivered_at_micros, call_id";
pub const ALERT_COLUMN_COUNT: usize = 14;

/// `columns` (a comma-separated list) each qualified by `table`: `a.id, a.kind, …`.
pub fn columns_of(table: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|column| format!("{table}.{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rated-call columns in the order both stores insert them.
pub const RATED_CALL_COLUMNS: &str = "source, cdr_id, account, direction, caller, callee, \
    start_time_micros, answer_time_micros, end_time_micros, billsec, disposition, deck, \
    rate_prefix, destination, rate, billable_seconds, cost_units, currency, content_digest, \
    batch_id";

/// Accounts ordered so that each comes after its parent (when the parent is among them), which
/// the parent foreign key needs on insert.
pub fn parents_first(accounts: &[Account]) -> Vec<&Account> {
    let ids: std::collections::HashSet<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
    let mut placed: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut ordered = Vec::with_capacity(accounts.len());
    while ordered.len() < accounts.len() {
        let before = ordered.len();
        for account in accounts {
            let ready = account
                .parent
                .as_deref()
                .is_none_or(|parent| !ids.contains(parent) || placed.contains(parent));
            if ready && !placed.contains(account.id.as_str()) {
                placed.insert(account.id.as_str());
                ordered.push(account);
            }
        }
        if ordered.len() == before {
            // A cycle among the given accounts: leave the order as it is; the store's cycle
            // check refuses the import before it commits.
            ordered.extend(
                accounts
                    .iter()
                    .filter(|account| !placed.contains(account.id.as_str())),
            );
            break;
        }
    }
    ordered
}
