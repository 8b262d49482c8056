//! Versioned schema migrations of both stores. Each version is applied once, in order, in one
//! transaction with its row in `schema_migrations`; a store newer than this binary is refused.
//!
//! Version 2 adds the alerts outbox: an alert row is written in the posting's transaction and
//! delivered afterwards. Version 3 adds `recharge_runs`: one row per account and local date, the
//! store's guarantee that the daily auto-recharge runs at most once. Version 4 turns the alerts
//! outbox into one of events (threshold crossings, auto-recharges, calls over a limit) with their
//! delivery record
//! (alerts raised before delivery existed are marked `not_sent`, not sent late in a burst),
//! and adds rerating: a revision number on each rated call, the history of its revisions, the runs
//! that made them, and the index by account and start time that rerating and the portal read by.
//! Version 5 adds real-time authorization: each rated call's billing class (`trunk` when its
//! authorization put it on a trunk: stored at list price, not charged), the calls authorized, what
//! each holds (a trunk,
//! reserved money) on every account of its chain while it is up, and per account and trunk kind
//! the running totals of those holds, which authorizations read (one row each, however many calls
//! came and went, so PostgreSQL never scans dead rows of ended calls).
//! Version 6 adds the trunk sweep: calls posted without authorization on accounts with limits are
//! stored with billing class `held` (not charged) until the sweep classifies them, and the
//! sweep's carried state (calls still on a trunk, how far it has got) is one row with a version
//! that each sweep moves on by compare-and-set. Versions 7 and 8 add the portal's API tokens
//! (stored as SHA-256 only) and billing-period closes. Version 9 gives each reject its CDR's
//! account, when the record named one, so operators can list an account's rejects, and indexes
//! accounts by parent, so the portal walks one account's family instead of reading them all; and the calls' index by
//! account and start time carries what usage totals read, so they never visit the table.
//! Version 10 adds the usage rollup (see `usage_rollup`): per account with sub-accounts, quarter
//! hour and currency, the calls, billable seconds and charged units of its whole subtree, derived
//! here from the calls already stored and kept from then on in every transaction that changes
//! calls or the account tree.
//! Version 11 stores the rated calls in account and start-time order: everything the portal reads
//! is one account's calls over a time range, which is then a few runs of the table instead of a
//! table lookup per call. The embedded store's table becomes a `WITHOUT ROWID` table keyed by
//! account, start time and dedupe key (the dedupe key unique by an index of its own), and the
//! account-and-time index is gone with it. PostgreSQL rewrites its heap in the order of that index
//! (`CLUSTER`), and posting inserts each batch's calls in that order, so an account's calls share
//! heap pages batch by batch.
//! PostgreSQL's version 12 orders that index by the whole page order (account, start time, source,
//! cdr_id), as the embedded table is: a page of calls, oldest or newest first, is then one index
//! range read in order, never sorted, and a cursor is a bound of the index scan, not a filter.
//!
//! Money is BIGINT ledger units (8 decimals, see `money::LEDGER_DECIMALS`) in both stores, and
//! times are microseconds since the Unix epoch, so both stores compute the same sums exactly.

