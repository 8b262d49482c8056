//! One `check` helper and many one-line cases: each states a deck row, a call and the expected
//! billable seconds and cost.

use crate::support::{deck_from_text, micros};
use tollgate::cdr::{Cdr, Direction, RejectReason};
use tollgate::money::Money;
use tollgate::rate::deck::Deck;
use tollgate::rate::pricing::rate_cdr;

const HEADER: &str = "prefix,destination,rate,connect_fee,min_seconds,increment,effective_from,effective_until,no_charge_seconds,max_cost,band,direction";

/// A weekday noon in UTC (2026-11-20 is a Friday).
const NOON: &str = "2026-11-20T12:00:00Z";

fn rate(
    deck: &Deck,
    callee: &str,
    answer_time: &str,
    billsec: u32,
    disposition: &str,
) -> Result<(u32, String), RejectReason> {
    let cdr = Cdr {
        source: "test",
        cdr_id: "c1",
        account: "a1",
        direction: Direction::Outbound,
        caller: "1".into(),
        callee: callee.into(),
        start_time_micros: micros(answer_time) - 5_000_000,
        answer_time_micros: (disposition == "ANSWERED").then(|| micros(answer_time)),
        end_time_micros: None,
        billsec,
        disposition,
    };
    rate_cdr(deck, &cdr).map(|charge| {
        let cost = Money::from_scaled(charge.cost_mantissa, deck.rounding.decimals);
        (charge.billable_seconds, cost.to_string())
    })
}

/// `row` is one deck row in the full native layout; the call is to `callee` at noon.
fn check(row: &str, callee: &str, billsec: u32, expected_billable: u32, expected_cost: &str) {
    check_with(
        row,
        None,
        callee,
        NOON,
        billsec,
        "ANSWERED",
        Ok((expected_billable, expected_cost)),
    );
}

fn check_with(
    rows: &str,
    manifest: Option<&str>,
    callee: &str,
    answer_time: &str,
    billsec: u32,
    disposition: &str,
    expected: Result<(u32, &str), RejectReason>,
) {
    let deck = deck_from_text(&format!("{HEADER}\n{rows}\n"), manifest);
    let rated = rate(&deck, callee, answer_time, billsec, disposition);
    let expected = expected.map(|(billable, cost)| (billable, cost.to_string()));
    assert_eq!(
        rated, expected,
        "deck {rows:?}, callee {callee}, {billsec} s at {answer_time}"
    );
}

#[test]
fn increments() {
    check("44,UK,0.0600,0,1,1,,,,,,", "4420", 61, 61, "0.0610");
    check("44,UK,0.0600,0,6,6,,,,,,", "4420", 61, 66, "0.0660");
    check("44,UK,0.0600,0,6,6,,,,,,", "4420", 1, 6, "0.0060");
    check("44,UK,0.0600,0,30,6,,,,,,", "4420", 31, 36, "0.0360");
    check("44,UK,0.0600,0,30,6,,,,,,", "4420", 29, 30, "0.0300");
    check("44,UK,0.0600,0,60,60,,,,,,", "4420", 61, 120, "0.1200");
    check("44,UK,0.0600,0,60,60,,,,,,", "4420", 60, 60, "0.0600");
    check("44,UK,0.0600,0,60,1,,,,,,", "4420", 59, 60, "0.0600");
    check("44,UK,0.0600,0,60,1,,,,,,", "4420", 61, 61, "0.0610");
    check("44,UK,0.0600,0,0,6,,,,,,", "4420", 7, 12, "0.0120");
}

#[test]
fn minimum_connect_fee_no_charge_and_cap() {
    // Minimum: a 1-second call bills the whole first block.
    check("44,UK,0.0600,0,30,6,,,,,,", "4420", 1, 30, "0.0300");
    // Connect fee is added once.
    check("44,UK,0.0600,0.05,60,60,,,,,,", "4420", 61, 120, "0.1700");
    // No-charge time: up to and including it, nothing; past it, the whole call.
    check("44,UK,0.0600,0.05,6,6,,,5,,,", "4420", 5, 0, "0.0000");
    check("44,UK,0.0600,0.05,6,6,,,5,,,", "4420", 6, 6, "0.0560");
    // Maximum cost caps the total, connect fee included.
    check(
        "44,UK,0.6000,0.05,60,60,,,,1.00,,",
        "4420",
        3600,
        3600,
        "1.0000",
    );
    check(
        "44,UK,0.6000,0.05,60,60,,,,1.00,,",
        "4420",
        60,
        60,
        "0.6500",
    );
}

