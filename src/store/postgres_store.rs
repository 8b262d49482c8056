//! The PostgreSQL store: the same contract as the embedded store, with set-based writes. A batch's
//! calls arrive by one binary COPY into a temporary table, then one `INSERT … ON CONFLICT DO
//! NOTHING` keeps the new ones; rejects, conflicts, balances and ledger entries go in one
//! statement each (arrays unnested), never a round trip per CDR.
//!
//! Several tollgate instances may share one database: the dedupe key's unique index decides which
//! instance charges a call, balances are locked in account-id order, and a deadlock is retried by
//! the caller like any failed post.
//!
//! Uses the `postgres` crate, the blocking face of tokio-postgres: posting runs on its own thread
//! between bounded channels, like the rest of the pipeline.

use super::ledger_store::{
    ACCOUNT_ANCESTRY_SQL, ACCOUNT_COLUMN_COUNT, ACCOUNT_ROW_COLUMNS, ACCOUNT_SUBTREE_SQL,
    ACCOUNT_UPSERT_CHANGES, ALERT_COLUMN_COUNT, ALERT_COLUMNS, ALERT_KIND_LIMIT_EXCEEDED,
    ALERT_KIND_RECHARGE, AccountReject, AccountRow, AlertDelivery, AlertToDeliver,
    AuthorizationAnswer, CALL_RECORD_COLUMNS, CHARGED_UNITS_SQL, CallAnswers, CallCursor,
    CallRecord, CallRefusal, CallRevision, CallsQuery, CreditOutcome, DeckRecord, EntryWithKey,
    HELD_CALL_COLUMNS, HOLD_MISMATCHES_SQL, HeldCall, HoldsReleased, IngestProgress, LedgerStore,
    LedgerTotals, OPEN_CALL_STATES, RATED_CALL_COLUMNS, REJECTS_OF_ACCOUNT_SQL, RechargeRun,
    RevisionsApplied, SETTLEABLE_CALL_STATES, SETTLED_STATE_SQL, STORED_CALL_COLUMNS,
    StoredAccount, StoredAlert, StoredCall, StoredEntry, StoredReject, StoredRevision, SweepState,
    TokenScope, UNBILLED_SQL, UsageQuery, UsageRow, call_record_from_columns,
    calls_oldest_first_sql, check_period_close, columns_of, credit_already_made, earlier_answer,
    kept_alive, newest_first_cursor, now_micros, oldest_first_start, parents_first, recharge_key,
};
use super::migrations::{POSTGRES_MIGRATIONS, latest_version};
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
use anyhow::{Context, bail};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Client, GenericClient, NoTls};
use std::collections::{BTreeMap, HashMap};

/// Held while migrating, so two instances starting together do not both migrate.
const MIGRATION_LOCK_KEY: i64 = 0x746f_6c6c_6761_7465;

pub struct PostgresStore {
    client: Client,
    links: Option<(i64, SharedAccountLinks)>,
    /// [`LedgerStore::calls_oldest_first`] prepared once: an export runs it once per account.
    calls_oldest_first: Option<postgres::Statement>,
}

impl PostgresStore {
    pub fn connect(url: &str) -> anyhow::Result<PostgresStore> {
        let client = Client::connect(url, NoTls)
            .with_context(|| format!("cannot connect to PostgreSQL at {}", redact_password(url)))?;
        let mut store = PostgresStore {
            client,
            links: None,
            calls_oldest_first: None,
        };
        store.client.batch_execute(&format!(
            "SET statement_timeout = '{}s'; SET lock_timeout = '{}s'",
            crate::limits::POSTGRES_STATEMENT_TIMEOUT_SECONDS,
            crate::limits::POSTGRES_LOCK_TIMEOUT_SECONDS
        ))?;
        store.migrate()?;
        store.client.batch_execute(&format!(
            "CREATE TEMPORARY TABLE IF NOT EXISTS incoming_calls (
                seq BIGINT NOT NULL, {}) ON COMMIT DELETE ROWS",
            INCOMING_CALL_COLUMN_TYPES
        ))?;
        Ok(store)
    }

    fn migrate(&mut self) -> anyhow::Result<()> {
        let mut transaction = self.client.transaction()?;
        transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])?;
        transaction.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY, applied_at_micros BIGINT NOT NULL)",
        )?;
        let current: i64 = transaction
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )?
            .get(0);
        let latest = latest_version(POSTGRES_MIGRATIONS);
        if current > latest {
            bail!(
                "the PostgreSQL store has schema version {current}, newer than this tollgate's {latest}: upgrade tollgate"
            );
        }
        for (version, sql) in POSTGRES_MIGRATIONS {
            if *version > current {
                transaction
                    .batch_execute(sql)
                    .with_context(|| format!("schema migration {version} failed"))?;
                transaction.execute(
                    "INSERT INTO schema_migrations (version, applied_at_micros) VALUES ($1, $2)",
                    &[version, &now_micros()],
                )?;
            }
        }
        transaction.commit()?;
        Ok(())
    }

    fn read_progress(
        client: &mut impl GenericClient,
        origin_key: &str,
        lock: bool,
    ) -> anyhow::Result<Option<IngestProgress>> {
        let sql = if lock {
            "SELECT byte_offset, complete, outcome_json FROM ingest_progress WHERE origin = $1
             FOR UPDATE"
        } else {
            "SELECT byte_offset, complete, outcome_json FROM ingest_progress WHERE origin = $1"
        };
        client
            .query_opt(sql, &[&origin_key])?
            .map(|row| {
                Ok(IngestProgress {
                    byte_offset: row.get::<_, i64>(0) as u64,
                    complete: row.get(1),
                    outcome: serde_json::from_str(row.get::<_, &str>(2))
                        .context("stored outcome")?,
                })
            })
            .transpose()
    }

    fn account_links(
        client: &mut impl GenericClient,
        cache: &mut Option<(i64, SharedAccountLinks)>,
    ) -> anyhow::Result<SharedAccountLinks> {
        let generation: i64 = client
            .query_one("SELECT accounts_generation FROM store_state", &[])?
            .get(0);
        if let Some((cached, links)) = cache
            && *cached == generation
        {
            return Ok(std::sync::Arc::clone(links));
        }
        let mut links = AccountLinks::default();
        for row in client.query(&format!("SELECT {ACCOUNT_ROW_COLUMNS} FROM accounts"), &[])? {
            links.add(&account_row(&row).into_account()?);
        }
        let links = std::sync::Arc::new(links);
        *cache = Some((generation, std::sync::Arc::clone(&links)));
        Ok(links)
    }
}

/// The temporary table's columns: the rated-call columns without `batch_id`.
const INCOMING_CALL_COLUMN_TYPES: &str = "source TEXT COLLATE \"C\", cdr_id TEXT COLLATE \"C\", account TEXT, direction TEXT, \
    caller TEXT, callee TEXT, start_time_micros BIGINT, answer_time_micros BIGINT, \
    end_time_micros BIGINT, billsec BIGINT, disposition TEXT, deck TEXT, rate_prefix TEXT, \
    destination TEXT, rate NUMERIC, billable_seconds BIGINT, cost_units BIGINT, currency TEXT, \
    content_digest BIGINT";

const INCOMING_CALL_COLUMNS: &str = "source, cdr_id, account, direction, caller, callee, \
    start_time_micros, answer_time_micros, end_time_micros, billsec, disposition, deck, \
    rate_prefix, destination, rate, billable_seconds, cost_units, currency, content_digest";

fn redact_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Adds `amount` to an account's balance with a ledger entry of `kind` under an idempotency key;
/// returns the entry's id and the balance after it.
fn add_credit_entry(
    transaction: &mut postgres::Transaction<'_>,
    account: &str,
    kind: &str,
    amount: i64,
    reference: &str,
    idempotency_key: &str,
) -> anyhow::Result<(i64, i64)> {
    let balance_after: i64 = transaction
        .query_opt(
            "UPDATE accounts SET balance_units = balance_units + $1 WHERE id = $2
             RETURNING balance_units",
            &[&amount, &account],
        )?
        .with_context(|| format!("no account {account:?} in the store"))?
        .get(0);
    let entry_id: i64 = transaction
        .query_one(
            "INSERT INTO ledger_entries (account, kind, amount_units, balance_after_units,
                reference, idempotency_key, created_at_micros)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[
                &account,
                &kind,
                &amount,
                &balance_after,
                &reference,
                &idempotency_key,
                &now_micros(),
            ],
        )?
        .get(0);
    Ok((entry_id, balance_after))
}

fn account_row(row: &postgres::Row) -> AccountRow {
    AccountRow {
        id: row.get(0),
        name: row.get(1),
        parent: row.get(2),
        currency: row.get(3),
        time_zone: row.get(4),
        status: row.get(5),
        credit_limit_units: row.get(6),
        outbound_deck: row.get(7),
        inbound_deck: row.get(8),
        allow_per_minute: row.get(9),
        trunks_inbound: row.get(10),
        trunks_outbound: row.get(11),
        trunks_two_way: row.get(12),
        thresholds_json: row.get(13),
        recharge_threshold_units: row.get(14),
        recharge_amount_units: row.get(15),
        recharge_local_time: row.get(16),
        webhook_url: row.get(17),
        webhook_secret: row.get(18),
    }
}

