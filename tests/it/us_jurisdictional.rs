//! `tollgate rate --deck-format us-jurisdictional`: each call priced at its jurisdiction's rate
//! (caller's and callee's NPA-NXX states), the jurisdiction shown on the rated call.

use crate::support::{repo_path, tollgate};
use std::collections::HashMap;
use std::path::Path;

fn path(relative: &str) -> String {
    repo_path(relative).to_str().unwrap().to_string()
}

/// Runs `tollgate rate` on the fixture CDRs with the given deck and states file.
fn rate(out: &Path, deck: &str, states: Option<&str>) -> std::process::Output {
    let mut arguments = vec![
        "rate".to_string(),
        "--deck-format".to_string(),
        "us-jurisdictional".to_string(),
        "--deck".to_string(),
        path(deck),
        "--output-format".to_string(),
        "csv".to_string(),
        "--out".to_string(),
        out.to_str().unwrap().to_string(),
    ];
    if let Some(states) = states {
        arguments.extend(["--npanxx-states".to_string(), path(states)]);
    }
    arguments.push(path("fixtures/cdrs/us-jurisdictional.csv"));
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    tollgate(&arguments)
}

/// cdr_id → (status, rate, cost, jurisdiction) from rated.csv, empty text for null.
fn rated_rows(out: &Path) -> HashMap<String, [String; 4]> {
    let mut reader = csv::Reader::from_path(out.join("rated.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|header| header == name)
            .unwrap_or_else(|| panic!("rated.csv has a column {name}: {headers:?}"))
    };
    let columns = [
        column("status"),
        column("rate"),
        column("cost"),
        column("jurisdiction"),
    ];
    let cdr_id = column("cdr_id");
    reader
        .records()
        .map(|record| {
            let record = record.unwrap();
            (
                record[cdr_id].to_string(),
                columns.map(|index| record[index].to_string()),
            )
        })
        .collect()
}

#[test]
fn each_call_is_priced_at_its_jurisdictions_rate() {
    let out = tempfile::tempdir().unwrap();
    let output = rate(
        out.path(),
        "fixtures/decks/us-jurisdictional.csv",
        Some("fixtures/decks/npanxx-states.csv"),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("rated 17 of 18 CDRs (1 rejected, 0 duplicates)"),
        "{stdout}"
    );
    assert!(stdout.contains("total cost 0.1109 USD"), "{stdout}");
    let rows = rated_rows(out.path());
    // (cdr_id, rate per minute, cost, jurisdiction): see fixtures/cdrs/README.md.
    let expected = [
        // NY -> NY, CA -> NY.
        ("u-01", "0.0065", "0.0065", "intrastate"),
        ("u-02", "0.0040", "0.0040", "interstate"),
        // Caller text, empty, Canadian, national 10 digits: indeterminate.
        ("u-03", "0.0090", "0.0090", "indeterminate"),
        ("u-04", "0.0090", "0.0090", "indeterminate"),
        ("u-05", "0.0090", "0.0090", "indeterminate"),
        ("u-15", "0.0090", "0.0090", "indeterminate"),
        // The callee's NPA-NXX (1702555) has a rate but no state.
        ("u-06", "0.0105", "0.0105", "indeterminate"),
        // The 3/1/2026 rates start at midnight New York time, 05:00 UTC.
        ("u-07", "0.0065", "0.0065", "intrastate"),
        ("u-08", "0.0070", "0.0070", "intrastate"),
        ("u-09", "0.0045", "0.0045", "interstate"),
        // CA -> CA, 90 s at 6/6.
        ("u-10", "0.0072", "0.0108", "intrastate"),
        // NY -> CA, 61 s at 60/6 is 66 s.
        ("u-11", "0.0050", "0.0055", "interstate"),
        // FL -> FL on a 6-digit code row, 7 s at 1/1: 0.00105 rounds half up.
        ("u-12", "0.0090", "0.0011", "intrastate"),
        // PR -> NY is interstate, PR -> PR intrastate (30 s at 60/60 is 60 s).
        ("u-13", "0.0040", "0.0020", "interstate"),
        ("u-18", "0.0100", "0.0100", "intrastate"),
        // A formatted caller is normalised first.
        ("u-14", "0.0065", "0.0065", "intrastate"),
        // Unanswered: free, but the rate (and so the jurisdiction) is still shown.
        ("u-17", "0.0065", "0.0000", "intrastate"),
    ];
    for (cdr_id, rate, cost, jurisdiction) in expected {
        assert_eq!(
            rows[cdr_id],
            ["rated", rate, cost, jurisdiction].map(str::to_string),
            "{cdr_id}"
        );
    }
    // A Canadian callee has no row in a US deck: rejected, no jurisdiction.
    assert_eq!(rows["u-16"], ["rejected", "", "", ""].map(str::to_string));
    assert_eq!(rows.len(), 18);
}

#[test]
fn native_decks_show_no_jurisdiction() {
    let out = tempfile::tempdir().unwrap();
    let output = tollgate(&[
        "rate",
        "--deck",
        &path("fixtures/decks/basic.csv"),
        "--output-format",
        "csv",
        "--out",
        out.path().to_str().unwrap(),
        &path("fixtures/cdrs/us-jurisdictional.csv"),
    ]);
    assert!(output.status.success());
    let rows = rated_rows(out.path());
    // basic.csv prices 1212 at 0.0250/min 60/1 whatever the caller (its rates have 3 decimals).
    assert_eq!(
        rows["u-01"],
        ["rated", "0.025", "0.0250", ""].map(str::to_string)
    );
    assert_eq!(
        rows["u-02"],
        ["rated", "0.025", "0.0250", ""].map(str::to_string)
    );
}

#[test]
fn a_bad_deck_is_refused_with_every_problem_listed() {
    let out = tempfile::tempdir().unwrap();
    let output = rate(
        out.path(),
        "fixtures/decks/bad-us-jurisdictional.csv",
        Some("fixtures/decks/npanxx-states.csv"),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let deck = path("fixtures/decks/bad-us-jurisdictional.csv");
    let expected = [
        "deck bad-us-jurisdictional refused whole: 6 problems".to_string(),
        format!(
            "{deck}:3: column code: \"12125\" has 5 digits (an NPA-NXX code is 1 + 6 digits, \
             e.g. 1212555, or the 6 digits alone)"
        ),
        format!(
            "{deck}:4: column intrarate: is empty: every row needs its interstate, intrastate \
             and indeterminate rates"
        ),
        format!(
            "{deck}:5: column effective_date: \"8/16/22\" has a two-digit year: write the year in \
             full (M/D/YYYY)"
        ),
        format!(
            "{deck}:6: column code: duplicate of line 2: same NPA-NXX 1212555 and effective date"
        ),
        format!("{deck}:7: column increment: must be at least 1 second"),
        format!("{deck}:7: column interrate: \"abc\" is not a decimal number"),
    ];
    let lines: Vec<&str> = stderr.lines().map(str::trim).collect();
    assert_eq!(lines[0], format!("tollgate: {}", expected[0]), "{stderr}");
    assert_eq!(lines[1..], expected[1..], "{stderr}");
    assert!(!out.path().join("rated.csv").exists());
}

#[test]
fn a_bad_states_file_is_refused_with_every_problem_listed() {
    let folder = tempfile::tempdir().unwrap();
    let states = folder.path().join("states.csv");
    std::fs::write(&states, "1212555,NY\n1212555,NJ\n1415555,California\n").unwrap();
    let out = folder.path().join("out");
    let output = rate(
        &out,
        "fixtures/decks/us-jurisdictional.csv",
        Some(states.to_str().unwrap()),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let states = states.display();
    assert!(
        stderr.contains(&format!(
            "NPA-NXX states file {states} refused whole: 2 problems\n  \
             {states}:2: column npanxx: duplicate of line 1: NPA-NXX 1212555 is listed twice\n  \
             {states}:3: column state: \"California\" is not a US state"
        )),
        "{stderr}"
    );
}

#[test]
fn the_states_file_goes_with_jurisdictional_decks_only() {
    let out = tempfile::tempdir().unwrap();
    let output = rate(out.path(), "fixtures/decks/us-jurisdictional.csv", None);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(
            "--deck-format us-jurisdictional needs --npanxx-states FILE (npanxx,state[,lata])"
        ),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = tollgate(&[
        "rate",
        "--deck",
        &path("fixtures/decks/basic.csv"),
        "--npanxx-states",
        &path("fixtures/decks/npanxx-states.csv"),
        "--out",
        out.path().to_str().unwrap(),
        &path("fixtures/cdrs/us-jurisdictional.csv"),
    ]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("--npanxx-states is only used by --deck-format us-jurisdictional decks"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn deck_check_knows_the_format_and_convert_refuses_per_jurisdiction_rates() {
    let deck = path("fixtures/decks/us-jurisdictional.csv");
    let output = tollgate(&["deck", "check", &deck]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("format us-jurisdictional"), "{stdout}");
    let folder = tempfile::tempdir().unwrap();
    let converted = folder.path().join("converted.csv");
    let output = tollgate(&[
        "deck",
        "convert",
        &deck,
        "--out",
        converted.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the native format has no per-jurisdiction rates"),
        "{stderr}"
    );
    assert!(!converted.exists());
}
