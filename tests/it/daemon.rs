//! `tollgate serve` end to end on both stores: spool files, HTTP intake, retries, bad input,
//! metrics, readiness, graceful stop.

use crate::daemon_support::{
    drop_into_spool, import_accounts_into, start_sample_daemon, wait_until_done,
};
use crate::store_support::{TestStore, embedded_store, test_stores};
use crate::support::{repo_path, tollgate, tollgate_succeeds};
use crate::webhook_receiver::WebhookReceiver;
use std::time::Duration;

fn import_sample_accounts(store: &TestStore) {
    import_accounts_into(store, &repo_path("fixtures/cdrs/sample-accounts.csv"));
}

const SAMPLE_DAY_TOTAL: &str = "182.8177";

#[test]
fn serve_posts_spool_files_and_http_batches_exactly_once() {
    for store in test_stores() {
        let label = store.label;
        import_sample_accounts(&store);
        let folder = tempfile::tempdir().unwrap();
        let spool = folder.path().join("spool");
        let log = folder.path().join("serve.log");
        let daemon = start_sample_daemon(
            &store,
            folder.path(),
            "request_bytes_max = 100000\nbatch_cdrs_max = 500\n",
        );
        let day = std::fs::read(repo_path("fixtures/cdrs/sample-day.csv")).unwrap();
        drop_into_spool(&spool, "day-1.csv", &day);
        // The same content under another name: recognised, nothing charged twice.
        drop_into_spool(&spool, "day-1-resent.csv", &day);
        drop_into_spool(&spool, "not-cdrs.csv", b"hello,world\n1,2\n");
        let names = ["day-1.csv".to_string(), "day-1-resent.csv".to_string()];
        assert!(
            wait_until_done(&spool, &names, Duration::from_secs(60)),
            "{label}: spool files not done:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        let rejects = std::fs::read_to_string(spool.join("done/day-1.csv.rejects.csv")).unwrap();
        assert!(
            rejects.starts_with("file,line,reason,raw_record\n"),
            "{label}"
        );
        assert!(rejects.lines().count() > 1, "{label}: {rejects}");
        let reason = std::fs::read_to_string(spool.join("failed/not-cdrs.csv.reason.txt")).unwrap();
        assert!(
            reason.contains("lacks the canonical column"),
            "{label}: {reason}"
        );

        let small = std::fs::read(repo_path("fixtures/cdrs/small.csv")).unwrap();
        let csv = [
            ("Content-Type", "text/csv"),
            ("Idempotency-Key", "batch-77"),
        ];
        let (status, body) = daemon.request("POST", "/v1/cdrs", &csv, &small);
        assert_eq!(status, 200, "{label}: {body}");
        let first: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(first["rated"], 21, "{label}: {body}");
        assert_eq!(first["replayed"], false, "{label}");
        let (status, body) = daemon.request("POST", "/v1/cdrs", &csv, &small);
        assert_eq!(status, 200, "{label}: {body}");
        let retried: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (retried["rated"].clone(), retried["replayed"].clone()),
            (21.into(), true.into()),
            "{label}"
        );
        // The same CDRs under another request id: every one a duplicate.
        let other = [
            ("Content-Type", "text/csv"),
            ("Idempotency-Key", "batch-78"),
        ];
        let (_, body) = daemon.request("POST", "/v1/cdrs", &other, &small);
        let resent: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (resent["rated"].clone(), resent["duplicates"].clone()),
            (0.into(), 22.into()),
            "{label}: {body}"
        );

        let json_lines = br#"{"cdr_id":"j-1","account":"acct-1003","direction":"outbound","caller":"14155550001","callee":"442071234567","start_time":"2026-11-21T10:00:00Z","answer_time":"2026-11-21T10:00:02Z","end_time":"2026-11-21T10:01:02Z","billsec":60,"disposition":"ANSWERED"}
"#;
        let ndjson = [("Content-Type", "application/x-ndjson")];
        let (status, body) = daemon.request("POST", "/v1/cdrs", &ndjson, json_lines);
        assert_eq!(status, 200, "{label}: {body}");
        assert!(body.contains("\"rated\":1"), "{label}: {body}");
        // A key reused for another body is another request: its CDR is posted, not dropped.
        let reused = [
            ("Content-Type", "application/x-ndjson"),
            ("Idempotency-Key", "batch-77"),
        ];
        let second_json = String::from_utf8_lossy(json_lines).replace("j-1", "j-2");
        let (status, body) = daemon.request("POST", "/v1/cdrs", &reused, second_json.as_bytes());
        assert_eq!(status, 200, "{label}: {body}");
        assert!(
            body.contains("\"rated\":1") && body.contains("\"replayed\":false"),
            "{label}: {body}"
        );
        // Identifiers no store could index (a NUL, control characters) are rejects, not errors.
        let control = String::from_utf8_lossy(json_lines).replace("j-1", "j-3\\u0000x");
        let (status, body) = daemon.request("POST", "/v1/cdrs", &ndjson, control.as_bytes());
        assert_eq!(status, 200, "{label}: {body}");
        assert!(body.contains("invalid_identifier"), "{label}: {body}");

        // An account imported while the daemon runs is known to HTTP intake within a scan.
        let late_cdr = b"cdr_id,account,direction,caller,callee,start_time,answer_time,end_time,billsec,disposition\nlate-1,acct-late,outbound,1,14155550100,2026-11-21T10:00:00Z,,,0,NO ANSWER\n";
        let (status, body) = daemon.request("POST", "/v1/cdrs", &csv[..1], late_cdr);
        assert_eq!(status, 422, "{label}: {body}");
        let late_accounts = folder.path().join("late.csv");
        std::fs::write(&late_accounts, "account,parent,currency,outbound_deck,inbound_deck\nacct-late,acct-1000,USD,az-international,us-npanxx\n").unwrap();
        import_accounts_into(&store, &late_accounts);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = daemon.request("POST", "/v1/cdrs", &csv[..1], late_cdr);
            if status == 200 {
                break;
            }
            assert_eq!(status, 422, "{label}: {body}");
            assert!(
                std::time::Instant::now() < deadline,
                "{label}: the import never reached intake"
            );
            std::thread::sleep(Duration::from_millis(100));
        }

        for (headers, body, expected, needle) in [
            (&ndjson[..], &b"{not json\n"[..], 400, "line 1: not JSON"),
            (&[("Content-Type", "image/png")][..], &b"x"[..], 415, "not supported"),
            (&csv[..1], &b"cdr_id,account\n1,2\n"[..], 400, "lacks the canonical column"),
            (
                &csv[..1],
                &b"cdr_id,account,direction,caller,callee,start_time,answer_time,end_time,billsec,disposition\nu-1,acct-9999,outbound,1,14155550100,2026-11-21T10:00:00Z,,,0,NO ANSWER\n"[..],
                422,
                "unknown account: acct-9999",
            ),
            (&csv[..1], &vec![b'x'; 200_000][..], 413, ""),
        ] {
            let (status, answer) = daemon.request("POST", "/v1/cdrs", headers, body);
            assert_eq!(status, expected, "{label}: {answer}");
            assert!(answer.contains(needle), "{label}: {answer}");
        }
        let (status, metrics) = daemon.request("GET", "/metrics", &[], b"");
        assert_eq!(status, 200);
        for metric in [
            "tollgate_cdrs_rated_total",
            "tollgate_cdrs_duplicate_total",
            "tollgate_cdrs_rejected_total{reason=",
            "tollgate_batch_commit_seconds_bucket",
            "tollgate_spool_files_total{result=\"failed\"} 1",
        ] {
            assert!(metrics.contains(metric), "{label}: {metric} missing");
        }
        assert_eq!(daemon.request("GET", "/healthz", &[], b"").0, 200);
        assert!(
            daemon.stop().success(),
            "{label}: SIGTERM must end with exit 0"
        );

        // sample day + small.csv (0.5221) + the JSON call (60 s to the UK).
        let mut store_handle = store.open();
        let root = store_handle.account("acct-1000").unwrap().unwrap();
        let expected_without_json: rust_decimal::Decimal =
            SAMPLE_DAY_TOTAL.parse::<rust_decimal::Decimal>().unwrap()
                + "0.5221".parse::<rust_decimal::Decimal>().unwrap();
        let balance = -tollgate::money::ledger_decimal(root.balance_units);
        assert!(balance > expected_without_json, "{label}: {balance}");
        let totals = store_handle.ledger_totals().unwrap();
        assert!(totals.balance_mismatches.is_empty(), "{label}");
        assert_eq!(
            -tollgate::money::ledger_decimal(store_handle.usage_units("acct-1000").unwrap()),
            tollgate::money::ledger_decimal(totals.rated_cost_units),
            "{label}: the root's usage is every rated call's cost"
        );
    }
}