impl LedgerStore for PostgresStore {
    fn backend_name(&self) -> &'static str {
        "postgresql"
    }

    fn ping(&mut self) -> anyhow::Result<()> {
        self.client.simple_query("SELECT 1")?;
        Ok(())
    }

    fn upsert_accounts(&mut self, accounts: &[Account]) -> anyhow::Result<()> {
        let mut transaction = self.client.transaction()?;
        // One import at a time, so the cycle check below sees every committed change.
        transaction.execute("SELECT 1 FROM store_state FOR UPDATE", &[])?;
        let parents_before = rollup::parents(&mut transaction)?;
        let upsert = transaction.prepare(&format!(
            "INSERT INTO accounts ({ACCOUNT_ROW_COLUMNS}, updated_at_micros)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                     $18, $19, $20)
             ON CONFLICT (id) DO UPDATE SET {ACCOUNT_UPSERT_CHANGES}"
        ))?;
        let now = now_micros();
        for account in parents_first(accounts) {
            let row = AccountRow::from_account(account);
            transaction.execute(
                &upsert,
                &[
                    &row.id,
                    &row.name,
                    &row.parent,
                    &row.currency,
                    &row.time_zone,
                    &row.status,
                    &row.credit_limit_units,
                    &row.outbound_deck,
                    &row.inbound_deck,
                    &row.allow_per_minute,
                    &row.trunks_inbound,
                    &row.trunks_outbound,
                    &row.trunks_two_way,
                    &row.thresholds_json,
                    &row.recharge_threshold_units,
                    &row.recharge_amount_units,
                    &row.recharge_local_time,
                    &row.webhook_url,
                    &row.webhook_secret,
                    &now,
                ],
            )?;
        }
        let parents = rollup::parents(&mut transaction)?;
        if let Some(account) = account_in_cycle(&parents) {
            bail!("account {account} would be its own ancestor: nothing was imported");
        }
        rollup::follow_tree(&mut transaction, &parents_before, &parents)?;
        transaction.execute(
            "UPDATE store_state SET accounts_generation = accounts_generation + 1",
            &[],
        )?;
        transaction.commit()?;
        Ok(())
    }

    fn accounts(&mut self) -> anyhow::Result<Vec<Account>> {
        self.client
            .query(
                &format!("SELECT {ACCOUNT_ROW_COLUMNS} FROM accounts ORDER BY id"),
                &[],
            )?
            .iter()
            .map(|row| account_row(row).into_account())
            .collect()
    }

    fn account(&mut self, id: &str) -> anyhow::Result<Option<StoredAccount>> {
        self.client
            .query_opt(
                &format!("SELECT {ACCOUNT_ROW_COLUMNS}, balance_units FROM accounts WHERE id = $1"),
                &[&id],
            )?
            .map(|row| {
                Ok(StoredAccount {
                    account: account_row(&row).into_account()?,
                    balance_units: row.get(19),
                })
            })
            .transpose()
    }

    fn accounts_generation(&mut self) -> anyhow::Result<i64> {
        Ok(self
            .client
            .query_one("SELECT accounts_generation FROM store_state", &[])?
            .get(0))
    }

    fn record_decks(&mut self, decks: &[DeckRecord]) -> anyhow::Result<()> {
        let names: Vec<&str> = decks.iter().map(|deck| deck.name.as_str()).collect();
        let versions: Vec<&str> = decks.iter().map(|deck| deck.version.as_str()).collect();
        let currencies: Vec<&str> = decks.iter().map(|deck| deck.currency.as_str()).collect();
        self.client.execute(
            "INSERT INTO decks (name, version, currency, first_used_at_micros)
             SELECT name, version, currency, $4
             FROM UNNEST($1::text[], $2::text[], $3::text[]) AS d (name, version, currency)
             ON CONFLICT DO NOTHING",
            &[&names, &versions, &currencies, &now_micros()],
        )?;
        Ok(())
    }

    fn post_batch(&mut self, batch: &PostingBatch) -> anyhow::Result<PostingOutcome> {
        let mut transaction = self.client.transaction()?;
        // Two instances posting the same origin take turns, even before it has a progress row
        // (which `FOR UPDATE` alone could not lock).
        transaction.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&batch.origin.key],
        )?;
        let previous = Self::read_progress(&mut transaction, &batch.origin.key, true)?;
        if let Some(answer) = replayed_outcome(batch, previous.as_ref()) {
            return Ok(answer);
        }
        let now = now_micros();
        let batch_id: i64 = transaction
            .query_one(
                "INSERT INTO batches (origin, origin_label, start_offset, end_offset,
                    committed_at_micros) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[
                    &batch.origin.key,
                    &batch.origin.label,
                    &(batch.start_offset as i64),
                    &(batch.end_offset as i64),
                    &now,
                ],
            )?
            .get(0);

        let repeats = batch.repeats_within_batch();
        let columns = CallColumns::of(batch);
        {
            let sink = transaction.copy_in(&format!(
                "COPY incoming_calls (seq, {INCOMING_CALL_COLUMNS}) FROM STDIN BINARY"
            ))?;
            let types = [
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::NUMERIC,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::INT8,
            ];
            let mut writer = BinaryCopyInWriter::new(sink, &types);
            for (index, repeat) in repeats.iter().enumerate() {
                if repeat.is_some() {
                    continue;
                }
                let values: [&(dyn ToSql + Sync); 20] = [
                    &(index as i64),
                    &columns.source.value(index),
                    &columns.cdr_id.value(index),
                    &columns.account.value(index),
                    &columns.direction.value(index),
                    &columns.caller.value(index),
                    &columns.callee.value(index),
                    &columns.start_time.value(index),
                    &CallColumns::time(columns.answer_time, index),
                    &CallColumns::time(columns.end_time, index),
                    &columns.billsec.value(index),
                    &columns.disposition.value(index),
                    &columns.deck.value(index),
                    &CallColumns::text(columns.rate_prefix, index),
                    &CallColumns::text(columns.destination, index),
                    &columns.rate_decimal(index),
                    &columns.billable_seconds.value(index),
                    &batch.cost_units[index],
                    &columns.currency.value(index),
                    &(batch.content_digest[index] as i64),
                ];
                writer.write(&values)?;
            }
            writer.finish()?;
        }
        // Sorted by key, so two instances inserting overlapping batches take the index's locks
        // in the same order.
        let offered = repeats.iter().filter(|repeat| repeat.is_none()).count() as u64;
        let inserted = transaction.execute(
            &format!(
                "INSERT INTO rated_calls ({RATED_CALL_COLUMNS})
                 SELECT {INCOMING_CALL_COLUMNS}, $1 FROM incoming_calls
                 ORDER BY account, start_time_micros, source, cdr_id
                 ON CONFLICT DO NOTHING"
            ),
            &[&batch_id],
        )?;
        // Only when some calls were already stored is it worth finding which (the usual batch
        // has none).
        let stored_digest: HashMap<usize, u64> = if inserted == offered {
            HashMap::new()
        } else {
            transaction
                .query(
                    "SELECT i.seq, r.content_digest FROM incoming_calls i
                     JOIN rated_calls r ON r.source = i.source AND r.cdr_id = i.cdr_id
                     WHERE r.batch_id <> $1",
                    &[&batch_id],
                )?
                .iter()
                .map(|row| (row.get::<_, i64>(0) as usize, row.get::<_, i64>(1) as u64))
                .collect()
        };
        let mut fates = decide_fates(batch, &repeats, &stored_digest);
        rollup::hold_tree(&mut transaction)?;
        let links = Self::account_links(&mut transaction, &mut self.links)?;
        let mut settled = settle_calls(&mut transaction, &new_calls(batch, &fates), now)?;
        settled.hold_unauthorized(batch, &fates, &links)?;
        settled.apply_to(&mut fates);
        let classes = settled.billing_classes();
        if !classes.is_empty() {
            let columns = CallColumns::of(batch);
            transaction.execute(
                "UPDATE rated_calls r SET billing_class = t.class
                 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t (source, cdr_id, class)
                 WHERE r.source = t.source AND r.cdr_id = t.cdr_id",
                &[
                    &classes
                        .iter()
                        .map(|(index, _)| columns.source.value(*index))
                        .collect::<Vec<_>>(),
                    &classes
                        .iter()
                        .map(|(index, _)| columns.cdr_id.value(*index))
                        .collect::<Vec<_>>(),
                    &classes.iter().map(|(_, class)| *class).collect::<Vec<_>>(),
                ],
            )?;
        }

        let mut conflict_source = Vec::new();
        let mut conflict_cdr_id = Vec::new();
        let mut conflict_digest = Vec::new();
        let mut conflict_stored = Vec::new();
        let mut conflict_json = Vec::new();
        for (index, fate) in fates.iter().enumerate() {
            if let CallFate::Conflict {
                stored_content_digest,
            } = fate
            {
                conflict_source.push(columns.source.value(index));
                conflict_cdr_id.push(columns.cdr_id.value(index));
                conflict_digest.push(batch.content_digest[index] as i64);
                conflict_stored.push(*stored_content_digest as i64);
                conflict_json.push(call_as_json(batch, index));
            }
        }
        if !conflict_source.is_empty() {
            transaction.execute(
                "INSERT INTO conflicts (source, cdr_id, batch_id, content_digest,
                    stored_content_digest, record_json)
                 SELECT s, c, $6, d, sd, j
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[])
                   AS t (s, c, d, sd, j)",
                &[
                    &conflict_source,
                    &conflict_cdr_id,
                    &conflict_digest,
                    &conflict_stored,
                    &conflict_json,
                    &batch_id,
                ],
            )?;
        }
        if !batch.rejects.is_empty() {
            let lines: Vec<i64> = batch.rejects.iter().map(|r| r.line as i64).collect();
            let reasons: Vec<&str> = batch.rejects.iter().map(|r| r.reason.as_str()).collect();
            let raws: Vec<&str> = batch
                .rejects
                .iter()
                .map(|r| r.raw_record.as_str())
                .collect();
            let accounts: Vec<Option<&str>> =
                batch.rejects.iter().map(|r| r.account.as_deref()).collect();
            transaction.execute(
                "INSERT INTO rejects
                   (origin, line, origin_label, batch_id, reason, raw_record, account)
                 SELECT $4, l, $5, $6, r, w, a
                 FROM UNNEST($1::bigint[], $2::text[], $3::text[], $7::text[]) AS t (l, r, w, a)
                 ON CONFLICT DO NOTHING",
                &[
                    &lines,
                    &reasons,
                    &raws,
                    &batch.origin.key,
                    &batch.origin.label,
                    &batch_id,
                    &accounts,
                ],
            )?;
        }

        let usage = usage_by_account(batch, &fates, &links.parents)?;
        let reference = format!("batch {batch_id}");
        charge_usage(
            &mut transaction,
            &usage,
            &links,
            Some(batch_id),
            &reference,
            now,
        )?;
        let over_limit = settled.over_limit_calls(batch);
        raise_limit_exceeded(&mut transaction, &over_limit, Some(batch_id), now)?;
        rollup::apply(
            &mut transaction,
            &posted_calls(batch, &fates, &RollupTree::new(&links.parents)),
        )?;
        let mut outcome = outcome_of(batch, &fates, batch_id);
        outcome.limit_exceeded = settled.over_limit.len() as u64;
        transaction.execute(
            "UPDATE batches SET rated = $1, rejected = $2, duplicates = $3, conflicts = $4,
                charged_units = $5 WHERE id = $6",
            &[
                &(outcome.rated as i64),
                &(outcome.rejected as i64),
                &(outcome.duplicates as i64),
                &(outcome.conflicts as i64),
                &outcome.charged_units,
                &batch_id,
            ],
        )?;
        let progress = progress_after(batch, previous.as_ref(), &outcome);
        transaction.execute(
            "INSERT INTO ingest_progress (origin, origin_label, byte_offset, complete, outcome_json,
                updated_at_micros) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (origin) DO UPDATE SET byte_offset = excluded.byte_offset,
                complete = excluded.complete, outcome_json = excluded.outcome_json,
                updated_at_micros = excluded.updated_at_micros",
            &[
                &batch.origin.key,
                &batch.origin.label,
                &(progress.byte_offset as i64),
                &progress.complete,
                &serde_json::to_string(&progress.outcome)?,
                &now,
            ],
        )?;
        transaction.commit()?;
        Ok(outcome)
    }

    fn ingest_progress(&mut self, origin_key: &str) -> anyhow::Result<Option<IngestProgress>> {
        Self::read_progress(&mut self.client, origin_key, false)
    }

    fn rejects_of(&mut self, origin_key: &str) -> anyhow::Result<Vec<StoredReject>> {
        Ok(self
            .client
            .query(
                "SELECT origin_label, line, reason, raw_record FROM rejects WHERE origin = $1
                 ORDER BY line",
                &[&origin_key],
            )?
            .iter()
            .map(|row| StoredReject {
                origin_label: row.get(0),
                line: row.get::<_, i64>(1) as u64,
                reason: row.get(2),
                raw_record: row.get(3),
            })
            .collect())
    }

    fn account_ancestry(&mut self, account: &str) -> anyhow::Result<Vec<String>> {
        Ok(self
            .client
            .query(ACCOUNT_ANCESTRY_SQL, &[&account])?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    fn account_subtree(&mut self, account: &str) -> anyhow::Result<Vec<(String, Option<String>)>> {
        Ok(self
            .client
            .query(ACCOUNT_SUBTREE_SQL, &[&account])?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }

    fn rejects_of_account(
        &mut self,
        account: &str,
        before: Option<(i64, i64)>,
        limit: usize,
    ) -> anyhow::Result<Vec<AccountReject>> {
        let (before_batch, before_line) = before.unwrap_or((i64::MAX, i64::MAX));
        Ok(self
            .client
            .query(
                REJECTS_OF_ACCOUNT_SQL,
                &[&account, &before_batch, &before_line, &(limit as i64)],
            )?
            .iter()
            .map(|row| AccountReject {
                batch_id: row.get(0),
                rejected_at_micros: row.get(1),
                reject: StoredReject {
                    origin_label: row.get(2),
                    line: row.get::<_, i64>(3) as u64,
                    reason: row.get(4),
                    raw_record: row.get(5),
                },
            })
            .collect())
    }

    fn ledger_totals(&mut self) -> anyhow::Result<LedgerTotals> {
        let calls = self.client.query_one(
            &format!(
                "SELECT count(*), coalesce(sum({CHARGED_UNITS_SQL}), 0)::bigint FROM rated_calls"
            ),
            &[],
        )?;
        let conflicts: i64 = self
            .client
            .query_one("SELECT count(*) FROM conflicts", &[])?
            .get(0);
        let rejects: i64 = self
            .client
            .query_one("SELECT count(*) FROM rejects", &[])?
            .get(0);
        let balance_mismatches = self
            .client
            .query(
                "SELECT a.id FROM accounts a
                 LEFT JOIN (SELECT account, sum(amount_units) AS total FROM ledger_entries
                            GROUP BY account) e ON e.account = a.id
                 WHERE a.balance_units <> coalesce(e.total, 0) ORDER BY a.id",
                &[],
            )?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let hold_mismatches = self
            .client
            .query(HOLD_MISMATCHES_SQL, &[])?
            .iter()
            .map(|row| row.get(0))
            .collect();
        Ok(LedgerTotals {
            rated_calls: calls.get::<_, i64>(0) as u64,
            rated_cost_units: calls.get(1),
            conflicts: conflicts as u64,
            rejects: rejects as u64,
            balance_mismatches,
            hold_mismatches,
        })
    }

    fn usage_units(&mut self, account: &str) -> anyhow::Result<i64> {
        Ok(self
            .client
            .query_one(
                "SELECT coalesce(sum(amount_units), 0)::bigint FROM ledger_entries
                 WHERE account = $1 AND kind = 'usage'",
                &[&account],
            )?
            .get(0))
    }

    fn credit(
        &mut self,
        account: &str,
        amount_units: i64,
        reason: &str,
        idempotency_key: &str,
    ) -> anyhow::Result<CreditOutcome> {
        let mut transaction = self.client.transaction()?;
        // Two credits with one key at once take turns: the second sees the first.
        transaction.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 1))",
            &[&idempotency_key],
        )?;
        let earlier = transaction
            .query_opt(
                "SELECT id, account, kind, amount_units, balance_after_units FROM ledger_entries
                 WHERE idempotency_key = $1",
                &[&idempotency_key],
            )?
            .map(|row| EntryWithKey {
                entry_id: row.get(0),
                account: row.get(1),
                kind: row.get(2),
                amount_units: row.get(3),
                balance_after_units: row.get(4),
            });
        if let Some(made) = credit_already_made(earlier, account, amount_units, idempotency_key)? {
            return Ok(made);
        }
        let (entry_id, balance_after_units) = add_credit_entry(
            &mut transaction,
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
        Ok(self
            .client
            .query(
                &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE account = $1 ORDER BY id"),
                &[&account],
            )?
            .iter()
            .map(|row| alert_from_row(row, 0))
            .collect())
    }

    fn run_auto_recharge(
        &mut self,
        account: &str,
        local_date: chrono::NaiveDate,
    ) -> anyhow::Result<RechargeRun> {
        let mut transaction = self.client.transaction()?;
        let row = transaction
            .query_opt(
                "SELECT balance_units, recharge_threshold_units, recharge_amount_units
                 FROM accounts WHERE id = $1 FOR UPDATE",
                &[&account],
            )?
            .with_context(|| format!("no account {account:?} in the store"))?;
        let balance: i64 = row.get(0);
        let (Some(threshold), Some(amount)) =
            (row.get::<_, Option<i64>>(1), row.get::<_, Option<i64>>(2))
        else {
            bail!("account {account} has no auto-recharge");
        };
        let now = now_micros();
        let date_text = local_date.to_string();
        let first_run = transaction.execute(
            "INSERT INTO recharge_runs (account, local_date, balance_before_units, credited_units,
                ran_at_micros) VALUES ($1, $2, $3, 0, $4) ON CONFLICT DO NOTHING",
            &[&account, &date_text, &balance, &now],
        )? == 1;
        let mut run = RechargeRun {
            already_ran: !first_run,
            credited_units: 0,
            balance_after_units: balance,
        };
        if first_run && balance < threshold {
            run.balance_after_units = add_credit_entry(
                &mut transaction,
                account,
                "auto_recharge",
                amount,
                &format!("auto-recharge {local_date}"),
                &recharge_key(account, local_date),
            )?
            .1;
            run.credited_units = amount;
            transaction.execute(
                "UPDATE recharge_runs SET credited_units = $1 WHERE account = $2 AND local_date = $3",
                &[&amount, &account, &date_text],
            )?;
            transaction.execute(
                "INSERT INTO alerts (kind, account, threshold_units, balance_units, amount_units,
                    local_date, created_at_micros) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &ALERT_KIND_RECHARGE,
                    &account,
                    &threshold,
                    &run.balance_after_units,
                    &amount,
                    &date_text,
                    &now,
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
        // SKIP LOCKED: instances sharing the database claim different alerts.
        let rows = self.client.query(
            &format!(
                "WITH due AS (
                    SELECT id FROM alerts
                    WHERE delivery_state = 'pending' AND next_attempt_at_micros <= $1
                    ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
                 UPDATE alerts a SET attempts = a.attempts + 1, next_attempt_at_micros = $3
                 FROM due, accounts acc
                 WHERE a.id = due.id AND acc.id = a.account
                 RETURNING {}, acc.currency, acc.webhook_url, acc.webhook_secret",
                columns_of("a", ALERT_COLUMNS)
            ),
            &[&now_micros, &(limit as i64), &(now_micros + lease_micros)],
        )?;
        let mut claimed: Vec<AlertToDeliver> = rows
            .iter()
            .map(|row| AlertToDeliver {
                alert: alert_from_row(row, 0),
                currency: row.get(ALERT_COLUMN_COUNT),
                webhook_url: row.get(ALERT_COLUMN_COUNT + 1),
                webhook_secret: row.get(ALERT_COLUMN_COUNT + 2),
            })
            .collect();
        claimed.sort_by_key(|claimed| claimed.alert.id);
        Ok(claimed)
    }

    fn record_alert_delivery(
        &mut self,
        alert_id: i64,
        attempt: i64,
        delivery: &AlertDelivery,
    ) -> anyhow::Result<()> {
        let (state, next_attempt, error, delivered_at) = delivery.stored_fields();
        self.client.execute(
            "UPDATE alerts SET delivery_state = $1,
                next_attempt_at_micros = coalesce($2, next_attempt_at_micros),
                last_error = coalesce($3, last_error), delivered_at_micros = $4
             WHERE id = $5 AND attempts = $6 AND delivery_state = 'pending'",
            &[
                &state,
                &next_attempt,
                &error,
                &delivered_at,
                &alert_id,
                &attempt,
            ],
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
        Ok(self
            .client
            .query_one(
                "INSERT INTO rerate_runs (scope, from_micros, to_micros, decks, started_at_micros)
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[&scope, &from_micros, &to_micros, &decks, &now_micros()],
            )?
            .get(0))
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
        let rows = self.client.query(
            &format!(
                "SELECT {STORED_CALL_COLUMNS} FROM rated_calls
                 WHERE account = $1 AND start_time_micros >= $2 AND start_time_micros < $3
                   AND (start_time_micros, source, cdr_id) > ($2, $4, $5)
                 ORDER BY start_time_micros, source, cdr_id LIMIT $6"
            ),
            &[
                &account,
                &start.start_time_micros,
                &to_micros,
                &start.source,
                &start.cdr_id,
                &(limit as i64),
            ],
        )?;
        Ok(rows.iter().map(stored_call).collect())
    }

    fn apply_call_revisions(
        &mut self,
        rerate_run: i64,
        revisions: &[CallRevision],
    ) -> anyhow::Result<RevisionsApplied> {
        let mut transaction = self.client.transaction()?;
        let now = now_micros();
        let column =
            |pick: fn(&CallRevision) -> &str| -> Vec<&str> { revisions.iter().map(pick).collect() };
        let numbers =
            |pick: fn(&CallRevision) -> i64| -> Vec<i64> { revisions.iter().map(pick).collect() };
        let sources = column(|r| &r.source);
        let cdr_ids = column(|r| &r.cdr_id);
        let new_decks = column(|r| &r.new_deck);
        let prefixes: Vec<Option<&str>> = revisions
            .iter()
            .map(|r| r.new_rate_prefix.as_deref())
            .collect();
        let destinations: Vec<Option<&str>> = revisions
            .iter()
            .map(|r| r.new_destination.as_deref())
            .collect();
        let rates: Vec<Option<rust_decimal::Decimal>> =
            revisions.iter().map(|r| r.new_rate).collect();
        let unrevised = rollup::calls(&mut transaction, &sources, &cdr_ids)?;
        let revised: std::collections::HashSet<(String, String)> = transaction
            .query(
                "UPDATE rated_calls r SET deck = n.deck, rate_prefix = n.rate_prefix,
                    destination = n.destination, rate = n.rate,
                    billable_seconds = n.billable_seconds, cost_units = n.cost_units,
                    revision = r.revision + 1
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                        $6::text[], $7::numeric[], $8::bigint[], $9::bigint[])
                   AS n (source, cdr_id, expected, deck, rate_prefix, destination, rate,
                         billable_seconds, cost_units)
                 WHERE r.source = n.source AND r.cdr_id = n.cdr_id AND r.revision = n.expected
                 RETURNING r.source, r.cdr_id",
                &[
                    &sources,
                    &cdr_ids,
                    &numbers(|r| r.expected_revision),
                    &new_decks,
                    &prefixes,
                    &destinations,
                    &rates,
                    &numbers(|r| r.new_billable_seconds),
                    &numbers(|r| r.new_cost_units),
                ],
            )?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let applied: Vec<&CallRevision> = revisions
            .iter()
            .filter(|r| revised.contains(&(r.source.clone(), r.cdr_id.clone())))
            .collect();
        let pick = |text: fn(&CallRevision) -> &str| -> Vec<&str> {
            applied.iter().map(|r| text(r)).collect()
        };
        let pick_number = |number: fn(&CallRevision) -> i64| -> Vec<i64> {
            applied.iter().map(|r| number(r)).collect()
        };
        transaction.execute(
            "INSERT INTO call_revisions (source, cdr_id, revision, rerate_run, old_deck, new_deck,
                old_rate, new_rate, old_billable_seconds, new_billable_seconds, old_cost_units,
                new_cost_units, revised_at_micros)
             SELECT s, c, e + 1, $10, od, nd, orate, nrate::text, ob, nb, oc, nc, $11
             FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                    $6::text[], $7::numeric[], $8::bigint[], $9::bigint[], $12::bigint[],
                    $13::bigint[])
               AS x (s, c, e, od, nd, orate, nrate, ob, nb, oc, nc)",
            &[
                &pick(|r| &r.source),
                &pick(|r| &r.cdr_id),
                &pick_number(|r| r.expected_revision),
                &pick(|r| &r.old_deck),
                &pick(|r| &r.new_deck),
                &applied
                    .iter()
                    .map(|r| r.old_rate.as_deref())
                    .collect::<Vec<_>>(),
                &applied.iter().map(|r| r.new_rate).collect::<Vec<_>>(),
                &pick_number(|r| r.old_billable_seconds),
                &pick_number(|r| r.new_billable_seconds),
                &rerate_run,
                &now,
                &pick_number(|r| r.old_cost_units),
                &pick_number(|r| r.new_cost_units),
            ],
        )?;
        rollup::hold_tree(&mut transaction)?;
        let links = Self::account_links(&mut transaction, &mut self.links)?;
        let moved: Vec<String> = accounts_moved(&applied, &links)?.into_iter().collect();
        let balances_before: HashMap<String, i64> = transaction
            .query(
                "SELECT id, balance_units FROM accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                &[&moved],
            )?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let plan = plan_rerate_ledger(rerate_run, &applied, &links, &balances_before)?;
        transaction.execute(
            "INSERT INTO ledger_entries (account, kind, amount_units, balance_after_units,
                reference, created_at_micros)
             SELECT a, 'rerate', m, b, r, $5
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[]) WITH ORDINALITY
               AS x (a, m, b, r, n) ORDER BY n",
            &[
                &plan
                    .entries
                    .iter()
                    .map(|e| e.account.as_str())
                    .collect::<Vec<_>>(),
                &plan
                    .entries
                    .iter()
                    .map(|e| e.amount_units)
                    .collect::<Vec<_>>(),
                &plan
                    .entries
                    .iter()
                    .map(|e| e.balance_after_units)
                    .collect::<Vec<_>>(),
                &plan
                    .entries
                    .iter()
                    .map(|e| e.reference.as_str())
                    .collect::<Vec<_>>(),
                &now,
            ],
        )?;
        transaction.execute(
            "UPDATE accounts a SET balance_units = x.b
             FROM UNNEST($1::text[], $2::bigint[]) AS x (id, b) WHERE a.id = x.id",
            &[
                &plan
                    .balances_after
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
                &plan.balances_after.values().copied().collect::<Vec<_>>(),
            ],
        )?;
        transaction.execute(
            "INSERT INTO alerts (kind, account, threshold_units, balance_units, created_at_micros)
             SELECT 'threshold_crossed', a, t, b, $4
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) AS x (a, t, b)",
            &[
                &plan.alerts.iter().map(|a| a.0.as_str()).collect::<Vec<_>>(),
                &plan.alerts.iter().map(|a| a.1).collect::<Vec<_>>(),
                &plan.alerts.iter().map(|a| a.2).collect::<Vec<_>>(),
                &now,
            ],
        )?;
        rollup::apply_changed_calls(
            &mut transaction,
            &links.parents,
            &unrevised,
            &sources,
            &cdr_ids,
        )?;
        transaction.commit()?;
        Ok(applied_totals(&applied))
    }

    fn finish_rerate_run(
        &mut self,
        rerate_run: i64,
        calls_examined: u64,
        applied: &RevisionsApplied,
    ) -> anyhow::Result<()> {
        self.client.execute(
            "UPDATE rerate_runs SET finished_at_micros = $1, calls_examined = $2,
                calls_changed = $3, net_units = $4 WHERE id = $5",
            &[
                &now_micros(),
                &(calls_examined as i64),
                &(applied.changed as i64),
                &applied.net_units(),
                &rerate_run,
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
        let mut transaction = self.client.transaction()?;
        let authorizations = if requests.is_empty() {
            Vec::new()
        } else {
            let links = Self::account_links(&mut transaction, &mut self.links)?;
            authorize_in(
                &mut transaction,
                &links,
                requests,
                expires_at_micros,
                decide,
            )?
        };
        let ends = if ended_call_ids.is_empty() {
            Vec::new()
        } else {
            end_in(
                &mut transaction,
                ended_call_ids,
                now_micros,
                settle_by_micros,
            )?
        };
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
        self.client.execute(
            "UPDATE call_authorizations SET expires_at_micros = $1
             WHERE call_id = $2 AND state = 'active'",
            &[&expires_at_micros, &call_id],
        )?;
        kept_alive(self.call_record(call_id)?)
    }

    fn expire_calls(&mut self, now_micros: i64) -> anyhow::Result<u64> {
        let mut transaction = self.client.transaction()?;
        let expired: Vec<String> = transaction
            .query(
                &format!(
                    "UPDATE call_authorizations
                     SET state = CASE state WHEN 'active' THEN 'expired' ELSE 'unsettled' END,
                         ended_at_micros = coalesce(ended_at_micros, $1)
                     WHERE state IN {OPEN_CALL_STATES} AND expires_at_micros < $1
                     RETURNING call_id"
                ),
                &[&now_micros],
            )?
            .iter()
            .map(|row| row.get(0))
            .collect();
        release_holds(&mut transaction, &expired, HoldsReleased::All)?;
        transaction.execute(
            "UPDATE call_authorizations SET state = 'closed'
             WHERE state = 'denied' AND authorized_at_micros < $1",
            &[&(now_micros - DENIAL_KEPT_SECONDS * 1_000_000)],
        )?;
        transaction.commit()?;
        Ok(expired.len() as u64)
    }

    fn call_record(&mut self, call_id: &str) -> anyhow::Result<Option<CallRecord>> {
        self.client
            .query_opt(
                &format!(
                    "SELECT {CALL_RECORD_COLUMNS} FROM call_authorizations WHERE call_id = $1"
                ),
                &[&call_id],
            )?
            .map(|row| {
                call_record_from_columns(row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
            })
            .transpose()
    }

    fn create_token(
        &mut self,
        token_sha256: &str,
        account: Option<&str>,
        label: &str,
    ) -> anyhow::Result<i64> {
        let row = self.client.query_one(
            "INSERT INTO api_tokens (token_sha256, account, label, created_at_micros)
             VALUES ($1, $2, $3, $4) RETURNING id",
            &[&token_sha256, &account, &label, &now_micros()],
        )?;
        Ok(row.get(0))
    }

    fn revoke_token(&mut self, id: i64) -> anyhow::Result<bool> {
        Ok(self.client.execute(
            "UPDATE api_tokens SET revoked_at_micros = coalesce(revoked_at_micros, $1)
             WHERE id = $2",
            &[&now_micros(), &id],
        )? == 1)
    }

    fn token_scope(&mut self, token_sha256: &str) -> anyhow::Result<Option<TokenScope>> {
        let row = self.client.query_opt(
            "SELECT account FROM api_tokens
             WHERE token_sha256 = $1 AND revoked_at_micros IS NULL",
            &[&token_sha256],
        )?;
        Ok(row.map(|row| {
            row.get::<_, Option<String>>(0)
                .map_or(TokenScope::Operator, TokenScope::Account)
        }))
    }

    fn account_holds(&mut self, account: &str) -> anyhow::Result<Vec<(String, i64, i64)>> {
        Ok(self
            .client
            .query(
                "SELECT trunk_kind, calls, reserved_units FROM account_holds
                 WHERE account = $1 ORDER BY trunk_kind",
                &[&account],
            )?
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect())
    }

    fn calls_newest_first(&mut self, query: &CallsQuery) -> anyhow::Result<Vec<StoredCall>> {
        let before = newest_first_cursor(query);
        // One account is an equality, so the index gives the order and the page stops at its
        // limit; `= ANY` of a list is read whole and sorted.
        let accounts_sql = match query.accounts.len() {
            1 => "account = ($1::text[])[1]",
            _ => "account = ANY($1)",
        };
        let rows = self.client.query(
            &format!(
                "SELECT {STORED_CALL_COLUMNS} FROM rated_calls
                 WHERE {accounts_sql}
                   AND start_time_micros >= $2 AND start_time_micros < $3
                   AND ($4::text IS NULL OR direction = $4)
                   AND start_time_micros <= $5
                   AND (start_time_micros, source, cdr_id) < ($5, $6, $7)
                   AND (NOT $9 OR {UNBILLED_SQL})
                 ORDER BY start_time_micros DESC, source DESC, cdr_id DESC LIMIT $8"
            ),
            &[
                &query.accounts,
                &query.from_micros,
                &query.to_micros,
                &query.direction,
                &before.start_time_micros,
                &before.source,
                &before.cdr_id,
                &(query.limit as i64),
                &query.unbilled_only,
            ],
        )?;
        Ok(rows.iter().map(stored_call).collect())
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
        let statement = match &self.calls_oldest_first {
            Some(statement) => statement.clone(),
            None => self
                .calls_oldest_first
                .insert(self.client.prepare(&calls_oldest_first_sql())?)
                .clone(),
        };
        let rows = self.client.query(
            &statement,
            &[
                &account,
                &from_micros,
                &to_micros,
                &after.start_time_micros,
                &after.source,
                &after.cdr_id,
                &(limit as i64),
            ],
        )?;
        Ok(rows.iter().map(stored_call).collect())
    }

    fn close_billing_period(&mut self, account: &str, at_micros: i64) -> anyhow::Result<i64> {
        let mut transaction = self.client.transaction()?;
        // Locks the account row: two closes of one account take turns.
        transaction.query_opt(
            "SELECT id FROM accounts WHERE id = $1 FOR UPDATE",
            &[&account],
        )?;
        let open_from: Option<i64> = transaction
            .query_opt(
                "SELECT open_from_micros FROM billing_periods WHERE account = $1",
                &[&account],
            )?
            .map(|row| row.get(0));
        check_period_close(open_from, account, at_micros)?;
        transaction.execute(
            "INSERT INTO billing_periods (account, open_from_micros, closed_at_micros)
             VALUES ($1, $2, $3)
             ON CONFLICT (account) DO UPDATE SET open_from_micros = excluded.open_from_micros,
                closed_at_micros = excluded.closed_at_micros",
            &[&account, &at_micros, &now_micros()],
        )?;
        transaction.commit()?;
        Ok(at_micros)
    }

    fn usage_totals(&mut self, query: &UsageQuery) -> anyhow::Result<Vec<UsageRow>> {
        // One snapshot: the rollup and the calls at the ends of its span agree.
        let mut transaction = self
            .client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let totals = match rollup_query_span(query) {
            Some((root, span)) => {
                let mut totals = rollup::totals(&mut transaction, root, span.whole)?;
                for (from_micros, to_micros) in span.edges {
                    totals.extend(usage_of_calls(
                        &mut transaction,
                        &UsageQuery {
                            from_micros,
                            to_micros,
                            ..query.clone()
                        },
                    )?);
                }
                totals
            }
            None => usage_of_calls(&mut transaction, query)?,
        };
        transaction.commit()?;
        Ok(totals)
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
        let rows = self.client.query(
            "SELECT id, kind, amount_units, balance_after_units, reference, created_at_micros
             FROM ledger_entries
             WHERE account = $1 AND created_at_micros >= $2 AND created_at_micros < $3
               AND ($4::text IS NULL OR kind = $4) AND id > $5
             ORDER BY id LIMIT $6",
            &[
                &account,
                &from_micros,
                &to_micros,
                &kind,
                &after_id,
                &(limit as i64),
            ],
        )?;
        Ok(rows
            .iter()
            .map(|row| StoredEntry {
                id: row.get(0),
                kind: row.get(1),
                amount_units: row.get(2),
                balance_after_units: row.get(3),
                reference: row.get(4),
                created_at_micros: row.get(5),
            })
            .collect())
    }

    fn held_calls(
        &mut self,
        cutoff_micros: i64,
        limit: usize,
    ) -> anyhow::Result<(SweepState, Vec<HeldCall>)> {
        let mut transaction = self.client.build_transaction().read_only(true).start()?;
        let state = transaction.query_one(
            "SELECT version, state_json FROM trunk_sweep WHERE id = 1",
            &[],
        )?;
        let calls = transaction
            .query(
                &format!(
                    "SELECT {HELD_CALL_COLUMNS} FROM rated_calls
                     WHERE billing_class = '{HELD_FOR_SWEEP}'
                       AND coalesce(answer_time_micros, start_time_micros) <= $1
                     ORDER BY call_start_micros, source, cdr_id LIMIT $2"
                ),
                &[&cutoff_micros, &(limit as i64)],
            )?
            .iter()
            .map(|row| HeldCall {
                source: row.get(0),
                cdr_id: row.get(1),
                account: row.get(2),
                direction: row.get(3),
                caller: row.get(4),
                callee: row.get(5),
                start_micros: row.get(6),
                end_micros: row.get(7),
                billsec: row.get(8),
                cost_units: row.get(9),
            })
            .collect();
        transaction.commit()?;
        Ok((SweepState::from_stored(state.get(0), state.get(1))?, calls))
    }

    fn apply_sweep(
        &mut self,
        expected_version: i64,
        sweep: &TrunkSweep,
        classes: &[(HeldCall, BillingClass)],
    ) -> anyhow::Result<Option<i64>> {
        let mut transaction = self.client.transaction()?;
        // Waits for a concurrent sweep's commit, then sees its version: one of two applies.
        let moved = transaction.execute(
            "UPDATE trunk_sweep SET version = version + 1, state_json = $1
             WHERE id = 1 AND version = $2",
            &[&serde_json::to_string(sweep)?, &expected_version],
        )?;
        if moved == 0 {
            return Ok(None);
        }
        let now = now_micros();
        let sources: Vec<&str> = classes
            .iter()
            .map(|(call, _)| call.source.as_str())
            .collect();
        let cdr_ids: Vec<&str> = classes
            .iter()
            .map(|(call, _)| call.cdr_id.as_str())
            .collect();
        let held = rollup::calls(&mut transaction, &sources, &cdr_ids)?;
        let classified = transaction.execute(
            &format!(
                "UPDATE rated_calls r SET billing_class = t.class
                 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t (source, cdr_id, class)
                 WHERE r.source = t.source AND r.cdr_id = t.cdr_id
                   AND r.billing_class = '{HELD_FOR_SWEEP}'"
            ),
            &[
                &sources,
                &cdr_ids,
                &classes
                    .iter()
                    .map(|(_, class)| class.as_str())
                    .collect::<Vec<_>>(),
            ],
        )?;
        if classified != classes.len() as u64 {
            bail!(
                "{} of {} calls are no longer held for the sweep",
                classes.len() as u64 - classified,
                classes.len()
            );
        }
        rollup::hold_tree(&mut transaction)?;
        let links = Self::account_links(&mut transaction, &mut self.links)?;
        let charges = sweep_charges(classes, &links.parents)?;
        let reference = format!("trunk sweep {}", expected_version + 1);
        charge_usage(
            &mut transaction,
            &charges.usage,
            &links,
            None,
            &reference,
            now,
        )?;
        raise_limit_exceeded(&mut transaction, &charges.over_limit, None, now)?;
        rollup::apply_changed_calls(&mut transaction, &links.parents, &held, &sources, &cdr_ids)?;
        transaction.commit()?;
        Ok(Some(charges.charged_units))
    }

    fn call_revisions_of(
        &mut self,
        source: &str,
        cdr_id: &str,
    ) -> anyhow::Result<Vec<StoredRevision>> {
        Ok(self
            .client
            .query(
                "SELECT revision, rerate_run, old_deck, new_deck, old_cost_units, new_cost_units
                 FROM call_revisions WHERE source = $1 AND cdr_id = $2 ORDER BY revision",
                &[&source, &cdr_id],
            )?
            .iter()
            .map(|row| StoredRevision {
                revision: row.get(0),
                rerate_run: row.get(1),
                old_deck: row.get(2),
                new_deck: row.get(3),
                old_cost_units: row.get(4),
                new_cost_units: row.get(5),
            })
            .collect())
    }
}

/// A call decided in a batch: (request, identity, decision, state, answer JSON).
type DecidedCall<'r> = (
    &'r AuthorizationRequest,
    String,
    &'static str,
    &'static str,
    String,
);

/// Deletes the calls' holds (or only their trunks) and takes them off their accounts' running
/// totals. The accounts are locked first, in id order, as authorizations lock them, so a release
/// and a batch of authorizations never wait for each other in opposite orders.
fn release_holds(
    transaction: &mut postgres::Transaction<'_>,
    call_ids: &[String],
    which: HoldsReleased,
) -> anyhow::Result<()> {
    if call_ids.is_empty() {
        return Ok(());
    }
    transaction.execute(
        "SELECT 1 FROM accounts WHERE id IN (SELECT account FROM call_holds WHERE call_id = ANY($1))
         ORDER BY id FOR UPDATE",
        &[&call_ids],
    )?;
    transaction.execute(
        "WITH released AS (
            DELETE FROM call_holds WHERE call_id = ANY($1) AND ($2 OR trunk_kind <> 'none')
            RETURNING account, trunk_kind, reserved_units)
         UPDATE account_holds h SET calls = h.calls - r.calls,
            reserved_units = h.reserved_units - r.reserved
         FROM (SELECT account, trunk_kind, count(*) AS calls,
                      sum(reserved_units)::bigint AS reserved
               FROM released GROUP BY account, trunk_kind) r
         WHERE h.account = r.account AND h.trunk_kind = r.trunk_kind",
        &[&call_ids, &(which == HoldsReleased::All)],
    )?;
    Ok(())
}

