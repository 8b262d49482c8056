//! The store contract, run against the embedded store and PostgreSQL alike: exactly-once posting,
//! hierarchical charging, duplicates and conflicts, rejects, request replay, account import, and a
//! reference model replaying a fixture.

use crate::store_support::{batch_from_csv, context_for, test_stores};
use crate::support::{deck_from_text, repo_path};
use std::collections::{HashMap, HashSet};
use tollgate::batch::rated_block::{RowStatus, rate_csv_block};
use tollgate::credit::account_import::import_accounts;
use tollgate::credit::accounts::Account;
use tollgate::credit::posting::{OriginKind, PostingBatch};
use tollgate::ingest::canonical_csv::read_canonical_header;
use tollgate::ingest::deck_files::load_native_decks;
use tollgate::money::{cost_in_ledger_units, ledger_units};
use tollgate::store::ledger_store::LedgerStore;

const DECK: &str = "prefix,destination,rate,connect_fee,min_seconds,increment,effective_from,effective_until\n\
                    1,US,0.60,0,60,60,2020-01-01,\n";
const HEADER: &str =
    "cdr_id,account,direction,caller,callee,start_time,answer_time,end_time,billsec,disposition\n";

fn cdr(id: &str, account: &str, billsec: u32) -> String {
    format!(
        "{id},{account},outbound,15550000001,14155550100,2026-11-20T10:00:00Z,2026-11-20T10:00:01Z,2026-11-20T10:10:00Z,{billsec},ANSWERED\n"
    )
}

fn tree() -> Vec<Account> {
    vec![
        Account::new("root", None, "USD"),
        Account::new("child", Some("root"), "USD"),
        Account::new("grandchild", Some("child"), "USD"),
        Account::new("other", None, "USD"),
    ]
}

fn units(text: &str) -> i64 {
    ledger_units(text.parse().unwrap()).unwrap()
}

fn balance(store: &mut dyn LedgerStore, id: &str) -> i64 {
    store.account(id).unwrap().unwrap().balance_units
}

fn post(
    store: &mut dyn LedgerStore,
    batch: &PostingBatch,
) -> tollgate::credit::posting::PostingOutcome {
    store.post_batch(batch).unwrap()
}

#[test]
fn a_call_is_charged_once_to_its_account_and_every_ancestor() {
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = test_store.open();
        store.upsert_accounts(&tree()).unwrap();
        let context = context_for(deck_from_text(DECK, None), &tree());
        // 60 s = 0.60, 61 s = 1.20 (60/60 increments at 0.60 per minute).
        let first = format!(
            "{HEADER}{}{}{}",
            cdr("c1", "grandchild", 60),
            cdr("c2", "child", 61),
            cdr("c3", "other", 30)
        );
        let outcome = post(
            store.as_mut(),
            &batch_from_csv(&context, "file-a", OriginKind::SpoolFile, &first),
        );
        assert_eq!(
            (outcome.rated, outcome.duplicates, outcome.conflicts),
            (3, 0, 0),
            "{label}"
        );
        assert_eq!(outcome.charged_units, units("2.40"), "{label}");
        assert_eq!(
            balance(store.as_mut(), "grandchild"),
            -units("0.60"),
            "{label}"
        );
        assert_eq!(balance(store.as_mut(), "child"), -units("1.80"), "{label}");
        assert_eq!(balance(store.as_mut(), "root"), -units("1.80"), "{label}");
        assert_eq!(balance(store.as_mut(), "other"), -units("0.60"), "{label}");

        // Resent c1 (duplicate), c2 with other content (conflict), c4 new, c5 twice in the batch.
        let second = format!(
            "{HEADER}{}{}{}{}{}",
            cdr("c1", "grandchild", 60),
            cdr("c2", "child", 200),
            cdr("c4", "grandchild", 1),
            cdr("c5", "root", 60),
            cdr("c5", "root", 60),
        );
        let outcome = post(
            store.as_mut(),
            &batch_from_csv(&context, "file-b", OriginKind::SpoolFile, &second),
        );
        assert_eq!(
            (outcome.rated, outcome.duplicates, outcome.conflicts),
            (2, 2, 1),
            "{label}"
        );
        assert_eq!(
            balance(store.as_mut(), "grandchild"),
            -units("1.20"),
            "{label}"
        );
        assert_eq!(balance(store.as_mut(), "child"), -units("2.40"), "{label}");
        assert_eq!(balance(store.as_mut(), "root"), -units("3.00"), "{label}");
        let totals = store.ledger_totals().unwrap();
        assert_eq!(totals.rated_calls, 5, "{label}");
        assert_eq!(totals.rated_cost_units, units("3.60"), "{label}");
        assert_eq!(totals.conflicts, 1, "{label}");
        assert!(totals.balance_mismatches.is_empty(), "{label}: {totals:?}");
        // The root's usage is the cost of every call in its subtree.
        assert_eq!(
            store.usage_units("root").unwrap(),
            -units("3.00"),
            "{label}"
        );
    }
}

