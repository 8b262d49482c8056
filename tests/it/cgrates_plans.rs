//! `tollgate rate --deck-format cgrates`: a CGRateS tariff plan folder priced end to end, in both
//! rounding modes, and a broken plan refused whole.

use crate::support::{repo_path, tollgate};
use std::collections::HashMap;
use std::path::Path;

const CDRS: &str = "\
cdr_id,account,direction,caller,callee,start_time,answer_time,end_time,billsec,disposition
tutorial,1001,outbound,4930000001,4915123456,2025-03-03T10:00:00Z,2025-03-03T10:00:00Z,2025-03-03T10:02:00Z,120,ANSWERED
evening,1001,outbound,4930000001,4930123456,2025-03-03T17:59:40Z,2025-03-03T17:59:40Z,2025-03-03T18:01:20Z,100,ANSWERED
new-year,1001,outbound,4930000001,4930123456,2025-12-31T23:59:30Z,2025-12-31T23:59:30Z,2026-01-01T00:00:31Z,61,ANSWERED
fallback,2002,outbound,12125550199,+49 30 123456,2025-03-03T10:00:00Z,2025-03-03T10:00:00Z,2025-03-03T10:01:00Z,60,ANSWERED
capped,1001,outbound,4930000001,4990123456,2025-03-03T10:00:00Z,2025-03-03T10:00:00Z,2025-03-03T10:00:10Z,10,ANSWERED
any-subject,9999,outbound,4930000001,0033123456789,2025-03-03T10:00:00Z,2025-03-03T10:00:00Z,2025-03-03T10:00:30Z,30,ANSWERED
unrated,2002,outbound,12125550199,33123456789,2025-03-03T10:00:00Z,2025-03-03T10:00:00Z,2025-03-03T10:00:30Z,30,ANSWERED
unanswered,1001,outbound,4930000001,4915123456,2025-03-03T10:00:00Z,,2025-03-03T10:00:20Z,0,NO ANSWER
";