#[test]
fn start_up_problems_are_one_line_errors() {
    let folder = tempfile::tempdir().unwrap();
    let config = folder.path().join("bad.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:1\"\ncolour = \"blue\"\n").unwrap();
    let deck = repo_path("rate-decks/us-npanxx.csv");
    for (arguments, needle) in [
        (
            vec!["serve", "--config", config.to_str().unwrap()],
            "unknown field `colour`",
        ),
        (
            vec![
                "serve",
                "--database-url",
                "postgres://postgres@127.0.0.1:1/none",
                "--deck",
                deck.to_str().unwrap(),
            ],
            "cannot connect to PostgreSQL",
        ),
        (
            vec![
                "serve",
                "--database-url",
                "mysql://x",
                "--deck",
                deck.to_str().unwrap(),
            ],
            "is not a postgres:// URL",
        ),
    ] {
        let output = tollgate(&arguments);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{arguments:?}");
        assert!(stderr.contains(needle), "{arguments:?}: {stderr}");
    }
    let store = embedded_store();
    let mut arguments = vec!["accounts".to_string(), "show".to_string()];
    arguments.extend(store.cli_arguments());
    arguments.push("nobody".into());
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let output = tollgate(&arguments);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no account \"nobody\""));
}

#[test]
fn credit_and_alerts_commands() {
    let store = embedded_store();
    let folder = tempfile::tempdir().unwrap();
    let accounts = folder.path().join("accounts.csv");
    std::fs::write(&accounts, "account,currency,thresholds\nacme,EUR,10;0\n").unwrap();
    import_accounts_into(&store, &accounts);
    let run = |arguments: &[&str]| {
        let mut all: Vec<String> = arguments
            .iter()
            .map(|argument| argument.to_string())
            .collect();
        all.extend(store.cli_arguments());
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        tollgate(&all)
    };
    let credit = [
        "credit",
        "acme",
        "25.50",
        "--reason",
        "card top-up",
        "--idempotency-key",
        "t-1",
    ];
    let first = run(&credit);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("credited acme: 25.50"));
    let again = run(&credit);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already credited"));
    let other = run(&[
        "credit",
        "acme",
        "3",
        "--reason",
        "x",
        "--idempotency-key",
        "t-1",
    ]);
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("already used for a different credit"));
    let shown = run(&["accounts", "show", "acme"]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("\"balance\": \"25.5\""));
    let alerts = run(&["alerts", "acme"]);
    assert!(alerts.status.success());
    assert_eq!(String::from_utf8_lossy(&alerts.stdout).trim(), "[]");

    let recharging = folder.path().join("recharging.csv");
    std::fs::write(
        &recharging,
        "account,currency,time_zone,recharge_threshold,recharge_amount\nlow,EUR,Europe/Paris,5,20\n",
    )
    .unwrap();
    import_accounts_into(&store, &recharging);
    let first = run(&["recharge", "run", "--date", "2026-11-21"]);
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(text.contains("credited low 20 for 2026-11-21"), "{text}");
    let second = run(&["recharge", "run", "--date", "2026-11-21"]);
    let text = String::from_utf8_lossy(&second.stdout);
    assert!(text.contains("0 credited, 1 already run"), "{text}");
}