/// Settles the authorized calls among a batch's new calls (index, cdr_id, account): their CDR is
/// posted in this transaction, so what they still hold is released with it; a call denied at
/// authorization is over a limit.
/// Debits each account its usage (locked in id order), writes its ledger entry and raises the
/// thresholds it crossed.
fn charge_usage(
    transaction: &mut impl GenericClient,
    usage: &BTreeMap<String, i64>,
    links: &AccountLinks,
    batch_id: Option<i64>,
    reference: &str,
    now: i64,
) -> anyhow::Result<()> {
    if usage.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = usage.keys().map(String::as_str).collect();
    let amounts: Vec<i64> = usage.values().copied().collect();
    let locked = transaction.query(
        "SELECT id FROM accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&ids],
    )?;
    if locked.len() != ids.len() {
        bail!("a charged account is not in the store");
    }
    let debited = transaction.query(
        "WITH debited AS (
            UPDATE accounts a SET balance_units = a.balance_units - d.amount
            FROM UNNEST($1::text[], $2::bigint[]) AS d (id, amount)
            WHERE a.id = d.id
            RETURNING a.id, d.amount, a.balance_units),
         entries AS (
            INSERT INTO ledger_entries (account, kind, amount_units, balance_after_units,
                batch_id, reference, created_at_micros)
            SELECT id, 'usage', -amount, balance_units, $3, $4, $5 FROM debited
            ORDER BY id)
         SELECT id, amount, balance_units FROM debited",
        &[&ids, &amounts, &batch_id, &reference, &now],
    )?;
    let mut alert_accounts = Vec::new();
    let mut alert_thresholds = Vec::new();
    let mut alert_balances = Vec::new();
    for row in &debited {
        let account: &str = row.get(0);
        let (amount, balance_after): (i64, i64) = (row.get(1), row.get(2));
        let thresholds = links.thresholds_of(account);
        for threshold in thresholds_crossed(balance_after + amount, balance_after, thresholds) {
            alert_accounts.push(account);
            alert_thresholds.push(threshold);
            alert_balances.push(balance_after);
        }
    }
    if !alert_accounts.is_empty() {
        transaction.execute(
            "INSERT INTO alerts (kind, account, threshold_units, balance_units, batch_id,
                created_at_micros)
             SELECT 'threshold_crossed', a, t, b, $4, $5
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) AS x (a, t, b)",
            &[
                &alert_accounts,
                &alert_thresholds,
                &alert_balances,
                &batch_id,
                &now,
            ],
        )?;
    }
    Ok(())
}