#[test]
fn rejects_are_kept_once_with_their_lines_and_progress_is_recorded() {
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = test_store.open();
        store.upsert_accounts(&tree()).unwrap();
        let context = context_for(deck_from_text(DECK, None), &tree());
        let text = format!(
            "{HEADER}{}c9,root,sideways,1,1,x,,,-4,ANSWERED\n{}",
            cdr("d1", "root", 60),
            cdr("d2", "nobody", 60)
        );
        let batch = batch_from_csv(&context, "file-r", OriginKind::SpoolFile, &text);
        let outcome = post(store.as_mut(), &batch);
        assert_eq!((outcome.rated, outcome.rejected), (1, 2), "{label}");
        // The same batch again (a crash before the file was moved): nothing new.
        let again = post(store.as_mut(), &batch);
        assert_eq!((again.rated, again.duplicates), (0, 1), "{label}");
        let rejects = store.rejects_of("file-r").unwrap();
        let found: Vec<(u64, &str)> = rejects
            .iter()
            .map(|reject| (reject.line, reject.reason.as_str()))
            .collect();
        assert_eq!(
            found,
            [(3, "invalid_direction"), (4, "unknown_account")],
            "{label}"
        );
        assert!(
            rejects[0].raw_record.starts_with("c9,root,sideways"),
            "{label}"
        );
        let progress = store.ingest_progress("file-r").unwrap().unwrap();
        assert!(progress.complete, "{label}");
        assert_eq!(progress.byte_offset, text.len() as u64, "{label}");
        assert_eq!(progress.outcome.rated, 1, "{label}");
    }
}

#[test]
fn a_retried_request_gets_its_first_answer_and_charges_nothing() {
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = test_store.open();
        store.upsert_accounts(&tree()).unwrap();
        let context = context_for(deck_from_text(DECK, None), &tree());
        let text = format!("{HEADER}{}", cdr("r1", "child", 90));
        let batch = batch_from_csv(&context, "request:abc", OriginKind::HttpRequest, &text);
        let first = post(store.as_mut(), &batch);
        let second = post(store.as_mut(), &batch);
        assert!(!first.replayed && second.replayed, "{label}");
        assert_eq!(
            (second.rated, second.charged_units),
            (1, units("1.20")),
            "{label}"
        );
        assert_eq!(balance(store.as_mut(), "root"), -units("1.20"), "{label}");
        assert_eq!(store.ledger_totals().unwrap().rated_calls, 1, "{label}");
    }
}

#[test]
fn account_import_is_an_idempotent_upsert_checked_against_stored_accounts() {
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = test_store.open();
        let file = "account,parent,currency,time_zone,credit_limit,thresholds,recharge_threshold,recharge_amount\n\
                    r,,USD,America/New_York,unlimited,10;5,2,20\n\
                    s,r,USD,UTC,0,,,\n";
        let report = import_accounts(store.as_mut(), "a.csv", file.as_bytes()).unwrap();
        assert_eq!(
            (report.added, report.changed, report.unchanged),
            (2, 0, 0),
            "{label}"
        );
        let report = import_accounts(store.as_mut(), "a.csv", file.as_bytes()).unwrap();
        assert_eq!((report.added, report.unchanged), (0, 2), "{label}");
        let stored = store.account("r").unwrap().unwrap();
        assert_eq!(stored.account.credit_limit, None, "{label}");
        assert_eq!(stored.account.thresholds.len(), 2, "{label}");
        assert_eq!(stored.account.time_zone, "America/New_York", "{label}");
        let generation = store.accounts_generation().unwrap();
        // Making r a child of s closes a cycle with the stored s → r: refused whole.
        let cycle = "account,parent,currency\nr,s,USD\nt,,USD\n";
        let error = import_accounts(store.as_mut(), "b.csv", cycle.as_bytes()).unwrap_err();
        assert!(
            format!("{error:#}").contains("its own ancestor"),
            "{label}: {error:#}"
        );
        assert!(
            store.account("t").unwrap().is_none(),
            "{label}: half an import"
        );
        assert_eq!(store.accounts_generation().unwrap(), generation, "{label}");
        let orphan = "account,parent,currency\nu,nowhere,USD\n";
        assert!(import_accounts(store.as_mut(), "c.csv", orphan.as_bytes()).is_err());
        // Even past the file check (two imports at once), the store refuses to close a cycle.
        let mut r = store.account("r").unwrap().unwrap().account;
        r.parent = Some("s".into());
        let error = store.upsert_accounts(&[r]).unwrap_err();
        assert!(
            format!("{error:#}").contains("its own ancestor"),
            "{label}: {error:#}"
        );
        assert_eq!(
            store.account("r").unwrap().unwrap().account.parent,
            None,
            "{label}"
        );
    }
}

