//! Real-time authorization against both stores: trunk pools then two-way overflow, per-minute
//! reservations that never spend the same money twice under hundreds of concurrent requests, a
//! parent with fewer trunks than its child, expiry, restarts with calls up, idempotent call ids.

use crate::store_support::{TestStore, batch_from_csv, context_for, test_stores};
use crate::support::deck_from_text;
use std::collections::BTreeMap;
use tollgate::cdr::Direction;
use tollgate::credit::accounts::Account;
use tollgate::credit::authorization::{Authorization, AuthorizationRequest, Decision, decide};
use tollgate::credit::posting::OriginKind;
use tollgate::credit::trunks::{TrunkEligibility, TrunkKind};
use tollgate::money::ledger_units;
use tollgate::store::ledger_store::{CallRefusal, LedgerStore, now_micros, open_store};

const US: &str = "13125550143";
const LONDON: &str = "442079460000";
const CAP_SECONDS: u32 = 600;
/// What CDRs are rated with: 0.60 a minute in whole minutes, as `price` says.
const CDR_DECK: &str = "prefix,destination,rate,connect_fee,min_seconds,increment,effective_from,effective_until\n\
                        1,North America,0.60,0,60,60,2020-01-01,\n\
                        4,Europe,0.60,0,60,60,2020-01-01,\n";

fn units(text: &str) -> i64 {
    ledger_units(text.parse().unwrap()).unwrap()
}

/// 0.60 a minute in whole minutes.
fn price(seconds: u32) -> i64 {
    i64::from(seconds.div_ceil(60)) * units("0.60")
}

fn request(call_id: &str, account: &str, callee: &str) -> AuthorizationRequest {
    AuthorizationRequest {
        call_id: call_id.to_string(),
        account: account.to_string(),
        direction: Direction::Outbound,
        caller: "14155550001".to_string(),
        callee: callee.to_string(),
        time_micros: now_micros(),
    }
}

fn authorize(
    store: &mut dyn LedgerStore,
    request: &AuthorizationRequest,
    expires_at_micros: i64,
) -> anyhow::Result<Authorization> {
    let eligibility = TrunkEligibility::default();
    store
        .authorize_call(request, expires_at_micros, &mut |chain| {
            decide(request, chain, &eligibility, Some(&price), CAP_SECONDS)
        })
        .map(|answer| answer.authorization)
}

fn classes_of(store: &mut dyn LedgerStore) -> BTreeMap<String, String> {
    store
        .rated_calls_of("trunked", 0, i64::MAX, None, 10)
        .unwrap()
        .into_iter()
        .map(|call| (call.cdr_id, call.billing_class))
        .collect()
}

fn in_an_hour() -> i64 {
    now_micros() + 3_600_000_000
}

fn accounts() -> Vec<Account> {
    let mut trunked = Account::new("trunked", None, "USD");
    (trunked.trunks_outbound, trunked.trunks_two_way) = (4, 2);
    trunked.allow_per_minute = false;
    let prepaid = Account::new("prepaid", None, "USD");
    let mut reseller = Account::new("reseller", None, "USD");
    reseller.trunks_outbound = 2;
    reseller.credit_limit = None;
    let mut pbx = Account::new("pbx", Some("reseller"), "USD");
    pbx.trunks_outbound = 5;
    pbx.credit_limit = None;
    vec![trunked, prepaid, reseller, pbx]
}

fn prepared(test_store: &TestStore) -> Box<dyn LedgerStore> {
    let mut store = test_store.open();
    store.upsert_accounts(&accounts()).unwrap();
    store
        .credit("prepaid", units("10"), "opening", "prepaid-open")
        .unwrap();
    store
}