/// Alerts each (call id, account) that happened over a limit.
fn raise_limit_exceeded(
    transaction: &mut impl GenericClient,
    calls: &[(&str, &str)],
    batch_id: Option<i64>,
    now: i64,
) -> anyhow::Result<()> {
    if calls.is_empty() {
        return Ok(());
    }
    transaction.execute(
        &format!(
            "INSERT INTO alerts (kind, account, threshold_units, balance_units, batch_id,
                created_at_micros, call_id)
             SELECT '{ALERT_KIND_LIMIT_EXCEEDED}', a.id, 0, a.balance_units, $3, $4, x.call_id
             FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS x (call_id, account, n)
             JOIN accounts a ON a.id = x.account ORDER BY x.n"
        ),
        &[
            &calls
                .iter()
                .map(|(call_id, _)| *call_id)
                .collect::<Vec<_>>(),
            &calls
                .iter()
                .map(|(_, account)| *account)
                .collect::<Vec<_>>(),
            &batch_id,
            &now,
        ],
    )?;
    Ok(())
}

fn stored_call(row: &postgres::Row) -> StoredCall {
    StoredCall {
        source: row.get(0),
        cdr_id: row.get(1),
        account: row.get(2),
        direction: row.get(3),
        caller: row.get(4),
        callee: row.get(5),
        start_time_micros: row.get(6),
        answer_time_micros: row.get(7),
        end_time_micros: row.get(8),
        billsec: row.get(9),
        disposition: row.get(10),
        deck: row.get(11),
        rate: row.get(12),
        billable_seconds: row.get(13),
        cost_units: row.get(14),
        currency: row.get(15),
        revision: row.get(16),
        billing_class: row.get(17),
        destination: row.get(18),
    }
}

