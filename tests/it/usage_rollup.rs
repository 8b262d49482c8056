//! The usage rollup against both stores: after every step of a day's life (an authorized call
//! settled onto a trunk, held calls, the trunk sweep, a rerate, re-parents, an account gaining its
//! first sub-account) each rollup row equals the aggregate of its account's subtree's calls to
//! the unit, and usage by quarter hour with sub-accounts answers the same from the rollup as
//! call by call, whole quarter hours or ragged ends. A store migrated from before the rollup
//! derives it from the calls it holds.

use crate::store_support::{TestStore, batch_from_csv, context_for, test_stores};
use crate::support::{deck_from_text, micros};
use std::collections::{BTreeMap, HashMap};
use tollgate::cdr::Direction;
use tollgate::credit::accounts::Account;
use tollgate::credit::authorization::{AuthorizationRequest, Decision, decide};
use tollgate::credit::posting::OriginKind;
use tollgate::credit::rerate::{RerateScope, run_rerate};
use tollgate::credit::trunk_sweep::run_trunk_sweep;
use tollgate::credit::trunks::TrunkEligibility;
use tollgate::store::ledger_store::{
    LedgerStore, QUARTER_HOUR_MICROS, StoreLocation, UsageGrouping, UsageQuery, UsageRow,
    charged_units,
};

/// 0.60 a minute in whole minutes.
const DECK: &str = "prefix,destination,rate,connect_fee,min_seconds,increment,effective_from,effective_until\n\
                    1,North America,0.60,0,60,60,2020-01-01,\n";
/// The correction a rerate applies: per-second billing, California at 0.90 in whole minutes.
const CORRECTED_DECK: &str = "prefix,destination,rate,connect_fee,min_seconds,increment,effective_from,effective_until\n\
                              1,North America,0.60,0,1,1,2020-01-01,\n\
                              1415,California,0.90,0,60,60,2020-01-01,\n";
const HEADER: &str =
    "cdr_id,account,direction,caller,callee,start_time,answer_time,end_time,billsec,disposition\n";
const NEW_YORK: &str = "12125550100";
const CALIFORNIA: &str = "14155550100";

/// root > reseller (2 outbound trunks) > shop (3) and other; plain and spare stand alone.
fn accounts() -> Vec<Account> {
    let account = |id: &str, parent: Option<&str>, trunks: u32| {
        let mut account = Account::new(id, parent, "USD");
        account.trunks_outbound = trunks;
        account.credit_limit = None;
        account.outbound_deck = Some("test".to_string());
        account.inbound_deck = Some("test".to_string());
        account
    };
    vec![
        account("root", None, 0),
        account("reseller", Some("root"), 2),
        account("shop", Some("reseller"), 3),
        account("other", Some("reseller"), 0),
        account("plain", None, 0),
        account("spare", None, 0),
    ]
}

/// `accounts()` with some parents changed (and accounts added under a parent).
fn tree_with(parents: &[(&str, Option<&str>)]) -> Vec<Account> {
    let mut accounts = accounts();
    for (id, parent) in parents {
        match accounts.iter_mut().find(|account| account.id == *id) {
            Some(account) => account.parent = parent.map(str::to_string),
            None => {
                let mut account = accounts[5].clone();
                account.id = id.to_string();
                account.parent = parent.map(str::to_string);
                accounts.push(account);
            }
        }
    }
    accounts
}

/// A CDR line: (id, account, callee, start time, seconds).
fn cdr(id: &str, account: &str, callee: &str, start: &str, seconds: i64) -> String {
    let start_time = chrono::DateTime::parse_from_rfc3339(start).unwrap();
    let end = start_time + chrono::Duration::seconds(seconds);
    format!(
        "{id},{account},outbound,14155550001,{callee},{start},{start},{},{seconds},ANSWERED\n",
        end.to_rfc3339()
    )
}

