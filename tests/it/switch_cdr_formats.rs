//! `tollgate rate --input-format asterisk|asterisk-custom|freeswitch|kazoo|cgrates` on the switch
//! fixtures (fixtures/switch-cdrs/README.md has the expected outcome of every record).

use crate::support::{repo_path, tollgate};
use std::path::Path;

/// One run's figures and outputs.
struct Run {
    summary: serde_json::Value,
    /// (file name, line, reason, raw record) of every reject, in file order.
    rejects: Vec<(String, u64, String, String)>,
    rated_csv: String,
}

/// Runs `tollgate rate` on fixtures against the basic deck with CSV output.
fn rate(format: &str, fixtures: &[&str], extra_arguments: &[&str]) -> Run {
    let out = tempfile::tempdir().unwrap();
    let deck = repo_path("fixtures/decks/basic.csv");
    let mut arguments: Vec<String> = [
        "rate",
        "--deck",
        deck.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--output-format",
        "csv",
        "--input-format",
        format,
    ]
    .iter()
    .chain(extra_arguments)
    .map(|argument| argument.to_string())
    .collect();
    for fixture in fixtures {
        let path = repo_path(&format!("fixtures/switch-cdrs/{fixture}"));
        arguments.push(path.to_str().unwrap().to_string());
    }
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let output = tollgate(&arguments);
    assert!(
        output.status.success(),
        "tollgate {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    read_run(out.path())
}

fn read_run(out: &Path) -> Run {
    let summary =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let rejects_text = std::fs::read_to_string(out.join("rejects.csv")).unwrap();
    let rejects = csv::Reader::from_reader(rejects_text.as_bytes())
        .records()
        .map(|record| {
            let record = record.unwrap();
            let file_name = Path::new(&record[0])
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string();
            (
                file_name,
                record[1].parse().unwrap(),
                record[2].to_string(),
                record[3].to_string(),
            )
        })
        .collect();
    Run {
        summary,
        rejects,
        rated_csv: std::fs::read_to_string(out.join("rated.csv")).unwrap(),
    }
}

/// Checks the run's counts, total cost and rejects (file, line, reason).
fn check(
    run: &Run,
    (rows_read, rated, rejected, duplicates): (u64, u64, u64, u64),
    total_cost: &str,
    expected_rejects: &[(&str, u64, &str)],
) {
    let summary = &run.summary;
    let count = |name: &str| summary[name].as_u64();
    assert_eq!(
        (
            count("rows_read"),
            count("rated"),
            count("rejected"),
            count("duplicates")
        ),
        (
            Some(rows_read),
            Some(rated),
            Some(rejected),
            Some(duplicates)
        ),
        "rows read, rated, rejected, duplicates: {summary}"
    );
    assert_eq!(summary["total_cost"]["USD"], total_cost, "{summary}");
    let rejects: Vec<(&str, u64, &str)> = run
        .rejects
        .iter()
        .map(|(file, line, reason, _)| (file.as_str(), *line, reason.as_str()))
        .collect();
    assert_eq!(rejects, expected_rejects);
}

/// The rated.csv rows of one cdr_id, as (status, reason, cost, start_time).
fn rated_rows(run: &Run, cdr_id: &str) -> Vec<(String, String, String, String)> {
    let mut reader = csv::Reader::from_reader(run.rated_csv.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|header| header == name).unwrap();
    let (id, status, reason, cost, start) = (
        column("cdr_id"),
        column("status"),
        column("reason"),
        column("cost"),
        column("start_time"),
    );
    reader
        .records()
        .map(Result::unwrap)
        .filter(|record| &record[id] == cdr_id)
        .map(|record| {
            (
                record[status].to_string(),
                record[reason].to_string(),
                record[cost].to_string(),
                record[start].to_string(),
            )
        })
        .collect()
}

#[test]
fn asterisk_cdr_csv_in_local_time_and_a_resend() {
    let run = rate(
        "asterisk",
        &["asterisk-master.csv"],
        &["--input-timezone", "America/New_York"],
    );
    let file = "asterisk-master.csv";
    let expected_rejects = [
        (file, 4, "invalid_callee"),
        (file, 6, "wrong_column_count"),
        (file, 8, "invalid_start_time"),
        (file, 9, "negative_billsec"),
        (file, 12, "invalid_utf8"),
    ];
    check(&run, (12, 7, 5, 0), "0.1522", &expected_rejects);
    // A caller name in a legacy code page is not read; only bad bytes in a read column reject.
    assert_eq!(rated_rows(&run, "1763653500.44-17")[0].0, "rated");
    // The rejects file shows the record as the switch wrote it, quotes and all.
    let (_, _, _, raw) = &run.rejects[0];
    assert!(
        raw.starts_with(r#""acct-a1","14155550001","s","from-pstn","""Ann"" <14155550001>""#),
        "{raw}"
    );
    // Local New York time, 5 hours behind UTC in November.
    let row = &rated_rows(&run, "1763650800.26-1")[0];
    assert_eq!(row.0, "rated");
    assert_eq!(row.2, "0.0150");
    assert!(row.3.starts_with("2026-11-20T15:00:00"), "{row:?}");
    // No accountcode: the calling channel's device is the account.
    assert!(run.rated_csv.contains("1763651100.28-3,SIP/ben,outbound"));

    let resent = rate(
        "asterisk",
        &["asterisk-master.csv", "asterisk-master-resend.csv"],
        &["--input-timezone", "America/New_York"],
    );
    check(&resent, (15, 8, 5, 2), "0.2122", &expected_rejects);
    let statuses: Vec<(String, String)> = rated_rows(&resent, "1763652000.33-9")
        .into_iter()
        .map(|(status, reason, _, _)| (status, reason))
        .collect();
    assert_eq!(
        statuses,
        [
            ("rated".to_string(), String::new()),
            ("duplicate".to_string(), "conflicting_content".to_string())
        ]
    );
    assert_eq!(
        rated_rows(&resent, "1763650800.26-1")[1].1,
        "duplicate_cdr_id"
    );
}

#[test]
fn asterisk_cdr_custom_stock_mapping() {
    let run = rate("asterisk-custom", &["asterisk-custom-master.csv"], &[]);
    let file = "asterisk-custom-master.csv";
    check(
        &run,
        (6, 4, 2, 0),
        "0.0323",
        &[(file, 5, "invalid_disposition"), (file, 6, "empty_callee")],
    );
    assert_eq!(rated_rows(&run, "1763640600.10-8")[0].2, "0.0210");
    assert!(run.rated_csv.contains("1763640000.4-2,acct-c1,outbound"));
    // Calls in a context named inbound are the account's inbound calls (same deck rows here).
    let inbound = rate(
        "asterisk-custom",
        &["asterisk-custom-master.csv"],
        &["--inbound-context", "default"],
    );
    check(
        &inbound,
        (6, 4, 2, 0),
        "0.0323",
        &[(file, 5, "invalid_disposition"), (file, 6, "empty_callee")],
    );
    assert!(inbound.rated_csv.contains("1763640000.4-2,acct-c1,inbound"));
}

#[test]
fn freeswitch_example_template() {
    let run = rate("freeswitch", &["freeswitch-example.csv"], &[]);
    let file = "freeswitch-example.csv";
    check(
        &run,
        (6, 3, 2, 1),
        "0.1653",
        &[(file, 3, "missing_account"), (file, 4, "invalid_callee")],
    );
    let rows = rated_rows(&run, "6f1b0c2a-0001-4c1e-9d7a-1a2b3c4d5e01");
    assert_eq!(rows[0].2, "0.0153");
    assert_eq!(rows[1].1, "duplicate_cdr_id");
}

#[test]
fn freeswitch_file_resaved_by_a_spreadsheet_rates_with_minute_times() {
    let run = rate("freeswitch", &["freeswitch-spreadsheet.csv"], &[]);
    check(
        &run,
        (3, 2, 1, 0),
        "1.0153",
        &[("freeswitch-spreadsheet.csv", 2, "invalid_callee")],
    );
    let row = &rated_rows(&run, "6f1b0c2a-0011-4c1e-9d7a-1a2b3c4d5e11")[0];
    assert_eq!(row.2, "0.0153");
    assert!(row.3.starts_with("2026-11-20T11:00:00"), "{row:?}");
}

#[test]
fn freeswitch_named_template_bills_billsec_not_billmsec() {
    let columns = r#""${uuid}","${accountcode}","${caller_id_number}","${destination_number}","${start_stamp}","${answer_stamp}","${end_stamp}","${billsec}","${billmsec}","${hangup_cause}""#;
    let run = rate(
        "freeswitch",
        &["freeswitch-custom-template.csv"],
        &["--input-columns", columns],
    );
    // billsec 60 on a 1/1 rate of 0.0150/min; billmsec (60.9 s, 61 s rounded up) would be 0.0153.
    check(&run, (2, 2, 0, 0), "0.0150", &[]);
}

#[test]
fn kazoo_documents_one_per_line_then_an_array_resend() {
    let run = rate("kazoo", &["kazoo-cdrs.jsonl"], &[]);
    let file = "kazoo-cdrs.jsonl";
    let expected_rejects = [
        (file, 2, "secondary_record"),
        (file, 4, "invalid_callee"),
        (file, 5, "invalid_json"),
        (file, 6, "missing_cdr_id"),
    ];
    check(&run, (6, 2, 4, 0), "0.0200", &expected_rejects);
    assert_eq!(run.rejects[2].3, "not a json document");
    // A carrier's leg is the account's inbound call.
    assert!(run.rated_csv.contains("kz-leg-0003,acct-k1,inbound"));

    let resent = rate("kazoo", &["kazoo-cdrs.jsonl", "kazoo-cdrs-array.json"], &[]);
    check(&resent, (9, 3, 4, 2), "0.1200", &expected_rejects);
    // Pretty-printed, the same call is a plain duplicate; a changed billing_seconds a conflict.
    assert_eq!(rated_rows(&resent, "kz-leg-0001")[1].1, "duplicate_cdr_id");
    assert_eq!(
        rated_rows(&resent, "kz-leg-0003")[1].1,
        "conflicting_content"
    );
    assert_eq!(rated_rows(&resent, "kz-leg-0007")[0].2, "0.1000");
}

#[test]
fn cgrates_default_export_and_an_export_with_a_header() {
    let run = rate("cgrates", &["cgrates-export.csv"], &[]);
    let file = "cgrates-export.csv";
    check(
        &run,
        (6, 3, 3, 0),
        "0.2253",
        &[
            (file, 2, "secondary_record"),
            (file, 4, "not_a_voice_call"),
            (file, 6, "invalid_billsec"),
        ],
    );
    let run = rate("cgrates", &["cgrates-export-with-header.csv"], &[]);
    check(&run, (2, 2, 0, 0), "0.0270", &[]);
    // The same OriginID on two hosts is two calls.
    assert_eq!(rated_rows(&run, "shared-id-1@10.0.0.1")[0].2, "0.0250");
    assert_eq!(rated_rows(&run, "shared-id-1@10.0.0.2")[0].2, "0.0020");
}

#[test]
fn input_columns_that_cannot_be_rated_stop_the_run() {
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().join("run");
    let deck = repo_path("fixtures/decks/basic.csv");
    let cdrs = repo_path("fixtures/switch-cdrs/freeswitch-example.csv");
    let refused = tollgate(&[
        "rate",
        "--deck",
        deck.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--input-format",
        "freeswitch",
        "--input-columns",
        "uuid,accountcode,destination_number",
        cdrs.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("start_stamp, billsec or billmsec"),
        "{message}"
    );
    assert!(!out_dir.exists());

    let cdrs = repo_path("fixtures/switch-cdrs/cgrates-export.csv");
    let refused = tollgate(&[
        "rate",
        "--deck",
        deck.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--input-format",
        "cgrates",
        "--inbound-context",
        "from-pstn",
        cdrs.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("no dialplan context"), "{message}");
    assert!(!out_dir.exists());
}