fn settle_calls(
    transaction: &mut postgres::Transaction<'_>,
    calls: &[(usize, &str, &str)],
    now_micros: i64,
) -> anyhow::Result<SettledCalls> {
    let mut settled = SettledCalls::default();
    let any_open: bool = transaction
        .query_one(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM call_authorizations WHERE state IN {SETTLEABLE_CALL_STATES})"
            ),
            &[],
        )?
        .get(0);
    if !any_open || calls.is_empty() {
        return Ok(settled);
    }
    let rows = transaction.query(
        &format!(
            "UPDATE call_authorizations c SET state = {SETTLED_STATE_SQL},
                ended_at_micros = coalesce(c.ended_at_micros, $4)
             FROM UNNEST($1::bigint[], $2::text[], $3::text[]) AS x (seq, call_id, account)
             WHERE c.call_id = x.call_id AND c.account = x.account
               AND c.state IN {SETTLEABLE_CALL_STATES}
             RETURNING x.seq, c.call_id, c.decision"
        ),
        &[
            &calls.iter().map(|call| call.0 as i64).collect::<Vec<_>>(),
            &calls.iter().map(|call| call.1).collect::<Vec<_>>(),
            &calls.iter().map(|call| call.2).collect::<Vec<_>>(),
            &now_micros,
        ],
    )?;
    let settled_ids: Vec<String> = rows.iter().map(|row| row.get(1)).collect();
    release_holds(transaction, &settled_ids, HoldsReleased::All)?;
    for row in &rows {
        settled.add(row.get::<_, i64>(0) as usize, row.get(2));
    }
    Ok(settled)
}