/// What happens to the store, in order.
enum Step {
    Import(Vec<Account>),
    /// (call id, account): authorized now, settled when its CDR is posted.
    Authorize(&'static str, &'static str),
    Post(&'static str, Vec<String>),
    Sweep(&'static str),
    Rerate,
}

fn day_in_the_life() -> Vec<(&'static str, Step)> {
    vec![
        ("import", Step::Import(accounts())),
        ("authorize a call of shop", Step::Authorize("a1", "shop")),
        (
            "post night one",
            Step::Post(
                "night-one",
                vec![
                    cdr("a1", "shop", NEW_YORK, "2026-11-20T23:44:10Z", 300), // on a trunk
                    cdr("c1", "shop", CALIFORNIA, "2026-11-20T23:45:00Z", 1800), // held
                    cdr("c2", "other", NEW_YORK, "2026-11-20T23:59:59Z", 61), // held
                    cdr("c3", "other", CALIFORNIA, "2026-11-21T00:00:00Z", 59), // held
                    cdr("r1", "reseller", NEW_YORK, "2026-11-21T00:14:59Z", 90), // held
                    cdr("t1", "root", CALIFORNIA, "2026-11-21T00:15:00Z", 30),
                    cdr("p1", "plain", NEW_YORK, "2026-11-21T00:15:00Z", 125),
                    cdr("s1", "spare", NEW_YORK, "2026-11-21T00:20:00Z", 60),
                ],
            ),
        ),
        ("sweep up to 01:00", Step::Sweep("2026-11-21T01:00:00Z")),
        ("rerate", Step::Rerate),
        (
            "other moves under plain, plain's first sub-account",
            Step::Import(tree_with(&[("other", Some("plain"))])),
        ),
        (
            "post night two",
            Step::Post(
                "night-two",
                vec![
                    cdr("c4", "other", NEW_YORK, "2026-11-21T01:05:00Z", 61), // per minute now
                    cdr("c5", "shop", CALIFORNIA, "2026-11-21T01:06:00Z", 120), // held
                    cdr("p2", "plain", CALIFORNIA, "2026-11-21T01:29:00Z", 45),
                    cdr("t2", "root", NEW_YORK, "2026-11-21T02:00:00Z", 600),
                ],
            ),
        ),
        (
            "kiosk under other; shop straight under root; spare under shop",
            Step::Import(tree_with(&[
                ("other", Some("plain")),
                ("kiosk", Some("other")),
                ("shop", Some("root")),
                ("spare", Some("shop")),
            ])),
        ),
        ("sweep up to 03:00", Step::Sweep("2026-11-21T03:00:00Z")),
        (
            "post night three",
            Step::Post(
                "night-three",
                vec![
                    cdr("k1", "kiosk", NEW_YORK, "2026-11-21T03:01:00Z", 61),
                    cdr("s2", "spare", CALIFORNIA, "2026-11-21T03:02:00Z", 61),
                    cdr("c6", "shop", NEW_YORK, "2026-11-21T03:03:00Z", 61),
                ],
            ),
        ),
        ("rerate again", Step::Rerate),
        (
            "back to the first tree: plain, other and shop lose sub-accounts",
            Step::Import(tree_with(&[("kiosk", None)])),
        ),
    ]
}

fn run(store: &mut dyn LedgerStore, step: &Step) {
    match step {
        Step::Import(tree) => store.upsert_accounts(tree).unwrap(),
        Step::Authorize(call_id, account) => {
            let request = AuthorizationRequest {
                call_id: call_id.to_string(),
                account: account.to_string(),
                direction: Direction::Outbound,
                caller: "14155550001".to_string(),
                callee: NEW_YORK.to_string(),
                time_micros: micros("2026-11-20T23:44:10Z"),
            };
            let eligibility = TrunkEligibility::default();
            let answer = store
                .authorize_call(&request, i64::MAX, &mut |chain| {
                    decide(&request, chain, &eligibility, None, 600)
                })
                .unwrap();
            assert_eq!(answer.authorization.decision, Decision::Trunk);
        }
        Step::Post(origin, lines) => {
            let tree = store.accounts().unwrap();
            let context = context_for(deck_from_text(DECK, None), &tree);
            let csv = format!("{HEADER}{}", lines.concat());
            let outcome = store
                .post_batch(&batch_from_csv(
                    &context,
                    origin,
                    OriginKind::SpoolFile,
                    &csv,
                ))
                .unwrap();
            assert_eq!(outcome.rated, lines.len() as u64, "{origin}: {outcome:?}");
        }
        Step::Sweep(cutoff) => {
            run_trunk_sweep(store, micros(cutoff), &TrunkEligibility::default()).unwrap();
        }
        Step::Rerate => {
            let corrected = vec![deck_from_text(CORRECTED_DECK, None)];
            let (from, to) = (
                micros("2026-11-01T00:00:00Z"),
                micros("2026-12-01T00:00:00Z"),
            );
            run_rerate(store, &corrected, &RerateScope::All, from, to, |_| {}).unwrap();
        }
    }
}

/// (ancestor, quarter hour, currency) → (calls, billable seconds, charged units)
type Rollup = BTreeMap<(String, i64, String), (i64, i64, i64)>;

/// The rollup table as stored.
fn stored_rollup(test_store: &TestStore) -> Rollup {
    const SQL: &str = "SELECT ancestor, quarter_hour_micros, currency, calls, billable_seconds, \
                       charged_units FROM usage_rollup";
    match &test_store.location {
        StoreLocation::Embedded(path) => {
            let connection = rusqlite::Connection::open(path).unwrap();
            let mut statement = connection.prepare(SQL).unwrap();
            statement
                .query_map([], |row| {
                    Ok((
                        (row.get(0)?, row.get(1)?, row.get(2)?),
                        (row.get(3)?, row.get(4)?, row.get(5)?),
                    ))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        }
        StoreLocation::Postgres(url) => {
            let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
            client
                .query(SQL, &[])
                .unwrap()
                .iter()
                .map(|row| {
                    (
                        (row.get(0), row.get(1), row.get(2)),
                        (row.get(3), row.get(4), row.get(5)),
                    )
                })
                .collect()
        }
    }
}

/// What the rollup must hold, summed here from every stored call and the account tree.
fn rollup_of_calls(store: &mut dyn LedgerStore) -> Rollup {
    let parents: HashMap<String, Option<String>> = store
        .accounts()
        .unwrap()
        .into_iter()
        .map(|account| (account.id, account.parent))
        .collect();
    let mut expected = Rollup::new();
    for account in parents.keys() {
        for call in store
            .rated_calls_of(account, i64::MIN, i64::MAX, None, 1000)
            .unwrap()
        {
            let mut next = Some(account.clone());
            while let Some(id) = next {
                if parents.values().any(|parent| parent.as_ref() == Some(&id)) {
                    let quarter_hour = call.start_time_micros.div_euclid(QUARTER_HOUR_MICROS)
                        * QUARTER_HOUR_MICROS;
                    let sums = expected
                        .entry((id.clone(), quarter_hour, call.currency.clone()))
                        .or_default();
                    sums.0 += 1;
                    sums.1 += call.billable_seconds;
                    sums.2 += charged_units(&call.billing_class, call.cost_units);
                }
                next = parents[&id].clone();
            }
        }
    }
    expected
}

fn subtree(store: &mut dyn LedgerStore, account: &str) -> Vec<String> {
    store
        .account_subtree(account)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// Usage by quarter hour, summed per key and currency, sorted.
fn usage(store: &mut dyn LedgerStore, query: &UsageQuery) -> Vec<UsageRow> {
    let mut sums: BTreeMap<(String, String), (i64, i64, i64)> = BTreeMap::new();
    for row in store.usage_totals(query).unwrap() {
        let sum = sums.entry((row.key, row.currency)).or_default();
        sum.0 += row.calls;
        sum.1 += row.billable_seconds;
        sum.2 += row.cost_units;
    }
    sums.into_iter()
        .map(
            |((key, currency), (calls, billable_seconds, cost_units))| UsageRow {
                key,
                currency,
                calls,
                billable_seconds,
                cost_units,
            },
        )
        .collect()
}

/// Every account's usage with its sub-accounts, from the rollup and call by call, alike.
fn check_usage_answers(store: &mut dyn LedgerStore, label: &str) {
    let ranges = [
        (
            "whole quarter hours",
            "2026-11-20T00:00:00Z",
            "2026-11-22T00:00:00Z",
        ),
        (
            "ragged ends",
            "2026-11-20T23:44:11Z",
            "2026-11-21T03:02:30Z",
        ),
        (
            "inside one quarter hour",
            "2026-11-21T00:00:00Z",
            "2026-11-21T00:14:59Z",
        ),
        (
            "ends on a call",
            "2026-11-20T23:59:59Z",
            "2026-11-21T00:15:00Z",
        ),
    ];
    let ids: Vec<String> = store
        .accounts()
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    for id in ids {
        let accounts = subtree(store, &id);
        for (range, from, to) in ranges {
            let query = UsageQuery {
                accounts: accounts.clone(),
                subtree_of: Some(id.clone()),
                from_micros: micros(from),
                to_micros: micros(to),
                grouping: UsageGrouping::QuarterHour,
            };
            let call_by_call = UsageQuery {
                subtree_of: None,
                ..query.clone()
            };
            assert_eq!(
                usage(store, &query),
                usage(store, &call_by_call),
                "{label}: {id} with sub-accounts, {range}"
            );
        }
    }
}

#[test]
fn the_rollup_equals_its_subtrees_calls_after_every_kind_of_change() {
    for test_store in test_stores() {
        let mut store = test_store.open();
        for (step, action) in day_in_the_life() {
            run(store.as_mut(), &action);
            let label = format!("{}, after {step}", test_store.label);
            let expected = rollup_of_calls(store.as_mut());
            assert_eq!(stored_rollup(&test_store), expected, "{label}");
            check_usage_answers(store.as_mut(), &label);
        }
        // The life above moved money and changed every kind of thing the rollup counts.
        let rollup = stored_rollup(&test_store);
        assert!(rollup.keys().any(|(ancestor, _, _)| ancestor == "root"));
        assert!(rollup.values().any(|(_, _, units)| *units > 0));
    }
}

/// The embedded store's calls as versions 1 to 10 kept them: in dedupe-key order, read by
/// account through an index.
const EMBEDDED_CALLS_AS_IN_VERSION_9: &str = "
    CREATE TABLE calls_by_dedupe_key (
        source TEXT NOT NULL, cdr_id TEXT NOT NULL, account TEXT NOT NULL,
        direction TEXT NOT NULL, caller TEXT NOT NULL, callee TEXT NOT NULL,
        start_time_micros INTEGER NOT NULL, answer_time_micros INTEGER,
        end_time_micros INTEGER, billsec INTEGER NOT NULL, disposition TEXT NOT NULL,
        deck TEXT NOT NULL, rate_prefix TEXT, destination TEXT, rate TEXT,
        billable_seconds INTEGER NOT NULL, cost_units INTEGER NOT NULL, currency TEXT NOT NULL,
        content_digest INTEGER NOT NULL, batch_id INTEGER NOT NULL,
        revision INTEGER NOT NULL DEFAULT 0, billing_class TEXT NOT NULL DEFAULT 'per_minute',
        PRIMARY KEY (source, cdr_id)
    ) WITHOUT ROWID;
    INSERT INTO calls_by_dedupe_key SELECT * FROM rated_calls;
    DROP TABLE rated_calls;
    ALTER TABLE calls_by_dedupe_key RENAME TO rated_calls;
    CREATE INDEX rated_calls_held ON rated_calls (billing_class) WHERE billing_class = 'held';
    CREATE INDEX rated_calls_by_account_time ON rated_calls
        (account, start_time_micros, currency, billing_class, billable_seconds, cost_units);";

#[test]
fn a_store_from_before_the_rollup_derives_it_from_its_calls() {
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = test_store.open();
        for (_, action) in day_in_the_life().into_iter().take(8) {
            run(store.as_mut(), &action);
        }
        let expected = rollup_of_calls(store.as_mut());
        assert!(!expected.is_empty(), "{label}");
        drop(store);
        // Back to the schema before the rollup, then open again: the migration derives it, and
        // the later versions run again (11 stores the calls in account order, PostgreSQL's 12
        // rebuilds the account-and-time index).
        const UNDO: &str =
            "DROP TABLE usage_rollup; DELETE FROM schema_migrations WHERE version IN (10, 11, 12)";
        match &test_store.location {
            StoreLocation::Embedded(path) => rusqlite::Connection::open(path)
                .unwrap()
                .execute_batch(&format!("{EMBEDDED_CALLS_AS_IN_VERSION_9} {UNDO}"))
                .unwrap(),
            StoreLocation::Postgres(url) => postgres::Client::connect(url, postgres::NoTls)
                .unwrap()
                .batch_execute(UNDO)
                .unwrap(),
        }
        let mut store = test_store.open();
        assert_eq!(stored_rollup(&test_store), expected, "{label}");
        check_usage_answers(store.as_mut(), label);
    }
}

/// Imports that re-parent accounts race posting on two connections: whichever commits first,
/// every call is counted in the tree it was posted under or moved with its account afterwards,
/// never both or neither.
#[test]
fn the_rollup_stays_equal_to_its_calls_while_imports_race_posting() {
    const ROUNDS: usize = 30;
    let trees = [
        tree_with(&[("kiosk", Some("other"))]),
        tree_with(&[
            ("kiosk", Some("plain")),
            ("other", Some("plain")),
            ("shop", Some("root")),
        ]),
        tree_with(&[
            ("kiosk", None),
            ("spare", Some("kiosk")),
            ("reseller", None),
        ]),
    ];
    let callers = [
        "shop", "other", "reseller", "root", "plain", "spare", "kiosk",
    ];
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = test_store.open();
        store.upsert_accounts(&trees[0]).unwrap();
        let context = context_for(deck_from_text(DECK, None), &trees[0]);
        std::thread::scope(|scope| {
            let importer = scope.spawn(|| {
                let mut store = test_store.open();
                for round in 0..ROUNDS {
                    store
                        .upsert_accounts(&trees[(round + 1) % trees.len()])
                        .unwrap();
                }
            });
            let mut poster = test_store.open();
            for round in 0..ROUNDS {
                let start = micros("2026-11-21T00:00:00Z") / 1_000_000 + round as i64 * 600;
                let lines: String = callers
                    .iter()
                    .enumerate()
                    .map(|(index, account)| {
                        let start = chrono::DateTime::from_timestamp(start + index as i64, 0)
                            .unwrap()
                            .to_rfc3339();
                        cdr(
                            &format!("race-{round}-{account}"),
                            account,
                            CALIFORNIA,
                            &start,
                            61,
                        )
                    })
                    .collect();
                let batch = batch_from_csv(
                    &context,
                    &format!("race-{round}"),
                    OriginKind::SpoolFile,
                    &format!("{HEADER}{lines}"),
                );
                let outcome = poster.post_batch(&batch).unwrap();
                assert_eq!(outcome.rated, callers.len() as u64, "{label}: {outcome:?}");
            }
            importer.join().unwrap();
        });
        let expected = rollup_of_calls(store.as_mut());
        assert!(
            expected.keys().any(|(ancestor, _, _)| ancestor == "other"),
            "{label}"
        );
        assert_eq!(stored_rollup(&test_store), expected, "{label}");
        check_usage_answers(store.as_mut(), label);
    }
}
