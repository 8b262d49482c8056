//! The embedded store: one SQLite file (bundled library), WAL journal, synchronous=FULL, so a
//! committed batch survives a power cut. One writer at a time; a second process waits its turn.

use super::ledger_store::{
    ACCOUNT_ANCESTRY_SQL, ACCOUNT_COLUMN_COUNT, ACCOUNT_ROW_COLUMNS, ACCOUNT_SUBTREE_SQL,
    ACCOUNT_UPSERT_CHANGES, ALERT_COLUMN_COUNT, ALERT_COLUMNS, ALERT_KIND_LIMIT_EXCEEDED,
    ALERT_KIND_RECHARGE, AccountReject, AccountRow, AlertDelivery, AlertToDeliver,
    AuthorizationAnswer, CALL_RECORD_COLUMNS, CHARGED_UNITS_SQL, CallAnswers, CallCursor,
    CallRecord, CallRefusal, CallRevision, CallsQuery, CreditOutcome, DeckRecord, EntryWithKey,
    HELD_CALL_COLUMNS, HOLD_MISMATCHES_SQL, HeldCall, HoldsReleased, IngestProgress, LedgerStore,
    LedgerTotals, OPEN_CALL_STATES, QUARTER_HOUR_MICROS, RATED_CALL_COLUMNS,
    REJECTS_OF_ACCOUNT_SQL, RechargeRun, RevisionsApplied, SETTLEABLE_CALL_STATES,
    SETTLED_STATE_SQL, STORED_CALL_COLUMNS, StoredAccount, StoredAlert, StoredCall, StoredEntry,
    StoredReject, StoredRevision, SweepState, TokenScope, UNBILLED_SQL, UsageGrouping, UsageQuery,
    UsageRow, call_record_from_columns, calls_oldest_first_sql, check_period_close, columns_of,
    credit_already_made, earlier_answer, kept_alive, newest_first_cursor, now_micros,
    oldest_first_start, parents_first, recharge_key,
};
use super::migrations::{SQLITE_MIGRATIONS, latest_version};
use super::usage_rollup::{
    QUARTER_HOUR_SQL, ROLLUP_CALL_COLUMNS, ROLLUP_COLUMNS, RollupCall, RollupChange, RollupTree,
    moved_sums, posted_calls, rollup_moves, rollup_query_span,
};
use crate::credit::accounts::{Account, account_in_cycle};
use crate::credit::authorization::{
    Authorization, AuthorizationRequest, ChainLevel, Decision, chain_levels,
};
use crate::credit::posting::account_chain;
use crate::credit::posting::{
    AccountLinks, CallColumns, CallFate, PostingBatch, PostingOutcome, SettledCalls,
    SharedAccountLinks, call_as_json, decide_fates, new_calls, outcome_of, progress_after,
    replayed_outcome, sweep_charges, usage_by_account,
};
use crate::credit::rerate::{accounts_moved, applied_totals, plan_rerate_ledger};
use crate::credit::thresholds::thresholds_crossed;
use crate::credit::trunk_sweep::{BillingClass, HELD_FOR_SWEEP, TrunkSweep};
use crate::credit::trunks::trunk_kind_text;
use crate::limits::DENIAL_KEPT_SECONDS;
use crate::limits::{
    SQLITE_BUSY_QUICK_RETRIES, SQLITE_BUSY_QUICK_WAIT_MICROSECONDS,
    SQLITE_BUSY_TIMEOUT_MILLISECONDS, SQLITE_CACHE_KIBIBYTES, SQLITE_MMAP_BYTES,
    SQLITE_WAL_CHECKPOINT_PAGES,
};
use anyhow::{Context, bail};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Stores an authorization's answer: a new call id, or one denied before and decided again.
const UPSERT_AUTHORIZATION_SQL: &str = "INSERT INTO call_authorizations (call_id, account,
        identity, decision, state, answer_json, authorized_at_micros, expires_at_micros)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
    ON CONFLICT (call_id) DO UPDATE SET decision = excluded.decision, state = excluded.state,
        answer_json = excluded.answer_json, authorized_at_micros = excluded.authorized_at_micros,
        expires_at_micros = excluded.expires_at_micros";

/// SQLite's busy handler for every connection: called with the number of earlier calls for the
/// same lock, it waits before the next try and says whether to try again (see
/// `limits::SQLITE_BUSY_QUICK_RETRIES`). Quick retries first, then one a millisecond, for
/// about `SQLITE_BUSY_TIMEOUT_MILLISECONDS` in all.
fn wait_for_other_writer(earlier_calls: i32) -> bool {
    if earlier_calls < SQLITE_BUSY_QUICK_RETRIES {
        std::thread::sleep(std::time::Duration::from_micros(
            SQLITE_BUSY_QUICK_WAIT_MICROSECONDS,
        ));
        return true;
    }
    if earlier_calls - SQLITE_BUSY_QUICK_RETRIES >= SQLITE_BUSY_TIMEOUT_MILLISECONDS {
        return false;
    }
    std::thread::sleep(std::time::Duration::from_millis(1));
    true
}

pub struct SqliteStore {
    connection: Connection,
    /// Every account's parent, cached for the accounts generation it was read at.
    links: Option<(i64, SharedAccountLinks)>,
}

impl SqliteStore {
    pub fn open(path: &Path) -> anyhow::Result<SqliteStore> {
        let connection = Connection::open(path)
            .with_context(|| format!("cannot open the embedded store {}", path.display()))?;
        connection.busy_handler(Some(wait_for_other_writer))?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .with_context(|| format!("cannot use WAL on {}", path.display()))?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        // A large page cache keeps the rated-calls index in memory while batches insert into it,
        // and a larger WAL between checkpoints spends less time copying pages back.
        connection.pragma_update(None, "cache_size", -SQLITE_CACHE_KIBIBYTES)?;
        connection.pragma_update(None, "wal_autocheckpoint", SQLITE_WAL_CHECKPOINT_PAGES)?;
        connection.pragma_update(None, "temp_store", "MEMORY")?;
        connection.pragma_update(None, "mmap_size", SQLITE_MMAP_BYTES)?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        let mut store = SqliteStore {
            connection,
            links: None,
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> anyhow::Result<()> {
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        transaction.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY, applied_at_micros INTEGER NOT NULL)",
        )?;
        let current: i64 = transaction.query_row(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            [],
            |row| row.get(0),
        )?;
        let latest = latest_version(SQLITE_MIGRATIONS);
        if current > latest {
            bail!(
                "the embedded store has schema version {current}, newer than this tollgate's {latest}: upgrade tollgate"
            );
        }
        for (version, sql) in SQLITE_MIGRATIONS {
            if *version > current {
                transaction
                    .execute_batch(sql)
                    .with_context(|| format!("schema migration {version} failed"))?;
                transaction.execute(
                    "INSERT INTO schema_migrations (version, applied_at_micros) VALUES (?1, ?2)",
                    params![version, now_micros()],
                )?;
            }
        }
        transaction.commit()?;
        Ok(())
    }

    fn account_links(
        transaction: &Transaction<'_>,
        cache: &mut Option<(i64, SharedAccountLinks)>,
    ) -> anyhow::Result<SharedAccountLinks> {
        let generation: i64 =
            transaction.query_row("SELECT accounts_generation FROM store_state", [], |row| {
                row.get(0)
            })?;
        if let Some((cached, links)) = cache
            && *cached == generation
        {
            return Ok(std::sync::Arc::clone(links));
        }
        let mut links = AccountLinks::default();
        let mut statement =
            transaction.prepare(&format!("SELECT {ACCOUNT_ROW_COLUMNS} FROM accounts"))?;
        for row in statement.query_map([], account_row)? {
            links.add(&row?.into_account()?);
        }
        let links = std::sync::Arc::new(links);
        *cache = Some((generation, std::sync::Arc::clone(&links)));
        Ok(links)
    }

