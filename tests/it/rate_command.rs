//! `tollgate rate` as a user runs it: real files in, Parquet/CSV, rejects and summary out.

use crate::support::{repo_path, tollgate};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Decimal128Type, Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::HashMap;
use std::path::Path;

fn run_ok(arguments: &[&str]) -> String {
    let output = tollgate(arguments);
    assert!(
        output.status.success(),
        "tollgate {arguments:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn summary(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap()
}

fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// (status, billable_seconds, cost as text) of one rated row.
type RatedRow = (String, Option<i64>, Option<String>);

/// cdr_id → its rated rows, in file order, from a rated Parquet file.
fn rated_rows(path: &Path) -> HashMap<String, Vec<RatedRow>> {
    let mut rows: HashMap<String, Vec<_>> = HashMap::new();
    for batch in read_parquet(path) {
        let column = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
        let cdr_ids = column("cdr_id");
        let statuses = column("status");
        let billable = column("billable_seconds");
        let costs = column("cost");
        let costs = costs.as_primitive::<Decimal128Type>();
        for row in 0..batch.num_rows() {
            let cost = (!costs.is_null(row)).then(|| costs.value_as_string(row));
            let billable = billable.as_primitive::<Int64Type>();
            let billable = (!billable.is_null(row)).then(|| billable.value(row));
            rows.entry(cdr_ids.as_string::<i32>().value(row).to_string())
                .or_default()
                .push((
                    statuses.as_string::<i32>().value(row).to_string(),
                    billable,
                    cost,
                ));
        }
    }
    rows
}

#[test]
fn rates_the_small_fixture_to_the_expected_costs() {
    let out = tempfile::tempdir().unwrap();
    let deck = repo_path("fixtures/decks/basic.csv");
    let cdrs = repo_path("fixtures/cdrs/small.csv");
    let stdout = run_ok(&[
        "rate",
        "--deck",
        deck.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        cdrs.to_str().unwrap(),
    ]);
    assert!(stdout.contains("total cost 1.8025 USD"), "{stdout}");
    let summary = summary(out.path());
    assert_eq!(summary["rows_read"], 23);
    assert_eq!(summary["rated"], 21);
    assert_eq!(summary["rejected"], 1);
    assert_eq!(summary["duplicates"], 1);
    assert_eq!(summary["rejected_by_reason"]["no_rate_for_destination"], 1);
    let rows = rated_rows(&out.path().join("rated.parquet"));
    let expected = [
        ("s-0001", 0, "0.0000"),
        ("s-0003", 6, "0.0010"),
        ("s-0006", 61, "0.0254"),
        ("s-0007", 3600, "1.0000"),
        ("s-0010", 120, "0.0600"),
        ("s-0012", 29, "0.0073"),
        ("s-0016", 36, "0.1100"),
        ("s-0018", 66, "0.1600"),
        ("s-0019", 0, "0.0000"),
    ];
    for (cdr_id, billable, cost) in expected {
        assert_eq!(
            rows[cdr_id],
            vec![("rated".to_string(), Some(billable), Some(cost.to_string()))],
            "{cdr_id}"
        );
    }
    // The repeat of s-0004 is a duplicate, not a second charge.
    assert_eq!(
        rows["s-0004"][0],
        ("rated".to_string(), Some(12), Some("0.0020".to_string()))
    );
    assert_eq!(rows["s-0004"][1], ("duplicate".to_string(), None, None));
    assert_eq!(rows["s-0022"], vec![("rejected".to_string(), None, None)]);
}

#[test]
fn bad_rows_go_to_rejects_with_reasons_and_the_run_goes_on() {
    let out = tempfile::tempdir().unwrap();
    let deck = repo_path("fixtures/decks/basic.csv");
    let cdrs = repo_path("fixtures/cdrs/bad-rows.csv");
    run_ok(&[
        "rate",
        "--deck",
        deck.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--output-format",
        "csv",
        cdrs.to_str().unwrap(),
    ]);
    let rejects = std::fs::read_to_string(out.path().join("rejects.csv")).unwrap();
    let reasons: Vec<(u64, String)> = csv::Reader::from_reader(rejects.as_bytes())
        .records()
        .map(|record| {
            let record = record.unwrap();
            (record[1].parse().unwrap(), record[2].to_string())
        })
        .collect();
    let expected = [
        (2, "wrong_column_count"),
        (3, "invalid_start_time"),
        (4, "negative_billsec"),
        (5, "invalid_billsec"),
        (6, "end_before_start"),
        (7, "empty_callee"),
        (8, "invalid_callee"),
        (11, "invalid_disposition"),
    ];
    let expected: Vec<(u64, String)> = expected
        .iter()
        .map(|(line, reason)| (*line, reason.to_string()))
        .collect();
    assert_eq!(reasons, expected);
    let summary = summary(out.path());
    assert_eq!(summary["rows_read"], 10);
    assert_eq!(summary["rated"], 2);
    assert_eq!(summary["total_cost"]["USD"], "0.0323");
    let rated = std::fs::read_to_string(out.path().join("rated.csv")).unwrap();
    assert!(
        rated.starts_with("source,cdr_id,account,direction,caller,callee,start_time"),
        "{rated}"
    );
    assert!(
        rated.contains("b-0008") && rated.contains("0.0113"),
        "{rated}"
    );
}

#[test]
fn the_same_file_twice_charges_nothing_twice() {
    let out = tempfile::tempdir().unwrap();
    let deck = repo_path("fixtures/decks/basic.csv");
    let cdrs = repo_path("fixtures/cdrs/small.csv");
    let cdrs = cdrs.to_str().unwrap();
    let stdout = run_ok(&[
        "rate",
        "--deck",
        deck.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        cdrs,
        cdrs,
    ]);
    assert!(stdout.contains("total cost 1.8025 USD"), "{stdout}");
    let summary = summary(out.path());
    assert_eq!(summary["rows_read"], 46);
    assert_eq!(summary["duplicates"], 24);
    assert_eq!(
        summary["rejected"], 1,
        "the second no-rate row is a duplicate, not a second reject"
    );
}

#[test]
fn accounts_pick_decks_by_direction() {
    let out = tempfile::tempdir().unwrap();
    let arguments = [
        "rate",
        "--deck",
        repo_path("rate-decks/az-international.csv")
            .to_str()
            .unwrap(),
        "--deck",
        repo_path("rate-decks/us-npanxx.csv").to_str().unwrap(),
        "--accounts",
        repo_path("fixtures/cdrs/sample-accounts.csv")
            .to_str()
            .unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        repo_path("fixtures/cdrs/sample-day.csv").to_str().unwrap(),
    ]
    .map(str::to_string);
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    run_ok(&arguments);
    let summary = summary(out.path());
    let read = summary["rows_read"].as_u64().unwrap();
    let accounted = summary["rated"].as_u64().unwrap()
        + summary["rejected"].as_u64().unwrap()
        + summary["duplicates"].as_u64().unwrap();
    assert_eq!(read, 1999);
    assert_eq!(read, accounted);
    assert_eq!(summary["duplicates"], 6);
    // Outbound against az-international plus inbound against us-npanxx, as computed independently
    // (fixtures/cdrs/README.md).
    assert_eq!(summary["total_cost"]["USD"], "182.8177");
}

#[test]
fn unusable_input_fails_with_a_one_line_reason_and_writes_nothing() {
    let out = tempfile::tempdir().unwrap();
    let deck = repo_path("fixtures/decks/basic.csv");
    let out_dir = out.path().join("run");
    let missing = tollgate(&[
        "rate",
        "--deck",
        deck.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "no-such-file.csv",
    ]);
    assert!(!missing.status.success());
    let message = String::from_utf8_lossy(&missing.stderr);
    assert!(
        message.starts_with("tollgate: cannot read input no-such-file.csv"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(!out_dir.exists());

    let bad_deck = repo_path("fixtures/decks/bad-deck.csv");
    let cdrs = repo_path("fixtures/cdrs/small.csv");
    let refused = tollgate(&[
        "rate",
        "--deck",
        bad_deck.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        cdrs.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.starts_with("tollgate: deck bad-deck refused whole: 9 problems"),
        "{message}"
    );
    assert!(!out_dir.exists());

    let headerless = out.path().join("headerless.csv");
    std::fs::write(
        &headerless,
        "x1,acct,outbound,1,44,2026-11-20T10:00:00Z,,,0,BUSY\n",
    )
    .unwrap();
    let refused = tollgate(&[
        "rate",
        "--deck",
        deck.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        headerless.to_str().unwrap(),
    ]);
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("lacks the canonical columns"), "{message}");
}

#[test]
fn truncated_and_non_utf8_files_give_rejects_not_panics() {
    let folder = tempfile::tempdir().unwrap();
    let header = "cdr_id,account,direction,caller,callee,start_time,answer_time,end_time,billsec,disposition\n";
    let good = "t1,a,outbound,1,4420,2026-11-20T10:00:00Z,2026-11-20T10:00:01Z,2026-11-20T10:01:01Z,60,ANSWERED\n";
    let mut bytes = Vec::new();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(good.as_bytes());
    bytes.extend_from_slice(b"t2,a\xff\xfe,outbound,1,4420,2026-11-20T10:00:00Z,,,0,BUSY\n");
    bytes.extend_from_slice(b"t3,a,outbound,1,\"4420,2026-11-20T10:0");
    let input = folder.path().join("broken.csv");
    std::fs::write(&input, bytes).unwrap();
    let out = folder.path().join("out");
    let deck = repo_path("fixtures/decks/basic.csv");
    run_ok(&[
        "rate",
        "--deck",
        deck.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    let summary = summary(&out);
    assert_eq!(summary["rows_read"], 3);
    assert_eq!(summary["rated"], 1);
    assert_eq!(summary["rejected_by_reason"]["invalid_utf8"], 1);
    assert_eq!(summary["rejected_by_reason"]["wrong_column_count"], 1);
}

#[test]
fn parquet_input_rates_like_csv() {
    let folder = tempfile::tempdir().unwrap();
    let deck = repo_path("fixtures/decks/basic.csv");
    let from_csv = folder.path().join("csv");
    run_ok(&[
        "rate",
        "--deck",
        deck.to_str().unwrap(),
        "--out",
        from_csv.to_str().unwrap(),
        repo_path("fixtures/cdrs/small.csv").to_str().unwrap(),
    ]);
    // Turn the rated output's canonical columns into a Parquet CDR file and rate that.
    let batches = read_parquet(&from_csv.join("rated.parquet"));
    let canonical = [
        "cdr_id",
        "account",
        "direction",
        "caller",
        "callee",
        "start_time",
        "answer_time",
        "end_time",
        "billsec",
        "disposition",
    ];
    let input = folder.path().join("cdrs.parquet");
    let projection: Vec<usize> = canonical
        .iter()
        .map(|name| batches[0].schema().index_of(name).unwrap())
        .collect();
    let schema = std::sync::Arc::new(batches[0].schema().project(&projection).unwrap());
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&input).unwrap(), schema, None)
            .unwrap();
    for batch in &batches {
        writer.write(&batch.project(&projection).unwrap()).unwrap();
    }
    writer.close().unwrap();
    let from_parquet = folder.path().join("parquet");
    let stdout = run_ok(&[
        "rate",
        "--deck",
        deck.to_str().unwrap(),
        "--out",
        from_parquet.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert!(stdout.contains("total cost 1.8025 USD"), "{stdout}");
    assert_eq!(
        rated_rows(&from_csv.join("rated.parquet")),
        rated_rows(&from_parquet.join("rated.parquet"))
    );
}

/// cdr_id → billing class (`None` for rows not rated) of a rated Parquet file.
fn billing_classes(path: &Path) -> HashMap<String, Option<String>> {
    let mut classes = HashMap::new();
    for batch in read_parquet(path) {
        let column = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
        let (cdr_ids, class, status) =
            (column("cdr_id"), column("billing_class"), column("status"));
        for row in 0..batch.num_rows() {
            if status.as_string::<i32>().value(row) == "duplicate" {
                continue;
            }
            let class = class.as_string::<i32>();
            classes.insert(
                cdr_ids.as_string::<i32>().value(row).to_string(),
                (!class.is_null(row)).then(|| class.value(row).to_string()),
            );
        }
    }
    classes
}

#[test]
fn accounts_with_trunks_get_classes_from_a_sweep_in_start_order_across_midnight() {
    let dir = tempfile::tempdir().unwrap();
    let accounts = dir.path().join("accounts.csv");
    // The reseller has 2 outbound trunks for all its customers, fewer than the shop's own 3;
    // `other` has none of its own and rides on the reseller's; `strict` refuses per-minute.
    std::fs::write(
        &accounts,
        "account,parent,currency,outbound_deck,inbound_deck,allow_per_minute,trunks_outbound\n\
         reseller,,USD,az-international,us-npanxx,true,2\n\
         shop,reseller,USD,az-international,us-npanxx,true,3\n\
         other,reseller,USD,az-international,us-npanxx,true,0\n\
         strict,,USD,az-international,us-npanxx,false,1\n\
         plain,,USD,az-international,us-npanxx,true,0\n",
    )
    .unwrap();
    let header = "cdr_id,account,direction,caller,callee,start_time,answer_time,end_time,billsec,disposition\n";
    let day_one = dir.path().join("2026-11-20.csv");
    std::fs::write(
        &day_one,
        format!(
            "{header}\
             c1,shop,outbound,14155550001,14155550101,2026-11-20T23:50:00Z,2026-11-20T23:50:00Z,2026-11-21T00:20:00Z,1800,ANSWERED\n\
             c2,shop,outbound,14155550001,18005550100,2026-11-20T23:55:00Z,2026-11-20T23:55:00Z,2026-11-20T23:58:00Z,180,ANSWERED\n\
             c3,shop,outbound,14155550001,442079460000,2026-11-20T23:56:00Z,2026-11-20T23:56:00Z,2026-11-20T23:59:00Z,180,ANSWERED\n\
             p1,plain,outbound,14155550009,14155550109,2026-11-20T23:57:00Z,2026-11-20T23:57:00Z,2026-11-20T23:58:00Z,60,ANSWERED\n"
        ),
    )
    .unwrap();
    let day_two = dir.path().join("2026-11-21.csv");
    std::fs::write(
        &day_two,
        format!(
            "{header}\
             c6,shop,outbound,14155550001,14155550104,2026-11-21T00:21:00Z,2026-11-21T00:21:00Z,2026-11-21T00:25:00Z,240,ANSWERED\n\
             c5,shop,outbound,14155550001,14155550103,2026-11-21T00:10:00Z,2026-11-21T00:10:00Z,2026-11-21T00:12:00Z,120,ANSWERED\n\
             c4,other,outbound,14155550002,14155550102,2026-11-21T00:05:00Z,2026-11-21T00:05:00Z,2026-11-21T00:15:00Z,600,ANSWERED\n\
             c1,shop,outbound,14155550001,14155550101,2026-11-20T23:50:00Z,2026-11-20T23:50:00Z,2026-11-21T00:20:00Z,1800,ANSWERED\n\
             d1,strict,outbound,14155550003,14155550105,2026-11-21T00:00:00Z,2026-11-21T00:00:00Z,2026-11-21T00:30:00Z,1800,ANSWERED\n\
             d2,strict,outbound,14155550003,14155550106,2026-11-21T00:10:00Z,2026-11-21T00:10:00Z,2026-11-21T00:11:00Z,60,ANSWERED\n\
             d3,strict,outbound,14155550003,14155550107,2026-11-21T00:40:00Z,,2026-11-21T00:40:30Z,0,NO ANSWER\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let path = |path: &Path| path.to_str().unwrap().to_string();
    let arguments = [
        "rate".to_string(),
        "--deck".into(),
        path(&repo_path("rate-decks/az-international.csv")),
        "--deck".into(),
        path(&repo_path("rate-decks/us-npanxx.csv")),
        "--accounts".into(),
        path(&accounts),
        "--out".into(),
        path(&out),
        // The second day first: classes follow call start, not file order.
        path(&day_two),
        path(&day_one),
    ];
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    run_ok(&arguments);

    let classes = billing_classes(&out.join("rated.parquet"));
    let expected = [
        ("c1", "trunk"),          // 23:50–00:20, carried over midnight: reseller 1 of 2
        ("c2", "per_minute"),     // toll-free never takes a trunk
        ("c3", "per_minute"),     // London
        ("p1", "per_minute"),     // an account without limits
        ("c4", "trunk"),          // reseller 2 of 2, on the reseller's trunks alone
        ("c5", "per_minute"),     // the shop has room (1 of 3) but the reseller is full
        ("c6", "trunk"),          // c1 ended at 00:20 and c4 at 00:15
        ("d1", "trunk"),          // strict's one trunk
        ("d2", "limit_exceeded"), // trunk busy and per-minute refused: charged and flagged
        ("d3", "per_minute"),     // not answered: nothing used
    ];
    for (cdr_id, class) in expected {
        assert_eq!(classes[cdr_id].as_deref(), Some(class), "{cdr_id}");
    }
    let summary = summary(&out);
    assert_eq!(
        summary["billing_classes"],
        serde_json::json!({"trunk": 4, "per_minute": 5, "limit_exceeded": 1})
    );
    assert_eq!(summary["duplicates"], 1, "c1 sent twice occupies one trunk");
    // Trunk calls keep their list price in the file; the total charged leaves them out.
    let rows = rated_rows(&out.join("rated.parquet"));
    let sum = |on_trunk: bool| -> rust_decimal::Decimal {
        expected
            .iter()
            .filter(|(_, class)| (*class == "trunk") == on_trunk)
            .map(|(cdr_id, _)| {
                rows[*cdr_id][0]
                    .2
                    .as_deref()
                    .unwrap()
                    .parse::<rust_decimal::Decimal>()
                    .unwrap()
            })
            .sum()
    };
    assert!(sum(true) > rust_decimal::Decimal::ZERO);
    assert_eq!(
        summary["total_cost"]["USD"]
            .as_str()
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap(),
        sum(false)
    );
    assert_eq!(
        summary["trunk_list_cost"]["USD"]
            .as_str()
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap(),
        sum(true)
    );
}