#[test]
fn zero_second_and_unanswered_calls_cost_nothing() {
    let row = "44,UK,0.0600,0.05,60,60,,,,,,";
    check(row, "4420", 0, 0, "0.0000");
    check_with(row, None, "4420", NOON, 30, "NO ANSWER", Ok((0, "0.0000")));
    check_with(row, None, "4420", NOON, 0, "BUSY", Ok((0, "0.0000")));
    // An unanswered call to a number with no rate costs nothing, and is no error.
    check_with(row, None, "33", NOON, 0, "FAILED", Ok((0, "0.0000")));
    // An answered one is a reject, never a free call.
    check_with(
        row,
        None,
        "33",
        NOON,
        30,
        "ANSWERED",
        Err(RejectReason::NoRateForDestination),
    );
}

#[test]
fn longest_prefix_wins() {
    let rows = "44,UK,0.0600,0,1,1,,,,,,\n4420,London,0.0300,0,1,1,,,,,,\n447,UK mobile,0.1200,0,1,1,,,,,,";
    check_with(
        rows,
        None,
        "442071234567",
        NOON,
        60,
        "ANSWERED",
        Ok((60, "0.0300")),
    );
    check_with(
        rows,
        None,
        "447911123456",
        NOON,
        60,
        "ANSWERED",
        Ok((60, "0.1200")),
    );
    check_with(
        rows,
        None,
        "441632123456",
        NOON,
        60,
        "ANSWERED",
        Ok((60, "0.0600")),
    );
    // A longer prefix whose rate is not yet in force does not hide the shorter one.
    let future = "44,UK,0.0600,0,1,1,,,,,,\n4420,London,0.0300,0,1,1,2027-01-01,,,,,";
    check_with(
        future,
        None,
        "442071234567",
        NOON,
        60,
        "ANSWERED",
        Ok((60, "0.0600")),
    );
}

#[test]
fn effective_date_switches_at_midnight_in_the_deck_time_zone() {
    let manifest = "time_zone = \"Europe/Berlin\"";
    let rows =
        "49,Germany,0.0200,0,60,60,,2026-03-01,,,,\n49,Germany,0.0300,0,60,60,2026-03-01,,,,,";
    // 22:59:59 UTC on Feb 28 is 23:59:59 in Berlin: the old rate.
    check_with(
        rows,
        Some(manifest),
        "4930",
        "2026-02-28T22:59:59Z",
        60,
        "ANSWERED",
        Ok((60, "0.0200")),
    );
    // 23:00:00 UTC is midnight in Berlin: the new rate, although it is still Feb 28 in UTC.
    check_with(
        rows,
        Some(manifest),
        "4930",
        "2026-02-28T23:00:00Z",
        60,
        "ANSWERED",
        Ok((60, "0.0300")),
    );
    // A rate whose period has ended is not used, even if nothing replaces it.
    let ended = "49,Germany,0.0200,0,60,60,,2026-03-01,,,,";
    check_with(
        ended,
        Some(manifest),
        "4930",
        "2026-03-02T12:00:00Z",
        60,
        "ANSWERED",
        Err(RejectReason::NoRateForDestination),
    );
}

const BANDS: &str = r#"
[[bands]]
name = "peak"
windows = ["Mon-Fri 08:00-19:00"]
[[bands]]
name = "offpeak"
windows = ["Mon-Fri 00:00-08:00", "Mon-Fri 19:00-24:00", "Sat-Sun 00:00-24:00"]
"#;