    fn read_progress(
        transaction: &Connection,
        origin_key: &str,
    ) -> anyhow::Result<Option<IngestProgress>> {
        let row: Option<(i64, bool, String)> = transaction
            .query_row(
                "SELECT byte_offset, complete, outcome_json FROM ingest_progress WHERE origin = ?1",
                [origin_key],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()?;
        row.map(|(byte_offset, complete, outcome)| {
            Ok(IngestProgress {
                byte_offset: byte_offset as u64,
                complete,
                outcome: serde_json::from_str(&outcome).context("stored outcome")?,
            })
        })
        .transpose()
    }
}

/// Adds `amount` to an account's balance with a ledger entry of `kind` under an idempotency key;
/// returns the entry's id and the balance after it.
fn add_credit_entry(
    transaction: &Transaction<'_>,
    account: &str,
    kind: &str,
    amount: i64,
    reference: &str,
    idempotency_key: &str,
) -> anyhow::Result<(i64, i64)> {
    let balance_after: i64 = transaction
        .query_row(
            "UPDATE accounts SET balance_units = balance_units + ?1 WHERE id = ?2
             RETURNING balance_units",
            params![amount, account],
            |row| row.get(0),
        )
        .optional()?
        .with_context(|| format!("no account {account:?} in the store"))?;
    transaction.execute(
        "INSERT INTO ledger_entries (account, kind, amount_units, balance_after_units, reference,
            idempotency_key, created_at_micros) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            account,
            kind,
            amount,
            balance_after,
            reference,
            idempotency_key,
            now_micros()
        ],
    )?;
    Ok((transaction.last_insert_rowid(), balance_after))
}

fn account_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AccountRow> {
    Ok(AccountRow {
        id: row.get(0)?,
        name: row.get(1)?,
        parent: row.get(2)?,
        currency: row.get(3)?,
        time_zone: row.get(4)?,
        status: row.get(5)?,
        credit_limit_units: row.get(6)?,
        outbound_deck: row.get(7)?,
        inbound_deck: row.get(8)?,
        allow_per_minute: row.get(9)?,
        trunks_inbound: row.get(10)?,
        trunks_outbound: row.get(11)?,
        trunks_two_way: row.get(12)?,
        thresholds_json: row.get(13)?,
        recharge_threshold_units: row.get(14)?,
        recharge_amount_units: row.get(15)?,
        recharge_local_time: row.get(16)?,
        webhook_url: row.get(17)?,
        webhook_secret: row.get(18)?,
    })
}

/// Usage by quarter hour, summed here from the account-and-time index: SQLite would group
/// through a temporary b-tree, several times slower than the scan itself on a reseller's
/// month. The portal tests hold both stores to the same totals.
fn usage_by_quarter_hour(
    connection: &Connection,
    query: &UsageQuery,
) -> anyhow::Result<Vec<UsageRow>> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT start_time_micros, currency, billable_seconds, {CHARGED_UNITS_SQL}
             FROM rated_calls
             WHERE account IN (SELECT value FROM json_each(?1))
               AND start_time_micros >= ?2 AND start_time_micros < ?3"
    ))?;
    let mut rows = statement.query(params![
        serde_json::to_string(&query.accounts)?,
        query.from_micros,
        query.to_micros
    ])?;
    let mut currencies: Vec<String> = Vec::new();
    // (quarter hour, currency index) -> (calls, billable seconds, charged units)
    let mut sums: HashMap<(i64, usize), (i64, i64, i64)> = HashMap::new();
    while let Some(row) = rows.next()? {
        let start: i64 = row.get(0)?;
        let currency = row.get_ref(1)?.as_str()?;
        let currency_index = match currencies.iter().position(|known| known == currency) {
            Some(index) => index,
            None => {
                currencies.push(currency.to_string());
                currencies.len() - 1
            }
        };
        let quarter_hour = start.div_euclid(QUARTER_HOUR_MICROS) * QUARTER_HOUR_MICROS;
        let sum = sums.entry((quarter_hour, currency_index)).or_default();
        sum.0 += 1;
        sum.1 += row.get::<_, i64>(2)?;
        sum.2 += row.get::<_, i64>(3)?;
    }
    let totals: Vec<UsageRow> = sums
        .into_iter()
        .map(
            |((quarter_hour, currency_index), (calls, seconds, units))| UsageRow {
                key: quarter_hour.to_string(),
                currency: currencies[currency_index].clone(),
                calls,
                billable_seconds: seconds,
                cost_units: units,
            },
        )
        .collect();
    Ok(totals)
}