/// `n` authorizations from `threads` threads at once, each thread on its own connection.
fn authorize_concurrently(
    test_store: &TestStore,
    account: &str,
    callee: &str,
    n: usize,
    threads: usize,
) -> Vec<Authorization> {
    let workers: Vec<_> = (0..threads)
        .map(|thread| {
            let location = test_store.location.clone();
            let (account, callee) = (account.to_string(), callee.to_string());
            std::thread::spawn(move || {
                let mut store = open_store(&location).unwrap();
                (thread..n)
                    .step_by(threads)
                    .map(|index| {
                        let call = request(&format!("{account}-{index}"), &account, &callee);
                        authorize(store.as_mut(), &call, in_an_hour()).unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    workers
        .into_iter()
        .flat_map(|worker| worker.join().unwrap())
        .collect()
}

fn count_by(answers: &[Authorization]) -> BTreeMap<(Decision, String), usize> {
    let mut counts = BTreeMap::new();
    for answer in answers {
        *counts
            .entry((answer.decision, answer.reason.clone()))
            .or_default() += 1;
    }
    counts
}

#[test]
fn hundreds_of_concurrent_authorizations_never_exceed_a_limit() {
    for test_store in test_stores() {
        let label = test_store.label;
        drop(prepared(&test_store));

        // Four outbound trunks, then two two-way; per-minute not allowed.
        let answers = authorize_concurrently(&test_store, "trunked", US, 200, 8);
        let counts = count_by(&answers);
        assert_eq!(
            counts.get(&(Decision::Trunk, "trunk_available".into())),
            Some(&6),
            "{label}: {counts:?}"
        );
        assert_eq!(
            counts.get(&(Decision::Deny, "no_trunk_available".into())),
            Some(&194),
            "{label}: {counts:?}"
        );
        let mut pools: BTreeMap<TrunkKind, usize> = BTreeMap::new();
        for answer in &answers {
            for hold in &answer.holds {
                *pools.entry(hold.trunk.unwrap()).or_default() += 1;
            }
        }
        assert_eq!(
            pools,
            BTreeMap::from([(TrunkKind::Outbound, 4), (TrunkKind::TwoWay, 2)]),
            "{label}"
        );

        // 10.00 and no credit: the first call reserves the capped 10 minutes (6.00), the next the
        // 6 minutes 4.00 buys (3.60); 0.40 buys no minute, so every other call is denied.
        let answers = authorize_concurrently(&test_store, "prepaid", LONDON, 200, 8);
        let mut reserved: Vec<(u32, i64)> = answers
            .iter()
            .filter(|answer| answer.decision == Decision::PerMinute)
            .map(|answer| (answer.max_duration_seconds, answer.reserved_units()))
            .collect();
        reserved.sort();
        assert_eq!(
            reserved,
            [(360, units("3.60")), (600, units("6.00"))],
            "{label}"
        );
        let denied = answers
            .iter()
            .filter(|answer| answer.reason == "insufficient_balance")
            .count();
        assert_eq!(denied, 198, "{label}");
        assert!(
            answers
                .iter()
                .filter(|answer| answer.decision == Decision::Deny)
                .all(|answer| answer.denied_by.as_deref() == Some("prepaid")),
            "{label}"
        );

        // The child has five trunks, its parent two: two calls take trunks, the rest go
        // per-minute (allowed, unlimited credit), reserving on both levels.
        let answers = authorize_concurrently(&test_store, "pbx", US, 100, 8);
        let counts = count_by(&answers);
        assert_eq!(
            counts.get(&(Decision::Trunk, "trunk_available".into())),
            Some(&2),
            "{label}: {counts:?}"
        );
        assert_eq!(
            counts.get(&(Decision::PerMinute, "trunks_busy".into())),
            Some(&98),
            "{label}: {counts:?}"
        );
        let trunk_call = answers
            .iter()
            .find(|answer| answer.decision == Decision::Trunk)
            .unwrap();
        let levels: Vec<&str> = trunk_call
            .holds
            .iter()
            .map(|hold| hold.account.as_str())
            .collect();
        assert_eq!(levels, ["pbx", "reseller"], "{label}");
        let mut store = test_store.open();
        let totals = store.ledger_totals().unwrap();
        assert!(totals.hold_mismatches.is_empty(), "{label}: {totals:?}");
    }
}

#[test]
fn calls_release_what_they_hold_on_end_or_expiry_and_survive_a_restart() {
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = prepared(&test_store);
        let soon = now_micros() + 1_000;
        for index in 0..6 {
            let call = request(&format!("up-{index}"), "trunked", US);
            let expires = if index == 0 { soon } else { in_an_hour() };
            assert_eq!(
                authorize(store.as_mut(), &call, expires).unwrap().decision,
                Decision::Trunk,
                "{label}"
            );
        }
        // A restart: a new connection (a new daemon) sees the six calls still up.
        drop(store);
        let mut store = test_store.open();
        let seventh = request("up-6", "trunked", US);
        assert_eq!(
            authorize(store.as_mut(), &seventh, in_an_hour())
                .unwrap()
                .reason,
            "no_trunk_available",
            "{label}"
        );
        // up-0 stopped sending keepalives: expiry releases its trunk.
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(store.expire_calls(now_micros()).unwrap(), 1, "{label}");
        assert_eq!(store.call_record("up-0").unwrap().unwrap().state, "expired");
        let eighth = request("up-7", "trunked", US);
        assert_eq!(
            authorize(store.as_mut(), &eighth, in_an_hour())
                .unwrap()
                .decision,
            Decision::Trunk,
            "{label}"
        );
        // An end releases, and ending again changes nothing.
        let ended = store
            .end_call("up-1", now_micros(), in_an_hour())
            .unwrap()
            .unwrap();
        assert_eq!(ended.state, "ended", "{label}");
        assert_eq!(
            store
                .end_call("up-1", now_micros(), in_an_hour())
                .unwrap()
                .unwrap()
                .state,
            "ended"
        );
        assert_eq!(
            authorize(
                store.as_mut(),
                &request("up-8", "trunked", US),
                in_an_hour()
            )
            .unwrap()
            .decision,
            Decision::Trunk,
            "{label}"
        );
        // A keepalive pushes the expiry out; on an ended call it is refused.
        let pushed = in_an_hour() + 5_000_000;
        let kept = store.keepalive_call("up-2", pushed).unwrap().unwrap();
        assert_eq!(kept.expires_at_micros, pushed, "{label}");
        let refused = store.keepalive_call("up-1", in_an_hour()).unwrap_err();
        assert_eq!(
            refused.downcast_ref::<CallRefusal>(),
            Some(&CallRefusal::CallEnded("up-1".into())),
            "{label}"
        );
        assert!(
            store
                .end_call("never", now_micros(), in_an_hour())
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .keepalive_call("never", in_an_hour())
                .unwrap()
                .is_none()
        );

        // Money: an ended call keeps its reservation until its CDR is charged...
        let first = authorize(
            store.as_mut(),
            &request("p-1", "prepaid", LONDON),
            in_an_hour(),
        )
        .unwrap();
        assert_eq!(first.reserved_units(), units("6.00"), "{label}");
        store.end_call("p-1", now_micros(), in_an_hour()).unwrap();
        let second = authorize(
            store.as_mut(),
            &request("p-2", "prepaid", LONDON),
            in_an_hour(),
        )
        .unwrap();
        assert_eq!(second.reserved_units(), units("3.60"), "{label}: 4.00 left");
        // ...which settles it: 90 s at 0.60 a minute is 1.20; 10.00 - 1.20 - 3.60 held = 5.20.
        let context = context_for(deck_from_text(CDR_DECK, None), &accounts());
        let cdr = format!(
            "cdr_id,account,direction,caller,callee,start_time,answer_time,end_time,billsec,disposition\n\
             p-1,prepaid,outbound,14155550001,{LONDON},2026-11-20T10:00:00Z,2026-11-20T10:00:01Z,\
             2026-11-20T10:01:31Z,90,ANSWERED\n"
        );
        store
            .post_batch(&batch_from_csv(
                &context,
                "p-1-cdr",
                OriginKind::SpoolFile,
                &cdr,
            ))
            .unwrap();
        assert_eq!(store.call_record("p-1").unwrap().unwrap().state, "settled");
        let third = authorize(
            store.as_mut(),
            &request("p-3", "prepaid", LONDON),
            in_an_hour(),
        )
        .unwrap();
        assert_eq!(
            third.reserved_units(),
            units("4.80"),
            "{label}: 5.20 buys 8 minutes"
        );
        // An ended call whose CDR never comes gives its money back after the settle window.
        store
            .end_call("p-2", now_micros(), now_micros() + 1_000)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(store.expire_calls(now_micros()).unwrap(), 1, "{label}");
        assert_eq!(
            store.call_record("p-2").unwrap().unwrap().state,
            "unsettled"
        );
        let fourth = authorize(
            store.as_mut(),
            &request("p-4", "prepaid", LONDON),
            in_an_hour(),
        )
        .unwrap();
        assert_eq!(
            fourth.reserved_units(),
            units("3.60"),
            "{label}: 8.80 - 4.80 = 4.00"
        );
        let totals = store.ledger_totals().unwrap();
        assert!(totals.hold_mismatches.is_empty(), "{label}: {totals:?}");
        // A day later every call is released and the denial of up-6 is closed.
        store
            .expire_calls(now_micros() + 2 * 86_400_000_000)
            .unwrap();
        assert_eq!(store.call_record("up-6").unwrap().unwrap().state, "closed");
        let totals = store.ledger_totals().unwrap();
        assert!(totals.hold_mismatches.is_empty(), "{label}: {totals:?}");
    }
}

#[test]
fn a_call_id_answers_once_and_is_not_reused_for_another_call() {
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = prepared(&test_store);
        let call = request("c-1", "trunked", US);
        let first = store
            .authorize_call(&call, in_an_hour(), &mut |chain| {
                decide(
                    &call,
                    chain,
                    &TrunkEligibility::default(),
                    Some(&price),
                    CAP_SECONDS,
                )
            })
            .unwrap();
        assert!(!first.replayed);
        // The switch retries (another clock reading): the first answer, nothing held twice.
        let mut retried = call.clone();
        retried.time_micros += 1_000_000;
        let second = store
            .authorize_call(&retried, in_an_hour(), &mut |_| panic!("not decided again"))
            .unwrap();
        assert!(second.replayed, "{label}");
        assert_eq!(second.authorization, first.authorization, "{label}");
        let other = request("c-1", "trunked", LONDON);
        let refused = authorize(store.as_mut(), &other, in_an_hour()).unwrap_err();
        assert_eq!(
            refused.downcast_ref::<CallRefusal>(),
            Some(&CallRefusal::CallIdReused("c-1".into())),
            "{label}"
        );
        let unknown =
            authorize(store.as_mut(), &request("c-2", "nobody", US), in_an_hour()).unwrap_err();
        assert_eq!(
            unknown.downcast_ref::<CallRefusal>(),
            Some(&CallRefusal::UnknownAccount("nobody".into())),
            "{label}"
        );
    }
}

#[test]
fn a_batch_of_authorizations_sees_its_own_holds_and_refusals_stay_per_call() {
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = prepared(&test_store);
        let mut requests: Vec<AuthorizationRequest> = (0..8)
            .map(|index| request(&format!("b-{index}"), "trunked", US))
            .collect();
        requests.insert(3, request("b-unknown", "nobody", US));
        requests.push(request("b-0", "trunked", US)); // a retry inside the batch
        let eligibility = TrunkEligibility::default();
        let answers = store
            .authorize_calls(&requests, in_an_hour(), &mut |request, chain| {
                decide(request, chain, &eligibility, Some(&price), CAP_SECONDS)
            })
            .unwrap();
        let shown: Vec<String> = answers
            .iter()
            .map(|answer| match answer {
                Ok(answer) if answer.replayed => "replayed".to_string(),
                Ok(answer) => answer.authorization.reason.clone(),
                Err(refusal) => refusal.to_string(),
            })
            .collect();
        let mut expected = vec!["trunk_available"; 6];
        expected.insert(3, "no account \"nobody\" in the store");
        expected.extend(["no_trunk_available", "no_trunk_available", "replayed"]);
        assert_eq!(shown, expected, "{label}");
        let ends: Vec<String> = ["b-0", "b-1", "never"].map(String::from).to_vec();
        let ended = store.end_calls(&ends, now_micros(), in_an_hour()).unwrap();
        let states: Vec<Option<&str>> = ended
            .iter()
            .map(|record| record.as_ref().map(|record| record.state.as_str()))
            .collect();
        assert_eq!(states, [Some("ended"), Some("ended"), None], "{label}");
    }
}

#[test]
fn an_authorized_calls_cdr_is_billed_by_its_decision_and_settles_it() {
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = prepared(&test_store);
        for index in 0..6 {
            let call = request(&format!("t-{index}"), "trunked", US);
            authorize(store.as_mut(), &call, in_an_hour()).unwrap();
        }
        // Every trunk busy and no per-minute allowed: denied. Asked again once a trunk is free,
        // a denied call id is decided afresh.
        let retry = request("retry", "trunked", US);
        let denied = authorize(store.as_mut(), &retry, in_an_hour()).unwrap();
        assert_eq!(denied.reason, "no_trunk_available", "{label}");
        store.end_call("t-5", now_micros(), in_an_hour()).unwrap();
        let again = store
            .authorize_call(&retry, in_an_hour(), &mut |chain| {
                decide(
                    &retry,
                    chain,
                    &TrunkEligibility::default(),
                    Some(&price),
                    CAP_SECONDS,
                )
            })
            .unwrap();
        assert_eq!(
            (again.authorization.decision, again.replayed),
            (Decision::Trunk, false),
            "{label}"
        );
        let over = request("over", "trunked", US);
        let refused = authorize(store.as_mut(), &over, in_an_hour()).unwrap();
        assert_eq!(refused.decision, Decision::Deny, "{label}");

        // t-0's CDR (on a trunk), one for a call nobody authorized, and one for the call denied
        // that happened anyway: 90 s each, 1.20 listed.
        let context = context_for(deck_from_text(CDR_DECK, None), &accounts());
        let mut cdrs = String::from(
            "cdr_id,account,direction,caller,callee,start_time,answer_time,end_time,billsec,disposition\n",
        );
        for id in ["t-0", "unauthorized", "over"] {
            cdrs.push_str(&format!(
                "{id},trunked,outbound,14155550001,{US},2026-11-20T10:00:00Z,2026-11-20T10:00:01Z,\
                 2026-11-20T10:01:31Z,90,ANSWERED\n"
            ));
        }
        let outcome = store
            .post_batch(&batch_from_csv(
                &context,
                "t-cdrs",
                OriginKind::SpoolFile,
                &cdrs,
            ))
            .unwrap();
        assert_eq!((outcome.rated, outcome.limit_exceeded), (3, 1), "{label}");
        assert_eq!(
            outcome.charged_units,
            units("1.20"),
            "{label}: the call over the limit; the unauthorized one waits for the trunk sweep"
        );
        let balance = store.account("trunked").unwrap().unwrap().balance_units;
        assert_eq!(balance, units("-1.20"), "{label}");
        assert_eq!(store.call_record("t-0").unwrap().unwrap().state, "settled");
        assert_eq!(
            store.call_record("over").unwrap().unwrap().state,
            "limit_exceeded"
        );
        let alerts = store.alerts_of("trunked").unwrap();
        let flagged: Vec<(&str, Option<&str>, i64)> = alerts
            .iter()
            .map(|alert| {
                (
                    alert.kind.as_str(),
                    alert.call_id.as_deref(),
                    alert.balance_units,
                )
            })
            .collect();
        assert_eq!(
            flagged,
            [("limit_exceeded", Some("over"), units("-1.20"))],
            "{label}"
        );
        let calls = store
            .rated_calls_of("trunked", 0, i64::MAX, None, 10)
            .unwrap();
        let classes: Vec<(&str, &str, i64)> = calls
            .iter()
            .map(|call| {
                (
                    call.cdr_id.as_str(),
                    call.billing_class.as_str(),
                    call.cost_units,
                )
            })
            .collect();
        assert_eq!(
            classes,
            [
                ("over", "limit_exceeded", units("1.20")),
                ("t-0", "trunk", units("1.20")),
                ("unauthorized", "held", units("1.20")),
            ],
            "{label}: the trunk call keeps its list price"
        );
        // Its trunk is free again: the next call takes it.
        let next = authorize(store.as_mut(), &request("t-7", "trunked", US), in_an_hour()).unwrap();
        assert_eq!(next.decision, Decision::Trunk, "{label}");
        // The sweep finds the unauthorized call's trunks free at its time (authorized calls hold
        // theirs through their authorizations): on a trunk, not charged.
        let report = tollgate::credit::trunk_sweep::run_trunk_sweep(
            store.as_mut(),
            now_micros(),
            &TrunkEligibility::default(),
        )
        .unwrap();
        assert_eq!(report.charged_units, 0, "{label}");
        assert_eq!(
            classes_of(store.as_mut())["unauthorized"],
            "trunk",
            "{label}"
        );
        let totals = store.ledger_totals().unwrap();
        assert_eq!(totals.rated_cost_units, units("1.20"), "{label}");
        assert!(totals.balance_mismatches.is_empty(), "{label}");
        assert!(totals.hold_mismatches.is_empty(), "{label}");
    }
}

/// The call authorizer shares the embedded store with the poster, the alert deliverer and the
/// periodic checks. When one of them holds the write lock, the authorizer's transaction must go
/// ahead as soon as the lock is free: SQLite's own busy timeout sleeps 100 ms between tries once
/// a wait is long, which put whole milliseconds into the tail of authorizations for locks held
/// for microseconds. Three waits on a lock held 440 ms, each ending within 40 ms of the commit:
/// SQLite's own handler tries at 428 ms and then sleeps until 528 ms, about 88 ms too late.
#[test]
fn an_authorizer_waiting_for_the_write_lock_goes_ahead_once_it_is_free() {
    let store = crate::store_support::embedded_store();
    let tollgate::store::ledger_store::StoreLocation::Embedded(path) = &store.location else {
        unreachable!()
    };
    let mut authorizer = store.open();
    let other_writer = rusqlite::Connection::open(path).unwrap();
    for attempt in 0..3 {
        other_writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        let waiting = std::thread::scope(|scope| {
            let waiting = scope.spawn(|| {
                let call_id = format!("never-authorized-{attempt}");
                let ended = authorizer
                    .end_calls(&[call_id], now_micros(), in_an_hour())
                    .expect("the authorizer waits for the lock instead of failing");
                assert_eq!(ended.len(), 1);
                std::time::Instant::now()
            });
            std::thread::sleep(std::time::Duration::from_millis(440));
            let releasing = std::time::Instant::now();
            other_writer.execute_batch("COMMIT").unwrap();
            let went_ahead = waiting.join().unwrap();
            assert!(
                went_ahead > releasing,
                "attempt {attempt}: the authorizer went ahead while the other writer held the lock"
            );
            went_ahead - releasing
        });
        assert!(
            waiting < std::time::Duration::from_millis(40),
            "attempt {attempt}: the authorizer went ahead {waiting:?} after the lock was freed"
        );
    }
}