#[test]
fn a_call_crossing_a_band_boundary_is_split() {
    let rows = "33,France,0.1200,0.0100,1,1,,,,,peak,\n33,France,0.0600,0.0200,1,1,,,,,offpeak,";
    // Entirely in peak: 0.0100 + 0.12 × 60/60.
    check_with(
        rows,
        Some(BANDS),
        "331",
        "2026-11-20T12:00:00Z",
        60,
        "ANSWERED",
        Ok((60, "0.1300")),
    );
    // Entirely offpeak (Saturday): 0.0200 + 0.06.
    check_with(
        rows,
        Some(BANDS),
        "331",
        "2026-11-21T12:00:00Z",
        60,
        "ANSWERED",
        Ok((60, "0.0800")),
    );
    // 18:59:30 + 120 s: 30 s of peak, 90 s of offpeak, the connect fee of the first part only:
    // 0.0100 + 0.12 × 30/60 + 0.06 × 90/60 = 0.1600.
    check_with(
        rows,
        Some(BANDS),
        "331",
        "2026-11-20T18:59:30Z",
        120,
        "ANSWERED",
        Ok((120, "0.1600")),
    );
    // Offpeak into peak at 08:00 Monday: 0.0200 + 0.06 × 60/60 + 0.12 × 60/60 = 0.2000.
    check_with(
        rows,
        Some(BANDS),
        "331",
        "2026-11-23T07:59:00Z",
        120,
        "ANSWERED",
        Ok((120, "0.2000")),
    );
}

#[test]
fn band_split_with_blocks_rounds_each_part_up_to_its_increment() {
    let rows = "33,France,0.1200,0,60,60,,,,,peak,\n33,France,0.0600,0,60,60,,,,,offpeak,";
    // 18:59:30 + 100 s: the first 60 s block starts in peak and is billed there whole (it ends
    // past 19:00); the next block starts offpeak: 0.12 + 0.06 = 0.18.
    check_with(
        rows,
        Some(BANDS),
        "331",
        "2026-11-20T18:59:30Z",
        100,
        "ANSWERED",
        Ok((120, "0.1800")),
    );
}

fn rounding_manifest(mode: &str) -> String {
    format!("rounding_decimals = 4\nrounding_mode = \"{mode}\"")
}

#[test]
fn rounding_modes() {
    // 0.0150 × 29 / 60 = 0.00725 exactly: a tie at 4 decimals.
    let row = "44,UK,0.0150,0,1,1,,,,,,";
    let tie = |mode: &str, expected: &str| {
        check_with(
            row,
            Some(&rounding_manifest(mode)),
            "44",
            NOON,
            29,
            "ANSWERED",
            Ok((29, expected)),
        );
    };
    tie("half_up", "0.0073");
    tie("half_even", "0.0072");
    tie("up", "0.0073");
    tie("down", "0.0072");
    // 0.0100 × 7 / 60 = 0.0011666…: not a tie.
    let row = "44,UK,0.0100,0,1,1,,,,,,";
    let third = |mode: &str, expected: &str| {
        check_with(
            row,
            Some(&rounding_manifest(mode)),
            "44",
            NOON,
            7,
            "ANSWERED",
            Ok((7, expected)),
        );
    };
    third("half_up", "0.0012");
    third("half_even", "0.0012");
    third("up", "0.0012");
    third("down", "0.0011");
    // Two decimals.
    check_with(
        row,
        Some("rounding_decimals = 2\nrounding_mode = \"up\""),
        "44",
        NOON,
        7,
        "ANSWERED",
        Ok((7, "0.01")),
    );
}

#[test]
fn direction_specific_rates() {
    let rows = "1800,Toll free,0,0,6,6,,,,,,outbound\n1800,Toll free,0.0150,0,6,6,,,,,,inbound";
    let deck = deck_from_text(&format!("{HEADER}\n{rows}\n"), None);
    let mut cdr = Cdr {
        source: "test",
        cdr_id: "c1",
        account: "a1",
        direction: Direction::Inbound,
        caller: "1".into(),
        callee: "18005550100".into(),
        start_time_micros: micros(NOON),
        answer_time_micros: Some(micros(NOON)),
        end_time_micros: None,
        billsec: 60,
        disposition: "ANSWERED",
    };
    assert_eq!(rate_cdr(&deck, &cdr).unwrap().cost_mantissa, 150);
    cdr.direction = Direction::Outbound;
    assert_eq!(rate_cdr(&deck, &cdr).unwrap().cost_mantissa, 0);
}