/// Usage totals summed call by call, in `transaction`.
fn usage_of_calls(
    transaction: &mut postgres::Transaction<'_>,
    query: &UsageQuery,
) -> anyhow::Result<Vec<UsageRow>> {
    let key = query.key_sql();
    // A reseller's month is hundreds of thousands of calls into a few thousand groups: a
    // hash groups them in a third of the time of the sort the planner sometimes prefers for
    // a parameterised array, and that sort spills to disk at the default work_mem.
    transaction.batch_execute("SET LOCAL enable_sort = off; SET LOCAL work_mem = '64MB'")?;
    let rows = transaction.query(
        &format!(
            "SELECT {key} AS usage_key, currency, count(*), sum(billable_seconds)::BIGINT,
                        sum({CHARGED_UNITS_SQL})::BIGINT
                 FROM rated_calls
                 WHERE account = ANY($1)
                   AND start_time_micros >= $2 AND start_time_micros < $3
                 GROUP BY usage_key, currency"
        ),
        &[&query.accounts, &query.from_micros, &query.to_micros],
    )?;
    let totals: Vec<UsageRow> = rows
        .iter()
        .map(|row| UsageRow {
            key: row.get(0),
            currency: row.get(1),
            calls: row.get(2),
            billable_seconds: row.get(3),
            cost_units: row.get(4),
        })
        .collect();
    Ok(totals)
}

