//! The portal API on both stores, through a running daemon: every route with every kind of token
//! against an account, its child, its parent and a stranger (404, never data, for what a token may
//! not see); unbilled calls by local day on a DST day, newest first, with a cursor that stays put
//! while new calls arrive; bad parameters named in 400s; usage and its CSV and Parquet exports
//! adding up; per-token rate limits, body limits, JSON errors everywhere, the OpenAPI document
//! and per-route metrics.

use crate::daemon_support::{Daemon, import_accounts_into, start_sample_daemon};
use crate::store_support::{TestStore, test_stores};
use crate::support::{repo_path, tollgate_succeeds};

fn create_token(store: &TestStore, who: &[&str]) -> String {
    let mut arguments = vec!["tokens".to_string(), "create".to_string()];
    arguments.extend(store.cli_arguments());
    arguments.extend(who.iter().map(|text| text.to_string()));
    let output = tollgate_succeeds(&arguments);
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn get(daemon: &Daemon, path: &str, token: &str) -> (u16, serde_json::Value) {
    let authorization = format!("Bearer {token}");
    let (status, body) = daemon.request("GET", path, &[("Authorization", &authorization)], b"");
    let json = serde_json::from_str(&body)
        .unwrap_or_else(|error| panic!("{path}: not JSON ({error}): {body}"));
    (status, json)
}

/// One CDR of acct-1001 to London, answered at `time` (UTC) for a minute.
fn cdr(id: &str, time: &str) -> String {
    let start = chrono::DateTime::parse_from_rfc3339(time).unwrap();
    let end = (start + chrono::Duration::seconds(60)).to_rfc3339();
    format!("{id},acct-1001,outbound,14155550001,442079460000,{time},{time},{end},60,ANSWERED\n")
}

fn post_cdrs(daemon: &Daemon, lines: &[String]) {
    let body = format!(
        "cdr_id,account,direction,caller,callee,start_time,answer_time,end_time,billsec,disposition\n{}",
        lines.concat()
    );
    let (status, answer) = daemon.request(
        "POST",
        "/v1/cdrs",
        &[("Content-Type", "text/csv")],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
}

fn ids(page: &serde_json::Value) -> Vec<String> {
    page["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|call| call["cdr_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_route_shows_a_token_its_subtree_and_nothing_else() {
    for store in test_stores() {
        let label = store.label;
        import_accounts_into(&store, &repo_path("fixtures/cdrs/sample-accounts.csv"));
        let folder = tempfile::tempdir().unwrap();
        let stranger = folder.path().join("stranger.csv");
        std::fs::write(
            &stranger,
            "account,currency,outbound_deck,inbound_deck\nstranger,USD,az-international,us-npanxx\n",
        )
        .unwrap();
        import_accounts_into(&store, &stranger);
        let operator = create_token(&store, &["--operator", "--label", "ops"]);
        let parent = create_token(&store, &["--account", "acct-1000"]);
        let child = create_token(&store, &["--account", "acct-1001"]);
        let outsider = create_token(&store, &["--account", "stranger"]);
        let daemon = start_sample_daemon(&store, folder.path(), "");
        // One call rated, two refused (no rate for their destination).
        let unrated = |id: &str| cdr(id, "2026-11-20T11:00:00Z").replace("442079460000", "999999");
        post_cdrs(
            &daemon,
            &[
                cdr("m1", "2026-11-20T10:00:00Z"),
                unrated("m2"),
                unrated("m3"),
            ],
        );

        let tokens = [
            (
                "operator",
                &operator,
                ["acct-1000", "acct-1001", "stranger"].as_slice(),
            ),
            ("parent", &parent, ["acct-1000", "acct-1001"].as_slice()),
            ("child", &child, ["acct-1001"].as_slice()),
            ("stranger", &outsider, ["stranger"].as_slice()),
        ];
        let routes = [
            "",
            "/children",
            "/unbilled-calls",
            "/usage",
            "/transactions",
            "/alerts",
            "/rejects",
        ];
        for (who, token, visible) in tokens {
            for target in ["acct-1000", "acct-1001", "stranger", "nobody"] {
                for route in routes {
                    let path = format!("/v1/accounts/{target}{route}");
                    let (status, body) = get(&daemon, &path, token);
                    let operators_only = route == "/rejects" && who != "operator";
                    if visible.contains(&target) && operators_only {
                        assert_eq!(status, 403, "{label}: {who} {path}: {body}");
                        assert_eq!(body["code"], "forbidden", "{label}: {who} {path}");
                    } else if visible.contains(&target) {
                        assert_eq!(status, 200, "{label}: {who} {path}: {body}");
                        assert_eq!(
                            body.get("id").or(body.get("account")),
                            Some(&serde_json::json!(target)),
                            "{label}: {who} {path}"
                        );
                    } else {
                        assert_eq!(status, 404, "{label}: {who} {path}: {body}");
                        assert_eq!(
                            body,
                            serde_json::json!({
                                "code": "not_found",
                                "message": format!("no account {target:?}"),
                            }),
                            "{label}: {who} {path}: the same answer whether it exists or not"
                        );
                    }
                }
            }
        }
        // The operator sees the refused CDRs, newest first, with their reason and the record as
        // sent, a page at a time.
        let (_, rejects) = get(&daemon, "/v1/accounts/acct-1001/rejects", &operator);
        let listed = rejects["rejects"].as_array().unwrap();
        assert_eq!(listed.len(), 2, "{label}: {rejects}");
        assert_eq!(listed[0]["reason"], "no_rate_for_destination", "{label}");
        assert_eq!(listed[0]["line"], 4, "{label}: the header is line 1");
        assert!(
            listed[0]["raw_record"].as_str().unwrap().starts_with("m3,"),
            "{label}: {rejects}"
        );
        let mut paged = Vec::new();
        let mut path = "/v1/accounts/acct-1001/rejects?limit=1".to_string();
        loop {
            let (status, page) = get(&daemon, &path, &operator);
            assert_eq!(status, 200, "{label}: {page}");
            paged.extend(
                page["rejects"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["line"].clone()),
            );
            match page["next_cursor"].as_str() {
                Some(cursor) => {
                    path = format!("/v1/accounts/acct-1001/rejects?limit=1&cursor={cursor}")
                }
                None => break,
            }
        }
        assert_eq!(paged, [4, 3], "{label}: each once, in order");
        let (_, none) = get(&daemon, "/v1/accounts/acct-1000/rejects", &operator);
        assert_eq!(none["rejects"], serde_json::json!([]), "{label}");

        // Crediting needs an operator token: an account token that sees the account gets 403,
        // one that does not, 404.
        let credit = |token: &str, target: &str, key: &str, amount: &str| {
            let authorization = format!("Bearer {token}");
            let body = format!(r#"{{"amount":"{amount}","reason":"goodwill"}}"#);
            let (status, answer) = daemon.request(
                "POST",
                &format!("/v1/accounts/{target}/credits"),
                &[("Authorization", &authorization), ("Idempotency-Key", key)],
                body.as_bytes(),
            );
            (
                status,
                serde_json::from_str::<serde_json::Value>(&answer).unwrap(),
            )
        };
        assert_eq!(credit(&parent, "acct-1001", "k-1", "5").0, 403, "{label}");
        assert_eq!(credit(&outsider, "acct-1001", "k-1", "5").0, 404, "{label}");
        let (status, first) = credit(&operator, "acct-1001", "k-1", "5.25");
        assert_eq!(status, 201, "{label}: {first}");
        let (status, again) = credit(&operator, "acct-1001", "k-1", "5.25");
        assert_eq!(
            (status, &again["replayed"]),
            (200, &serde_json::json!(true)),
            "{label}"
        );
        assert_eq!(again["entry_id"], first["entry_id"], "{label}");
        let (status, reused) = credit(&operator, "acct-1001", "k-1", "6");
        assert_eq!(status, 409, "{label}: {reused}");
        for (key, amount, parameter) in [
            ("k-2", "-1", "amount"),
            ("k-2", "0", "amount"),
            ("", "1", "Idempotency-Key"),
        ] {
            let (status, body) = credit(&operator, "acct-1001", key, amount);
            assert_eq!(status, 400, "{label}: {body}");
            assert!(
                body["message"].as_str().unwrap().starts_with(parameter),
                "{label}: {body}"
            );
        }
        let (_, entries) = get(
            &daemon,
            "/v1/accounts/acct-1001/transactions?kind=credit",
            &child,
        );
        let entries = entries["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{label}: credited once");
        assert_eq!(entries[0]["amount"], "5.25", "{label}");
        assert_eq!(
            entries[0]["balance_after"], first["balance_after"],
            "{label}"
        );

        // The parent sees its child's calls through include_sub_accounts; the child's own token
        // cannot widen itself upwards.
        let (_, page) = get(
            &daemon,
            "/v1/accounts/acct-1000/unbilled-calls?include_sub_accounts=true",
            &parent,
        );
        assert_eq!(ids(&page), ["m1"], "{label}");
        let (_, page) = get(&daemon, "/v1/accounts/acct-1000/unbilled-calls", &parent);
        assert_eq!(
            ids(&page),
            Vec::<String>::new(),
            "{label}: its own calls only"
        );
        let (status, _) = get(&daemon, "/v1/accounts/acct-1000/children", &child);
        assert_eq!(status, 404, "{label}");
        let (_, children) = get(&daemon, "/v1/accounts/acct-1000/children", &parent);
        assert_eq!(
            children["children"].as_array().unwrap().len(),
            10,
            "{label}"
        );
        let (_, profile) = get(&daemon, "/v1/accounts/acct-1001", &child);
        let (_, calls) = get(&daemon, "/v1/accounts/acct-1001/unbilled-calls", &child);
        let cost = calls["calls"][0]["cost"].as_str().unwrap();
        let balance: rust_decimal::Decimal = profile["balance"].as_str().unwrap().parse().unwrap();
        let cost: rust_decimal::Decimal = cost.parse().unwrap();
        let credited: rust_decimal::Decimal = "5.25".parse().unwrap();
        assert_eq!(balance, credited - cost, "{label}: {profile}");
        assert_eq!(
            profile["available"], profile["balance"],
            "{label}: prepaid, nothing reserved"
        );

        // Without a token, with a made-up one, with a revoked one: 401.
        let (status, _) = daemon.request("GET", "/v1/accounts/acct-1001", &[], b"");
        assert_eq!(status, 401, "{label}");
        assert_eq!(
            get(&daemon, "/v1/accounts/acct-1001", "tg_made_up").0,
            401,
            "{label}"
        );
        let mut revoke = vec!["tokens".to_string(), "revoke".to_string()];
        revoke.extend(store.cli_arguments());
        revoke.push("3".to_string());
        tollgate_succeeds(&revoke);
        assert_eq!(
            get(&daemon, "/v1/accounts/acct-1001", &child).0,
            401,
            "{label}"
        );
        assert_eq!(
            get(&daemon, "/v1/accounts/acct-1001", &parent).0,
            200,
            "{label}"
        );
        assert!(daemon.stop().success(), "{label}");
    }
}

#[test]
fn unbilled_calls_by_local_day_newest_first_with_a_stable_cursor() {
    for store in test_stores() {
        let label = store.label;
        import_accounts_into(&store, &repo_path("fixtures/cdrs/sample-accounts.csv"));
        let token = create_token(&store, &["--operator"]);
        let folder = tempfile::tempdir().unwrap();
        let daemon = start_sample_daemon(&store, folder.path(), "");
        // New York's clocks went back on 2026-11-01: that local day has 25 hours, from 04:00Z
        // to 05:00Z the next day.
        post_cdrs(
            &daemon,
            &[
                cdr("d1", "2026-11-01T03:30:00Z"), // Oct 31, 23:30 EDT
                cdr("d2", "2026-11-01T04:30:00Z"), // Nov 1, 00:30 EDT
                cdr("d3", "2026-11-02T04:30:00Z"), // Nov 1, 23:30 EST
                cdr("d4", "2026-11-02T05:30:00Z"), // Nov 2, 00:30 EST
            ],
        );
        let calls = "/v1/accounts/acct-1001/unbilled-calls";
        let (status, page) = get(
            &daemon,
            &format!("{calls}?from=2026-11-01&to=2026-11-02&tz=America/New_York"),
            &token,
        );
        assert_eq!(status, 200, "{label}: {page}");
        assert_eq!(ids(&page), ["d3", "d2"], "{label}");
        assert_eq!(
            page["calls"][0]["start_time"], "2026-11-01T23:30:00-05:00",
            "{label}: times in the zone asked for"
        );
        assert_eq!(
            page["calls"][1]["start_time"], "2026-11-01T00:30:00-04:00",
            "{label}"
        );
        assert_eq!(
            page["calls"][0]["destination"], "United Kingdom - London",
            "{label}"
        );
        let (_, utc_day) = get(
            &daemon,
            &format!("{calls}?from=2026-11-01&to=2026-11-02"),
            &token,
        );
        assert_eq!(
            ids(&utc_day),
            ["d2", "d1"],
            "{label}: the account's zone, UTC"
        );

        // Pages of two, newest first; a call arriving between pages neither repeats nor skips one.
        let (_, first) = get(&daemon, &format!("{calls}?limit=2"), &token);
        assert_eq!(ids(&first), ["d4", "d3"], "{label}");
        post_cdrs(
            &daemon,
            &[
                cdr("d5", "2026-11-03T00:00:00Z"),
                cdr("d0", "2026-10-30T00:00:00Z"),
            ],
        );
        let cursor = first["next_cursor"].as_str().unwrap().to_string();
        let (_, second) = get(&daemon, &format!("{calls}?limit=2&cursor={cursor}"), &token);
        assert_eq!(ids(&second), ["d2", "d1"], "{label}");
        let cursor = second["next_cursor"].as_str().unwrap().to_string();
        let (_, third) = get(&daemon, &format!("{calls}?limit=2&cursor={cursor}"), &token);
        assert_eq!(ids(&third), ["d0"], "{label}");
        assert_eq!(third["next_cursor"], serde_json::Value::Null, "{label}");

        // Closing the billing period at a time bills the calls before it: they leave the
        // unbilled list. The same close again changes nothing; an earlier one is refused.
        let close = |body: &str| {
            let authorization = format!("Bearer {token}");
            daemon.request(
                "POST",
                "/v1/accounts/acct-1001/billing-periods/close",
                &[("Authorization", &authorization)],
                body.as_bytes(),
            )
        };
        let (status, closed) = close(r#"{"at":"2026-11-02"}"#);
        assert_eq!(status, 200, "{label}: {closed}");
        assert!(
            closed.contains("2026-11-02T00:00:00+00:00"),
            "{label}: {closed}"
        );
        let (_, open) = get(&daemon, calls, &token);
        assert_eq!(ids(&open), ["d5", "d4", "d3"], "{label}");
        assert_eq!(close(r#"{"at":"2026-11-02"}"#).0, 200, "{label}");
        assert_eq!(close(r#"{"at":"2026-11-01"}"#).0, 409, "{label}");
        assert_eq!(close(r#"{"at":"2999-01-01"}"#).0, 400, "{label}");
        assert_eq!(close(r#"{"when":"2026-11-01"}"#).0, 400, "{label}");

        // A bad parameter is a 400 naming it.
        let cases = [
            ("tz=Mars/Olympus", "tz"),
            ("from=yesterday", "from"),
            ("from=2026-11-02&to=2026-11-01", "from"),
            ("limit=0", "limit"),
            ("limit=100000", "limit"),
            ("direction=sideways", "direction"),
            ("cursor=zz", "cursor"),
            ("include_sub_accounts=maybe", "include_sub_accounts"),
            ("form=2026-11-01", "form"),
        ];
        for (query, parameter) in cases {
            let (status, body) = get(&daemon, &format!("{calls}?{query}"), &token);
            assert_eq!(status, 400, "{label}: {query}: {body}");
            assert_eq!(body["code"], "bad_request", "{label}: {query}");
            let message = body["message"].as_str().unwrap();
            assert!(
                message.starts_with(&format!("{parameter}:")),
                "{label}: {query}: {message}"
            );
        }
        assert!(daemon.stop().success(), "{label}");
    }
}

#[test]
fn usage_by_local_day_month_destination_and_account_adds_up() {
    for store in test_stores() {
        let label = store.label;
        import_accounts_into(&store, &repo_path("fixtures/cdrs/sample-accounts.csv"));
        let token = create_token(&store, &["--account", "acct-1000"]);
        let folder = tempfile::tempdir().unwrap();
        let daemon = start_sample_daemon(&store, folder.path(), "");
        let mut lines = vec![
            cdr("u1", "2026-11-01T03:30:00Z"), // Oct 31 in New York
            cdr("u2", "2026-11-01T04:30:00Z"), // Nov 1
            cdr("u3", "2026-11-02T04:30:00Z"), // Nov 1, the 25th hour's side
            cdr("u4", "2026-08-15T12:00:00Z"),
            cdr("u5", "2026-09-15T12:00:00Z"),
        ];
        lines.push(cdr("=SUM(1+1)", "2026-10-05T12:00:00Z"));
        lines.push(
            "u6,acct-1002,outbound,14155550001,442079460000,2026-11-01T12:00:00Z,2026-11-01T12:00:00Z,2026-11-01T12:02:00Z,120,ANSWERED\n".to_string(),
        );
        post_cdrs(&daemon, &lines);
        let usage = "/v1/accounts/acct-1000/usage";
        let (status, days) = get(
            &daemon,
            &format!(
                "{usage}?from=2026-10-31&to=2026-11-02&tz=America/New_York&include_sub_accounts=true"
            ),
            &token,
        );
        assert_eq!(status, 200, "{label}: {days}");
        let keyed = |page: &serde_json::Value| -> Vec<(String, i64)> {
            page["groups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|group| {
                    (
                        group["key"].as_str().unwrap().to_string(),
                        group["calls"].as_i64().unwrap(),
                    )
                })
                .collect()
        };
        assert_eq!(
            keyed(&days),
            [("2026-10-31".to_string(), 1), ("2026-11-01".to_string(), 3)],
            "{label}"
        );
        let (_, months) = get(
            &daemon,
            &format!(
                "{usage}?from=2026-08-01&to=2026-12-01&group_by=month&include_sub_accounts=true"
            ),
            &token,
        );
        assert_eq!(
            keyed(&months),
            [
                ("2026-08".to_string(), 1),
                ("2026-09".to_string(), 1),
                ("2026-10".to_string(), 1),
                ("2026-11".to_string(), 4)
            ],
            "{label}: the billing trend over four months"
        );
        let (_, by_account) = get(
            &daemon,
            &format!("{usage}?from=2026-08-01&to=2026-12-01&group_by=account"),
            &token,
        );
        assert_eq!(
            keyed(&by_account),
            [("acct-1001".to_string(), 6), ("acct-1002".to_string(), 1)],
            "{label}"
        );
        let (_, by_destination) = get(
            &daemon,
            &format!(
                "{usage}?from=2026-08-01&to=2026-12-01&group_by=destination&include_sub_accounts=true"
            ),
            &token,
        );
        assert_eq!(
            keyed(&by_destination),
            [("United Kingdom - London".to_string(), 7)],
            "{label}"
        );
        // Every grouping's total is the sum of the calls' costs, to the last digit.
        let (_, calls) = get(
            &daemon,
            "/v1/accounts/acct-1000/unbilled-calls?include_sub_accounts=true",
            &token,
        );
        let listed: rust_decimal::Decimal = calls["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|call| {
                call["cost"]
                    .as_str()
                    .unwrap()
                    .parse::<rust_decimal::Decimal>()
                    .unwrap()
            })
            .sum();
        for page in [&months, &by_account, &by_destination] {
            let total: rust_decimal::Decimal =
                page["totals"][0]["cost"].as_str().unwrap().parse().unwrap();
            assert_eq!(total, listed, "{label}: {page}");
            assert_eq!(page["totals"][0]["calls"], 7, "{label}");
        }
        // The CSV export of the same calls: RFC 4180, the formula neutralised, and its charged
        // column adds up to the usage total.
        let authorization = format!("Bearer {token}");
        let export = |query: &str| {
            daemon.request(
                "GET",
                &format!("/v1/exports/usage.csv?{query}"),
                &[("Authorization", &authorization)],
                b"",
            )
        };
        let (status, csv_text) = export(
            "account=acct-1000&include_sub_accounts=true&from=2026-08-01&to=2026-11-02&tz=America/New_York",
        );
        assert_eq!(status, 200, "{label}: {csv_text}");
        let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
        let headers = reader.headers().unwrap().clone();
        let charged = headers.iter().position(|name| name == "charged").unwrap();
        let cdr_id = headers.iter().position(|name| name == "cdr_id").unwrap();
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 7, "{label}");
        assert!(
            records.iter().any(|record| &record[cdr_id] == "'=SUM(1+1)"),
            "{label}: {csv_text}"
        );
        // Account by account (the account, then its sub-accounts; readers fetch alternate
        // accounts and the encoder takes them back in turn), each account's calls oldest first.
        let account = headers.iter().position(|name| name == "account").unwrap();
        let start_time = headers
            .iter()
            .position(|name| name == "start_time")
            .unwrap();
        let mut runs: Vec<&str> = records.iter().map(|record| &record[account]).collect();
        runs.dedup();
        assert_eq!(runs, ["acct-1001", "acct-1002"], "{label}: {csv_text}");
        for pair in records.windows(2) {
            let started = |record: &csv::StringRecord| {
                chrono::DateTime::parse_from_rfc3339(&record[start_time]).unwrap()
            };
            if pair[0][account] == pair[1][account] {
                assert!(
                    started(&pair[0]) <= started(&pair[1]),
                    "{label}: {csv_text}"
                );
            }
        }
        let exported: rust_decimal::Decimal = records
            .iter()
            .map(|record| record[charged].parse::<rust_decimal::Decimal>().unwrap())
            .sum();
        let (_, same_range) = get(
            &daemon,
            &format!(
                "{usage}?from=2026-08-01&to=2026-11-02&tz=America/New_York&include_sub_accounts=true"
            ),
            &token,
        );
        let total: rust_decimal::Decimal = same_range["totals"][0]["cost"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(exported, total, "{label}");
        // The Parquet export of the same query: typed columns, values as stored, the same total.
        let parquet_file = daemon.answer(
            "GET",
            "/v1/exports/usage.parquet?account=acct-1000&include_sub_accounts=true&from=2026-08-01&to=2026-11-02&tz=America/New_York",
            &[("Authorization", &authorization)],
            b"",
        );
        assert_eq!(parquet_file.status, 200, "{label}");
        assert_eq!(
            parquet_file.header("content-type").as_deref(),
            Some("application/vnd.apache.parquet"),
            "{label}"
        );
        let (rows, parquet_total, ids) = parquet_rows(parquet_file.body);
        assert_eq!(rows, 7, "{label}");
        assert_eq!(parquet_total, total, "{label}");
        assert!(ids.contains(&"=SUM(1+1)".to_string()), "{label}: {ids:?}");
        for (query, expected) in [
            ("account=acct-1000&from=2026-01-01&to=2026-11-02", 400),
            (
                "account=acct-1000&from=-262143-01-01&to=%2B262142-01-01",
                400,
            ),
            ("from=2026-08-01&to=2026-11-02", 400),
            ("account=stranger&from=2026-08-01&to=2026-09-01", 404),
        ] {
            assert_eq!(export(query).0, expected, "{label}: {query}");
        }
        // Month to date by default, of the account's own calls: it has made none.
        let (status, month_to_date) = get(&daemon, usage, &token);
        assert_eq!(status, 200, "{label}");
        assert_eq!(month_to_date["totals"], serde_json::json!([]), "{label}");
        let (status, body) = get(&daemon, &format!("{usage}?group_by=week"), &token);
        assert_eq!(status, 400, "{label}: {body}");
        assert!(daemon.stop().success(), "{label}");
    }
}

/// Rows, the sum of the `charged` column and the cdr_ids of a Parquet usage export.
fn parquet_rows(file: Vec<u8>) -> (usize, rust_decimal::Decimal, Vec<String>) {
    use arrow::array::{Array, Decimal128Array, StringArray};
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        axum::body::Bytes::from(file),
    )
    .unwrap()
    .build()
    .unwrap();
    let (mut rows, mut total, mut ids) = (0, rust_decimal::Decimal::ZERO, Vec::new());
    for batch in reader {
        let batch = batch.unwrap();
        rows += batch.num_rows();
        let charged = batch
            .column_by_name("charged")
            .unwrap()
            .as_any()
            .downcast_ref::<Decimal128Array>()
            .unwrap();
        assert_eq!(charged.scale(), 8);
        for index in 0..charged.len() {
            total += rust_decimal::Decimal::from_i128_with_scale(charged.value(index), 8);
        }
        let cdr_ids = batch
            .column_by_name("cdr_id")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        ids.extend(cdr_ids.iter().map(|id| id.unwrap().to_string()));
    }
    (rows, total, ids)
}

#[test]
fn limits_json_errors_the_contract_and_route_metrics() {
    for store in test_stores() {
        let label = store.label;
        import_accounts_into(&store, &repo_path("fixtures/cdrs/sample-accounts.csv"));
        let busy = create_token(&store, &["--operator"]);
        let calm = create_token(&store, &["--account", "acct-1001"]);
        let folder = tempfile::tempdir().unwrap();
        let daemon = start_sample_daemon(
            &store,
            folder.path(),
            "portal_requests_per_second = 1\nportal_request_burst = 3\n",
        );
        // A token gets its burst, then 429 with Retry-After; another token is unaffected.
        for request in 0..3 {
            let (status, body) = get(&daemon, "/v1/accounts/acct-1001", &busy);
            assert_eq!(status, 200, "{label}: request {request}: {body}");
        }
        let authorization = format!("Bearer {busy}");
        let limited = daemon.answer(
            "GET",
            "/v1/accounts/acct-1001",
            &[("Authorization", &authorization)],
            b"",
        );
        assert_eq!(limited.status, 429, "{label}");
        assert_eq!(
            limited.header("retry-after").as_deref(),
            Some("1"),
            "{label}"
        );
        let body: serde_json::Value = serde_json::from_slice(&limited.body).unwrap();
        assert_eq!(body["code"], "rate_limited", "{label}: {body}");
        assert_eq!(
            get(&daemon, "/v1/accounts/acct-1001", &calm).0,
            200,
            "{label}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(
            get(&daemon, "/v1/accounts/acct-1001", &busy).0,
            200,
            "{label}"
        );

        // Every refusal is JSON with a code, axum's own included.
        let calm_authorization = format!("Bearer {calm}");
        let big_body = vec![b'x'; 64 << 10];
        let cases: [(&str, &str, &[u8], u16, &str); 4] = [
            ("GET", "/v1/nowhere", b"", 404, "not_found"),
            (
                "DELETE",
                "/v1/accounts/acct-1001",
                b"",
                405,
                "method_not_allowed",
            ),
            (
                "POST",
                "/v1/accounts/acct-1001/credits",
                &big_body,
                413,
                "payload_too_large",
            ),
            ("POST", "/v1/calls/authorize", b"{", 400, "bad_request"),
        ];
        for (method, path, body, status, code) in cases {
            let answer = daemon.answer(
                method,
                path,
                &[
                    ("Authorization", &calm_authorization),
                    ("Content-Type", "application/json"),
                ],
                body,
            );
            assert_eq!(answer.status, status, "{label}: {method} {path}");
            let json: serde_json::Value = serde_json::from_slice(&answer.body)
                .unwrap_or_else(|_| panic!("{label}: {method} {path}: not JSON"));
            assert_eq!(json["code"], code, "{label}: {method} {path}: {json}");
            assert!(json["message"].is_string(), "{label}: {json}");
        }

        // The contract is served as JSON; the metrics count each route by its pattern.
        let document = daemon.answer("GET", "/openapi.json", &[], b"");
        assert_eq!(document.status, 200, "{label}");
        assert_eq!(
            document.header("content-type").as_deref(),
            Some("application/json"),
            "{label}"
        );
        let document: serde_json::Value = serde_json::from_slice(&document.body).unwrap();
        assert!(
            document["paths"]["/v1/accounts/{id}/rejects"]["get"].is_object(),
            "{label}"
        );
        let (_, metrics) = daemon.request("GET", "/metrics", &[], b"");
        for expected in [
            r#"tollgate_http_requests_total{method="GET",route="/v1/accounts/{id}",status="200"} 5"#,
            r#"tollgate_http_requests_total{method="GET",route="/v1/accounts/{id}",status="429"} 1"#,
            r#"tollgate_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
            r#"tollgate_http_request_seconds_count{method="GET",route="/v1/accounts/{id}",status="200"} 5"#,
        ] {
            assert!(
                metrics.contains(expected),
                "{label}: no {expected} in\n{metrics}"
            );
        }

        // An id no account can have is a 404, not a store error (PostgreSQL text cannot hold
        // NUL), and the reader connection keeps answering.
        assert_eq!(get(&daemon, "/v1/accounts/a%00b", &calm).0, 404, "{label}");
        assert_eq!(
            get(&daemon, "/v1/accounts/acct-1001", &calm).0,
            200,
            "{label}"
        );
        // The budget is the token's however its header is spaced.
        for _ in 0..3 {
            get(&daemon, "/v1/accounts/acct-1001", &busy);
        }
        let spaced = daemon.answer(
            "GET",
            "/v1/accounts/acct-1001",
            &[("Authorization", &format!("Bearer   {busy} "))],
            b"",
        );
        assert_eq!(spaced.status, 429, "{label}");
        // A made-up method is refused and counted under one label.
        assert_eq!(
            daemon
                .answer("BREW", "/v1/accounts/acct-1001", &[], b"")
                .status,
            405,
            "{label}"
        );
        let (_, metrics) = daemon.request("GET", "/metrics", &[], b"");
        for expected in [
            r#"tollgate_http_requests_total{method="GET",route="/v1/accounts/{id}",status="404"} 1"#,
            r#"tollgate_http_requests_total{method="other",route="/v1/accounts/{id}",status="405"} 1"#,
        ] {
            assert!(
                metrics.contains(expected),
                "{label}: no {expected} in\n{metrics}"
            );
        }
        assert!(daemon.stop().success(), "{label}");
    }
}
