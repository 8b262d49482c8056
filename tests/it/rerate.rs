//! Rerating against both stores: after a deck correction only the calls whose cost changed move
//! money, by a reversal and a new charge on the account and every ancestor; the history is kept;
//! a second run, or two runs at once, move nothing more; balances equal their entries throughout.

use crate::store_support::{TestStore, batch_from_csv, context_for, test_stores};
use crate::support::{deck_from_text, tollgate_succeeds};
use tollgate::credit::accounts::Account;
use tollgate::credit::posting::OriginKind;
use tollgate::credit::rerate::{RerateScope, RerateSummary, run_rerate};
use tollgate::money::ledger_units;
use tollgate::store::ledger_store::LedgerStore;

/// What the calls were rated with: 0.60 a minute in whole minutes.
const FIRST_DECK: &str = "prefix,destination,rate,connect_fee,min_seconds,increment,effective_from,effective_until\n\
                          1,US,0.60,0,60,60,2020-01-01,\n";
/// The correction: per-second billing, and California at 0.90 a minute.
const CORRECTED_DECK: &str = "prefix,destination,rate,connect_fee,min_seconds,increment,effective_from,effective_until\n\
                              1,US,0.60,0,1,1,2020-01-01,\n\
                              1415,US California,0.90,0,60,60,2020-01-01,\n";
const HEADER: &str =
    "cdr_id,account,direction,caller,callee,start_time,answer_time,end_time,billsec,disposition\n";
const NEW_YORK: &str = "15550001111";
const CALIFORNIA: &str = "14155550100";

/// (cdr_id, account, callee, day in November 2026, billsec)
const CALLS: &[(&str, &str, &str, u32, u32)] = &[
    ("g1", "grandchild", NEW_YORK, 20, 61),   // 1.20 -> 0.61
    ("g2", "grandchild", NEW_YORK, 20, 60),   // 0.60 -> 0.60, unchanged
    ("late", "grandchild", NEW_YORK, 25, 61), // outside the period: stays 1.20
    ("c1", "child", CALIFORNIA, 19, 60),      // 0.60 -> 0.90
    ("c-in", "child", CALIFORNIA, 19, 60),    // inbound, and child's inbound deck is not given
    ("s1", "solo", CALIFORNIA, 18, 60),       // 0.60 -> 0.90, crosses solo's -0.75
    ("o1", "other", CALIFORNIA, 20, 60),      // other's deck is not given: untouched
];

fn units(text: &str) -> i64 {
    ledger_units(text.parse().unwrap()).unwrap()
}

fn accounts() -> Vec<Account> {
    let mut accounts = vec![
        Account::new("root", None, "USD"),
        Account::new("child", Some("root"), "USD"),
        Account::new("grandchild", Some("child"), "USD"),
        Account::new("solo", None, "USD"),
        Account::new("other", None, "USD"),
    ];
    for account in &mut accounts {
        let deck = if account.id == "other" {
            "legacy"
        } else {
            "test"
        };
        account.outbound_deck = Some(deck.into());
        let inbound = if account.id == "child" {
            "legacy"
        } else {
            deck
        };
        account.inbound_deck = Some(inbound.into());
    }
    accounts[3].thresholds = vec!["-0.75".parse().unwrap()];
    accounts
}

fn store_with_rated_calls(test_store: &TestStore) -> Box<dyn LedgerStore> {
    let mut store = test_store.open();
    store.upsert_accounts(&accounts()).unwrap();
    let context = context_for(deck_from_text(FIRST_DECK, None), &accounts());
    let mut text = HEADER.to_string();
    for (id, account, callee, day, billsec) in CALLS {
        let direction = if id.ends_with("-in") {
            "inbound"
        } else {
            "outbound"
        };
        text.push_str(&format!(
            "{id},{account},{direction},15550000001,{callee},2026-11-{day}T10:00:00Z,\
             2026-11-{day}T10:00:01Z,2026-11-{day}T10:10:00Z,{billsec},ANSWERED\n"
        ));
    }
    store
        .post_batch(&batch_from_csv(
            &context,
            "day",
            OriginKind::SpoolFile,
            &text,
        ))
        .unwrap();
    store
}

fn balances(store: &mut dyn LedgerStore) -> Vec<(String, i64)> {
    ["root", "child", "grandchild", "solo", "other"]
        .iter()
        .map(|id| {
            (
                id.to_string(),
                store.account(id).unwrap().unwrap().balance_units,
            )
        })
        .collect()
}

fn expected(pairs: &[(&str, &str)]) -> Vec<(String, i64)> {
    pairs
        .iter()
        .map(|(id, balance)| (id.to_string(), units(balance)))
        .collect()
}

fn november_1_to_21() -> (i64, i64) {
    let micros = |text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_micros()
    };
    (
        micros("2026-11-01T00:00:00Z"),
        micros("2026-11-21T00:00:00Z"),
    )
}