/// An alert from `ALERT_COLUMNS` starting at column `first`.
fn alert_from_row(row: &postgres::Row, first: usize) -> StoredAlert {
    StoredAlert {
        id: row.get(first),
        kind: row.get(first + 1),
        account: row.get(first + 2),
        threshold_units: row.get(first + 3),
        balance_units: row.get(first + 4),
        amount_units: row.get(first + 5),
        local_date: row.get(first + 6),
        batch_id: row.get(first + 7),
        created_at_micros: row.get(first + 8),
        delivery_state: row.get(first + 9),
        attempts: row.get(first + 10),
        last_error: row.get(first + 11),
        delivered_at_micros: row.get(first + 12),
        call_id: row.get(first + 13),
    }
}

/// The authorizations of a batch inside its transaction (see `LedgerStore::answer_calls`).
fn authorize_in(
    transaction: &mut postgres::Transaction<'_>,
    links: &AccountLinks,
    requests: &[AuthorizationRequest],
    expires_at_micros: i64,
    decide: &mut dyn FnMut(&AuthorizationRequest, &[ChainLevel]) -> Authorization,
) -> anyhow::Result<Vec<Result<AuthorizationAnswer, CallRefusal>>> {
    // Every authorization touching one of the batch's accounts waits here: the accounts of
    // all its chains are locked at once, in id order (so two instances cannot deadlock), and
    // the call ids' locks order retries of one call.
    let mut chains = Vec::with_capacity(requests.len());
    let mut locked: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    for request in requests {
        let chain = if links.parents.contains_key(&request.account) {
            Some(account_chain(&request.account, &links.parents)?)
        } else {
            None
        };
        chains.push(chain);
    }
    for chain in chains.iter().flatten() {
        locked.extend(chain.iter().map(String::as_str));
    }
    let mut call_ids: Vec<&str> = requests.iter().map(|r| r.call_id.as_str()).collect();
    call_ids.sort_unstable();
    call_ids.dedup();
    transaction.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(c, 2))
             FROM UNNEST($1::text[]) AS c ORDER BY c",
        &[&call_ids],
    )?;
    let accounts: BTreeMap<String, (Account, i64)> = transaction
        .query(
            &format!(
                "SELECT {ACCOUNT_ROW_COLUMNS}, balance_units FROM accounts
                     WHERE id = ANY($1) ORDER BY id FOR UPDATE"
            ),
            &[&locked.into_iter().collect::<Vec<_>>()],
        )?
        .iter()
        .map(|row| {
            let balance: i64 = row.get(ACCOUNT_COLUMN_COUNT);
            Ok((row.get(0), (account_row(row).into_account()?, balance)))
        })
        .collect::<anyhow::Result<_>>()?;
    // The batch is decided in memory from two reads (earlier answers of its call ids, hold
    // totals of its accounts), kept up to date as it goes, and written with three statements:
    // a constant handful of round trips whatever the batch's size.
    let mut earlier: HashMap<String, (String, String, String)> = transaction
        .query(
            "SELECT call_id, identity, answer_json, state FROM call_authorizations
                 WHERE call_id = ANY($1)",
            &[&call_ids],
        )?
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2), row.get(3))))
        .collect();
    let mut totals: BTreeMap<(String, String), (i64, i64)> = transaction
        .query(
            "SELECT account, trunk_kind, calls, reserved_units FROM account_holds
                 WHERE account = ANY($1)",
            &[&accounts.keys().collect::<Vec<_>>()],
        )?
        .iter()
        .map(|row| ((row.get(0), row.get(1)), (row.get(2), row.get(3))))
        .collect();
    let now = now_micros();
    let mut answers = Vec::with_capacity(requests.len());
    // Per call id, the last decision of the batch: (request, identity, decision, state, answer).
    let mut decided: BTreeMap<&str, DecidedCall> = BTreeMap::new();
    let mut new_holds: Vec<(&str, String, &'static str, i64)> = Vec::new();
    for (request, chain) in requests.iter().zip(&chains) {
        let identity = request.identity();
        if let Some((stored_identity, answer, state)) = earlier.get(&request.call_id)
            && let Some(answered) =
                earlier_answer(&request.call_id, &identity, stored_identity, answer, state)?
        {
            answers.push(answered);
            continue;
        }
        let Some(chain) = chain else {
            answers.push(Err(CallRefusal::UnknownAccount(request.account.clone())));
            continue;
        };
        let held: Vec<(String, String, i64, i64)> = totals
            .iter()
            .filter(|((account, _), _)| chain.contains(account))
            .map(|((account, kind), (calls, reserved))| {
                (account.clone(), kind.clone(), *calls, *reserved)
            })
            .collect();
        let authorization = decide(request, &chain_levels(chain, &accounts, &held)?);
        let state = if authorization.decision == Decision::Deny {
            "denied"
        } else {
            for hold in &authorization.holds {
                let kind = trunk_kind_text(hold.trunk);
                let total = totals
                    .entry((hold.account.clone(), kind.to_string()))
                    .or_insert((0, 0));
                total.0 += 1;
                total.1 += hold.reserved_units;
                new_holds.push((
                    &request.call_id,
                    hold.account.clone(),
                    kind,
                    hold.reserved_units,
                ));
            }
            "active"
        };
        let answer = serde_json::to_string(&authorization)?;
        earlier.insert(
            request.call_id.clone(),
            (identity.clone(), answer.clone(), state.to_string()),
        );
        decided.insert(
            &request.call_id,
            (
                request,
                identity,
                authorization.decision.as_str(),
                state,
                answer,
            ),
        );
        answers.push(Ok(AuthorizationAnswer {
            authorization,
            replayed: false,
        }));
    }
    if !decided.is_empty() {
        let rows: Vec<_> = decided.values().collect();
        transaction.execute(
            "INSERT INTO call_authorizations (call_id, account, identity, decision, state,
                    answer_json, authorized_at_micros, expires_at_micros)
                 SELECT c, a, i, d, s, j, $7, $8
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::text[]) AS x (c, a, i, d, s, j)
                 ON CONFLICT (call_id) DO UPDATE SET decision = excluded.decision,
                    state = excluded.state, answer_json = excluded.answer_json,
                    authorized_at_micros = excluded.authorized_at_micros,
                    expires_at_micros = excluded.expires_at_micros",
            &[
                &rows
                    .iter()
                    .map(|row| row.0.call_id.as_str())
                    .collect::<Vec<_>>(),
                &rows
                    .iter()
                    .map(|row| row.0.account.as_str())
                    .collect::<Vec<_>>(),
                &rows.iter().map(|row| row.1.as_str()).collect::<Vec<_>>(),
                &rows.iter().map(|row| row.2).collect::<Vec<_>>(),
                &rows.iter().map(|row| row.3).collect::<Vec<_>>(),
                &rows.iter().map(|row| row.4.as_str()).collect::<Vec<_>>(),
                &now,
                &expires_at_micros,
            ],
        )?;
    }
    if !new_holds.is_empty() {
        let mut deltas: BTreeMap<(&str, &str), (i64, i64)> = BTreeMap::new();
        for (_, account, kind, reserved) in &new_holds {
            let delta = deltas.entry((account.as_str(), kind)).or_insert((0, 0));
            delta.0 += 1;
            delta.1 += reserved;
        }
        transaction.execute(
            "INSERT INTO call_holds (call_id, account, trunk_kind, reserved_units)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[])",
            &[
                &new_holds.iter().map(|hold| hold.0).collect::<Vec<_>>(),
                &new_holds
                    .iter()
                    .map(|hold| hold.1.as_str())
                    .collect::<Vec<_>>(),
                &new_holds.iter().map(|hold| hold.2).collect::<Vec<_>>(),
                &new_holds.iter().map(|hold| hold.3).collect::<Vec<_>>(),
            ],
        )?;
        transaction.execute(
            "INSERT INTO account_holds (account, trunk_kind, calls, reserved_units)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[])
                 ON CONFLICT (account, trunk_kind) DO UPDATE
                 SET calls = account_holds.calls + excluded.calls,
                     reserved_units = account_holds.reserved_units + excluded.reserved_units",
            &[
                &deltas.keys().map(|key| key.0).collect::<Vec<_>>(),
                &deltas.keys().map(|key| key.1).collect::<Vec<_>>(),
                &deltas.values().map(|delta| delta.0).collect::<Vec<_>>(),
                &deltas.values().map(|delta| delta.1).collect::<Vec<_>>(),
            ],
        )?;
    }
    Ok(answers)
}