/// The reference model: walk the rated CDRs in order; a key seen before is not charged; a new
/// call's cost goes to its account and every ancestor. Obviously right, and slow.
fn reference_balances(
    batches: &[PostingBatch],
    parents: &HashMap<String, Option<String>>,
) -> HashMap<String, i64> {
    let mut seen = HashSet::new();
    let mut balances: HashMap<String, i64> = HashMap::new();
    for batch in batches {
        let source = batch.text_column("source");
        let cdr_id = batch.text_column("cdr_id");
        let account = batch.text_column("account");
        for row in 0..batch.n_calls() {
            if !seen.insert((source.value(row).to_string(), cdr_id.value(row).to_string())) {
                continue;
            }
            let mut next = Some(account.value(row).to_string());
            while let Some(id) = next {
                *balances.entry(id.clone()).or_default() -= batch.cost_units[row];
                next = parents[&id].clone();
            }
        }
    }
    balances
}

#[test]
fn the_store_agrees_with_the_reference_model_on_the_sample_day() {
    let decks = load_native_decks(&[
        repo_path("rate-decks/az-international.csv"),
        repo_path("rate-decks/us-npanxx.csv"),
    ])
    .unwrap();
    let accounts_text = std::fs::read(repo_path("fixtures/cdrs/sample-accounts.csv")).unwrap();
    let book = tollgate::credit::accounts::parse_accounts_csv("accounts", &accounts_text).unwrap();
    let context = tollgate::batch::rated_block::RatingContext {
        deck_choice: tollgate::batch::deck_choice::DeckChoice::by_account(&book, &decks).unwrap(),
        decks: std::sync::Arc::new(decks),
        input_time_zone: chrono_tz::UTC,
        default_source: "default".into(),
    };
    let day = std::fs::read_to_string(repo_path("fixtures/cdrs/sample-day.csv")).unwrap();
    let (header, body) = day.split_at(day.find('\n').unwrap() + 1);
    let lines: Vec<&str> = body.lines().collect();
    // Four overlapping slices: the second repeats part of the first, the last repeats everything.
    let slices = [&lines[..800], &lines[600..1500], &lines[1500..], &lines[..]];
    let batches: Vec<PostingBatch> = slices
        .iter()
        .enumerate()
        .map(|(index, slice)| {
            let text = format!("{header}{}\n", slice.join("\n"));
            batch_from_csv(
                &context,
                &format!("slice-{index}"),
                OriginKind::SpoolFile,
                &text,
            )
        })
        .collect();
    let parents: HashMap<String, Option<String>> = book
        .accounts
        .values()
        .map(|account| (account.id.clone(), account.parent.clone()))
        .collect();
    let expected = reference_balances(&batches, &parents);
    // The model's total agrees with the rating core's own count of the day.
    let columns = read_canonical_header(day.as_bytes()).unwrap().unwrap();
    let whole = rate_csv_block(
        &context,
        &columns.columns,
        &day.as_bytes()[columns.header_bytes..],
    );
    let mut whole_keys = HashSet::new();
    let mut whole_cost = 0;
    for row in 0..whole.n_rows() {
        if whole.status[row] == RowStatus::Rated && whole_keys.insert(whole.key_digest[row]) {
            let deck = &context.decks[usize::from(whole.deck[row])];
            whole_cost += cost_in_ledger_units(whole.cost_mantissa[row], deck.rounding.decimals);
        }
    }
    assert_eq!(expected["acct-1000"], -whole_cost);
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = test_store.open();
        store
            .upsert_accounts(&book.accounts.values().cloned().collect::<Vec<_>>())
            .unwrap();
        for batch in &batches {
            store.post_batch(batch).unwrap();
        }
        for (account, expected_balance) in &expected {
            assert_eq!(
                balance(store.as_mut(), account),
                *expected_balance,
                "{label}: {account}"
            );
        }
        let totals = store.ledger_totals().unwrap();
        assert_eq!(totals.rated_calls as usize, whole_keys.len(), "{label}");
        assert!(totals.balance_mismatches.is_empty(), "{label}");
    }
}