#[test]
fn the_daemon_delivers_threshold_alerts_to_the_webhook() {
    let store = embedded_store();
    import_sample_accounts(&store);
    let receiver = WebhookReceiver::start(&[500, 200]);
    let folder = tempfile::tempdir().unwrap();
    let watched = folder.path().join("watched.csv");
    std::fs::write(
        &watched,
        format!(
            "account,parent,currency,outbound_deck,inbound_deck,thresholds,webhook_url,webhook_secret\n\
             acct-1000,,USD,az-international,us-npanxx,0,{},s3cret\n",
            receiver.url
        ),
    )
    .unwrap();
    import_accounts_into(&store, &watched);
    let daemon = start_sample_daemon(&store, folder.path(), "webhook_retry_milliseconds = 100\n");
    let small = std::fs::read(repo_path("fixtures/cdrs/small.csv")).unwrap();
    let (status, body) =
        daemon.request("POST", "/v1/cdrs", &[("Content-Type", "text/csv")], &small);
    assert_eq!(status, 200, "{body}");

    // acct-1000 is the parent of the accounts called for: its balance goes below 0, one alert,
    // refused once by the receiver, then delivered with the same id.
    let hooks = receiver.wait_for(2, 30);
    assert_eq!(hooks[0].body, hooks[1].body);
    let event = hooks[1].json();
    assert_eq!(event["type"], "threshold_crossed");
    assert_eq!(event["account"], "acct-1000");
    assert_eq!(event["threshold"], "0");
    assert!(
        event["balance"].as_str().unwrap().starts_with('-'),
        "{event}"
    );
    let metrics = daemon.request("GET", "/metrics", &[], b"").1;
    for line in [
        "tollgate_alerts_total{kind=\"threshold_crossed\"} 1",
        "tollgate_webhook_deliveries_total{result=\"retry\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !daemon
        .request("GET", "/metrics", &[], b"")
        .1
        .contains("tollgate_webhook_deliveries_total{result=\"delivered\"} 1")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "never recorded as delivered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(daemon.stop().success());
    let mut arguments = vec!["alerts".to_string(), "acct-1000".to_string()];
    arguments.extend(store.cli_arguments());
    let listed: serde_json::Value =
        serde_json::from_slice(&tollgate_succeeds(&arguments).stdout).unwrap();
    assert_eq!(listed[0]["id"], event["id"]);
    assert_eq!(listed[0]["delivery"]["state"], "delivered");
    assert_eq!(listed[0]["delivery"]["attempts"], 2);
    assert_eq!(receiver.received().len(), 2, "nothing sent after delivery");
}

#[test]
fn calls_are_authorized_over_http_within_their_limits() {
    for store in test_stores() {
        let label = store.label;
        import_sample_accounts(&store);
        let folder = tempfile::tempdir().unwrap();
        let office = folder.path().join("office.csv");
        std::fs::write(
            &office,
            "account,parent,currency,outbound_deck,inbound_deck,trunks_outbound,trunks_two_way,credit_limit\n\
             office,,USD,az-international,us-npanxx,3,1,0\n",
        )
        .unwrap();
        import_accounts_into(&store, &office);
        let daemon = start_sample_daemon(&store, folder.path(), "");
        let port = daemon.port;
        let json = [("Content-Type", "application/json")];
        let call = |id: &str, callee: &str| {
            format!(
                r#"{{"call_id":"{id}","account":"office","direction":"outbound","caller":"14155550001","callee":"{callee}"}}"#
            )
        };
        // 120 at once from 12 clients: four trunks (3 outbound + 1 two-way), then per-minute,
        // which the office's 0.00 balance and credit limit cannot pay for.
        let clients: Vec<_> = (0..12)
            .map(|client| {
                std::thread::spawn(move || {
                    (0..10)
                        .map(|index| {
                            let body = call(&format!("h-{client}-{index}"), "13125550143");
                            let (status, answer) = crate::daemon_support::http(
                                port,
                                "POST",
                                "/v1/calls/authorize",
                                &json,
                                body.as_bytes(),
                            )
                            .unwrap();
                            assert_eq!(status, 200, "{answer}");
                            serde_json::from_str::<serde_json::Value>(&answer).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let answers: Vec<serde_json::Value> = clients
            .into_iter()
            .flat_map(|client| client.join().unwrap())
            .collect();
        let count = |decision: &str, reason: &str| {
            answers
                .iter()
                .filter(|answer| answer["decision"] == decision && answer["reason"] == reason)
                .count()
        };
        assert_eq!(count("trunk", "trunk_available"), 4, "{label}");
        assert_eq!(count("deny", "insufficient_balance"), 116, "{label}");
        let trunk_call = answers
            .iter()
            .find(|answer| answer["decision"] == "trunk")
            .unwrap();
        let call_id = trunk_call["call_id"].as_str().unwrap().to_string();

        let (status, body) =
            daemon.request("POST", &format!("/v1/calls/{call_id}/keepalive"), &[], b"");
        assert_eq!(status, 200, "{label}: {body}");
        let (status, body) = daemon.request("POST", &format!("/v1/calls/{call_id}/end"), &[], b"");
        assert_eq!(
            (status, body.contains("\"ended\"")),
            (200, true),
            "{label}: {body}"
        );
        // The freed trunk is taken by the next call.
        let (_, body) = daemon.request(
            "POST",
            "/v1/calls/authorize",
            &json,
            call("after-end", "13125550143").as_bytes(),
        );
        assert!(body.contains("\"decision\":\"trunk\""), "{label}: {body}");

        // Bad requests get a 4xx naming the problem.
        let reused = call(&call_id, "442079460000");
        let keepalive_ended = format!("/v1/calls/{call_id}/keepalive");
        let cases: [(&str, &str, u16, &str); 6] = [
            (
                "/v1/calls/authorize",
                "{\"call_id\":",
                400,
                "malformed request",
            ),
            (
                "/v1/calls/authorize",
                r#"{"call_id":"x","account":"office","direction":"sideways","caller":"1","callee":"13125550143"}"#,
                400,
                "direction",
            ),
            (
                "/v1/calls/authorize",
                r#"{"call_id":"x","account":"nobody","direction":"outbound","caller":"14155550001","callee":"13125550143"}"#,
                422,
                "no account",
            ),
            ("/v1/calls/authorize", &reused, 409, "authorized before"),
            ("/v1/calls/never-seen/end", "", 404, "no call"),
            (&keepalive_ended, "", 409, "is not up"),
        ];
        for (path, body, expected, message) in cases {
            let (status, answer) = daemon.request("POST", path, &json, body.as_bytes());
            assert_eq!(status, expected, "{label}: {path} {body}: {answer}");
            assert!(answer.contains(message), "{label}: {path}: {answer}");
        }
        let metrics = daemon.request("GET", "/metrics", &[], b"").1;
        assert!(
            metrics.contains("tollgate_call_authorizations_total{decision=\"trunk\"} 5"),
            "{label}: {metrics}"
        );
        assert!(daemon.stop().success(), "{label}");
    }
}

#[test]
fn the_daemon_classifies_unauthorized_cdrs_of_trunk_accounts_after_the_settle_window() {
    for store in test_stores() {
        let label = store.label;
        import_sample_accounts(&store);
        let folder = tempfile::tempdir().unwrap();
        let office = folder.path().join("office.csv");
        std::fs::write(
            &office,
            "account,parent,currency,outbound_deck,inbound_deck,trunks_outbound\n\
             office,,USD,az-international,us-npanxx,1\n",
        )
        .unwrap();
        import_accounts_into(&store, &office);
        let daemon = start_sample_daemon(&store, folder.path(), "trunk_settle_seconds = 0\n");
        // Two overlapping US calls on one trunk, and a toll-free one: held, then classified.
        let cdrs = "cdr_id,account,direction,caller,callee,start_time,answer_time,end_time,billsec,disposition\n\
                    o1,office,outbound,14155550001,13125550143,2026-11-20T10:00:00Z,2026-11-20T10:00:00Z,2026-11-20T10:10:00Z,600,ANSWERED\n\
                    o2,office,outbound,14155550001,13125550144,2026-11-20T10:05:00Z,2026-11-20T10:05:00Z,2026-11-20T10:06:00Z,60,ANSWERED\n\
                    o3,office,outbound,14155550001,18005550100,2026-11-20T10:07:00Z,2026-11-20T10:07:00Z,2026-11-20T10:08:00Z,60,ANSWERED\n";
        let (status, body) = daemon.request(
            "POST",
            "/v1/cdrs",
            &[("Content-Type", "text/csv")],
            cdrs.as_bytes(),
        );
        assert_eq!(status, 200, "{label}: {body}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let classified = loop {
            let metrics = daemon.request("GET", "/metrics", &[], b"").1;
            if metrics.contains("tollgate_calls_classified_total{class=\"per_minute\"} 2") {
                break metrics;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{label}: not classified: {metrics}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        assert!(
            classified.contains("tollgate_calls_classified_total{class=\"trunk\"} 1"),
            "{label}: {classified}"
        );
        assert!(daemon.stop().success(), "{label}");
        let mut opened = store.open();
        let calls = opened
            .rated_calls_of("office", 0, i64::MAX, None, 10)
            .unwrap();
        let mut charged = 0;
        for call in &calls {
            let expected = if call.cdr_id == "o1" {
                "trunk"
            } else {
                "per_minute"
            };
            assert_eq!(call.billing_class, expected, "{label}: {}", call.cdr_id);
            if expected == "per_minute" {
                charged += call.cost_units;
            }
        }
        assert!(charged > 0, "{label}");
        let balance = opened.account("office").unwrap().unwrap().balance_units;
        assert_eq!(balance, -charged, "{label}");
    }
}