/// (version, SQL) for the embedded store.
pub const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "
CREATE TABLE store_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    accounts_generation INTEGER NOT NULL
);
INSERT INTO store_state (id, accounts_generation) VALUES (1, 0);
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT,
    parent TEXT REFERENCES accounts (id),
    currency TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    status TEXT NOT NULL,
    credit_limit_units INTEGER,
    outbound_deck TEXT,
    inbound_deck TEXT,
    allow_per_minute INTEGER NOT NULL,
    trunks_inbound INTEGER NOT NULL,
    trunks_outbound INTEGER NOT NULL,
    trunks_two_way INTEGER NOT NULL,
    thresholds_json TEXT NOT NULL,
    recharge_threshold_units INTEGER,
    recharge_amount_units INTEGER,
    recharge_local_time TEXT,
    webhook_url TEXT,
    webhook_secret TEXT,
    balance_units INTEGER NOT NULL DEFAULT 0,
    updated_at_micros INTEGER NOT NULL
);
CREATE TABLE decks (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    currency TEXT NOT NULL,
    first_used_at_micros INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE batches (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    origin_label TEXT NOT NULL,
    start_offset INTEGER NOT NULL,
    end_offset INTEGER NOT NULL,
    rated INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    conflicts INTEGER NOT NULL DEFAULT 0,
    charged_units INTEGER NOT NULL DEFAULT 0,
    committed_at_micros INTEGER NOT NULL
);
CREATE TABLE rated_calls (
    source TEXT NOT NULL,
    cdr_id TEXT NOT NULL,
    account TEXT NOT NULL,
    direction TEXT NOT NULL,
    caller TEXT NOT NULL,
    callee TEXT NOT NULL,
    start_time_micros INTEGER NOT NULL,
    answer_time_micros INTEGER,
    end_time_micros INTEGER,
    billsec INTEGER NOT NULL,
    disposition TEXT NOT NULL,
    deck TEXT NOT NULL,
    rate_prefix TEXT,
    destination TEXT,
    rate TEXT,
    billable_seconds INTEGER NOT NULL,
    cost_units INTEGER NOT NULL,
    currency TEXT NOT NULL,
    content_digest INTEGER NOT NULL,
    batch_id INTEGER NOT NULL,
    PRIMARY KEY (source, cdr_id)
) WITHOUT ROWID;
CREATE TABLE conflicts (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    cdr_id TEXT NOT NULL,
    batch_id INTEGER NOT NULL,
    content_digest INTEGER NOT NULL,
    stored_content_digest INTEGER NOT NULL,
    record_json TEXT NOT NULL
);
CREATE TABLE rejects (
    origin TEXT NOT NULL,
    line INTEGER NOT NULL,
    origin_label TEXT NOT NULL,
    batch_id INTEGER NOT NULL,
    reason TEXT NOT NULL,
    raw_record TEXT NOT NULL,
    PRIMARY KEY (origin, line)
);
CREATE TABLE ledger_entries (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts (id),
    kind TEXT NOT NULL,
    amount_units INTEGER NOT NULL,
    balance_after_units INTEGER NOT NULL,
    batch_id INTEGER,
    reference TEXT,
    idempotency_key TEXT UNIQUE,
    created_at_micros INTEGER NOT NULL
);
CREATE INDEX ledger_entries_by_account ON ledger_entries (account, id);
CREATE TABLE ingest_progress (
    origin TEXT PRIMARY KEY,
    origin_label TEXT NOT NULL,
    byte_offset INTEGER NOT NULL,
    complete INTEGER NOT NULL,
    outcome_json TEXT NOT NULL,
    updated_at_micros INTEGER NOT NULL
);
",
    ),
    (
        2,
        "
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts (id),
    threshold_units INTEGER NOT NULL,
    balance_units INTEGER NOT NULL,
    batch_id INTEGER,
    created_at_micros INTEGER NOT NULL,
    delivery_state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_micros INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX alerts_by_account ON alerts (account, id);
CREATE INDEX alerts_to_deliver ON alerts (delivery_state, next_attempt_at_micros);
",
    ),
    (
        3,
        "
CREATE TABLE recharge_runs (
    account TEXT NOT NULL REFERENCES accounts (id),
    local_date TEXT NOT NULL,
    balance_before_units INTEGER NOT NULL,
    credited_units INTEGER NOT NULL,
    ran_at_micros INTEGER NOT NULL,
    PRIMARY KEY (account, local_date)
);
",
    ),
    (
        4,
        "
ALTER TABLE alerts ADD COLUMN kind TEXT NOT NULL DEFAULT 'threshold_crossed';
ALTER TABLE alerts ADD COLUMN amount_units INTEGER;
ALTER TABLE alerts ADD COLUMN local_date TEXT;
ALTER TABLE alerts ADD COLUMN delivered_at_micros INTEGER;
ALTER TABLE alerts ADD COLUMN call_id TEXT;
UPDATE alerts SET delivery_state = 'not_sent' WHERE delivery_state = 'pending';
ALTER TABLE rated_calls ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
CREATE INDEX rated_calls_by_account_time ON rated_calls (account, start_time_micros);
CREATE TABLE rerate_runs (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    from_micros INTEGER NOT NULL,
    to_micros INTEGER NOT NULL,
    decks TEXT NOT NULL,
    started_at_micros INTEGER NOT NULL,
    finished_at_micros INTEGER,
    calls_examined INTEGER NOT NULL DEFAULT 0,
    calls_changed INTEGER NOT NULL DEFAULT 0,
    net_units INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE call_revisions (
    source TEXT NOT NULL,
    cdr_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    rerate_run INTEGER NOT NULL REFERENCES rerate_runs (id),
    old_deck TEXT NOT NULL,
    new_deck TEXT NOT NULL,
    old_rate TEXT,
    new_rate TEXT,
    old_billable_seconds INTEGER NOT NULL,
    new_billable_seconds INTEGER NOT NULL,
    old_cost_units INTEGER NOT NULL,
    new_cost_units INTEGER NOT NULL,
    revised_at_micros INTEGER NOT NULL,
    PRIMARY KEY (source, cdr_id, revision)
);
",
    ),
    (
        5,
        "
ALTER TABLE rated_calls ADD COLUMN billing_class TEXT NOT NULL DEFAULT 'per_minute';
CREATE TABLE call_authorizations (
    call_id TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts (id),
    identity TEXT NOT NULL,
    decision TEXT NOT NULL,
    state TEXT NOT NULL,
    answer_json TEXT NOT NULL,
    authorized_at_micros INTEGER NOT NULL,
    expires_at_micros INTEGER NOT NULL,
    ended_at_micros INTEGER
);
CREATE INDEX call_authorizations_to_expire ON call_authorizations (state, expires_at_micros);
CREATE TABLE call_holds (
    call_id TEXT NOT NULL REFERENCES call_authorizations (call_id),
    account TEXT NOT NULL REFERENCES accounts (id),
    trunk_kind TEXT NOT NULL,
    reserved_units INTEGER NOT NULL,
    PRIMARY KEY (call_id, account)
);
CREATE TABLE account_holds (
    account TEXT NOT NULL REFERENCES accounts (id),
    trunk_kind TEXT NOT NULL,
    calls INTEGER NOT NULL,
    reserved_units INTEGER NOT NULL,
    PRIMARY KEY (account, trunk_kind)
);
",
    ),
    (
        6,
        "
CREATE TABLE trunk_sweep (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL,
    state_json TEXT NOT NULL
);
INSERT INTO trunk_sweep (id, version, state_json) VALUES (1, 0, '{}');
CREATE INDEX rated_calls_held ON rated_calls (billing_class) WHERE billing_class = 'held';
",
    ),
    (
        7,
        "
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    account TEXT REFERENCES accounts (id),
    label TEXT NOT NULL,
    created_at_micros INTEGER NOT NULL,
    revoked_at_micros INTEGER
);
",
    ),
    (
        8,
        "
CREATE TABLE billing_periods (
    account TEXT PRIMARY KEY REFERENCES accounts (id),
    open_from_micros INTEGER NOT NULL,
    closed_at_micros INTEGER NOT NULL
);
",
    ),
    (
        9,
        "
ALTER TABLE rejects ADD COLUMN account TEXT;
CREATE INDEX rejects_by_account ON rejects (account, batch_id, line);
CREATE INDEX accounts_by_parent ON accounts (parent);
DROP INDEX rated_calls_by_account_time;
CREATE INDEX rated_calls_by_account_time
    ON rated_calls (account, start_time_micros, currency, billing_class, billable_seconds, cost_units);
",
    ),
    (
        10,
        "
CREATE TABLE usage_rollup (
    ancestor TEXT NOT NULL,
    quarter_hour_micros INTEGER NOT NULL,
    currency TEXT NOT NULL,
    calls INTEGER NOT NULL,
    billable_seconds INTEGER NOT NULL,
    charged_units INTEGER NOT NULL,
    PRIMARY KEY (ancestor, quarter_hour_micros, currency)
) WITHOUT ROWID;
INSERT INTO usage_rollup (ancestor, quarter_hour_micros, currency, calls, billable_seconds,
    charged_units)
WITH RECURSIVE chain (account, ancestor, depth) AS (
    SELECT id, id, 0 FROM accounts
    UNION ALL
    SELECT chain.account, a.parent, chain.depth + 1 FROM chain JOIN accounts a ON a.id = chain.ancestor
    WHERE a.parent IS NOT NULL AND chain.depth < 10000)
SELECT chain.ancestor,
    r.start_time_micros - ((r.start_time_micros % 900000000) + 900000000) % 900000000,
    r.currency, count(*), sum(r.billable_seconds),
    sum(CASE WHEN r.billing_class IN ('trunk', 'held') THEN 0 ELSE r.cost_units END)
FROM chain JOIN rated_calls r ON r.account = chain.account
WHERE chain.ancestor IN (SELECT parent FROM accounts WHERE parent IS NOT NULL)
GROUP BY 1, 2, 3;
",
    ),
    (
        11,
        "
CREATE TABLE rated_calls_by_account (
    source TEXT NOT NULL,
    cdr_id TEXT NOT NULL,
    account TEXT NOT NULL,
    direction TEXT NOT NULL,
    caller TEXT NOT NULL,
    callee TEXT NOT NULL,
    start_time_micros INTEGER NOT NULL,
    answer_time_micros INTEGER,
    end_time_micros INTEGER,
    billsec INTEGER NOT NULL,
    disposition TEXT NOT NULL,
    deck TEXT NOT NULL,
    rate_prefix TEXT,
    destination TEXT,
    rate TEXT,
    billable_seconds INTEGER NOT NULL,
    cost_units INTEGER NOT NULL,
    currency TEXT NOT NULL,
    content_digest INTEGER NOT NULL,
    batch_id INTEGER NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0,
    billing_class TEXT NOT NULL DEFAULT 'per_minute',
    PRIMARY KEY (account, start_time_micros, source, cdr_id)
) WITHOUT ROWID;
INSERT INTO rated_calls_by_account
SELECT source, cdr_id, account, direction, caller, callee, start_time_micros,
    answer_time_micros, end_time_micros, billsec, disposition, deck, rate_prefix, destination,
    rate, billable_seconds, cost_units, currency, content_digest, batch_id, revision,
    billing_class
FROM rated_calls INDEXED BY rated_calls_by_account_time ORDER BY account, start_time_micros;
DROP TABLE rated_calls;
ALTER TABLE rated_calls_by_account RENAME TO rated_calls;
CREATE UNIQUE INDEX rated_calls_by_dedupe_key ON rated_calls (source, cdr_id);
CREATE INDEX rated_calls_held ON rated_calls (billing_class) WHERE billing_class = 'held';
",
    ),
];