#[test]
fn thresholds_alert_once_per_crossing_and_credits_rearm_them() {
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = test_store.open();
        let mut accounts = tree();
        accounts[3].thresholds = ["5", "2", "0"].iter().map(|t| t.parse().unwrap()).collect();
        store.upsert_accounts(&accounts).unwrap();
        let context = context_for(deck_from_text(DECK, None), &accounts);
        let credit = store
            .credit("other", units("6.00"), "opening", "k-open")
            .unwrap();
        assert_eq!(credit.balance_after_units, units("6.00"), "{label}");
        let post_calls = |store: &mut dyn LedgerStore, name: &str, calls: &[(&str, u32)]| {
            let text: String = std::iter::once(HEADER.to_string())
                .chain(calls.iter().map(|(id, billsec)| cdr(id, "other", *billsec)))
                .collect();
            post(
                store,
                &batch_from_csv(&context, name, OriginKind::SpoolFile, &text),
            );
        };
        post_calls(store.as_mut(), "a", &[("a1", 61)]); // 6.00 -> 4.80: crosses 5
        post_calls(store.as_mut(), "b", &[("b1", 300), ("b2", 240)]); // 4.80 -> -0.60: crosses 2 and 0 at once
        post_calls(store.as_mut(), "c", &[("c1", 60)]); // -0.60 -> -1.20: already below every threshold
        let credit = store.credit("other", units("10"), "top-up", "k-1").unwrap();
        assert_eq!(
            (credit.balance_after_units, credit.replayed),
            (units("8.80"), false),
            "{label}"
        );
        // The same key again credits nothing; the same key for another amount is refused.
        let again = store.credit("other", units("10"), "top-up", "k-1").unwrap();
        assert_eq!(
            (again.entry_id, again.replayed),
            (credit.entry_id, true),
            "{label}"
        );
        let refused = store
            .credit("other", units("11"), "top-up", "k-1")
            .unwrap_err();
        assert!(format!("{refused:#}").contains("already used"), "{label}");
        post_calls(store.as_mut(), "d", &[("d1", 300), ("d2", 120)]); // 8.80 -> 4.60: 5 re-armed, crossed again
        let crossed: Vec<i64> = store
            .alerts_of("other")
            .unwrap()
            .iter()
            .map(|alert| alert.threshold_units)
            .collect();
        assert_eq!(
            crossed,
            [units("5"), units("2"), units("0"), units("5")],
            "{label}"
        );
        assert_eq!(balance(store.as_mut(), "other"), units("4.60"), "{label}");
        assert!(
            store.ledger_totals().unwrap().balance_mismatches.is_empty(),
            "{label}"
        );
        assert!(store.alerts_of("root").unwrap().is_empty(), "{label}");
    }
}

#[test]
fn auto_recharge_runs_once_per_account_and_local_date() {
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = test_store.open();
        let mut low = Account::new("low", None, "USD");
        low.time_zone = "America/New_York".into();
        low.auto_recharge = Some(tollgate::credit::accounts::AutoRecharge {
            threshold: "5".parse().unwrap(),
            amount: "20".parse().unwrap(),
            local_time: tollgate::credit::accounts::default_recharge_local_time(),
        });
        let mut rich = low.clone();
        rich.id = "rich".into();
        let mut poor = low.clone();
        poor.id = "poor".into();
        store.upsert_accounts(&[low, rich, poor]).unwrap();
        store
            .credit("rich", units("100"), "opening", "rich-open")
            .unwrap();
        let day = |text: &str| text.parse::<chrono::NaiveDate>().unwrap();

        let first = store.run_auto_recharge("low", day("2026-11-21")).unwrap();
        assert_eq!(
            (first.already_ran, first.credited_units),
            (false, units("20")),
            "{label}"
        );
        let again = store.run_auto_recharge("low", day("2026-11-21")).unwrap();
        assert_eq!(
            (again.already_ran, again.credited_units),
            (true, 0),
            "{label}"
        );
        // A restart (a new connection) finds the date done too.
        let mut restarted = test_store.open();
        assert!(
            restarted
                .run_auto_recharge("low", day("2026-11-21"))
                .unwrap()
                .already_ran
        );
        // Above the threshold: no credit, and the day is spent.
        let rich_run = store.run_auto_recharge("rich", day("2026-11-21")).unwrap();
        assert_eq!(
            (rich_run.already_ran, rich_run.credited_units),
            (false, 0),
            "{label}"
        );

        // Four runners at once (other tollgate instances, a cron job) for an account below its
        // threshold: one credit between them.
        let runners: Vec<_> = (0..4)
            .map(|_| {
                let location = test_store.location.clone();
                std::thread::spawn(move || {
                    let mut store = tollgate::store::ledger_store::open_store(&location).unwrap();
                    store.run_auto_recharge("poor", day("2026-11-22")).unwrap()
                })
            })
            .collect();
        let runs: Vec<_> = runners
            .into_iter()
            .map(|runner| runner.join().unwrap())
            .collect();
        assert_eq!(
            runs.iter().filter(|run| !run.already_ran).count(),
            1,
            "{label}: {runs:?}"
        );
        assert_eq!(balance(store.as_mut(), "poor"), units("20"), "{label}");
        let entries_before = store.ledger_totals().unwrap();
        assert!(entries_before.balance_mismatches.is_empty(), "{label}");
        assert_eq!(balance(store.as_mut(), "low"), units("20"), "{label}");
        assert_eq!(balance(store.as_mut(), "rich"), units("100"), "{label}");
    }
}