fn rerate_all(store: &mut dyn LedgerStore) -> RerateSummary {
    let (from, to) = november_1_to_21();
    let corrected = vec![deck_from_text(CORRECTED_DECK, None)];
    run_rerate(store, &corrected, &RerateScope::All, from, to, |_| {}).unwrap()
}

#[test]
fn rerate_moves_only_the_difference_and_twice_is_once() {
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = store_with_rated_calls(&test_store);
        let before = expected(&[
            ("root", "-4.20"),
            ("child", "-4.20"),
            ("grandchild", "-3.00"),
            ("solo", "-0.60"),
            ("other", "-0.60"),
        ]);
        assert_eq!(balances(store.as_mut()), before, "{label}");

        let summary = rerate_all(store.as_mut());
        assert_eq!(
            (summary.calls_examined, summary.calls_changed),
            (4, 3),
            "{label}: g1, g2, c1 and s1 examined; g2 unchanged"
        );
        assert_eq!(summary.refunded_units["USD"], units("0.59"), "{label}");
        assert_eq!(summary.charged_more_units["USD"], units("0.60"), "{label}");
        // grandchild +0.59; child and root +0.59 - 0.30; solo -0.30; other untouched.
        let after = expected(&[
            ("root", "-3.91"),
            ("child", "-3.91"),
            ("grandchild", "-2.41"),
            ("solo", "-0.90"),
            ("other", "-0.60"),
        ]);
        assert_eq!(balances(store.as_mut()), after, "{label}");
        let totals = store.ledger_totals().unwrap();
        assert!(totals.balance_mismatches.is_empty(), "{label}: {totals:?}");
        // The stored calls now carry their new costs: 0.61 + 0.60 + 1.20 + 0.90 + 0.60 (c-in,
        // untouched) + 0.90 + 0.60.
        assert_eq!(totals.rated_cost_units, units("5.41"), "{label}");
        assert!(summary.calls_not_priced.is_empty(), "{label}: {summary:?}");

        // The history of g1: one revision, old and new cost and deck versions.
        let history = store.call_revisions_of("test", "g1").unwrap();
        assert_eq!(history.len(), 1, "{label}");
        assert_eq!(
            (
                history[0].revision,
                history[0].old_cost_units,
                history[0].new_cost_units
            ),
            (1, units("1.20"), units("0.61")),
            "{label}"
        );
        assert_ne!(history[0].old_deck, history[0].new_deck, "{label}");
        assert!(history[0].new_deck.starts_with("test@"), "{label}");
        assert!(store.call_revisions_of("test", "g2").unwrap().is_empty());
        assert!(store.call_revisions_of("test", "late").unwrap().is_empty());

        // solo went from -0.60 to -0.90: its -0.75 threshold crossed once.
        let alerts = store.alerts_of("solo").unwrap();
        assert_eq!(alerts.len(), 1, "{label}");
        assert_eq!(
            (alerts[0].threshold_units, alerts[0].balance_units),
            (units("-0.75"), units("-0.90")),
            "{label}"
        );

        // Again: nothing changes, nothing moves.
        let again = rerate_all(store.as_mut());
        assert_eq!(
            (again.calls_examined, again.calls_changed),
            (4, 0),
            "{label}"
        );
        assert!(again.refunded_units.is_empty(), "{label}");
        assert_eq!(balances(store.as_mut()), after, "{label}");
        assert_eq!(store.alerts_of("solo").unwrap().len(), 1, "{label}");
    }
}

#[test]
fn concurrent_rerates_move_each_call_once() {
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = store_with_rated_calls(&test_store);
        let runners: Vec<_> = (0..3)
            .map(|_| {
                let location = test_store.location.clone();
                std::thread::spawn(move || {
                    let mut store = tollgate::store::ledger_store::open_store(&location).unwrap();
                    rerate_all(store.as_mut()).calls_changed
                })
            })
            .collect();
        let changed: u64 = runners
            .into_iter()
            .map(|runner| runner.join().unwrap())
            .sum();
        assert_eq!(changed, 3, "{label}: each changed call revised by one run");
        assert_eq!(
            balances(store.as_mut()),
            expected(&[
                ("root", "-3.91"),
                ("child", "-3.91"),
                ("grandchild", "-2.41"),
                ("solo", "-0.90"),
                ("other", "-0.60"),
            ]),
            "{label}"
        );
        assert!(
            store.ledger_totals().unwrap().balance_mismatches.is_empty(),
            "{label}"
        );
        // A revision priced from an old state of the call is refused whole.
        let history = store.call_revisions_of("test", "g1").unwrap();
        assert_eq!(history.len(), 1, "{label}");
    }
}

