//! Peer deck formats end to end: `tollgate rate --deck-format F` to exact costs, `tollgate deck
//! check` (summary, or every problem and a non-zero exit), and `tollgate deck convert` pricing
//! the same CDRs identically.

use crate::support::{repo_path, tollgate};
use std::collections::BTreeMap;
use std::path::Path;

/// (status, billable seconds, cost) per cdr_id, read from a rated CSV.
type RatedCalls = BTreeMap<String, (String, String, String)>;

fn read_rated_csv(path: &Path) -> RatedCalls {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader.headers().unwrap().clone();
    let position = |name: &str| header.iter().position(|column| column == name).unwrap();
    let (id, status, billable, cost) = (
        position("cdr_id"),
        position("status"),
        position("billable_seconds"),
        position("cost"),
    );
    reader
        .records()
        .map(Result::unwrap)
        .map(|record| {
            (
                record[id].to_string(),
                (
                    record[status].to_string(),
                    record[billable].to_string(),
                    record[cost].to_string(),
                ),
            )
        })
        .collect()
}

/// Rates the peer-decks CDR fixture against one deck; returns stdout and the rated calls.
fn rate_with(deck_format: &str, deck: &Path) -> (String, RatedCalls) {
    let out = tempfile::tempdir().unwrap();
    let cdrs = repo_path("fixtures/cdrs/peer-decks.csv");
    let output = tollgate(&[
        "rate",
        "--deck-format",
        deck_format,
        "--deck",
        deck.to_str().unwrap(),
        "--output-format",
        "csv",
        "--out",
        out.path().to_str().unwrap(),
        cdrs.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "rate --deck-format {deck_format} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        String::from_utf8(output.stdout).unwrap(),
        read_rated_csv(&out.path().join("rated.csv")),
    )
}

/// Every CDR of the fixture priced as expected: `(cdr_id, billable seconds, cost)`; p-12 has no
/// rate in any of these decks.
fn check_rated(deck_format: &str, deck: &str, expected: &[(&str, &str, &str)], total: &str) {
    let (stdout, rated) = rate_with(deck_format, &repo_path(deck));
    for (cdr_id, billable, cost) in expected {
        let (status, actual_billable, actual_cost) = &rated[*cdr_id];
        assert_eq!(
            (
                status.as_str(),
                actual_billable.as_str(),
                actual_cost.as_str()
            ),
            ("rated", *billable, *cost),
            "{deck} {cdr_id}"
        );
    }
    assert_eq!(rated["p-12"].0, "rejected", "{deck}");
    assert!(
        stdout.contains(&format!("total cost {total}")),
        "{deck}: {stdout}"
    );
}

#[test]
fn kazoo_deck_prices_with_defaults_weights_and_truncation() {
    check_rated(
        "kazoo",
        "fixtures/decks/kazoo-rates.csv",
        &[
            ("p-01", "0", "0.0000"),  // within rate_nocharge_time 5
            ("p-02", "12", "0.0025"), // 6/6
            ("p-03", "18", "0.0037"), // 0.00375 truncated, as KAZOO's units do
            ("p-04", "60", "0.0300"), // 1212: defaults 60/60, surcharge 0.01
            ("p-05", "120", "0.0500"),
            ("p-06", "60", "0.0800"), // outbound: the weight-50 outbound rate
            ("p-07", "60", "0.1000"), // inbound: the weight-10 rate for both
            ("p-08", "120", "0.1600"),
            ("p-09", "30", "0.2000"), // 447: 30/1 with surcharge 0.05
            ("p-10", "31", "0.2050"),
            ("p-11", "60", "0.0800"),
        ],
        "0.9112 USD",
    );
}

#[test]
fn astpp_deck_prices_included_seconds_and_initial_increment() {
    check_rated(
        "astpp",
        "fixtures/decks/astpp-origination.csv",
        &[
            ("p-01", "6", "0.0013"), // 0.00125 rounded half up
            ("p-02", "12", "0.0025"),
            ("p-03", "18", "0.0038"),
            ("p-04", "30", "0.0100"), // 1212: 30 s included, connect cost only
            ("p-05", "66", "0.0460"), // 30 free + 36 at 0.06
            ("p-06", "60", "0.1000"), // 44: initial increment 60, then 1 s
            ("p-07", "60", "0.1000"),
            ("p-08", "61", "0.1017"),
            ("p-09", "30", "0.2000"), // 447: 0.05 + initial 30 s
            ("p-10", "36", "0.2300"),
            ("p-11", "60", "0.1000"),
        ],
        "0.8953 USD",
    );
}

#[test]
fn a2billing_deck_prices_with_its_own_rounding_and_dates() {
    check_rated(
        "a2billing",
        "fixtures/decks/a2billing-ratecard.csv",
        &[
            ("p-01", "60", "0.012000"), // 1: initblock 60
            ("p-02", "60", "0.012000"),
            ("p-03", "60", "0.012000"),
            ("p-04", "60", "0.012000"), // no 1212 rate: prefix 1
            ("p-05", "66", "0.013200"), // 60/6
            ("p-06", "60", "0.120000"), // 45 s with 30/60 bills 60 s, not 90
            ("p-07", "60", "0.120000"),
            ("p-08", "120", "0.240000"),
            ("p-09", "7", "0.105000"), // connect + disconnect 0.07, by the second
            ("p-10", "31", "0.225000"),
            ("p-11", "60", "0.090000"), // December's rate
        ],
        "0.961200 USD",
    );
}

fn deck_check(arguments: &[&str]) -> (bool, String) {
    let mut all = vec!["deck", "check"];
    all.extend_from_slice(arguments);
    let output = tollgate(&all);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[test]
fn deck_check_summarises_good_decks() {
    let cases: [(&str, &[&str]); 4] = [
        (
            "fixtures/decks/kazoo-rates.csv",
            &[
                "format kazoo (read from the file)",
                "rates: 5 (4 prefixes, 5 destinations)",
                "rounding 4 decimals, down",
                "directions: 3 both, 1 outbound only, 1 inbound only",
                "billing: 30/1 ×1; 6/6 ×1; 60/60 ×3",
            ],
        ),
        (
            "fixtures/decks/astpp-termination-export.csv",
            &[
                "format astpp (read from the file)",
                "currency EUR",
                "rates: 3 (3 prefixes",
                "note: inactive rows skipped: line 5",
                "note: columns not used for pricing: priority, strip, prepend, trunk, created date, modified date",
            ],
        ),
        (
            "fixtures/decks/a2billing-ratecard.csv",
            &[
                "format a2billing (read from the file)",
                "rates: 4 (3 prefixes",
                "effective dates: 2 distinct, from 2026-01-01T00:00:00+00:00 until open-ended",
                "30s blocks from 0s, then 30s blocks from 30s, then 60s blocks from 60s ×2",
                "note: columns not used for pricing: buyrate, buyrateinitblock, buyrateincrement",
            ],
        ),
        (
            "fixtures/decks/basic.csv",
            &[
                "format native (read from the file)",
                "rates: 5 (5 prefixes",
                "ok: no problems",
            ],
        ),
    ];
    for (deck, fragments) in cases {
        let path = repo_path(deck);
        let (ok, report) = deck_check(&[path.to_str().unwrap()]);
        assert!(ok, "{deck}:\n{report}");
        for fragment in fragments {
            assert!(
                report.contains(fragment),
                "{deck}: no {fragment:?} in\n{report}"
            );
        }
    }
}

#[test]
fn deck_check_names_every_problem_and_fails() {
    let cases: [(&str, &str, &[&str]); 3] = [
        (
            "kazoo",
            "fixtures/decks/kazoo-bad.csv",
            &[
                ":2: column prefix: \"4A\" is not digits only",
                ":3: column rate_cost: is empty",
                ":4: column rate_increment: \"-6\" is not a whole number",
                ":5: column direction: \"sideways\" is not inbound or outbound",
                ":6: column weight: lines 6, 7 all rate prefix 33 outbound with weight 10",
                ":6: column weight: lines 6, 7 all rate prefix 33 inbound with weight 10",
                ":8: column caller_id_numbers: a rate for some callers only",
                "refused whole: 7 problems",
            ],
        ),
        (
            "astpp",
            "fixtures/decks/astpp-bad.csv",
            &[
                ":2: column Destination: \"12.75\" is a number, not a destination name",
                ":3: column Per Minute Cost: \"abc\" is not a decimal number",
                ":5: column prefix: prefix 45 is also rated on line 4",
                ":6: column Code: \"x1\" is not digits only",
                "refused whole: 4 problems",
            ],
        ),
        (
            "a2billing",
            "fixtures/decks/a2billing-bad.csv",
            &[
                ":2: column dialprefix: defaultprefix",
                ":3: column minimal_cost: 1 is more than the cheapest call costs (0.1)",
                ":4: column chargea: a progressive rate",
                ":5: column startdate: \"2026-13-01 00:00:00\" is not a time",
                ":7: column prefix: prefix 47 is also rated on line 6 for an overlapping period",
                "refused whole: 5 problems",
            ],
        ),
    ];
    for (format, deck, fragments) in cases {
        let path = repo_path(deck);
        let (ok, report) = deck_check(&["--deck-format", format, path.to_str().unwrap()]);
        assert!(!ok, "{deck} was accepted:\n{report}");
        for fragment in fragments {
            assert!(
                report.contains(fragment),
                "{deck}: no {fragment:?} in\n{report}"
            );
        }
    }
    // `rate` refuses the same deck before writing anything.
    let out = tempfile::tempdir().unwrap();
    let output = tollgate(&[
        "rate",
        "--deck-format",
        "kazoo",
        "--deck",
        repo_path("fixtures/decks/kazoo-bad.csv").to_str().unwrap(),
        "--out",
        out.path().join("out").to_str().unwrap(),
        repo_path("fixtures/cdrs/peer-decks.csv").to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(!out.path().join("out").join("summary.json").exists());
}

#[test]
fn deck_check_refuses_what_it_cannot_read() {
    let folder = tempfile::tempdir().unwrap();
    let json = folder.path().join("rates.json");
    std::fs::write(&json, "{\"US48\": {\"routes\": [\"^\\\\+1\\\\d{10}$\"]}}").unwrap();
    let (ok, report) = deck_check(&[json.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        report.contains("is JSON, not a kazoo rates CSV"),
        "{report}"
    );
    let unknown = folder.path().join("unknown.csv");
    std::fs::write(&unknown, "a,b\n1,2\n").unwrap();
    let (ok, report) = deck_check(&[unknown.to_str().unwrap()]);
    assert!(!ok);
    assert!(report.contains("cannot tell the format"), "{report}");
}

/// Converts a deck to native and rates the fixture CDRs with both: every call the same.
fn check_round_trip(deck_format: &str, deck: &str, expected_rated: usize) {
    let folder = tempfile::tempdir().unwrap();
    let converted = folder.path().join("converted.csv");
    let source = repo_path(deck);
    let output = tollgate(&[
        "deck",
        "convert",
        "--deck-format",
        deck_format,
        source.to_str().unwrap(),
        "--out",
        converted.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "convert {deck}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(folder.path().join("converted.toml").exists());
    let (source_stdout, from_source) = rate_with(deck_format, &source);
    let (converted_stdout, from_converted) = rate_with("native", &converted);
    let n_rated = from_source
        .values()
        .filter(|(status, _, cost)| status == "rated" && cost != "0.0000")
        .count();
    assert_eq!(n_rated, expected_rated, "{deck}: {from_source:?}");
    assert_eq!(from_source, from_converted, "{deck}");
    let total = |stdout: &str| {
        stdout
            .split("total cost ")
            .nth(1)
            .and_then(|rest| rest.lines().next())
            .map(str::to_string)
    };
    assert_eq!(total(&source_stdout), total(&converted_stdout));
}

#[test]
fn deck_convert_round_trips_pricing() {
    check_round_trip("kazoo", "fixtures/decks/kazoo-rates.csv", 10);
    check_round_trip("astpp", "fixtures/decks/astpp-termination-export.csv", 11);
}

#[test]
fn deck_convert_refuses_what_native_cannot_express() {
    let folder = tempfile::tempdir().unwrap();
    let cases = [
        (
            "a2billing",
            "fixtures/decks/a2billing-ratecard.csv",
            "line 3 (prefix 44): its billing (30 s blocks from 0 s at 0.12, then 30 s blocks from 30 s at 0.12, then 60 s blocks from 60 s at 0.12) is not one price",
        ),
        (
            "astpp",
            "fixtures/decks/astpp-origination.csv",
            "line 3 (prefix 1212): its billing (30 s blocks from 0 s at 0, then 6 s blocks from 30 s at 0.06)",
        ),
    ];
    for (format, deck, expected) in cases {
        let out = folder.path().join(format!("{format}.csv"));
        let output = tollgate(&[
            "deck",
            "convert",
            "--deck-format",
            format,
            repo_path(deck).to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{deck}");
        assert!(
            stderr.contains("the native format cannot express"),
            "{stderr}"
        );
        assert!(
            stderr.contains(expected),
            "{deck}: no {expected:?} in {stderr}"
        );
        assert!(!out.exists(), "{deck}: nothing is written");
    }
}

/// A field as exports garble them: numbers, signs, decimals, dates, words, quotes, nothing.
fn garbled_field() -> impl proptest::strategy::Strategy<Value = String> {
    proptest::string::string_regex("[0-9]{0,20}|-?[0-9]{1,6}\\.[0-9]{0,12}|[A-Za-z _^.*+]{0,8}|\"[0-9,]{0,4}\"|0000-00-00 00:00:00|2026-0[1-9]-[0-3][0-9]( [0-2][0-9]:00:00)?")
        .unwrap()
}

proptest::proptest! {
    /// Whatever a file holds under a peer header, the parsers answer with a deck or problems,
    /// never a panic.
    #[test]
    fn peer_parsers_never_panic(
        rows in proptest::collection::vec(proptest::collection::vec(garbled_field(), 0..16), 0..6),
    ) {
        use tollgate::rate::peer_deck::PeerDeckText;
        let headers = [
            "prefix,rate_cost,rate_increment,rate_minimum,rate_nocharge_time,rate_surcharge,direction,weight,description,ratedeck_id,caller_id_numbers",
            "Code,Destination,\"Connection Cost (USD)\",\"Grace Time\",\"Cost / Min (USD)\",\"Initial Increment\",Increment,Priority,Strip,Prepend,Trunk,Status",
            "dialprefix,destination,rateinitial,initblock,billingblock,connectcharge,disconnectcharge,minimal_cost,startdate,stopdate,chargea,timechargea,additional_grace,starttime,endtime,idtariffplan",
        ];
        let body: String = rows.iter().map(|row| row.join(",") + "\n").collect();
        for (index, header) in headers.iter().enumerate() {
            let csv = format!("{header}\n{body}");
            let text = PeerDeckText {
                file_name: "garbled.csv",
                csv: csv.as_bytes(),
                manifest_file_name: None,
                manifest: None,
                default_name: "garbled",
            };
            let _ = match index {
                0 => tollgate::rate::kazoo_deck::parse_kazoo_deck(&text).map(|_| ()),
                1 => tollgate::rate::astpp_deck::parse_astpp_deck(&text).map(|_| ()),
                _ => tollgate::rate::a2billing_deck::parse_a2billing_deck(&text).map(|_| ()),
            };
        }
    }
}

#[test]
fn serve_config_names_the_deck_format() {
    use tollgate::daemon::config::ServeConfig;
    use tollgate::ingest::deck_files::DeckFormat;
    let config: ServeConfig = toml::from_str("deck_format = \"a2billing\"").unwrap();
    assert_eq!(config.deck_format, DeckFormat::A2billing);
    assert_eq!(ServeConfig::default().deck_format, DeckFormat::Native);
    assert!(toml::from_str::<ServeConfig>("deck_format = \"sideways\"").is_err());
}
