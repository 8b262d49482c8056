//! The trunk sweep against both stores: unauthorized CDRs of accounts with limits are held, then
//! classified in call-start order across files, runs and midnight (a parent with fewer trunks than
//! its child), charged once up the tree, flagged when over a limit, counted when late; concurrent
//! sweeps classify each call once.

use crate::store_support::{batch_from_csv, context_for, test_stores};
use crate::support::{deck_from_text, micros};
use std::collections::BTreeMap;
use tollgate::credit::accounts::Account;
use tollgate::credit::posting::OriginKind;
use tollgate::credit::trunk_sweep::{BillingClass, run_trunk_sweep};
use tollgate::credit::trunks::TrunkEligibility;
use tollgate::money::ledger_units;
use tollgate::store::ledger_store::LedgerStore;

/// 0.60 a minute in whole minutes, everywhere.
const DECK: &str = "prefix,destination,rate,connect_fee,min_seconds,increment,effective_from,effective_until\n\
                    1,North America,0.60,0,60,60,2020-01-01,\n\
                    4,Europe,0.60,0,60,60,2020-01-01,\n";
const HEADER: &str =
    "cdr_id,account,direction,caller,callee,start_time,answer_time,end_time,billsec,disposition\n";

fn units(text: &str) -> i64 {
    ledger_units(text.parse().unwrap()).unwrap()
}

/// The reseller has 2 outbound trunks for all its customers, fewer than the shop's own 3; `other`
/// rides on the reseller's alone; `strict` has one trunk and refuses per-minute; `plain` has no
/// limits. All postpaid.
fn accounts() -> Vec<Account> {
    let account = |id: &str, parent: Option<&str>, trunks: u32, per_minute: bool| {
        let mut account = Account::new(id, parent, "USD");
        account.trunks_outbound = trunks;
        account.allow_per_minute = per_minute;
        account.credit_limit = None;
        account.outbound_deck = Some("test".to_string());
        account
    };
    vec![
        account("reseller", None, 2, true),
        account("shop", Some("reseller"), 3, true),
        account("other", Some("reseller"), 0, true),
        account("strict", None, 1, false),
        account("plain", None, 0, true),
    ]
}

/// A CDR line: (id, account, callee, answer time, seconds).
fn cdr(id: &str, account: &str, callee: &str, answer: &str, seconds: i64) -> String {
    let start = chrono::DateTime::parse_from_rfc3339(answer).unwrap();
    let end = start + chrono::Duration::seconds(seconds);
    format!(
        "{id},{account},outbound,14155550001,{callee},{answer},{answer},{},{seconds},ANSWERED\n",
        end.to_rfc3339()
    )
}

fn post(store: &mut dyn LedgerStore, origin: &str, lines: &[String]) -> i64 {
    let context = context_for(deck_from_text(DECK, None), &accounts());
    let csv = format!("{HEADER}{}", lines.concat());
    store
        .post_batch(&batch_from_csv(
            &context,
            origin,
            OriginKind::SpoolFile,
            &csv,
        ))
        .unwrap()
        .charged_units
}

fn classes(store: &mut dyn LedgerStore, account: &str) -> BTreeMap<String, String> {
    store
        .rated_calls_of(account, 0, i64::MAX, None, 100)
        .unwrap()
        .into_iter()
        .map(|call| (call.cdr_id, call.billing_class))
        .collect()
}

fn balance(store: &mut dyn LedgerStore, account: &str) -> i64 {
    store.account(account).unwrap().unwrap().balance_units
}

fn sweep(store: &mut dyn LedgerStore, cutoff: &str) -> (BTreeMap<BillingClass, u64>, u64) {
    let report = run_trunk_sweep(store, micros(cutoff), &TrunkEligibility::default()).unwrap();
    (report.classified, report.late)
}

const US: &str = "14155550100";
const TOLL_FREE: &str = "18005550100";