#[test]
fn auto_recharge_follows_the_local_clock_on_dst_days_and_catches_up_once() {
    use tollgate::credit::accounts::AutoRecharge;
    use tollgate::credit::recharge::run_due_recharges;
    let at = |text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let time = |text: &str| chrono::NaiveTime::parse_from_str(text, "%H:%M").unwrap();
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = test_store.open();
        let recharging = |id: &str, zone: &str, local_time: &str| {
            let mut account = Account::new(id, None, "USD");
            account.time_zone = zone.into();
            account.auto_recharge = Some(AutoRecharge {
                threshold: "5".parse().unwrap(),
                amount: "10".parse().unwrap(),
                local_time: time(local_time),
            });
            account
        };
        // 02:30 does not exist in New York on 2026-03-08 (01:59 EST, then 03:00 EDT); 01:30
        // happens twice on 2026-11-01.
        store
            .upsert_accounts(&[recharging("spring", "America/New_York", "02:30")])
            .unwrap();
        // (now, credited accounts)
        let spring = [
            ("2026-03-08T06:59:00Z", 0), // 01:59 EST: not yet
            ("2026-03-08T07:00:00Z", 1), // 03:00 EDT: the gap has passed, due
            ("2026-03-08T07:30:00Z", 0), // later the same day: done already
            ("2026-03-09T03:00:00Z", 0), // 23:00 on the 8th, local: still the same day
        ];
        for (now, credited) in spring {
            let runs = run_due_recharges(store.as_mut(), at(now), None).unwrap();
            let count = runs.iter().filter(|run| run.run.credited_units > 0).count();
            assert_eq!(count, credited, "{label} at {now}: {runs:?}");
        }
        store
            .upsert_accounts(&[recharging("autumn", "America/New_York", "01:30")])
            .unwrap();
        let first = run_due_recharges(store.as_mut(), at("2026-11-01T05:30:00Z"), None).unwrap();
        let repeated = run_due_recharges(store.as_mut(), at("2026-11-01T06:30:00Z"), None).unwrap();
        let credited = |runs: &[tollgate::credit::recharge::AccountRecharge], id: &str| {
            runs.iter()
                .filter(|run| run.account == id && run.run.credited_units > 0)
                .count()
        };
        assert_eq!(credited(&first, "autumn"), 1, "{label}: first 01:30 (EDT)");
        assert_eq!(
            credited(&repeated, "autumn"),
            0,
            "{label}: second 01:30 (EST)"
        );

        // Down at 00:05 Tokyo time, started at 09:00 there: today's run happens once, at start.
        store
            .upsert_accounts(&[recharging("tokyo", "Asia/Tokyo", "00:05")])
            .unwrap();
        let started = run_due_recharges(store.as_mut(), at("2026-11-22T00:00:00Z"), None).unwrap();
        let restarted =
            run_due_recharges(store.as_mut(), at("2026-11-22T00:01:00Z"), None).unwrap();
        assert_eq!(credited(&started, "tokyo"), 1, "{label}");
        assert_eq!(credited(&restarted, "tokyo"), 0, "{label}");
        for id in ["spring", "autumn", "tokyo"] {
            assert_eq!(balance(store.as_mut(), id), units("10"), "{label}: {id}");
        }
        assert!(
            store.ledger_totals().unwrap().balance_mismatches.is_empty(),
            "{label}"
        );
    }
}