impl LedgerStore for SqliteStore {
    fn backend_name(&self) -> &'static str {
        "embedded"
    }

    fn ping(&mut self) -> anyhow::Result<()> {
        self.connection
            .query_row("SELECT count(*) FROM store_state", [], |_| Ok(()))?;
        Ok(())
    }

    fn limit_page_cache(&mut self, kibibytes: i64) -> anyhow::Result<()> {
        self.connection
            .pragma_update(None, "cache_size", -kibibytes)?;
        Ok(())
    }

    fn upsert_accounts(&mut self, accounts: &[Account]) -> anyhow::Result<()> {
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let parents_before = rollup::parents(&transaction)?;
        {
            let mut upsert = transaction.prepare(&format!(
                "INSERT INTO accounts ({ACCOUNT_ROW_COLUMNS}, updated_at_micros)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                         ?17, ?18, ?19, ?20)
                 ON CONFLICT (id) DO UPDATE SET {ACCOUNT_UPSERT_CHANGES}"
            ))?;
            let now = now_micros();
            for account in parents_first(accounts) {
                let row = AccountRow::from_account(account);
                upsert.execute(params![
                    row.id,
                    row.name,
                    row.parent,
                    row.currency,
                    row.time_zone,
                    row.status,
                    row.credit_limit_units,
                    row.outbound_deck,
                    row.inbound_deck,
                    row.allow_per_minute,
                    row.trunks_inbound,
                    row.trunks_outbound,
                    row.trunks_two_way,
                    row.thresholds_json,
                    row.recharge_threshold_units,
                    row.recharge_amount_units,
                    row.recharge_local_time,
                    row.webhook_url,
                    row.webhook_secret,
                    now,
                ])?;
            }
        }
        let parents = rollup::parents(&transaction)?;
        if let Some(account) = account_in_cycle(&parents) {
            bail!("account {account} would be its own ancestor: nothing was imported");
        }
        rollup::follow_tree(&transaction, &parents_before, &parents)?;
        transaction.execute(
            "UPDATE store_state SET accounts_generation = accounts_generation + 1",
            [],
        )?;
        transaction.commit()?;
        Ok(())
    }

    fn accounts(&mut self) -> anyhow::Result<Vec<Account>> {
        let mut statement = self.connection.prepare(&format!(
            "SELECT {ACCOUNT_ROW_COLUMNS} FROM accounts ORDER BY id"
        ))?;
        let rows = statement
            .query_map([], account_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(AccountRow::into_account).collect()
    }

    fn account(&mut self, id: &str) -> anyhow::Result<Option<StoredAccount>> {
        let row = self
            .connection
            .query_row(
                &format!("SELECT {ACCOUNT_ROW_COLUMNS}, balance_units FROM accounts WHERE id = ?1"),
                [id],
                |row| Ok((account_row(row)?, row.get::<_, i64>(19)?)),
            )
            .optional()?;
        row.map(|(row, balance_units)| {
            Ok(StoredAccount {
                account: row.into_account()?,
                balance_units,
            })
        })
        .transpose()
    }

    fn accounts_generation(&mut self) -> anyhow::Result<i64> {
        Ok(self
            .connection
            .query_row("SELECT accounts_generation FROM store_state", [], |row| {
                row.get(0)
            })?)
    }

    fn record_decks(&mut self, decks: &[DeckRecord]) -> anyhow::Result<()> {
        let transaction = self.connection.transaction()?;
        for deck in decks {
            transaction.execute(
                "INSERT INTO decks (name, version, currency, first_used_at_micros)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                params![deck.name, deck.version, deck.currency, now_micros()],
            )?;
        }
        transaction.commit()?;
        Ok(())
    }

    fn post_batch(&mut self, batch: &PostingBatch) -> anyhow::Result<PostingOutcome> {
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let previous = Self::read_progress(&transaction, &batch.origin.key)?;
        if let Some(answer) = replayed_outcome(batch, previous.as_ref()) {
            return Ok(answer);
        }
        let now = now_micros();
        transaction.execute(
            "INSERT INTO batches (origin, origin_label, start_offset, end_offset, committed_at_micros)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                batch.origin.key,
                batch.origin.label,
                batch.start_offset as i64,
                batch.end_offset as i64,
                now
            ],
        )?;
        let batch_id = transaction.last_insert_rowid();

        let repeats = batch.repeats_within_batch();
        let mut stored_digest: HashMap<usize, u64> = HashMap::new();
        {
            let columns = CallColumns::of(batch);
            let mut insert = transaction.prepare_cached(&format!(
                "INSERT INTO rated_calls ({RATED_CALL_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                         ?17, ?18, ?19, ?20)
                 ON CONFLICT DO NOTHING"
            ))?;
            let mut existing = transaction.prepare_cached(
                "SELECT content_digest FROM rated_calls WHERE source = ?1 AND cdr_id = ?2",
            )?;
            for (index, repeat) in repeats.iter().enumerate() {
                if repeat.is_some() {
                    continue;
                }
                let rate = columns.rate_decimal(index).map(|rate| rate.to_string());
                let inserted = insert.execute(params![
                    columns.source.value(index),
                    columns.cdr_id.value(index),
                    columns.account.value(index),
                    columns.direction.value(index),
                    columns.caller.value(index),
                    columns.callee.value(index),
                    columns.start_time.value(index),
                    CallColumns::time(columns.answer_time, index),
                    CallColumns::time(columns.end_time, index),
                    columns.billsec.value(index),
                    columns.disposition.value(index),
                    columns.deck.value(index),
                    CallColumns::text(columns.rate_prefix, index),
                    CallColumns::text(columns.destination, index),
                    rate,
                    columns.billable_seconds.value(index),
                    batch.cost_units[index],
                    columns.currency.value(index),
                    batch.content_digest[index] as i64,
                    batch_id,
                ])?;
                if inserted == 0 {
                    let digest: i64 = existing.query_row(
                        params![columns.source.value(index), columns.cdr_id.value(index)],
                        |row| row.get(0),
                    )?;
                    stored_digest.insert(index, digest as u64);
                }
            }
        }
        let mut fates = decide_fates(batch, &repeats, &stored_digest);
        let links = Self::account_links(&transaction, &mut self.links)?;
        let mut settled = settle_calls(&transaction, &new_calls(batch, &fates), now)?;
        settled.hold_unauthorized(batch, &fates, &links)?;
        settled.apply_to(&mut fates);
        {
            let columns = CallColumns::of(batch);
            let mut classify = transaction.prepare_cached(
                "UPDATE rated_calls SET billing_class = ?1 WHERE source = ?2 AND cdr_id = ?3",
            )?;
            for (index, class) in settled.billing_classes() {
                classify.execute(params![
                    class,
                    columns.source.value(index),
                    columns.cdr_id.value(index)
                ])?;
            }
        }
        {
            let columns = CallColumns::of(batch);
            let mut insert_conflict = transaction.prepare_cached(
                "INSERT INTO conflicts (source, cdr_id, batch_id, content_digest,
                    stored_content_digest, record_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (index, fate) in fates.iter().enumerate() {
                if let CallFate::Conflict {
                    stored_content_digest,
                } = fate
                {
                    insert_conflict.execute(params![
                        columns.source.value(index),
                        columns.cdr_id.value(index),
                        batch_id,
                        batch.content_digest[index] as i64,
                        *stored_content_digest as i64,
                        call_as_json(batch, index),
                    ])?;
                }
            }
            let mut insert_reject = transaction.prepare_cached(
                "INSERT INTO rejects
                   (origin, line, origin_label, batch_id, reason, raw_record, account)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            )?;
            for reject in &batch.rejects {
                insert_reject.execute(params![
                    batch.origin.key,
                    reject.line as i64,
                    batch.origin.label,
                    batch_id,
                    reject.reason,
                    reject.raw_record,
                    reject.account,
                ])?;
            }
        }
        rollup::apply(
            &transaction,
            &posted_calls(batch, &fates, &RollupTree::new(&links.parents)),
        )?;
        let usage = usage_by_account(batch, &fates, &links.parents)?;
        let reference = format!("batch {batch_id}");
        charge_usage(
            &transaction,
            &usage,
            &links,
            Some(batch_id),
            &reference,
            now,
        )?;
        let over_limit = settled.over_limit_calls(batch);
        raise_limit_exceeded(&transaction, &over_limit, Some(batch_id), now)?;
        let mut outcome = outcome_of(batch, &fates, batch_id);
        outcome.limit_exceeded = settled.over_limit.len() as u64;
        transaction.execute(
            "UPDATE batches SET rated = ?1, rejected = ?2, duplicates = ?3, conflicts = ?4,
                charged_units = ?5 WHERE id = ?6",
            params![
                outcome.rated as i64,
                outcome.rejected as i64,
                outcome.duplicates as i64,
                outcome.conflicts as i64,
                outcome.charged_units,
                batch_id
            ],
        )?;
        let progress = progress_after(batch, previous.as_ref(), &outcome);
        transaction.execute(
            "INSERT INTO ingest_progress (origin, origin_label, byte_offset, complete, outcome_json,
                updated_at_micros) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (origin) DO UPDATE SET byte_offset = excluded.byte_offset,
                complete = excluded.complete, outcome_json = excluded.outcome_json,
                updated_at_micros = excluded.updated_at_micros",
            params![
                batch.origin.key,
                batch.origin.label,
                progress.byte_offset as i64,
                progress.complete,
                serde_json::to_string(&progress.outcome)?,
                now
            ],
        )?;
        transaction.commit()?;
        Ok(outcome)
    }

    fn ingest_progress(&mut self, origin_key: &str) -> anyhow::Result<Option<IngestProgress>> {
        Self::read_progress(&self.connection, origin_key)
    }

    fn rejects_of(&mut self, origin_key: &str) -> anyhow::Result<Vec<StoredReject>> {
        let mut statement = self.connection.prepare(
            "SELECT origin_label, line, reason, raw_record FROM rejects WHERE origin = ?1
             ORDER BY line",
        )?;
        let rejects = statement
            .query_map([origin_key], |row| {
                Ok(StoredReject {
                    origin_label: row.get(0)?,
                    line: row.get::<_, i64>(1)? as u64,
                    reason: row.get(2)?,
                    raw_record: row.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rejects)
    }

    fn account_ancestry(&mut self, account: &str) -> anyhow::Result<Vec<String>> {
        let mut statement = self.connection.prepare_cached(ACCOUNT_ANCESTRY_SQL)?;
        let ids = statement
            .query_map([account], |row| row.get(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    fn account_subtree(&mut self, account: &str) -> anyhow::Result<Vec<(String, Option<String>)>> {
        let mut statement = self.connection.prepare_cached(ACCOUNT_SUBTREE_SQL)?;
        let accounts = statement
            .query_map([account], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(accounts)
    }

    fn rejects_of_account(
        &mut self,
        account: &str,
        before: Option<(i64, i64)>,
        limit: usize,
    ) -> anyhow::Result<Vec<AccountReject>> {
        let (before_batch, before_line) = before.unwrap_or((i64::MAX, i64::MAX));
        let mut statement = self.connection.prepare_cached(REJECTS_OF_ACCOUNT_SQL)?;
        let rejects = statement
            .query_map(
                params![account, before_batch, before_line, limit as i64],
                |row| {
                    Ok(AccountReject {
                        batch_id: row.get(0)?,
                        rejected_at_micros: row.get(1)?,
                        reject: StoredReject {
                            origin_label: row.get(2)?,
                            line: row.get::<_, i64>(3)? as u64,
                            reason: row.get(4)?,
                            raw_record: row.get(5)?,
                        },
                    })
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rejects)
    }

    fn ledger_totals(&mut self) -> anyhow::Result<LedgerTotals> {
        let (rated_calls, rated_cost_units): (i64, i64) = self.connection.query_row(
            &format!("SELECT count(*), coalesce(sum({CHARGED_UNITS_SQL}), 0) FROM rated_calls"),
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let conflicts: i64 =
            self.connection
                .query_row("SELECT count(*) FROM conflicts", [], |row| row.get(0))?;
        let rejects: i64 =
            self.connection
                .query_row("SELECT count(*) FROM rejects", [], |row| row.get(0))?;
        let mut statement = self.connection.prepare(
            "SELECT a.id FROM accounts a
             LEFT JOIN (SELECT account, sum(amount_units) AS total FROM ledger_entries
                        GROUP BY account) e ON e.account = a.id
             WHERE a.balance_units <> coalesce(e.total, 0) ORDER BY a.id",
        )?;
        let balance_mismatches = statement
            .query_map([], |row| row.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        let hold_mismatches = self
            .connection
            .prepare(HOLD_MISMATCHES_SQL)?
            .query_map([], |row| row.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(LedgerTotals {
            rated_calls: rated_calls as u64,
            rated_cost_units,
            conflicts: conflicts as u64,
            rejects: rejects as u64,
            balance_mismatches,
            hold_mismatches,
        })
    }

    fn usage_units(&mut self, account: &str) -> anyhow::Result<i64> {
        Ok(self.connection.query_row(
            "SELECT coalesce(sum(amount_units), 0) FROM ledger_entries
             WHERE account = ?1 AND kind = 'usage'",
            [account],
            |row| row.get(0),
        )?)
    }

    fn credit(
        &mut self,
        account: &str,
        amount_units: i64,
        reason: &str,
        idempotency_key: &str,
    ) -> anyhow::Result<CreditOutcome> {
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let earlier = transaction
            .query_row(
                "SELECT id, account, kind, amount_units, balance_after_units FROM ledger_entries
                 WHERE idempotency_key = ?1",
                [idempotency_key],
                |row| {
                    Ok(EntryWithKey {
                        entry_id: row.get(0)?,
                        account: row.get(1)?,
                        kind: row.get(2)?,
                        amount_units: row.get(3)?,
                        balance_after_units: row.get(4)?,
                    })
                },
            )
            .optional()?;
        if let Some(made) = credit_already_made(earlier, account, amount_units, idempotency_key)? {
            return Ok(made);
        }
        let (entry_id, balance_after_units) = add_credit_entry(
            &transaction,
            account,
            "credit",
            amount_units,
            reason,
            idempotency_key,
        )?;
        transaction.commit()?;
        Ok(CreditOutcome {
            entry_id,
            balance_after_units,
            replayed: false,
        })
    }

    fn alerts_of(&mut self, account: &str) -> anyhow::Result<Vec<StoredAlert>> {
        let mut statement = self.connection.prepare(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE account = ?1 ORDER BY id"
        ))?;
        let alerts = statement
            .query_map([account], |row| alert_from_row(row, 0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(alerts)
    }

    fn run_auto_recharge(
        &mut self,
        account: &str,
        local_date: chrono::NaiveDate,
    ) -> anyhow::Result<RechargeRun> {
        // Every check after the day's first finds the date run: it reads that without the write
        // lock, so accounts with auto-recharge do not hold up the call authorizer twice a minute.
        let ran_with_balance: Option<i64> = self
            .connection
            .prepare_cached(
                "SELECT a.balance_units FROM recharge_runs r JOIN accounts a ON a.id = r.account
                 WHERE r.account = ?1 AND r.local_date = ?2",
            )?
            .query_row(params![account, local_date.to_string()], |row| row.get(0))
            .optional()?;
        if let Some(balance) = ran_with_balance {
            return Ok(RechargeRun {
                already_ran: true,
                credited_units: 0,
                balance_after_units: balance,
            });
        }
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (balance, threshold, amount): (i64, Option<i64>, Option<i64>) = transaction
            .query_row(
                "SELECT balance_units, recharge_threshold_units, recharge_amount_units
                 FROM accounts WHERE id = ?1",
                [account],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()?
            .with_context(|| format!("no account {account:?} in the store"))?;
        let (Some(threshold), Some(amount)) = (threshold, amount) else {
            bail!("account {account} has no auto-recharge");
        };
        let now = now_micros();
        let first_run = transaction.execute(
            "INSERT INTO recharge_runs (account, local_date, balance_before_units, credited_units,
                ran_at_micros) VALUES (?1, ?2, ?3, 0, ?4) ON CONFLICT DO NOTHING",
            params![account, local_date.to_string(), balance, now],
        )? == 1;
        let mut run = RechargeRun {
            already_ran: !first_run,
            credited_units: 0,
            balance_after_units: balance,
        };
        if first_run && balance < threshold {
            run.balance_after_units = add_credit_entry(
                &transaction,
                account,
                "auto_recharge",
                amount,
                &format!("auto-recharge {local_date}"),
                &recharge_key(account, local_date),
            )?
            .1;
            run.credited_units = amount;
            transaction.execute(
                "UPDATE recharge_runs SET credited_units = ?1 WHERE account = ?2 AND local_date = ?3",
                params![amount, account, local_date.to_string()],
            )?;
            transaction.execute(
                "INSERT INTO alerts (kind, account, threshold_units, balance_units, amount_units,
                    local_date, created_at_micros) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    ALERT_KIND_RECHARGE,
                    account,
                    threshold,
                    run.balance_after_units,
                    amount,
                    local_date.to_string(),
                    now
                ],
            )?;
        }
        transaction.commit()?;
        Ok(run)
    }

    fn claim_alerts_to_deliver(
        &mut self,
        now_micros: i64,
        lease_micros: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<AlertToDeliver>> {
        // Most polls find nothing due: they ask without taking the write lock, so an idle
        // deliverer never makes the call authorizer wait.
        let due: bool = self
            .connection
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM alerts
                 WHERE delivery_state = 'pending' AND next_attempt_at_micros <= ?1)",
            )?
            .query_row([now_micros], |row| row.get(0))?;
        if !due {
            return Ok(Vec::new());
        }
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut claimed = {
            let mut statement = transaction.prepare_cached(&format!(
                "SELECT {}, acc.currency, acc.webhook_url, acc.webhook_secret
                 FROM alerts a JOIN accounts acc ON acc.id = a.account
                 WHERE a.delivery_state = 'pending' AND a.next_attempt_at_micros <= ?1
                 ORDER BY a.id LIMIT ?2",
                columns_of("a", ALERT_COLUMNS)
            ))?;
            statement
                .query_map(params![now_micros, limit as i64], |row| {
                    Ok(AlertToDeliver {
                        alert: alert_from_row(row, 0)?,
                        currency: row.get(ALERT_COLUMN_COUNT)?,
                        webhook_url: row.get(ALERT_COLUMN_COUNT + 1)?,
                        webhook_secret: row.get(ALERT_COLUMN_COUNT + 2)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?
        };
        {
            let mut claim = transaction.prepare_cached(
                "UPDATE alerts SET attempts = attempts + 1, next_attempt_at_micros = ?1
                 WHERE id = ?2",
            )?;
            for alert in &mut claimed {
                claim.execute(params![now_micros + lease_micros, alert.alert.id])?;
                alert.alert.attempts += 1;
            }
        }
        transaction.commit()?;
        Ok(claimed)
    }

    fn record_alert_delivery(
        &mut self,
        alert_id: i64,
        attempt: i64,
        delivery: &AlertDelivery,
    ) -> anyhow::Result<()> {
        let (state, next_attempt, error, delivered_at) = delivery.stored_fields();
        self.connection.execute(
            "UPDATE alerts SET delivery_state = ?1,
                next_attempt_at_micros = coalesce(?2, next_attempt_at_micros),
                last_error = coalesce(?3, last_error), delivered_at_micros = ?4
             WHERE id = ?5 AND attempts = ?6 AND delivery_state = 'pending'",
            params![state, next_attempt, error, delivered_at, alert_id, attempt],
        )?;
        Ok(())
    }

    fn begin_rerate_run(
        &mut self,
        scope: &str,
        from_micros: i64,
        to_micros: i64,
        decks: &str,
    ) -> anyhow::Result<i64> {
        Ok(self.connection.query_row(
            "INSERT INTO rerate_runs (scope, from_micros, to_micros, decks, started_at_micros)
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
            params![scope, from_micros, to_micros, decks, now_micros()],
            |row| row.get(0),
        )?)
    }

    fn rated_calls_of(
        &mut self,
        account: &str,
        from_micros: i64,
        to_micros: i64,
        after: Option<&CallCursor>,
        limit: usize,
    ) -> anyhow::Result<Vec<StoredCall>> {
        let start = CallCursor::start_of(after, from_micros);
        let mut statement = self.connection.prepare_cached(&format!(
            "SELECT {STORED_CALL_COLUMNS} FROM rated_calls
             WHERE account = ?1 AND start_time_micros >= ?2 AND start_time_micros < ?3
               AND (start_time_micros, source, cdr_id) > (?2, ?4, ?5)
             ORDER BY start_time_micros, source, cdr_id LIMIT ?6"
        ))?;
        let calls = statement
            .query_map(
                params![
                    account,
                    start.start_time_micros,
                    to_micros,
                    start.source,
                    start.cdr_id,
                    limit as i64
                ],
                stored_call,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(calls)
    }

    fn apply_call_revisions(
        &mut self,
        rerate_run: i64,
        revisions: &[CallRevision],
    ) -> anyhow::Result<RevisionsApplied> {
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_micros();
        let keys: Vec<(&str, &str)> = revisions
            .iter()
            .map(|revision| (revision.source.as_str(), revision.cdr_id.as_str()))
            .collect();
        let unrevised = rollup::calls(&transaction, &keys)?;
        let mut applied = Vec::with_capacity(revisions.len());
        {
            let mut revise = transaction.prepare_cached(
                "UPDATE rated_calls SET deck = ?1, rate_prefix = ?2, destination = ?3, rate = ?4,
                    billable_seconds = ?5, cost_units = ?6, revision = revision + 1
                 WHERE source = ?7 AND cdr_id = ?8 AND revision = ?9",
            )?;
            let mut history = transaction.prepare_cached(
                "INSERT INTO call_revisions (source, cdr_id, revision, rerate_run, old_deck,
                    new_deck, old_rate, new_rate, old_billable_seconds, new_billable_seconds,
                    old_cost_units, new_cost_units, revised_at_micros)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            for revision in revisions {
                let new_rate = revision.new_rate.map(|rate| rate.to_string());
                let changed = revise.execute(params![
                    revision.new_deck,
                    revision.new_rate_prefix,
                    revision.new_destination,
                    new_rate,
                    revision.new_billable_seconds,
                    revision.new_cost_units,
                    revision.source,
                    revision.cdr_id,
                    revision.expected_revision,
                ])?;
                if changed == 0 {
                    continue;
                }
                history.execute(params![
                    revision.source,
                    revision.cdr_id,
                    revision.expected_revision + 1,
                    rerate_run,
                    revision.old_deck,
                    revision.new_deck,
                    revision.old_rate,
                    new_rate,
                    revision.old_billable_seconds,
                    revision.new_billable_seconds,
                    revision.old_cost_units,
                    revision.new_cost_units,
                    now,
                ])?;
                applied.push(revision);
            }
        }
        let links = Self::account_links(&transaction, &mut self.links)?;
        rollup::apply_changed_calls(&transaction, &links.parents, &unrevised, &keys)?;
        let mut balances_before = HashMap::new();
        for account in accounts_moved(&applied, &links)? {
            let balance: i64 = transaction.query_row(
                "SELECT balance_units FROM accounts WHERE id = ?1",
                [&account],
                |row| row.get(0),
            )?;
            balances_before.insert(account, balance);
        }
        let plan = plan_rerate_ledger(rerate_run, &applied, &links, &balances_before)?;
        {
            let mut entry = transaction.prepare_cached(
                "INSERT INTO ledger_entries (account, kind, amount_units, balance_after_units,
                    reference, created_at_micros) VALUES (?1, 'rerate', ?2, ?3, ?4, ?5)",
            )?;
            for planned in &plan.entries {
                entry.execute(params![
                    planned.account,
                    planned.amount_units,
                    planned.balance_after_units,
                    planned.reference,
                    now
                ])?;
            }
            let mut balance = transaction
                .prepare_cached("UPDATE accounts SET balance_units = ?1 WHERE id = ?2")?;
            for (account, after) in &plan.balances_after {
                balance.execute(params![after, account])?;
            }
            let mut alert = transaction.prepare_cached(
                "INSERT INTO alerts (kind, account, threshold_units, balance_units,
                    created_at_micros) VALUES ('threshold_crossed', ?1, ?2, ?3, ?4)",
            )?;
            for (account, threshold, balance_after) in &plan.alerts {
                alert.execute(params![account, threshold, balance_after, now])?;
            }
        }
        transaction.commit()?;
        Ok(applied_totals(&applied))
    }

    fn finish_rerate_run(
        &mut self,
        rerate_run: i64,
        calls_examined: u64,
        applied: &RevisionsApplied,
    ) -> anyhow::Result<()> {
        self.connection.execute(
            "UPDATE rerate_runs SET finished_at_micros = ?1, calls_examined = ?2,
                calls_changed = ?3, net_units = ?4 WHERE id = ?5",
            params![
                now_micros(),
                calls_examined as i64,
                applied.changed as i64,
                applied.net_units(),
                rerate_run
            ],
        )?;
        Ok(())
    }

    fn answer_calls(
        &mut self,
        requests: &[AuthorizationRequest],
        expires_at_micros: i64,
        decide: &mut dyn FnMut(&AuthorizationRequest, &[ChainLevel]) -> Authorization,
        ended_call_ids: &[String],
        now_micros: i64,
        settle_by_micros: i64,
    ) -> anyhow::Result<CallAnswers> {
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let authorizations = if requests.is_empty() {
            Vec::new()
        } else {
            let links = Self::account_links(&transaction, &mut self.links)?;
            requests
                .iter()
                .map(|request| {
                    authorize_in(
                        &transaction,
                        &links,
                        request,
                        expires_at_micros,
                        &mut *decide,
                    )
                })
                .collect::<anyhow::Result<Vec<_>>>()?
        };
        let ends = end_in(&transaction, ended_call_ids, now_micros, settle_by_micros)?;
        transaction.commit()?;
        Ok(CallAnswers {
            authorizations,
            ends,
        })
    }

    fn keepalive_call(
        &mut self,
        call_id: &str,
        expires_at_micros: i64,
    ) -> anyhow::Result<Option<CallRecord>> {
        self.connection.execute(
            "UPDATE call_authorizations SET expires_at_micros = ?1
             WHERE call_id = ?2 AND state = 'active'",
            params![expires_at_micros, call_id],
        )?;
        kept_alive(self.call_record(call_id)?)
    }

    fn expire_calls(&mut self, now_micros: i64) -> anyhow::Result<u64> {
        let closed_before = now_micros - DENIAL_KEPT_SECONDS * 1_000_000;
        // Nearly every check finds nothing to release: it asks without the write lock first, so
        // it does not hold up the call authorizer.
        let due: bool = self
            .connection
            .prepare_cached(&format!(
                "SELECT EXISTS (SELECT 1 FROM call_authorizations
                    WHERE state IN {OPEN_CALL_STATES} AND expires_at_micros < ?1)
                 OR EXISTS (SELECT 1 FROM call_authorizations
                    WHERE state = 'denied' AND authorized_at_micros < ?2)"
            ))?
            .query_row(params![now_micros, closed_before], |row| row.get(0))?;
        if !due {
            return Ok(0);
        }
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let expired: Vec<String> = transaction
            .prepare(&format!(
                "UPDATE call_authorizations
                 SET state = CASE state WHEN 'active' THEN 'expired' ELSE 'unsettled' END,
                     ended_at_micros = coalesce(ended_at_micros, ?1)
                 WHERE state IN {OPEN_CALL_STATES} AND expires_at_micros < ?1 RETURNING call_id"
            ))?
            .query_map([now_micros], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        for call_id in &expired {
            release_holds(&transaction, call_id, HoldsReleased::All)?;
        }
        transaction.execute(
            "UPDATE call_authorizations SET state = 'closed'
             WHERE state = 'denied' AND authorized_at_micros < ?1",
            params![closed_before],
        )?;
        transaction.commit()?;
        Ok(expired.len() as u64)
    }

    fn call_record(&mut self, call_id: &str) -> anyhow::Result<Option<CallRecord>> {
        read_call_record(&self.connection, call_id)
    }

    fn create_token(
        &mut self,
        token_sha256: &str,
        account: Option<&str>,
        label: &str,
    ) -> anyhow::Result<i64> {
        self.connection.execute(
            "INSERT INTO api_tokens (token_sha256, account, label, created_at_micros)
             VALUES (?1, ?2, ?3, ?4)",
            params![token_sha256, account, label, now_micros()],
        )?;
        Ok(self.connection.last_insert_rowid())
    }

    fn revoke_token(&mut self, id: i64) -> anyhow::Result<bool> {
        Ok(self.connection.execute(
            "UPDATE api_tokens SET revoked_at_micros = coalesce(revoked_at_micros, ?1)
             WHERE id = ?2",
            params![now_micros(), id],
        )? == 1)
    }

    fn token_scope(&mut self, token_sha256: &str) -> anyhow::Result<Option<TokenScope>> {
        let account: Option<Option<String>> = self
            .connection
            .query_row(
                "SELECT account FROM api_tokens
                 WHERE token_sha256 = ?1 AND revoked_at_micros IS NULL",
                [token_sha256],
                |row| row.get(0),
            )
            .optional()?;
        Ok(account.map(|account| account.map_or(TokenScope::Operator, TokenScope::Account)))
    }

    fn account_holds(&mut self, account: &str) -> anyhow::Result<Vec<(String, i64, i64)>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT trunk_kind, calls, reserved_units FROM account_holds
             WHERE account = ?1 ORDER BY trunk_kind",
        )?;
        let holds = statement
            .query_map([account], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(holds)
    }

    fn calls_newest_first(&mut self, query: &CallsQuery) -> anyhow::Result<Vec<StoredCall>> {
        let before = newest_first_cursor(query);
        // One account is an equality, so the index gives the order and the page stops at its
        // limit; a list (a reseller's subtree) is read and sorted. Either way the page's keys
        // come from the account-and-time index alone (its entries carry the calls' key), and
        // only the page's calls are read from the table: a reseller's page sorts index entries,
        // not whole calls.
        let (accounts_sql, accounts) = match query.accounts.as_slice() {
            [one] => ("account = ?1", one.clone()),
            _ => (
                "account IN (SELECT value FROM json_each(?1))",
                serde_json::to_string(&query.accounts)?,
            ),
        };
        // `direction` is not in the index: the condition is left out when no direction is
        // asked for, so that the planner can keep to the index.
        let direction_sql = match query.direction {
            Some(_) => "direction = ?4",
            None => "?4 IS NULL",
        };
        let keys: Vec<(String, String)> = self
            .connection
            .prepare_cached(&format!(
                "SELECT source, cdr_id FROM rated_calls
                 WHERE {accounts_sql}
                   AND start_time_micros >= ?2 AND start_time_micros < ?3
                   AND {direction_sql}
                   AND start_time_micros <= ?5
                   AND (start_time_micros, source, cdr_id) < (?5, ?6, ?7)
                   AND (?9 = 0 OR {UNBILLED_SQL})
                 ORDER BY start_time_micros DESC, source DESC, cdr_id DESC LIMIT ?8"
            ))?
            .query_map(
                params![
                    accounts,
                    query.from_micros,
                    query.to_micros,
                    query.direction,
                    before.start_time_micros,
                    before.source,
                    before.cdr_id,
                    query.limit as i64,
                    query.unbilled_only
                ],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?
            .collect::<Result<Vec<_>, _>>()?;
        let mut call_by_key = self.connection.prepare_cached(&format!(
            "SELECT {STORED_CALL_COLUMNS} FROM rated_calls WHERE source = ?1 AND cdr_id = ?2"
        ))?;
        let calls = keys
            .iter()
            .map(|(source, cdr_id)| call_by_key.query_row(params![source, cdr_id], stored_call))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(calls)
    }

    fn calls_oldest_first(
        &mut self,
        account: &str,
        from_micros: i64,
        to_micros: i64,
        after: Option<&CallCursor>,
        limit: usize,
    ) -> anyhow::Result<Vec<StoredCall>> {
        let after = oldest_first_start(after);
        let mut statement = self.connection.prepare_cached(&calls_oldest_first_sql())?;
        let calls = statement
            .query_map(
                params![
                    account,
                    from_micros,
                    to_micros,
                    after.start_time_micros,
                    after.source,
                    after.cdr_id,
                    limit as i64
                ],
                stored_call,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(calls)
    }

    fn close_billing_period(&mut self, account: &str, at_micros: i64) -> anyhow::Result<i64> {
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let open_from: Option<i64> = transaction
            .query_row(
                "SELECT open_from_micros FROM billing_periods WHERE account = ?1",
                [account],
                |row| row.get(0),
            )
            .optional()?;
        check_period_close(open_from, account, at_micros)?;
        transaction.execute(
            "INSERT INTO billing_periods (account, open_from_micros, closed_at_micros)
             VALUES (?1, ?2, ?3)
             ON CONFLICT (account) DO UPDATE SET open_from_micros = excluded.open_from_micros,
                closed_at_micros = excluded.closed_at_micros",
            params![account, at_micros, now_micros()],
        )?;
        transaction.commit()?;
        Ok(at_micros)
    }

    fn usage_totals(&mut self, query: &UsageQuery) -> anyhow::Result<Vec<UsageRow>> {
        if query.grouping == UsageGrouping::QuarterHour {
            // One read transaction: the rollup and the calls at the ends from one snapshot.
            let transaction = self.connection.transaction()?;
            let totals = match rollup_query_span(query) {
                Some((root, span)) => {
                    let mut totals = rollup::totals(&transaction, root, span.whole)?;
                    for (from_micros, to_micros) in span.edges {
                        totals.extend(usage_by_quarter_hour(
                            &transaction,
                            &UsageQuery {
                                from_micros,
                                to_micros,
                                ..query.clone()
                            },
                        )?);
                    }
                    totals
                }
                None => usage_by_quarter_hour(&transaction, query)?,
            };
            transaction.commit()?;
            return Ok(totals);
        }
        let key = query.key_sql();
        let mut statement = self.connection.prepare(&format!(
            "SELECT {key} AS usage_key, currency, count(*), sum(billable_seconds),
                    sum({CHARGED_UNITS_SQL})
             FROM rated_calls
             WHERE account IN (SELECT value FROM json_each(?1))
               AND start_time_micros >= ?2 AND start_time_micros < ?3
             GROUP BY usage_key, currency ORDER BY usage_key, currency"
        ))?;
        let rows = statement
            .query_map(
                params![
                    serde_json::to_string(&query.accounts)?,
                    query.from_micros,
                    query.to_micros
                ],
                |row| {
                    Ok(UsageRow {
                        key: row.get(0)?,
                        currency: row.get(1)?,
                        calls: row.get(2)?,
                        billable_seconds: row.get(3)?,
                        cost_units: row.get(4)?,
                    })
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn ledger_entries_of(
        &mut self,
        account: &str,
        from_micros: i64,
        to_micros: i64,
        kind: Option<&str>,
        after_id: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<StoredEntry>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT id, kind, amount_units, balance_after_units, reference, created_at_micros
             FROM ledger_entries
             WHERE account = ?1 AND created_at_micros >= ?2 AND created_at_micros < ?3
               AND (?4 IS NULL OR kind = ?4) AND id > ?5
             ORDER BY id LIMIT ?6",
        )?;
        let entries = statement
            .query_map(
                params![
                    account,
                    from_micros,
                    to_micros,
                    kind,
                    after_id,
                    limit as i64
                ],
                |row| {
                    Ok(StoredEntry {
                        id: row.get(0)?,
                        kind: row.get(1)?,
                        amount_units: row.get(2)?,
                        balance_after_units: row.get(3)?,
                        reference: row.get(4)?,
                        created_at_micros: row.get(5)?,
                    })
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(entries)
    }

    fn held_calls(
        &mut self,
        cutoff_micros: i64,
        limit: usize,
    ) -> anyhow::Result<(SweepState, Vec<HeldCall>)> {
        let transaction = self.connection.transaction()?;
        let (version, state_json): (i64, String) = transaction.query_row(
            "SELECT version, state_json FROM trunk_sweep WHERE id = 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let mut statement = transaction.prepare(&format!(
            "SELECT {HELD_CALL_COLUMNS} FROM rated_calls
             WHERE billing_class = '{HELD_FOR_SWEEP}'
               AND coalesce(answer_time_micros, start_time_micros) <= ?1
             ORDER BY call_start_micros, source, cdr_id LIMIT ?2"
        ))?;
        let calls = statement
            .query_map(params![cutoff_micros, limit as i64], |row| {
                Ok(HeldCall {
                    source: row.get(0)?,
                    cdr_id: row.get(1)?,
                    account: row.get(2)?,
                    direction: row.get(3)?,
                    caller: row.get(4)?,
                    callee: row.get(5)?,
                    start_micros: row.get(6)?,
                    end_micros: row.get(7)?,
                    billsec: row.get(8)?,
                    cost_units: row.get(9)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        drop(statement);
        transaction.commit()?;
        Ok((SweepState::from_stored(version, &state_json)?, calls))
    }

    fn apply_sweep(
        &mut self,
        expected_version: i64,
        sweep: &TrunkSweep,
        classes: &[(HeldCall, BillingClass)],
    ) -> anyhow::Result<Option<i64>> {
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let moved = transaction.execute(
            "UPDATE trunk_sweep SET version = version + 1, state_json = ?1
             WHERE id = 1 AND version = ?2",
            params![serde_json::to_string(sweep)?, expected_version],
        )?;
        if moved == 0 {
            return Ok(None);
        }
        let now = now_micros();
        let keys: Vec<(&str, &str)> = classes
            .iter()
            .map(|(call, _)| (call.source.as_str(), call.cdr_id.as_str()))
            .collect();
        let held = rollup::calls(&transaction, &keys)?;
        {
            let mut classify = transaction.prepare_cached(&format!(
                "UPDATE rated_calls SET billing_class = ?1
                 WHERE source = ?2 AND cdr_id = ?3 AND billing_class = '{HELD_FOR_SWEEP}'"
            ))?;
            for (call, class) in classes {
                if classify.execute(params![class.as_str(), call.source, call.cdr_id])? != 1 {
                    bail!(
                        "call {} of {} is no longer held for the sweep",
                        call.cdr_id,
                        call.source
                    );
                }
            }
        }
        let links = Self::account_links(&transaction, &mut self.links)?;
        rollup::apply_changed_calls(&transaction, &links.parents, &held, &keys)?;
        let charges = sweep_charges(classes, &links.parents)?;
        let reference = format!("trunk sweep {}", expected_version + 1);
        charge_usage(&transaction, &charges.usage, &links, None, &reference, now)?;
        raise_limit_exceeded(&transaction, &charges.over_limit, None, now)?;
        transaction.commit()?;
        Ok(Some(charges.charged_units))
    }

    fn call_revisions_of(
        &mut self,
        source: &str,
        cdr_id: &str,
    ) -> anyhow::Result<Vec<StoredRevision>> {
        let mut statement = self.connection.prepare(
            "SELECT revision, rerate_run, old_deck, new_deck, old_cost_units, new_cost_units
             FROM call_revisions WHERE source = ?1 AND cdr_id = ?2 ORDER BY revision",
        )?;
        let revisions = statement
            .query_map([source, cdr_id], |row| {
                Ok(StoredRevision {
                    revision: row.get(0)?,
                    rerate_run: row.get(1)?,
                    old_deck: row.get(2)?,
                    new_deck: row.get(3)?,
                    old_cost_units: row.get(4)?,
                    new_cost_units: row.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(revisions)
    }
}

/// The ends of a batch inside its transaction (see `LedgerStore::answer_calls`).
fn end_in(
    transaction: &Transaction<'_>,
    call_ids: &[String],
    now_micros: i64,
    settle_by_micros: i64,
) -> anyhow::Result<Vec<Option<CallRecord>>> {
    let mut end = transaction.prepare_cached(
        "UPDATE call_authorizations SET state = 'ended', ended_at_micros = ?1,
            expires_at_micros = ?2
         WHERE call_id = ?3 AND state = 'active'",
    )?;
    for call_id in call_ids {
        if end.execute(params![now_micros, settle_by_micros, call_id])? == 1 {
            release_holds(transaction, call_id, HoldsReleased::TrunksOnly)?;
        }
    }
    call_ids
        .iter()
        .map(|call_id| read_call_record(transaction, call_id))
        .collect()
}

/// One authorization inside a batch's transaction (see `LedgerStore::answer_calls`).
fn authorize_in(
    transaction: &Transaction<'_>,
    links: &AccountLinks,
    request: &AuthorizationRequest,
    expires_at_micros: i64,
    decide: &mut dyn FnMut(&AuthorizationRequest, &[ChainLevel]) -> Authorization,
) -> anyhow::Result<Result<AuthorizationAnswer, CallRefusal>> {
    let identity = request.identity();
    let earlier: Option<(String, String, String)> = transaction
        .prepare_cached(
            "SELECT identity, answer_json, state FROM call_authorizations WHERE call_id = ?1",
        )?
        .query_row([&request.call_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    if let Some((stored_identity, answer, state)) = earlier
        && let Some(answered) = earlier_answer(
            &request.call_id,
            &identity,
            &stored_identity,
            &answer,
            &state,
        )?
    {
        return Ok(answered);
    }
    if !links.parents.contains_key(&request.account) {
        return Ok(Err(CallRefusal::UnknownAccount(request.account.clone())));
    }
    let chain = account_chain(&request.account, &links.parents)?;
    let mut accounts = BTreeMap::new();
    let mut holds = Vec::new();
    {
        let mut account = transaction.prepare_cached(&format!(
            "SELECT {ACCOUNT_ROW_COLUMNS}, balance_units FROM accounts WHERE id = ?1"
        ))?;
        let mut held = transaction.prepare_cached(
            "SELECT trunk_kind, calls, reserved_units FROM account_holds WHERE account = ?1",
        )?;
        for id in &chain {
            let (row, balance) = account.query_row([id], |row| {
                Ok((account_row(row)?, row.get::<_, i64>(ACCOUNT_COLUMN_COUNT)?))
            })?;
            accounts.insert(id.clone(), (row.into_account()?, balance));
            let rows = held.query_map([id], |row| {
                Ok((id.clone(), row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
            for hold in rows {
                holds.push(hold?);
            }
        }
    }
    let authorization = decide(request, &chain_levels(&chain, &accounts, &holds)?);
    let state = if authorization.decision == Decision::Deny {
        "denied"
    } else {
        "active"
    };
    transaction
        .prepare_cached(UPSERT_AUTHORIZATION_SQL)?
        .execute(params![
            request.call_id,
            request.account,
            identity,
            authorization.decision.as_str(),
            state,
            serde_json::to_string(&authorization)?,
            now_micros(),
            expires_at_micros
        ])?;
    if authorization.decision != Decision::Deny {
        let mut hold = transaction.prepare_cached(
            "INSERT INTO call_holds (call_id, account, trunk_kind, reserved_units)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut total = transaction.prepare_cached(
            "INSERT INTO account_holds (account, trunk_kind, calls, reserved_units)
             VALUES (?1, ?2, 1, ?3)
             ON CONFLICT (account, trunk_kind) DO UPDATE SET calls = calls + 1,
                reserved_units = reserved_units + excluded.reserved_units",
        )?;
        for held in &authorization.holds {
            let kind = trunk_kind_text(held.trunk);
            hold.execute(params![
                request.call_id,
                held.account,
                kind,
                held.reserved_units
            ])?;
            total.execute(params![held.account, kind, held.reserved_units])?;
        }
    }
    Ok(Ok(AuthorizationAnswer {
        authorization,
        replayed: false,
    }))
}

/// Deletes a call's holds (or only its trunks) and takes them off its accounts' running totals.
fn release_holds(
    transaction: &Transaction<'_>,
    call_id: &str,
    which: HoldsReleased,
) -> anyhow::Result<()> {
    let released: Vec<(String, String, i64)> = transaction
        .prepare_cached(
            "DELETE FROM call_holds WHERE call_id = ?1 AND (?2 OR trunk_kind <> 'none')
             RETURNING account, trunk_kind, reserved_units",
        )?
        .query_map(params![call_id, which == HoldsReleased::All], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut total = transaction.prepare_cached(
        "UPDATE account_holds SET calls = calls - 1, reserved_units = reserved_units - ?1
         WHERE account = ?2 AND trunk_kind = ?3",
    )?;
    for (account, kind, reserved) in released {
        total.execute(params![reserved, account, kind])?;
    }
    Ok(())
}

/// Settles the authorized calls among a batch's new calls (index, cdr_id, account): their CDR is
/// posted in this transaction, so what they still hold is released with it; a call denied at
/// authorization is over a limit.
/// Debits each account its usage, writes its ledger entry and raises the thresholds it crossed.
fn charge_usage(
    transaction: &Transaction<'_>,
    usage: &BTreeMap<String, i64>,
    links: &AccountLinks,
    batch_id: Option<i64>,
    reference: &str,
    now: i64,
) -> anyhow::Result<()> {
    let mut debit = transaction.prepare_cached(
        "UPDATE accounts SET balance_units = balance_units - ?1 WHERE id = ?2
         RETURNING balance_units",
    )?;
    let mut entry = transaction.prepare_cached(
        "INSERT INTO ledger_entries (account, kind, amount_units, balance_after_units,
            batch_id, reference, created_at_micros)
         VALUES (?1, 'usage', ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut alert = transaction.prepare_cached(
        "INSERT INTO alerts (kind, account, threshold_units, balance_units, batch_id,
            created_at_micros) VALUES ('threshold_crossed', ?1, ?2, ?3, ?4, ?5)",
    )?;
    for (account, amount) in usage {
        let balance_after: i64 = debit
            .query_row(params![amount, account], |row| row.get(0))
            .optional()?
            .with_context(|| format!("account {account} is not in the store"))?;
        entry.execute(params![
            account,
            -amount,
            balance_after,
            batch_id,
            reference,
            now
        ])?;
        let thresholds = links.thresholds_of(account);
        for threshold in thresholds_crossed(balance_after + amount, balance_after, thresholds) {
            alert.execute(params![account, threshold, balance_after, batch_id, now])?;
        }
    }
    Ok(())
}

/// Alerts each (call id, account) that happened over a limit.
fn raise_limit_exceeded(
    transaction: &Transaction<'_>,
    calls: &[(&str, &str)],
    batch_id: Option<i64>,
    now: i64,
) -> anyhow::Result<()> {
    let mut alert = transaction.prepare_cached(&format!(
        "INSERT INTO alerts (kind, account, threshold_units, balance_units, batch_id,
            created_at_micros, call_id)
         SELECT '{ALERT_KIND_LIMIT_EXCEEDED}', id, 0, balance_units, ?1, ?2, ?3
         FROM accounts WHERE id = ?4"
    ))?;
    for (call_id, account) in calls {
        alert.execute(params![batch_id, now, call_id, account])?;
    }
    Ok(())
}

fn stored_call(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredCall> {
    Ok(StoredCall {
        source: row.get(0)?,
        cdr_id: row.get(1)?,
        account: row.get(2)?,
        direction: row.get(3)?,
        caller: row.get(4)?,
        callee: row.get(5)?,
        start_time_micros: row.get(6)?,
        answer_time_micros: row.get(7)?,
        end_time_micros: row.get(8)?,
        billsec: row.get(9)?,
        disposition: row.get(10)?,
        deck: row.get(11)?,
        rate: row.get(12)?,
        billable_seconds: row.get(13)?,
        cost_units: row.get(14)?,
        currency: row.get(15)?,
        revision: row.get(16)?,
        billing_class: row.get(17)?,
        destination: row.get(18)?,
    })
}

fn settle_calls(
    transaction: &Transaction<'_>,
    calls: &[(usize, &str, &str)],
    now_micros: i64,
) -> anyhow::Result<SettledCalls> {
    let mut settled = SettledCalls::default();
    let any_open: bool = transaction.query_row(
        &format!(
            "SELECT EXISTS (SELECT 1 FROM call_authorizations WHERE state IN {SETTLEABLE_CALL_STATES})"
        ),
        [],
        |row| row.get(0),
    )?;
    if !any_open {
        return Ok(settled);
    }
    let mut settle = transaction.prepare_cached(&format!(
        "UPDATE call_authorizations SET state = {SETTLED_STATE_SQL},
            ended_at_micros = coalesce(ended_at_micros, ?1)
         WHERE call_id = ?2 AND account = ?3 AND state IN {SETTLEABLE_CALL_STATES}
         RETURNING decision"
    ))?;
    for (index, cdr_id, account) in calls {
        let decision: Option<String> = settle
            .query_row(params![now_micros, cdr_id, account], |row| row.get(0))
            .optional()?;
        if let Some(decision) = decision {
            release_holds(transaction, cdr_id, HoldsReleased::All)?;
            settled.add(*index, &decision);
        }
    }
    Ok(settled)
}

fn read_call_record(connection: &Connection, call_id: &str) -> anyhow::Result<Option<CallRecord>> {
    let row: Option<(String, String, String, String, i64)> = connection
        .prepare_cached(&format!(
            "SELECT {CALL_RECORD_COLUMNS} FROM call_authorizations WHERE call_id = ?1"
        ))?
        .query_row([call_id], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })
        .optional()?;
    row.map(|(call_id, account, state, answer, expires)| {
        call_record_from_columns(call_id, account, state, &answer, expires)
    })
    .transpose()
}

/// An alert from `ALERT_COLUMNS` starting at column `first`.
fn alert_from_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<StoredAlert> {
    Ok(StoredAlert {
        id: row.get(first)?,
        kind: row.get(first + 1)?,
        account: row.get(first + 2)?,
        threshold_units: row.get(first + 3)?,
        balance_units: row.get(first + 4)?,
        amount_units: row.get(first + 5)?,
        local_date: row.get(first + 6)?,
        batch_id: row.get(first + 7)?,
        created_at_micros: row.get(first + 8)?,
        delivery_state: row.get(first + 9)?,
        attempts: row.get(first + 10)?,
        last_error: row.get(first + 11)?,
        delivered_at_micros: row.get(first + 12)?,
        call_id: row.get(first + 13)?,
    })
}

/// The usage rollup in the embedded store (see `usage_rollup`): every write to it, and its one
/// read, go through here.
mod rollup {
    use super::*;

    /// The calls' rollup fields as stored now (calls not stored are left out): read before and
    /// after a change to some calls, the difference is what the change does to the rollup.
    pub fn calls(
        connection: &Connection,
        keys: &[(&str, &str)],
    ) -> anyhow::Result<Vec<RollupCall>> {
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {ROLLUP_CALL_COLUMNS} FROM rated_calls WHERE source = ?1 AND cdr_id = ?2"
        ))?;
        let mut calls = Vec::with_capacity(keys.len());
        for (source, cdr_id) in keys {
            let call = statement
                .query_row(params![source, cdr_id], |row| {
                    let class: String = row.get(4)?;
                    Ok(RollupCall::new(
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        &class,
                        row.get(5)?,
                    ))
                })
                .optional()?;
            calls.extend(call);
        }
        Ok(calls)
    }

    /// Moves the rollup from `before` (the calls of `keys` as [`calls`] read them before this
    /// transaction changed them) to those calls as stored now.
    pub fn apply_changed_calls(
        connection: &Connection,
        parents: &HashMap<String, Option<String>>,
        before: &[RollupCall],
        keys: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let after = calls(connection, keys)?;
        apply(
            connection,
            &RollupChange::between(&RollupTree::new(parents), before, &after),
        )
    }

    /// Adds `change` to the rollup rows, deleting rows left without calls.
    pub fn apply(connection: &Connection, change: &RollupChange) -> anyhow::Result<()> {
        let mut upsert = connection.prepare_cached(&format!(
            "INSERT INTO usage_rollup ({ROLLUP_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (ancestor, quarter_hour_micros, currency) DO UPDATE SET
                calls = usage_rollup.calls + excluded.calls,
                billable_seconds = usage_rollup.billable_seconds + excluded.billable_seconds,
                charged_units = usage_rollup.charged_units + excluded.charged_units"
        ))?;
        for ((ancestor, quarter_hour, currency), (calls, seconds, units)) in change.rows() {
            upsert.execute(params![
                ancestor,
                quarter_hour,
                currency,
                calls,
                seconds,
                units
            ])?;
        }
        if change.takes_calls_away() {
            let mut emptied = connection.prepare_cached(
                "DELETE FROM usage_rollup
                 WHERE ancestor = ?1 AND quarter_hour_micros = ?2 AND currency = ?3 AND calls = 0",
            )?;
            for ((ancestor, quarter_hour, currency), _) in
                change.rows().filter(|(_, (calls, _, _))| *calls < 0)
            {
                emptied.execute(params![ancestor, quarter_hour, currency])?;
            }
        }
        Ok(())
    }

    /// Every account's parent.
    pub fn parents(connection: &Connection) -> anyhow::Result<HashMap<String, Option<String>>> {
        Ok(connection
            .prepare("SELECT id, parent FROM accounts")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?)
    }

    /// Moves the calls of the accounts whose rollups changed with the tree, `before` → `after`.
    pub fn follow_tree(
        connection: &Connection,
        before: &HashMap<String, Option<String>>,
        after: &HashMap<String, Option<String>>,
    ) -> anyhow::Result<()> {
        let moves = rollup_moves(before, after);
        if moves.is_empty() {
            return Ok(());
        }
        let accounts: Vec<&str> = moves.iter().map(|moved| moved.account.as_str()).collect();
        let sums = connection
            .prepare(&format!(
                "SELECT account, {QUARTER_HOUR_SQL}, currency, count(*), sum(billable_seconds),
                        sum({CHARGED_UNITS_SQL})
                 FROM rated_calls WHERE account IN (SELECT value FROM json_each(?1))
                 GROUP BY 1, 2, 3"
            ))?
            .query_map([serde_json::to_string(&accounts)?], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        apply(connection, &moved_sums(&moves, &sums))
    }

    /// The rollup of `root` over whole quarter hours `[from, to)`.
    pub fn totals(
        connection: &Connection,
        root: &str,
        (from_micros, to_micros): (i64, i64),
    ) -> anyhow::Result<Vec<UsageRow>> {
        let mut statement = connection.prepare_cached(
            "SELECT quarter_hour_micros, currency, calls, billable_seconds, charged_units
             FROM usage_rollup
             WHERE ancestor = ?1 AND quarter_hour_micros >= ?2 AND quarter_hour_micros < ?3",
        )?;
        let rows = statement
            .query_map(params![root, from_micros, to_micros], |row| {
                Ok(UsageRow {
                    key: row.get::<_, i64>(0)?.to_string(),
                    currency: row.get(1)?,
                    calls: row.get(2)?,
                    billable_seconds: row.get(3)?,
                    cost_units: row.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