/// (version, SQL) for PostgreSQL: the same tables and columns.
pub const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "
CREATE TABLE store_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    accounts_generation BIGINT NOT NULL
);
INSERT INTO store_state (id, accounts_generation) VALUES (1, 0);
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT,
    parent TEXT REFERENCES accounts (id),
    currency TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    status TEXT NOT NULL,
    credit_limit_units BIGINT,
    outbound_deck TEXT,
    inbound_deck TEXT,
    allow_per_minute BOOLEAN NOT NULL,
    trunks_inbound BIGINT NOT NULL,
    trunks_outbound BIGINT NOT NULL,
    trunks_two_way BIGINT NOT NULL,
    thresholds_json TEXT NOT NULL,
    recharge_threshold_units BIGINT,
    recharge_amount_units BIGINT,
    recharge_local_time TEXT,
    webhook_url TEXT,
    webhook_secret TEXT,
    balance_units BIGINT NOT NULL DEFAULT 0,
    updated_at_micros BIGINT NOT NULL
);
CREATE TABLE decks (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    currency TEXT NOT NULL,
    first_used_at_micros BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE batches (
    id BIGSERIAL PRIMARY KEY,
    origin TEXT NOT NULL,
    origin_label TEXT NOT NULL,
    start_offset BIGINT NOT NULL,
    end_offset BIGINT NOT NULL,
    rated BIGINT NOT NULL DEFAULT 0,
    rejected BIGINT NOT NULL DEFAULT 0,
    duplicates BIGINT NOT NULL DEFAULT 0,
    conflicts BIGINT NOT NULL DEFAULT 0,
    charged_units BIGINT NOT NULL DEFAULT 0,
    committed_at_micros BIGINT NOT NULL
);
CREATE TABLE rated_calls (
    source TEXT COLLATE \"C\" NOT NULL,
    cdr_id TEXT COLLATE \"C\" NOT NULL,
    account TEXT NOT NULL,
    direction TEXT NOT NULL,
    caller TEXT NOT NULL,
    callee TEXT NOT NULL,
    start_time_micros BIGINT NOT NULL,
    answer_time_micros BIGINT,
    end_time_micros BIGINT,
    billsec BIGINT NOT NULL,
    disposition TEXT NOT NULL,
    deck TEXT NOT NULL,
    rate_prefix TEXT,
    destination TEXT,
    rate NUMERIC,
    billable_seconds BIGINT NOT NULL,
    cost_units BIGINT NOT NULL,
    currency TEXT NOT NULL,
    content_digest BIGINT NOT NULL,
    batch_id BIGINT NOT NULL,
    PRIMARY KEY (source, cdr_id)
);
CREATE TABLE conflicts (
    id BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL,
    cdr_id TEXT NOT NULL,
    batch_id BIGINT NOT NULL,
    content_digest BIGINT NOT NULL,
    stored_content_digest BIGINT NOT NULL,
    record_json TEXT NOT NULL
);
CREATE TABLE rejects (
    origin TEXT NOT NULL,
    line BIGINT NOT NULL,
    origin_label TEXT NOT NULL,
    batch_id BIGINT NOT NULL,
    reason TEXT NOT NULL,
    raw_record TEXT NOT NULL,
    PRIMARY KEY (origin, line)
);
CREATE TABLE ledger_entries (
    id BIGSERIAL PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts (id),
    kind TEXT NOT NULL,
    amount_units BIGINT NOT NULL,
    balance_after_units BIGINT NOT NULL,
    batch_id BIGINT,
    reference TEXT,
    idempotency_key TEXT UNIQUE,
    created_at_micros BIGINT NOT NULL
);
CREATE INDEX ledger_entries_by_account ON ledger_entries (account, id);
CREATE TABLE ingest_progress (
    origin TEXT PRIMARY KEY,
    origin_label TEXT NOT NULL,
    byte_offset BIGINT NOT NULL,
    complete BOOLEAN NOT NULL,
    outcome_json TEXT NOT NULL,
    updated_at_micros BIGINT NOT NULL
);
",
    ),
    (
        2,
        "
CREATE TABLE alerts (
    id BIGSERIAL PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts (id),
    threshold_units BIGINT NOT NULL,
    balance_units BIGINT NOT NULL,
    batch_id BIGINT,
    created_at_micros BIGINT NOT NULL,
    delivery_state TEXT NOT NULL DEFAULT 'pending',
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_micros BIGINT NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX alerts_by_account ON alerts (account, id);
CREATE INDEX alerts_to_deliver ON alerts (delivery_state, next_attempt_at_micros);
",
    ),
    (
        3,
        "
CREATE TABLE recharge_runs (
    account TEXT NOT NULL REFERENCES accounts (id),
    local_date TEXT NOT NULL,
    balance_before_units BIGINT NOT NULL,
    credited_units BIGINT NOT NULL,
    ran_at_micros BIGINT NOT NULL,
    PRIMARY KEY (account, local_date)
);
",
    ),
    (
        4,
        "
ALTER TABLE alerts ADD COLUMN kind TEXT NOT NULL DEFAULT 'threshold_crossed';
ALTER TABLE alerts ADD COLUMN amount_units BIGINT;
ALTER TABLE alerts ADD COLUMN local_date TEXT;
ALTER TABLE alerts ADD COLUMN delivered_at_micros BIGINT;
ALTER TABLE alerts ADD COLUMN call_id TEXT;
UPDATE alerts SET delivery_state = 'not_sent' WHERE delivery_state = 'pending';
ALTER TABLE rated_calls ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
CREATE INDEX rated_calls_by_account_time ON rated_calls (account, start_time_micros);
CREATE TABLE rerate_runs (
    id BIGSERIAL PRIMARY KEY,
    scope TEXT NOT NULL,
    from_micros BIGINT NOT NULL,
    to_micros BIGINT NOT NULL,
    decks TEXT NOT NULL,
    started_at_micros BIGINT NOT NULL,
    finished_at_micros BIGINT,
    calls_examined BIGINT NOT NULL DEFAULT 0,
    calls_changed BIGINT NOT NULL DEFAULT 0,
    net_units BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE call_revisions (
    source TEXT NOT NULL,
    cdr_id TEXT NOT NULL,
    revision BIGINT NOT NULL,
    rerate_run BIGINT NOT NULL REFERENCES rerate_runs (id),
    old_deck TEXT NOT NULL,
    new_deck TEXT NOT NULL,
    old_rate TEXT,
    new_rate TEXT,
    old_billable_seconds BIGINT NOT NULL,
    new_billable_seconds BIGINT NOT NULL,
    old_cost_units BIGINT NOT NULL,
    new_cost_units BIGINT NOT NULL,
    revised_at_micros BIGINT NOT NULL,
    PRIMARY KEY (source, cdr_id, revision)
);
",
    ),
    (
        5,
        "
ALTER TABLE rated_calls ADD COLUMN billing_class TEXT NOT NULL DEFAULT 'per_minute';
CREATE TABLE call_authorizations (
    call_id TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts (id),
    identity TEXT NOT NULL,
    decision TEXT NOT NULL,
    state TEXT NOT NULL,
    answer_json TEXT NOT NULL,
    authorized_at_micros BIGINT NOT NULL,
    expires_at_micros BIGINT NOT NULL,
    ended_at_micros BIGINT
);
CREATE INDEX call_authorizations_to_expire ON call_authorizations (state, expires_at_micros);
CREATE TABLE call_holds (
    call_id TEXT NOT NULL REFERENCES call_authorizations (call_id),
    account TEXT NOT NULL REFERENCES accounts (id),
    trunk_kind TEXT NOT NULL,
    reserved_units BIGINT NOT NULL,
    PRIMARY KEY (call_id, account)
);
CREATE TABLE account_holds (
    account TEXT NOT NULL REFERENCES accounts (id),
    trunk_kind TEXT NOT NULL,
    calls BIGINT NOT NULL,
    reserved_units BIGINT NOT NULL,
    PRIMARY KEY (account, trunk_kind)
);
",
    ),
    (
        6,
        "
CREATE TABLE trunk_sweep (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL,
    state_json TEXT NOT NULL
);
INSERT INTO trunk_sweep (id, version, state_json) VALUES (1, 0, '{}');
CREATE INDEX rated_calls_held ON rated_calls (billing_class) WHERE billing_class = 'held';
",
    ),
    (
        7,
        "
CREATE TABLE api_tokens (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    account TEXT REFERENCES accounts (id),
    label TEXT NOT NULL,
    created_at_micros BIGINT NOT NULL,
    revoked_at_micros BIGINT
);
",
    ),
    (
        8,
        "
CREATE TABLE billing_periods (
    account TEXT PRIMARY KEY REFERENCES accounts (id),
    open_from_micros BIGINT NOT NULL,
    closed_at_micros BIGINT NOT NULL
);
",
    ),
    (
        9,
        "
ALTER TABLE rejects ADD COLUMN account TEXT;
CREATE INDEX rejects_by_account ON rejects (account, batch_id, line);
CREATE INDEX accounts_by_parent ON accounts (parent);
DROP INDEX rated_calls_by_account_time;
CREATE INDEX rated_calls_by_account_time ON rated_calls (account, start_time_micros)
    INCLUDE (currency, billing_class, billable_seconds, cost_units);
",
    ),
    (
        10,
        "
CREATE TABLE usage_rollup (
    ancestor TEXT NOT NULL,
    quarter_hour_micros BIGINT NOT NULL,
    currency TEXT NOT NULL,
    calls BIGINT NOT NULL,
    billable_seconds BIGINT NOT NULL,
    charged_units BIGINT NOT NULL,
    PRIMARY KEY (ancestor, quarter_hour_micros, currency)
);
INSERT INTO usage_rollup (ancestor, quarter_hour_micros, currency, calls, billable_seconds,
    charged_units)
WITH RECURSIVE chain (account, ancestor, depth) AS (
    SELECT id, id, 0 FROM accounts
    UNION ALL
    SELECT chain.account, a.parent, chain.depth + 1 FROM chain JOIN accounts a ON a.id = chain.ancestor
    WHERE a.parent IS NOT NULL AND chain.depth < 10000)
SELECT chain.ancestor,
    r.start_time_micros - ((r.start_time_micros % 900000000) + 900000000) % 900000000,
    r.currency, count(*), sum(r.billable_seconds),
    sum(CASE WHEN r.billing_class IN ('trunk', 'held') THEN 0 ELSE r.cost_units END)
FROM chain JOIN rated_calls r ON r.account = chain.account
WHERE chain.ancestor IN (SELECT parent FROM accounts WHERE parent IS NOT NULL)
GROUP BY 1, 2, 3;
",
    ),
    (
        11,
        "
CLUSTER rated_calls USING rated_calls_by_account_time;
",
    ),
    (
        12,
        "
DROP INDEX rated_calls_by_account_time;
CREATE INDEX rated_calls_by_account_time
    ON rated_calls (account, start_time_micros, source, cdr_id)
    INCLUDE (currency, billing_class, billable_seconds, cost_units);
",
    ),
];

/// The newest schema version this binary knows, for the "store is newer" refusal.
pub fn latest_version(migrations: &[(i64, &str)]) -> i64 {
    migrations.last().map_or(0, |(version, _)| *version)
}