#[test]
fn held_calls_are_classified_in_start_order_across_files_runs_and_midnight() {
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = test_store.open();
        let store = store.as_mut();
        store.upsert_accounts(&accounts()).unwrap();

        // Night one's file. The plain account's call is charged at once; the others are held.
        let charged = post(
            store,
            "night-one",
            &[
                cdr("c1", "shop", US, "2026-11-20T23:50:00Z", 1800), // until 00:20
                cdr("c2", "shop", TOLL_FREE, "2026-11-20T23:55:00Z", 180),
                cdr("p1", "plain", US, "2026-11-20T23:57:00Z", 60),
            ],
        );
        assert_eq!(charged, units("0.60"), "{label}");
        assert_eq!(
            balance(store, "shop"),
            0,
            "{label}: held calls are not charged"
        );
        assert_eq!(classes(store, "shop")["c1"], "held", "{label}");
        assert_eq!(classes(store, "plain")["p1"], "per_minute", "{label}");

        // The sweep runs up to midnight: c1 takes a trunk, the toll-free call is per-minute.
        let (classified, late) = sweep(store, "2026-11-21T00:00:00Z");
        assert_eq!(
            classified,
            BTreeMap::from([(BillingClass::Trunk, 1), (BillingClass::PerMinute, 1)]),
            "{label}"
        );
        assert_eq!(late, 0, "{label}");
        assert_eq!(balance(store, "shop"), units("-1.80"), "{label}");
        assert_eq!(
            balance(store, "reseller"),
            units("-1.80"),
            "{label}: up the tree"
        );

        // Night two's file, out of order; c1 is still up from before midnight.
        post(
            store,
            "night-two",
            &[
                cdr("c6", "shop", US, "2026-11-21T00:21:00Z", 240),
                cdr("c5", "shop", US, "2026-11-21T00:10:00Z", 120),
                cdr("c4", "other", US, "2026-11-21T00:05:00Z", 600), // until 00:15
                cdr("d1", "strict", US, "2026-11-21T00:00:00Z", 1800),
                cdr("d2", "strict", US, "2026-11-21T00:10:00Z", 60),
            ],
        );
        // The same file again under another name: duplicates, nothing held twice.
        post(
            store,
            "night-two-again",
            &[cdr("c5", "shop", US, "2026-11-21T00:10:00Z", 120)],
        );
        // A rerate meanwhile leaves the held calls alone and says so (the sweep charges their
        // stored cost).
        let rerate = tollgate::credit::rerate::run_rerate(
            store,
            &[deck_from_text(DECK, None)],
            &tollgate::credit::rerate::RerateScope::Account("shop".into()),
            0,
            i64::MAX,
            |_| {},
        )
        .unwrap();
        assert_eq!((rerate.calls_held, rerate.calls_changed), (2, 0), "{label}");
        let (classified, late) = sweep(store, "2026-11-22T00:00:00Z");
        assert_eq!(late, 0, "{label}");
        assert_eq!(
            classified,
            BTreeMap::from([
                (BillingClass::Trunk, 3),
                (BillingClass::PerMinute, 1),
                (BillingClass::LimitExceeded, 1)
            ]),
            "{label}"
        );
        let shop = classes(store, "shop");
        let expected = [
            ("c1", "trunk"),
            ("c2", "per_minute"),
            ("c5", "per_minute"), // the shop has room, its reseller (c1, c4) does not
            ("c6", "trunk"),      // c1 ended at 00:20, c4 at 00:15
        ];
        for (cdr_id, class) in expected {
            assert_eq!(shop[cdr_id], class, "{label}: {cdr_id}");
        }
        assert_eq!(classes(store, "other")["c4"], "trunk", "{label}");
        let strict = classes(store, "strict");
        assert_eq!(
            (strict["d1"].as_str(), strict["d2"].as_str()),
            ("trunk", "limit_exceeded"),
            "{label}"
        );
        assert_eq!(balance(store, "shop"), units("-3.00"), "{label}");
        assert_eq!(balance(store, "reseller"), units("-3.00"), "{label}");
        assert_eq!(balance(store, "other"), 0, "{label}");
        assert_eq!(balance(store, "strict"), units("-0.60"), "{label}");
        let flagged: Vec<(String, Option<String>)> = store
            .alerts_of("strict")
            .unwrap()
            .into_iter()
            .map(|alert| (alert.kind, alert.call_id))
            .collect();
        assert_eq!(
            flagged,
            [("limit_exceeded".to_string(), Some("d2".to_string()))],
            "{label}"
        );

        // A CDR for a call before everything swept: classified late, and counted.
        post(
            store,
            "straggler",
            &[cdr("c0", "shop", US, "2026-11-20T23:40:00Z", 300)],
        );
        let (classified, late) = sweep(store, "2026-11-22T00:00:00Z");
        assert_eq!(
            (classified, late),
            (BTreeMap::from([(BillingClass::Trunk, 1)]), 1),
            "{label}: nothing known up at 23:40"
        );
        // Nothing is left to sweep, and sweeping again changes nothing.
        assert_eq!(sweep(store, "2030-01-01T00:00:00Z"), (BTreeMap::new(), 0));
        let totals = store.ledger_totals().unwrap();
        assert_eq!(
            totals.rated_cost_units,
            units("0.60") + units("3.00") + units("0.60"),
            "{label}: plain, shop, strict"
        );
        assert!(totals.balance_mismatches.is_empty(), "{label}");
    }
}

#[test]
fn concurrent_sweeps_classify_and_charge_each_call_once() {
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = test_store.open();
        store.upsert_accounts(&accounts()).unwrap();
        // 3,000 one-minute calls of the shop, one every 20 s: three up at a time, so one per
        // minute goes per-minute beyond the reseller's two trunks. Posted in three files.
        let lines: Vec<String> = (0..3000)
            .map(|index| {
                let answer = chrono::DateTime::parse_from_rfc3339("2026-11-20T00:00:00Z").unwrap()
                    + chrono::Duration::seconds(20 * index);
                cdr(
                    &format!("s{index:04}"),
                    "shop",
                    US,
                    &answer.to_rfc3339(),
                    60,
                )
            })
            .collect();
        for (part, chunk) in lines.chunks(1000).enumerate() {
            post(store.as_mut(), &format!("part-{part}"), chunk);
        }
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let location = test_store.location.clone();
                std::thread::spawn(move || {
                    let mut store = tollgate::store::ledger_store::open_store(&location).unwrap();
                    run_trunk_sweep(
                        store.as_mut(),
                        micros("2030-01-01T00:00:00Z"),
                        &TrunkEligibility::default(),
                    )
                    .unwrap()
                })
            })
            .collect();
        let mut per_minute = 0;
        let mut trunk = 0;
        for thread in threads {
            let report = thread.join().unwrap();
            per_minute += report
                .classified
                .get(&BillingClass::PerMinute)
                .copied()
                .unwrap_or(0);
            trunk += report
                .classified
                .get(&BillingClass::Trunk)
                .copied()
                .unwrap_or(0);
        }
        // A call ending at t frees its trunk for one starting at t: calls 0, 1 on trunks, 2
        // per-minute, 3 takes 0's trunk... one call in three is per-minute.
        assert_eq!((trunk, per_minute), (2000, 1000), "{label}");
        assert_eq!(
            balance(store.as_mut(), "shop"),
            -1000 * units("0.60"),
            "{label}"
        );
        assert_eq!(
            balance(store.as_mut(), "reseller"),
            -1000 * units("0.60"),
            "{label}"
        );
        let totals = store.ledger_totals().unwrap();
        assert!(totals.balance_mismatches.is_empty(), "{label}");
    }
}
