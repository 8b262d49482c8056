//! Alerts delivered to real webhook receivers on 127.0.0.1, against both stores: one request per
//! alert with a verifiable signature, retries bounded then failed, a dead delivery sent again
//! after its lease, and several deliverers never sending one alert twice.

use crate::store_support::{batch_from_csv, context_for, test_stores};
use crate::support::deck_from_text;
use crate::webhook_receiver::{ReceivedHook, WebhookReceiver};
use hmac::{Hmac, KeyInit, Mac};
use std::collections::{BTreeMap, HashSet};
use tollgate::credit::accounts::{Account, AutoRecharge, default_recharge_local_time};
use tollgate::credit::posting::OriginKind;
use tollgate::daemon::webhooks::{RetryPolicy, deliver_due_alerts, webhook_agent};
use tollgate::money::ledger_units;
use tollgate::store::ledger_store::{LedgerStore, StoredAlert, now_micros};

const DECK: &str = "prefix,destination,rate,connect_fee,min_seconds,increment,effective_from,effective_until\n\
                    1,US,0.60,0,60,60,2020-01-01,\n";
const HEADER: &str =
    "cdr_id,account,direction,caller,callee,start_time,answer_time,end_time,billsec,disposition\n";
const SECRET: &str = "whsec-test-3f9a";

/// No wait between attempts, so a test runs through every retry at once.
const QUICK_RETRIES: RetryPolicy = RetryPolicy {
    attempts_max: 3,
    first_wait_milliseconds: 0,
};

fn units(text: &str) -> i64 {
    ledger_units(text.parse().unwrap()).unwrap()
}

fn watched(id: &str, webhook: Option<&WebhookReceiver>) -> Account {
    let mut account = Account::new(id, None, "USD");
    account.thresholds = ["5", "2", "0"].iter().map(|t| t.parse().unwrap()).collect();
    account.webhook_url = webhook.map(|receiver| receiver.url.clone());
    account.webhook_secret = webhook.map(|_| SECRET.to_string());
    account
}

/// Posts calls of `billsec` seconds (0.60 per started minute) to `account` as one batch.
fn charge(store: &mut dyn LedgerStore, accounts: &[Account], account: &str, billsecs: &[u32]) {
    let context = context_for(deck_from_text(DECK, None), accounts);
    let mut text = HEADER.to_string();
    for (index, billsec) in billsecs.iter().enumerate() {
        text.push_str(&format!(
            "{account}-{}-{index},{account},outbound,15550000001,14155550100,2026-11-20T10:00:00Z,\
             2026-11-20T10:00:01Z,2026-11-20T10:10:00Z,{billsec},ANSWERED\n",
            now_micros()
        ));
    }
    let origin = format!("{account}-{}", now_micros());
    store
        .post_batch(&batch_from_csv(
            &context,
            &origin,
            OriginKind::SpoolFile,
            &text,
        ))
        .unwrap();
}

/// Delivers until nothing is due (bounded, so a deliverer that loops fails the test).
fn deliver_everything(store: &mut dyn LedgerStore, policy: RetryPolicy) {
    let agent = webhook_agent();
    for _ in 0..50 {
        if deliver_due_alerts(store, &agent, policy, None).unwrap() == 0 {
            return;
        }
    }
    panic!("alerts were still due after 50 rounds of delivery");
}