#[test]
fn the_rerate_command_prints_its_summary_and_a_second_run_changes_nothing() {
    for test_store in test_stores() {
        let label = test_store.label;
        drop(store_with_rated_calls(&test_store));
        let folder = tempfile::tempdir().unwrap();
        let deck = folder.path().join("test.csv");
        std::fs::write(&deck, CORRECTED_DECK).unwrap();
        let run = |account: &str| {
            let mut arguments: Vec<String> = vec!["rerate".into()];
            arguments.extend(test_store.cli_arguments());
            arguments.extend(
                [
                    "--account",
                    account,
                    "--from",
                    "2026-11-01",
                    "--to",
                    "2026-11-21",
                    "--time-zone",
                    "America/New_York",
                    "--deck",
                ]
                .map(String::from),
            );
            arguments.push(deck.display().to_string());
            String::from_utf8(tollgate_succeeds(&arguments).stdout).unwrap()
        };
        let first = run("grandchild");
        assert!(
            first.contains("2 calls examined, 1 changed"),
            "{label}: {first}"
        );
        assert!(
            first.contains("USD: 0.59 given back, 0 charged more, net 0.59 back to the accounts"),
            "{label}: {first}"
        );
        let second = run("grandchild");
        assert!(
            second.contains("2 calls examined, 0 changed"),
            "{label}: {second}"
        );
        let mut store = test_store.open();
        assert_eq!(
            store.account("root").unwrap().unwrap().balance_units,
            units("-3.61"),
            "{label}"
        );
    }
}

/// Calls enough for several rerate pages (one transaction each), billed in whole minutes first.
fn store_with_many_calls(test_store: &TestStore, n_calls: usize) -> Box<dyn LedgerStore> {
    let mut store = test_store.open();
    let flat: Vec<Account> = (0..4)
        .map(|index| {
            let mut account = Account::new(&format!("bulk-{index}"), None, "USD");
            account.outbound_deck = Some("test".into());
            account.inbound_deck = Some("test".into());
            account
        })
        .collect();
    store.upsert_accounts(&flat).unwrap();
    let context = context_for(deck_from_text(FIRST_DECK, None), &flat);
    let mut text = HEADER.to_string();
    for index in 0..n_calls {
        let billsec = 1 + (index * 7919) % 900;
        text.push_str(&format!(
            "m{index:06},bulk-{},outbound,15550000001,1555000{:04},2026-11-10T10:00:00Z,\
             2026-11-10T10:00:01Z,2026-11-10T10:30:00Z,{billsec},ANSWERED\n",
            index % 4,
            index % 10_000
        ));
    }
    store
        .post_batch(&batch_from_csv(
            &context,
            "bulk",
            OriginKind::SpoolFile,
            &text,
        ))
        .unwrap();
    store
}

#[test]
fn a_rerate_killed_midway_finishes_on_the_next_run_and_moves_each_call_once() {
    let n_calls = 35_000;
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = store_with_many_calls(&test_store, n_calls);
        let folder = tempfile::tempdir().unwrap();
        let deck = folder.path().join("test.csv");
        std::fs::write(&deck, CORRECTED_DECK).unwrap();
        let mut arguments: Vec<String> = vec!["rerate".into(), "--all".into()];
        arguments.extend(test_store.cli_arguments());
        arguments
            .extend(["--from", "2026-11-01", "--to", "2026-12-01", "--deck"].map(String::from));
        arguments.push(deck.display().to_string());
        let mut kills = 0;
        for pause_milliseconds in [40, 120, 250, 400] {
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
                .args(&arguments)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(pause_milliseconds));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                kills += 1;
            }
            child.wait().unwrap();
        }
        assert!(
            kills >= 2,
            "{label}: the rerate finished before it could be killed"
        );
        tollgate_succeeds(&arguments);
        let last = String::from_utf8(tollgate_succeeds(&arguments).stdout).unwrap();
        assert!(
            last.contains(&format!("{n_calls} calls examined, 0 changed")),
            "{label}: {last}"
        );
        // Each call revised at most once, and the balances are exactly minus the calls' costs.
        let totals = store.ledger_totals().unwrap();
        assert!(totals.balance_mismatches.is_empty(), "{label}");
        let balances: i64 = (0..4)
            .map(|index| {
                store
                    .account(&format!("bulk-{index}"))
                    .unwrap()
                    .unwrap()
                    .balance_units
            })
            .sum();
        assert_eq!(balances, -totals.rated_cost_units, "{label}");
        let mut revised = 0;
        for index in (0..n_calls).step_by(97) {
            let history = store
                .call_revisions_of("test", &format!("m{index:06}"))
                .unwrap();
            assert!(history.len() <= 1, "{label}: m{index:06} {history:?}");
            revised += history.len();
        }
        assert!(revised > 0, "{label}");
        // Per-second billing of the same calls, summed independently of the store.
        let expected: i64 = (0..n_calls)
            .map(|index| {
                let billsec = (1 + (index * 7919) % 900) as i64;
                billsec * units("0.01")
            })
            .sum();
        assert_eq!(totals.rated_cost_units, expected, "{label}");
    }
}