/// cdr_id → (status, billable_seconds, cost, destination) from a rated CSV file.
fn rated_csv(out: &Path) -> HashMap<String, [String; 4]> {
    let mut reader = csv::Reader::from_path(out.join("rated.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let index = |name: &str| headers.iter().position(|header| header == name).unwrap();
    let columns = [
        index("status"),
        index("billable_seconds"),
        index("cost"),
        index("destination"),
    ];
    reader
        .records()
        .map(|record| {
            let record = record.unwrap();
            (
                record[index("cdr_id")].to_string(),
                columns.map(|column| record[column].to_string()),
            )
        })
        .collect()
}

fn rate_retail(extra: &[&str]) -> (HashMap<String, [String; 4]>, String) {
    let folder = tempfile::tempdir().unwrap();
    let cdrs = folder.path().join("cdrs.csv");
    std::fs::write(&cdrs, CDRS).unwrap();
    let out = folder.path().join("out");
    let plan = repo_path("fixtures/cgrates/retail");
    let mut arguments = vec![
        "rate",
        "--deck-format",
        "cgrates",
        "--deck",
        plan.to_str().unwrap(),
        "--output-format",
        "csv",
        "--out",
        out.to_str().unwrap(),
    ];
    arguments.extend_from_slice(extra);
    arguments.push(cdrs.to_str().unwrap());
    let output = tollgate(&arguments);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        rated_csv(&out),
        std::fs::read_to_string(out.join("rejects.csv")).unwrap(),
    )
}

fn check(rows: &HashMap<String, [String; 4]>, cdr_id: &str, expected: [&str; 4]) {
    assert_eq!(
        rows[cdr_id].each_ref().map(String::as_str),
        expected,
        "{cdr_id}"
    );
}

#[test]
fn rates_a_cgrates_plan_with_cgrates_rounding_by_default() {
    let (rows, rejects) = rate_retail(&[]);
    check(
        &rows,
        "tutorial",
        ["rated", "120", "0.7002", "DST_DE_MOBILE"],
    );
    check(&rows, "evening", ["rated", "100", "0.9000", "DST_DE"]);
    check(&rows, "new-year", ["rated", "90", "0.2000", "DST_DE"]);
    check(&rows, "fallback", ["rated", "60", "0.7000", "DST_DE"]);
    check(&rows, "capped", ["rated", "10", "5.0000", "DST_DE_PREMIUM"]);
    check(&rows, "any-subject", ["rated", "30", "0.0351", "*any"]);
    check(&rows, "unrated", ["rejected", "", "", ""]);
    check(
        &rows,
        "unanswered",
        ["rated", "0", "0.0000", "DST_DE_MOBILE"],
    );
    assert!(rejects.contains("no_rate_for_destination"), "{rejects}");
}

#[test]
fn rounding_scope_call_rounds_only_the_total() {
    let (rows, _) = rate_retail(&["--rounding-scope", "call"]);
    check(
        &rows,
        "tutorial",
        ["rated", "120", "0.7000", "DST_DE_MOBILE"],
    );
    check(&rows, "any-subject", ["rated", "30", "0.0350", "*any"]);
    // Fewer system decimals round each increment coarser.
    let (rows, _) = rate_retail(&["--cgrates-rounding-decimals", "4"]);
    check(
        &rows,
        "tutorial",
        ["rated", "120", "0.7020", "DST_DE_MOBILE"],
    );
}

#[test]
fn tenant_and_category_pick_the_profiles() {
    let (rows, rejects) = rate_retail(&["--cgrates-tenant", "example.net"]);
    check(&rows, "tutorial", ["rejected", "", "", ""]);
    assert!(rejects.contains("no_rating_profile"), "{rejects}");
}

#[test]
fn a_broken_plan_is_refused_whole_with_every_problem() {
    let folder = tempfile::tempdir().unwrap();
    let plan = folder.path().join("broken");
    std::fs::create_dir(&plan).unwrap();
    for file in ["Destinations.csv", "Timings.csv", "RatingProfiles.csv"] {
        std::fs::copy(
            repo_path("fixtures/cgrates/retail").join(file),
            plan.join(file),
        )
        .unwrap();
    }
    std::fs::write(
        plan.join("Rates.csv"),
        "RT_PEAK,0.1,0.6,60s,60s,0s\nRT_PEAK,0,0.3,60s,30x,60s\nRT_OFFPEAK,0.05,-0.3,1m,1s,0s\n",
    )
    .unwrap();
    std::fs::write(
        plan.join("DestinationRates.csv"),
        "DR_DE_PEAK,DST_DE,RT_PEAK,*sideways,4,0,\nDR_DE_OFFPEAK,DST_NOWHERE,RT_MISSING,*up,4,0,\n",
    )
    .unwrap();
    std::fs::write(
        plan.join("RatingPlans.csv"),
        "RP_RETAIL,DR_DE_PEAK,TEATIME,10\nRP_RETAIL,DR_UNKNOWN,*any,10\n",
    )
    .unwrap();
    let cdrs = folder.path().join("cdrs.csv");
    std::fs::write(&cdrs, CDRS).unwrap();
    let out = folder.path().join("out");
    let output = tollgate(&[
        "rate",
        "--deck-format",
        "cgrates",
        "--deck",
        plan.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        cdrs.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for problem in [
        "Rates.csv:2: column RateIncrement",
        "Rates.csv:3: column Rate: -0.3 is negative",
        "DestinationRates.csv:1: column RoundingMethod",
        "DestinationRates.csv:2: column RatesTag: no rate RT_MISSING",
        "DestinationRates.csv:2: column DestinationId: no destination DST_NOWHERE",
        "RatingPlans.csv:1: column TimingTag: no timing TEATIME",
        "RatingPlans.csv:2: column DestinationRatesId: no destination rate DR_UNKNOWN",
        "RatingProfiles.csv:4: column RatingPlanId: no rating plan RP_BUDGET",
    ] {
        assert!(
            stderr.contains(problem),
            "{problem:?} missing from:\n{stderr}"
        );
    }
    assert!(!out.join("summary.json").exists());
}

#[test]
fn cgrates_plans_refuse_an_accounts_file_and_native_decks_refuse_rounding_scope() {
    let plan = repo_path("fixtures/cgrates/retail");
    let accounts = repo_path("fixtures/cdrs/sample-accounts.csv");
    let output = tollgate(&[
        "rate",
        "--deck-format",
        "cgrates",
        "--deck",
        plan.to_str().unwrap(),
        "--accounts",
        accounts.to_str().unwrap(),
        "--out",
        "unused",
        accounts.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--accounts cannot be combined"));
    let deck = repo_path("fixtures/decks/basic.csv");
    let output = tollgate(&[
        "rate",
        "--deck",
        deck.to_str().unwrap(),
        "--rounding-scope",
        "call",
        "--out",
        "unused",
        accounts.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--rounding-scope is for CGRateS"));
}