fn verify_signature(hook: &ReceivedHook) {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(hook.body.as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(
        hook.header("X-Tollgate-Signature"),
        Some(format!("sha256={expected}").as_str()),
        "signature of {}",
        hook.body
    );
}

fn states(alerts: &[StoredAlert]) -> Vec<(&str, i64)> {
    alerts
        .iter()
        .map(|alert| (alert.delivery_state.as_str(), alert.attempts))
        .collect()
}

#[test]
fn each_alert_reaches_its_webhook_signed_and_retries_are_bounded() {
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = test_store.open();
        let healthy = WebhookReceiver::start(&[200]);
        let flaky = WebhookReceiver::start(&[500, 503, 204]);
        let down = WebhookReceiver::start(&[500]);
        let accounts = vec![
            watched("healthy", Some(&healthy)),
            watched("flaky", Some(&flaky)),
            watched("down", Some(&down)),
            watched("quiet", None),
        ];
        store.upsert_accounts(&accounts).unwrap();
        for account in &accounts {
            store
                .credit(
                    &account.id,
                    units("6"),
                    "opening",
                    &format!("open-{}", account.id),
                )
                .unwrap();
        }
        // healthy: 6.00 -> 4.80 crosses 5; then -> -0.60 crosses 2 and 0 in one batch; then
        // -> -1.20 crosses nothing (already below every threshold).
        charge(store.as_mut(), &accounts, "healthy", &[61]);
        charge(store.as_mut(), &accounts, "healthy", &[300, 240]);
        charge(store.as_mut(), &accounts, "healthy", &[60]);
        for other in ["flaky", "down", "quiet"] {
            charge(store.as_mut(), &accounts, other, &[61]);
        }
        deliver_everything(store.as_mut(), QUICK_RETRIES);

        let hooks = healthy.received();
        let thresholds: Vec<String> = hooks
            .iter()
            .map(|hook| hook.json()["threshold"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(thresholds, ["5", "2", "0"], "{label}");
        let ids: HashSet<i64> = hooks
            .iter()
            .map(|hook| hook.json()["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids.len(), 3, "{label}: one request per alert");
        for hook in &hooks {
            verify_signature(hook);
            let event = hook.json();
            assert_eq!(event["type"], "threshold_crossed", "{label}");
            assert_eq!(event["account"], "healthy", "{label}");
            assert_eq!(event["currency"], "USD", "{label}");
            assert_eq!(
                hook.header("X-Tollgate-Event-Id"),
                Some(event["id"].to_string().as_str())
            );
            assert_eq!(hook.path, "/hooks/tollgate");
        }
        assert_eq!(hooks[0].json()["balance"], "4.8", "{label}");
        assert_eq!(hooks[2].json()["balance"], "-0.6", "{label}");
        let healthy_alerts = store.alerts_of("healthy").unwrap();
        assert_eq!(states(&healthy_alerts), [("delivered", 1); 3], "{label}");

        // Two failures, then a success: the same alert, id and body each time.
        let tries = flaky.received();
        assert_eq!(tries.len(), 3, "{label}");
        assert!(
            tries.iter().all(|hook| hook.body == tries[0].body),
            "{label}"
        );
        let attempts: Vec<&str> = tries
            .iter()
            .map(|hook| hook.header("X-Tollgate-Attempt").unwrap())
            .collect();
        assert_eq!(attempts, ["1", "2", "3"], "{label}");
        assert_eq!(
            states(&store.alerts_of("flaky").unwrap()),
            [("delivered", 3)],
            "{label}"
        );

        // Always failing: exactly attempts_max requests, then failed with the reason kept.
        assert_eq!(down.received().len(), 3, "{label}");
        let failed = store.alerts_of("down").unwrap();
        assert_eq!(states(&failed), [("failed", 3)], "{label}");
        assert!(
            failed[0].last_error.as_deref().unwrap().contains("500"),
            "{label}: {:?}",
            failed[0].last_error
        );
        // No webhook: recorded as such, nothing sent.
        assert_eq!(
            states(&store.alerts_of("quiet").unwrap()),
            [("no_webhook", 1)],
            "{label}"
        );

        // Delivering again sends nothing more.
        deliver_everything(store.as_mut(), QUICK_RETRIES);
        assert_eq!(
            (
                healthy.received().len(),
                flaky.received().len(),
                down.received().len()
            ),
            (3, 3, 3),
            "{label}"
        );
        assert!(
            store.ledger_totals().unwrap().balance_mismatches.is_empty(),
            "{label}"
        );
    }
}

#[test]
fn a_delivery_that_died_is_sent_again_after_its_lease_with_the_same_id() {
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = test_store.open();
        let receiver = WebhookReceiver::start(&[200]);
        let accounts = vec![watched("acme", Some(&receiver))];
        store.upsert_accounts(&accounts).unwrap();
        charge(store.as_mut(), &accounts, "acme", &[60]); // 0 -> -0.60 crosses 0
        // An instance claims the alert and dies before sending it (its lease is 1 ms).
        let claimed = store
            .claim_alerts_to_deliver(now_micros(), 1_000, 10)
            .unwrap();
        assert_eq!(claimed.len(), 1, "{label}");
        std::thread::sleep(std::time::Duration::from_millis(5));
        deliver_everything(store.as_mut(), QUICK_RETRIES);
        let hooks = receiver.received();
        assert_eq!(hooks.len(), 1, "{label}");
        assert_eq!(hooks[0].json()["id"].as_i64(), Some(claimed[0].alert.id));
        assert_eq!(hooks[0].header("X-Tollgate-Attempt"), Some("2"), "{label}");
        // A claim still leased is not taken by another deliverer.
        store
            .credit("acme", units("1"), "top-up", "top-up-1")
            .unwrap(); // -0.60 -> 0.40
        charge(store.as_mut(), &accounts, "acme", &[60]); // 0.40 -> -0.20 crosses 0 again
        let now = now_micros();
        assert_eq!(
            store
                .claim_alerts_to_deliver(now, 60_000_000, 10)
                .unwrap()
                .len(),
            1,
            "{label}"
        );
        assert!(
            store
                .claim_alerts_to_deliver(now, 60_000_000, 10)
                .unwrap()
                .is_empty(),
            "{label}"
        );
    }
}

#[test]
fn concurrent_deliverers_send_each_alert_once() {
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = test_store.open();
        let receiver = WebhookReceiver::start(&[200]);
        let mut accounts = Vec::new();
        for index in 0..12 {
            accounts.push(watched(&format!("a{index:02}"), Some(&receiver)));
        }
        store.upsert_accounts(&accounts).unwrap();
        for account in &accounts {
            store
                .credit(
                    &account.id,
                    units("6"),
                    "opening",
                    &format!("open-{}", account.id),
                )
                .unwrap();
            // Crosses 5, 2 and 0: three alerts each, 36 in all.
            charge(store.as_mut(), &accounts, &account.id, &[601]);
        }
        let deliverers: Vec<_> = (0..3)
            .map(|_| {
                let location = test_store.location.clone();
                std::thread::spawn(move || {
                    let mut store = tollgate::store::ledger_store::open_store(&location).unwrap();
                    deliver_everything(store.as_mut(), QUICK_RETRIES);
                })
            })
            .collect();
        for deliverer in deliverers {
            deliverer.join().unwrap();
        }
        let mut per_id: BTreeMap<i64, usize> = BTreeMap::new();
        for hook in receiver.received() {
            *per_id
                .entry(hook.json()["id"].as_i64().unwrap())
                .or_default() += 1;
        }
        assert_eq!(per_id.len(), 36, "{label}");
        assert!(
            per_id.values().all(|count| *count == 1),
            "{label}: {per_id:?}"
        );
    }
}

#[test]
fn an_auto_recharge_is_announced_to_the_webhook() {
    for test_store in test_stores() {
        let label = test_store.label;
        let mut store = test_store.open();
        let receiver = WebhookReceiver::start(&[200]);
        let mut account = watched("card", Some(&receiver));
        account.time_zone = "Asia/Tokyo".into();
        account.auto_recharge = Some(AutoRecharge {
            threshold: "5".parse().unwrap(),
            amount: "20".parse().unwrap(),
            local_time: default_recharge_local_time(),
        });
        store.upsert_accounts(&[account]).unwrap();
        let date = "2026-11-22".parse().unwrap();
        assert_eq!(
            store
                .run_auto_recharge("card", date)
                .unwrap()
                .credited_units,
            units("20")
        );
        store.run_auto_recharge("card", date).unwrap();
        deliver_everything(store.as_mut(), QUICK_RETRIES);
        let hooks = receiver.received();
        assert_eq!(hooks.len(), 1, "{label}: one event for one recharge");
        verify_signature(&hooks[0]);
        let event = hooks[0].json();
        assert_eq!(event["type"], "auto_recharge", "{label}");
        assert_eq!(event["amount"], "20", "{label}");
        assert_eq!(event["balance"], "20", "{label}");
        assert_eq!(event["local_date"], "2026-11-22", "{label}");
    }
}
