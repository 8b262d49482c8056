//! A deck with any bad row is refused whole, and the error names every problem by line and column.

use crate::support::repo_path;
use tollgate::ingest::deck_files::{load_native_deck, load_native_decks};
use tollgate::rate::native_deck::{NativeDeckText, parse_native_deck};

fn problems_of(csv: &str, manifest: Option<&str>) -> Vec<String> {
    let error = parse_native_deck(&NativeDeckText {
        csv_file_name: "deck.csv",
        csv: csv.as_bytes(),
        manifest_file_name: Some("deck.toml"),
        manifest,
        default_name: "deck",
    })
    .err()
    .expect("the deck is refused");
    error.problems.iter().map(ToString::to_string).collect()
}

#[test]
fn the_bad_fixture_deck_lists_every_problem() {
    let error = load_native_deck(&repo_path("fixtures/decks/bad-deck.csv"))
        .err()
        .expect("refused");
    let expected = [
        ":3: column prefix: \"4A20\" is not digits only",
        ":4: column prefix: is empty",
        ":5: column rate: \"abc\" is not a decimal number",
        ":6: column rate: -0.0100 is negative",
        ":7: column increment: must be at least 1 second",
        ":8: column effective_from: \"2026/03/01\" is not a date",
        ":9: column effective_until: is not after effective_from",
        ":10: column prefix: duplicate of line 2",
        ":11: has 5 columns, the header has 8",
    ];
    for fragment in expected {
        assert!(
            error.contains(fragment),
            "missing {fragment:?} in:\n{error}"
        );
    }
    assert!(error.contains("refused whole: 9 problems"), "{error}");
}

#[test]
fn header_and_manifest_problems() {
    let problems = problems_of("prefix,destination,rate\n1,US,0.1\n", None);
    assert!(
        problems
            .iter()
            .any(|problem| problem.contains("column connect_fee: required column is missing")),
        "{problems:?}"
    );
    let problems = problems_of(
        "prefix,destination,rate,connect_fee,min_seconds,increment,effective_from,effective_until,colour\n",
        None,
    );
    assert!(
        problems
            .iter()
            .any(|problem| problem.contains("column colour: unknown column")),
        "{problems:?}"
    );
    let header = "prefix,destination,rate,connect_fee,min_seconds,increment,effective_from,effective_until,band";
    let manifest =
        "time_zone = \"Mars/Olympus\"\nrounding_mode = \"sideways\"\ncurrency = \"dollars\"";
    let problems = problems_of(
        &format!("{header}\n1,US,0.1,0,6,6,,,peak\n"),
        Some(manifest),
    );
    for fragment in [
        "Mars/Olympus",
        "sideways",
        "dollars",
        "\"peak\" is not a band",
    ] {
        assert!(
            problems.iter().any(|problem| problem.contains(fragment)),
            "{fragment} not in {problems:?}"
        );
    }
}

#[test]
fn absurd_prices_and_rounding_are_refused() {
    let header =
        "prefix,destination,rate,connect_fee,min_seconds,increment,effective_from,effective_until";
    let problems = problems_of(
        &format!("{header}\n1,,0,922337203685478,0,1,,\n"),
        Some("rounding_decimals = 12"),
    );
    assert!(
        problems
            .iter()
            .any(|problem| problem
                .contains("column connect_fee: 922337203685478 is more than 10000")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|problem| problem.contains("rounding_decimals 12 is more than 8")),
        "{problems:?}"
    );
}

#[test]
fn an_empty_deck_and_a_deck_with_only_a_header_are_refused() {
    assert!(problems_of("", None)[0].contains("empty"));
    let header =
        "prefix,destination,rate,connect_fee,min_seconds,increment,effective_from,effective_until";
    assert!(problems_of(header, None)[0].contains("no rates"));
}

#[test]
fn shipped_decks_load() {
    let decks = load_native_decks(&[
        repo_path("rate-decks/az-international.csv"),
        repo_path("rate-decks/us-npanxx.csv"),
        repo_path("fixtures/decks/basic.csv"),
        repo_path("fixtures/decks/bands.csv"),
        repo_path("fixtures/decks/effective-midnight.csv"),
    ])
    .unwrap();
    assert_eq!(decks[0].name, "az-international");
    assert_eq!(decks[1].time_zone, chrono_tz::America::New_York);
    assert_eq!(decks[2].name, "basic");
    assert!(decks.iter().all(|deck| deck.version.len() == 12));
}

#[test]
fn two_decks_with_one_name_are_refused() {
    let path = repo_path("fixtures/decks/basic.csv");
    let problem = load_native_decks(&[path.clone(), path]).err().unwrap();
    assert!(problem.contains("two decks are named basic"), "{problem}");
}