/// The ends of a batch inside its transaction (see `LedgerStore::answer_calls`).
fn end_in(
    transaction: &mut postgres::Transaction<'_>,
    call_ids: &[String],
    now_micros: i64,
    settle_by_micros: i64,
) -> anyhow::Result<Vec<Option<CallRecord>>> {
    let ended: Vec<String> = transaction
        .query(
            "UPDATE call_authorizations SET state = 'ended', ended_at_micros = $1,
                    expires_at_micros = $3
                 WHERE call_id = ANY($2) AND state = 'active' RETURNING call_id",
            &[&now_micros, &call_ids, &settle_by_micros],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    release_holds(transaction, &ended, HoldsReleased::TrunksOnly)?;
    let mut records: HashMap<String, CallRecord> = HashMap::new();
    for row in transaction.query(
        &format!("SELECT {CALL_RECORD_COLUMNS} FROM call_authorizations WHERE call_id = ANY($1)"),
        &[&call_ids],
    )? {
        let record =
            call_record_from_columns(row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))?;
        records.insert(record.call_id.clone(), record);
    }
    Ok(call_ids.iter().map(|id| records.get(id).cloned()).collect())
}

/// The usage rollup in PostgreSQL (see `usage_rollup`): every write to it, and its one read, go
/// through here.
mod rollup {
    use super::*;

    /// Makes an import wait for this transaction, and this one for an import under way: the
    /// rollups this transaction changes are those of the tree it reads next, and an import moves
    /// calls between rollups only once the calls it moves are committed.
    pub fn hold_tree(transaction: &mut postgres::Transaction<'_>) -> anyhow::Result<()> {
        transaction.execute("SELECT 1 FROM store_state FOR SHARE", &[])?;
        Ok(())
    }

    /// The calls' rollup fields as stored now (calls not stored are left out): read before and
    /// after a change to some calls, the difference is what the change does to the rollup.
    pub fn calls(
        transaction: &mut postgres::Transaction<'_>,
        sources: &[&str],
        cdr_ids: &[&str],
    ) -> anyhow::Result<Vec<RollupCall>> {
        let rows = transaction.query(
            &format!(
                "SELECT {ROLLUP_CALL_COLUMNS} FROM rated_calls r
                 JOIN UNNEST($1::text[], $2::text[]) AS k (source, cdr_id)
                   ON r.source = k.source AND r.cdr_id = k.cdr_id"
            ),
            &[&sources, &cdr_ids],
        )?;
        Ok(rows
            .iter()
            .map(|row| {
                RollupCall::new(
                    row.get(0),
                    row.get(1),
                    row.get(2),
                    row.get(3),
                    row.get(4),
                    row.get(5),
                )
            })
            .collect())
    }

    /// Moves the rollup from `before` (the calls of `sources` and `cdr_ids` as [`calls`] read
    /// them before this transaction changed them) to those calls as stored now.
    pub fn apply_changed_calls(
        transaction: &mut postgres::Transaction<'_>,
        parents: &HashMap<String, Option<String>>,
        before: &[RollupCall],
        sources: &[&str],
        cdr_ids: &[&str],
    ) -> anyhow::Result<()> {
        let after = calls(transaction, sources, cdr_ids)?;
        apply(
            transaction,
            &RollupChange::between(&RollupTree::new(parents), before, &after),
        )
    }

    /// Adds `change` to the rollup rows (in key order, so writers lock rows in one order),
    /// deleting rows left without calls.
    pub fn apply(
        transaction: &mut postgres::Transaction<'_>,
        change: &RollupChange,
    ) -> anyhow::Result<()> {
        if change.is_empty() {
            return Ok(());
        }
        let mut ancestors = Vec::new();
        let mut quarter_hours = Vec::new();
        let mut currencies = Vec::new();
        let mut calls = Vec::new();
        let mut seconds = Vec::new();
        let mut units = Vec::new();
        for ((ancestor, quarter_hour, currency), sums) in change.rows() {
            ancestors.push(ancestor.as_str());
            quarter_hours.push(*quarter_hour);
            currencies.push(currency.as_str());
            calls.push(sums.0);
            seconds.push(sums.1);
            units.push(sums.2);
        }
        transaction.execute(
            &format!(
                "INSERT INTO usage_rollup ({ROLLUP_COLUMNS})
                 SELECT a, q, c, n, s, u FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::bigint[],
                    $5::bigint[], $6::bigint[]) WITH ORDINALITY AS x (a, q, c, n, s, u, o)
                 ORDER BY o
                 ON CONFLICT (ancestor, quarter_hour_micros, currency) DO UPDATE SET
                    calls = usage_rollup.calls + excluded.calls,
                    billable_seconds = usage_rollup.billable_seconds + excluded.billable_seconds,
                    charged_units = usage_rollup.charged_units + excluded.charged_units"
            ),
            &[&ancestors, &quarter_hours, &currencies, &calls, &seconds, &units],
        )?;
        if change.takes_calls_away() {
            transaction.execute(
                "DELETE FROM usage_rollup u
                 USING UNNEST($1::text[], $2::bigint[], $3::text[]) AS x (a, q, c)
                 WHERE u.ancestor = x.a AND u.quarter_hour_micros = x.q AND u.currency = x.c
                   AND u.calls = 0",
                &[&ancestors, &quarter_hours, &currencies],
            )?;
        }
        Ok(())
    }

    /// Every account's parent.
    pub fn parents(
        transaction: &mut postgres::Transaction<'_>,
    ) -> anyhow::Result<HashMap<String, Option<String>>> {
        Ok(transaction
            .query("SELECT id, parent FROM accounts", &[])?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }

    /// Moves the calls of the accounts whose rollups changed with the tree, `before` → `after`.
    pub fn follow_tree(
        transaction: &mut postgres::Transaction<'_>,
        before: &HashMap<String, Option<String>>,
        after: &HashMap<String, Option<String>>,
    ) -> anyhow::Result<()> {
        let moves = rollup_moves(before, after);
        if moves.is_empty() {
            return Ok(());
        }
        let accounts: Vec<&str> = moves.iter().map(|moved| moved.account.as_str()).collect();
        let sums: Vec<(String, i64, String, i64, i64, i64)> = transaction
            .query(
                &format!(
                    "SELECT account, {QUARTER_HOUR_SQL}, currency, count(*),
                            sum(billable_seconds)::BIGINT, sum({CHARGED_UNITS_SQL})::BIGINT
                     FROM rated_calls WHERE account = ANY($1)
                     GROUP BY 1, 2, 3"
                ),
                &[&accounts],
            )?
            .iter()
            .map(|row| {
                (
                    row.get(0),
                    row.get(1),
                    row.get(2),
                    row.get(3),
                    row.get(4),
                    row.get(5),
                )
            })
            .collect();
        apply(transaction, &moved_sums(&moves, &sums))
    }

    /// The rollup of `root` over whole quarter hours `[from, to)`.
    pub fn totals(
        transaction: &mut postgres::Transaction<'_>,
        root: &str,
        (from_micros, to_micros): (i64, i64),
    ) -> anyhow::Result<Vec<UsageRow>> {
        Ok(transaction
            .query(
                "SELECT quarter_hour_micros, currency, calls, billable_seconds, charged_units
                 FROM usage_rollup
                 WHERE ancestor = $1 AND quarter_hour_micros >= $2 AND quarter_hour_micros < $3",
                &[&root, &from_micros, &to_micros],
            )?
            .iter()
            .map(|row| UsageRow {
                key: row.get::<_, i64>(0).to_string(),
                currency: row.get(1),
                calls: row.get(2),
                billable_seconds: row.get(3),
                cost_units: row.get(4),
            })
            .collect())
    }
}
