//! A2Billing ratecards (`cc_ratecard` rows as CSV, columns named by the header), parsed into a
//! [`Deck`] that prices calls as A2Billing's rate engine does for a flat (non-progressive) rate.
//!
//! A2Billing's rounding is not min + increments: a call shorter than `initblock` is billed
//! `initblock`; a longer one is billed its whole duration rounded up to a multiple of
//! `billingblock` (45 s with 30/60 bills 60 s, where min + increment would bill 90 s). That is
//! expressed exactly as up to three blocks: `initblock`, then the gap to the first multiple of
//! `billingblock`, then `billingblock`s. The connect and disconnect charges are both charged on
//! every answered call, so they are one connect fee. Costs are rounded half up to 6 decimals, as
//! A2Billing rounds. Features the deck model cannot express are refused by name, never dropped.

use super::deck_problems::{DeckError, DeckProblem};
use super::peer_deck::{
    PeerDeck, PeerDeckText, PeerRate, PeerRow, PeerTable, PricingBlock, at_most_decimals,
    check_no_overlaps, finish_peer_deck, half_up, note_unpriced_columns, parse_prefix, price_or,
    read_settings, read_table, seconds_or,
};
use crate::ingest::timestamp::{local_midnight_micros, parse_timestamp_micros};
use chrono::NaiveDate;
use chrono_tz::Tz;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// The minutes of a week: A2Billing's starttime..endtime default, "all week".
const WEEK_LAST_MINUTE: u32 = 10_079;

const PRICED_COLUMNS: [&str; 21] = [
    "dialprefix",
    "destination",
    "rateinitial",
    "initblock",
    "billingblock",
    "connectcharge",
    "disconnectcharge",
    "disconnectcharge_after",
    "minimal_cost",
    "startdate",
    "stopdate",
    "starttime",
    "endtime",
    "chargea",
    "timechargea",
    "rounding_calltime",
    "rounding_threshold",
    "additional_block_charge",
    "additional_block_charge_time",
    "additional_grace",
    "idtariffplan",
];

/// Columns that do not change the sell price: the buy side (what the carrier charges), routing,
/// and the cycle B/C and step charges, which only matter for progressive rates (refused).
const KNOWN_UNPRICED_COLUMNS: [&str; 20] = [
    "id",
    "buyrate",
    "buyrateinitblock",
    "buyrateincrement",
    "stepchargea",
    "billingblocka",
    "stepchargeb",
    "chargeb",
    "timechargeb",
    "billingblockb",
    "stepchargec",
    "chargec",
    "timechargec",
    "billingblockc",
    "id_trunk",
    "musiconhold",
    "id_outbound_cidgroup",
    "tag",
    "is_merged",
    "announce_time_correction",
];

/// Parses an A2Billing ratecard CSV. Any problem refuses the deck whole, with every problem listed.
pub fn parse_a2billing_deck(text: &PeerDeckText<'_>) -> Result<PeerDeck, DeckError> {
    let file = text.file_name;
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let settings = read_settings(text, half_up(6), None, &mut problems);
    let Some(table) = read_table(file, text.csv, &mut problems) else {
        return finish_peer_deck(text, settings, Vec::new(), problems, notes);
    };
    table.require_columns(
        file,
        &[
            ("dialprefix", &["dialprefix"]),
            ("rateinitial", &["rateinitial"]),
        ],
        &mut problems,
    );
    if !problems.is_empty() {
        return finish_peer_deck(text, settings, Vec::new(), problems, notes);
    }
    note_unpriced_columns(&table, &PRICED_COLUMNS, &KNOWN_UNPRICED_COLUMNS, &mut notes);
    let mut tariff_plans: BTreeMap<String, u64> = BTreeMap::new();
    let mut rates = Vec::new();
    for row in &table.rows {
        let line = row.line;
        let field = |name: &str| row.field(table.column(&[name]));
        let mut problem = |column: &str, reason: String| {
            problems.push(DeckProblem::row(file, line, Some(column), reason));
        };
        if !field("idtariffplan").is_empty() {
            tariff_plans
                .entry(field("idtariffplan").to_string())
                .or_insert(line);
        }
        let dialprefix = field("dialprefix");
        let prefix = if dialprefix.eq_ignore_ascii_case("defaultprefix") {
            problem(
                "dialprefix",
                "defaultprefix (a rate for every number no other prefix matches) cannot be expressed: rate the prefixes"
                    .to_string(),
            );
            None
        } else if dialprefix.starts_with('_') {
            problem(
                "dialprefix",
                format!("{dialprefix:?} is an Asterisk pattern: tollgate rates by digit prefix"),
            );
            None
        } else {
            parse_prefix(dialprefix, &mut |reason| problem("dialprefix", reason))
        };
        let rate = match field("rateinitial") {
            "" => {
                problem("rateinitial", "is empty".to_string());
                None
            }
            text => price_or("rateinitial", text, Decimal::ZERO, &mut problem),
        };
        let initblock = seconds_or("initblock", field("initblock"), 0, &mut problem);
        let billingblock = seconds_or("billingblock", field("billingblock"), 0, &mut problem);
        let connect = price_or(
            "connectcharge",
            field("connectcharge"),
            Decimal::ZERO,
            &mut problem,
        );
        let disconnect = price_or(
            "disconnectcharge",
            field("disconnectcharge"),
            Decimal::ZERO,
            &mut problem,
        );
        // A2Billing rounds prices to 6 decimals (a2b_round) before it bills with them.
        let rate = at_most_decimals("rateinitial", rate, 6, "A2Billing", &mut problem);
        let connect = at_most_decimals("connectcharge", connect, 6, "A2Billing", &mut problem);
        let disconnect =
            at_most_decimals("disconnectcharge", disconnect, 6, "A2Billing", &mut problem);
        let minimal_cost = price_or(
            "minimal_cost",
            field("minimal_cost"),
            Decimal::ZERO,
            &mut problem,
        );
        refuse_unexpressible(&table, row, disconnect, &mut problem);
        let from = parse_a2billing_date(
            "startdate",
            field("startdate"),
            settings.time_zone,
            &mut problem,
        );
        let until = parse_a2billing_date(
            "stopdate",
            field("stopdate"),
            settings.time_zone,
            &mut problem,
        );
        let (
            Some(prefix),
            Some(rate),
            Some(initblock),
            Some(billingblock),
            Some(connect),
            Some(disconnect),
            Some(minimal_cost),
            Some(from),
            Some(until),
        ) = (
            prefix,
            rate,
            initblock,
            billingblock,
            connect,
            disconnect,
            minimal_cost,
            from,
            until,
        )
        else {
            continue;
        };
        let from = from.unwrap_or(i64::MIN);
        let until = until.unwrap_or(i64::MAX);
        if until <= from {
            problem("stopdate", "is not after startdate".to_string());
            continue;
        }
        let blocks = a2billing_blocks(initblock, billingblock, rate);
        let connect_fee = connect + disconnect;
        // The cheapest answered call: the connect fee and the first block. A minimal cost at or
        // below it never applies; above it, it would, and the deck model has no minimum cost.
        let cheapest =
            connect_fee + rate * Decimal::from(blocks[0].increment_seconds) / Decimal::from(60);
        if minimal_cost > cheapest {
            problem(
                "minimal_cost",
                format!(
                    "{minimal_cost} is more than the cheapest call costs ({}): a minimum cost per call cannot be expressed",
                    cheapest.normalize()
                ),
            );
            continue;
        }
        let destination = match field("destination") {
            "" => prefix.clone(),
            name => name.to_string(),
        };
        rates.push(PeerRate {
            line,
            prefix,
            destination,
            rate_per_minute: rate,
            connect_fee,
            blocks,
            no_charge_seconds: 0,
            effective_from_micros: from,
            effective_until_micros: until,
            direction: None,
        });
    }
    if tariff_plans.len() > 1 {
        let plans: Vec<String> = tariff_plans
            .iter()
            .map(|(plan, line)| format!("{plan} (line {line})"))
            .collect();
        problems.push(DeckProblem::file(
            file,
            format!(
                "rows of several tariff plans: {}; give each plan a file of its own",
                plans.join(", ")
            ),
        ));
    }
    check_no_overlaps(file, &rates, &mut problems);
    finish_peer_deck(text, settings, rates, problems, notes)
}

/// Refuses, by column, the A2Billing features that change a price in ways a deck cannot say.
fn refuse_unexpressible(
    table: &PeerTable,
    row: &PeerRow,
    disconnect_charge: Option<Decimal>,
    problem: &mut impl FnMut(&str, String),
) {
    let field = |name: &str| row.field(table.column(&[name]));
    // Anything but empty or a zero is taken as set, so a garbled value is refused, not ignored.
    let nonzero = |name: &str| {
        let text = field(name);
        !text.is_empty()
            && text
                .parse::<Decimal>()
                .map_or(true, |value| !value.is_zero())
    };
    if nonzero("chargea") && nonzero("timechargea") {
        problem(
            "chargea",
            "a progressive rate (chargea over timechargea) cannot be expressed".to_string(),
        );
    }
    if nonzero("rounding_calltime") && nonzero("rounding_threshold") {
        problem(
            "rounding_calltime",
            "rounding a call up to rounding_calltime past rounding_threshold cannot be expressed"
                .to_string(),
        );
    }
    if nonzero("additional_block_charge") && nonzero("additional_block_charge_time") {
        problem(
            "additional_block_charge",
            "a charge per additional_block_charge_time cannot be expressed".to_string(),
        );
    }
    if nonzero("additional_grace") {
        problem(
            "additional_grace",
            "seconds added to every call before billing cannot be expressed".to_string(),
        );
    }
    if nonzero("disconnectcharge_after")
        && disconnect_charge.is_some_and(|charge| !charge.is_zero())
    {
        problem(
            "disconnectcharge_after",
            "a disconnect charge only for calls of at least this many seconds cannot be expressed"
                .to_string(),
        );
    }
    let (start, end) = (field("starttime"), field("endtime"));
    let all_week = (start.is_empty() || start == "0")
        && (end.is_empty() || end == WEEK_LAST_MINUTE.to_string());
    if !all_week {
        problem(
            "starttime",
            format!(
                "a rate for minutes {start}..{end} of the week only cannot be expressed (0..{WEEK_LAST_MINUTE} is all week)"
            ),
        );
    }
}

/// `YYYY-MM-DD HH:MM:SS` (A2Billing's timestamps, in the deck's time zone), `YYYY-MM-DD`, or
/// RFC 3339; empty or MySQL's zero date is open-ended.
fn parse_a2billing_date(
    column: &str,
    text: &str,
    time_zone: Tz,
    problem: &mut impl FnMut(&str, String),
) -> Option<Option<i64>> {
    if text.is_empty() || text.starts_with("0000-00-00") {
        return Some(None);
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some(Some(local_midnight_micros(date, time_zone)));
    }
    if let Some(micros) = parse_timestamp_micros(text, time_zone) {
        return Some(Some(micros));
    }
    problem(
        column,
        format!("{text:?} is not a time YYYY-MM-DD HH:MM:SS or a date YYYY-MM-DD"),
    );
    None
}

/// A2Billing's billed duration as blocks: `initblock` whole; past it the whole duration rounded
/// up to a multiple of `billingblock`, which is the gap from `initblock` to the first multiple at
/// or after it, then `billingblock`s. A billingblock of 0 bills by the second after `initblock`.
fn a2billing_blocks(
    initblock: u32,
    billingblock: u32,
    price_per_minute: Decimal,
) -> Vec<PricingBlock> {
    let block = |offset_seconds, increment_seconds| PricingBlock {
        offset_seconds,
        increment_seconds,
        price_per_minute,
    };
    let billingblock_or_second = billingblock.max(1);
    if initblock == 0 {
        return vec![block(0, billingblock_or_second)];
    }
    let first_multiple = initblock.div_ceil(billingblock_or_second) * billingblock_or_second;
    let mut blocks = vec![block(0, initblock)];
    if first_multiple > initblock {
        blocks.push(block(initblock, first_multiple - initblock));
    }
    blocks.push(block(first_multiple, billingblock_or_second));
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::Direction;
    use crate::rate::pricing::price_call;

    fn parse(csv: &str) -> Result<PeerDeck, DeckError> {
        parse_a2billing_deck(&PeerDeckText {
            file_name: "ratecard.csv",
            csv: csv.as_bytes(),
            manifest_file_name: None,
            manifest: None,
            default_name: "ratecard",
        })
    }

    /// "(billable seconds) s (cost)" for `billsec` seconds to `number` at `instant`, or the
    /// deck's problems.
    fn check_at(csv: &str, number: &str, instant: &str, billsec: u32, expected: &str) {
        let instant_micros = chrono::DateTime::parse_from_rfc3339(instant)
            .unwrap()
            .timestamp_micros();
        let actual = match parse(csv) {
            Err(error) => error
                .problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            Ok(peer) => match peer
                .deck
                .find_rate(number, instant_micros, Direction::Outbound)
            {
                None => "no rate".to_string(),
                Some(rate_id) => {
                    let charge = price_call(
                        &peer.deck,
                        rate_id,
                        instant_micros,
                        billsec,
                        Direction::Outbound,
                    );
                    format!(
                        "{} s {}",
                        charge.billable_seconds,
                        crate::money::Money::from_scaled(
                            charge.cost_mantissa,
                            peer.deck.rounding.decimals
                        )
                    )
                }
            },
        };
        assert!(
            actual.contains(expected),
            "{csv:?} {number} {billsec}s: expected {expected:?}, got {actual:?}"
        );
    }

    fn check(csv: &str, billsec: u32, expected: &str) {
        check_at(csv, "4420", "2026-11-20T12:00:00Z", billsec, expected);
    }

    const HEADER: &str = "dialprefix,destination,rateinitial,initblock,billingblock,connectcharge,disconnectcharge,minimal_cost,startdate,stopdate\n";

    fn card(row: &str) -> String {
        format!("{HEADER}{row}\n")
    }

    #[test]
    fn a2billing_rounding() {
        let thirty_sixty = card("44,UK,0.12,30,60,0,0,0,,");
        // A call up to initblock bills initblock; past it the whole duration rounds up to 60s.
        check(&thirty_sixty, 1, "30 s 0.060000");
        check(&thirty_sixty, 30, "30 s 0.060000");
        check(&thirty_sixty, 31, "60 s 0.120000");
        check(&thirty_sixty, 45, "60 s 0.120000");
        check(&thirty_sixty, 60, "60 s 0.120000");
        check(&thirty_sixty, 61, "120 s 0.240000");
        check(&thirty_sixty, 121, "180 s 0.360000");
        // initblock not a multiple of billingblock: 45/30 bills 50 s as 60 s.
        let forty_five_thirty = card("44,UK,0.60,45,30,0,0,0,,");
        check(&forty_five_thirty, 44, "45 s 0.450000");
        check(&forty_five_thirty, 50, "60 s 0.600000");
        check(&forty_five_thirty, 61, "90 s 0.900000");
        // The common 60/6 and 1/1, no initblock, and billingblock 0 (by the second).
        check(&card("44,UK,0.06,60,6,0,0,0,,"), 61, "66 s 0.066000");
        check(&card("44,UK,0.06,0,60,0,0,0,,"), 1, "60 s 0.060000");
        check(&card("44,UK,0.06,30,0,0,0,0,,"), 31, "31 s 0.031000");
        check(&card("44,UK,0.06,,,0,0,0,,"), 7, "7 s 0.007000");
    }

    /// A2Billing's flat-rate duration rule as its rate engine states it: the duration is raised
    /// to initblock, and past initblock rounded up to a multiple of billingblock.
    fn a2billing_billed_seconds(duration: u32, initblock: u32, billingblock: u32) -> u32 {
        let mut billed = duration.max(initblock);
        if billingblock > 0 && billed > initblock && !billed.is_multiple_of(billingblock) {
            billed += billingblock - billed % billingblock;
        }
        billed
    }

    /// The blocks reproduce A2Billing's rule for every initblock, billingblock and duration in
    /// range, in billable seconds and in cost.
    #[test]
    fn blocks_match_a2billing_for_every_block_pair() {
        for initblock in 0..=100 {
            for billingblock in 0..=70 {
                let deck = parse(&card(&format!(
                    "44,UK,0.6,{initblock},{billingblock},0,0,0,,"
                )))
                .unwrap_or_else(|error| panic!("{error}"))
                .deck;
                let rate_id = deck.find_rate("44", 0, Direction::Outbound).unwrap();
                for duration in 1..=300 {
                    let billed = a2billing_billed_seconds(duration, initblock, billingblock);
                    let charge = price_call(&deck, rate_id, 0, duration, Direction::Outbound);
                    // 0.6 per minute is 0.01 per second: billed / 100, exact at 6 decimals.
                    assert_eq!(
                        (charge.billable_seconds, charge.cost_mantissa),
                        (billed, i128::from(billed) * 10_000),
                        "initblock {initblock}, billingblock {billingblock}, {duration} s"
                    );
                }
            }
        }
    }

    #[test]
    fn charges_minimal_cost_and_dates() {
        // Connect and disconnect charges are both on every answered call.
        check(&card("44,UK,0.06,60,60,0.10,0.05,0,,"), 1, "60 s 0.210000");
        // A minimal cost the cheapest call already reaches is accepted (it never applies).
        check(&card("44,UK,0.06,60,60,0.10,0,0.16,,"), 1, "60 s 0.160000");
        check(
            &card("44,UK,0.06,60,60,0.10,0,0.17,,"),
            1,
            ":2: column minimal_cost: 0.17 is more than the cheapest call costs (0.16)",
        );
        // Dates are A2Billing timestamps; the zero date is open-ended.
        let dated = format!(
            "{HEADER}44,UK,0.06,60,60,0,0,0,2026-01-01 00:00:00,2026-06-01 00:00:00\n44,UK,0.12,60,60,0,0,0,2026-06-01 00:00:00,0000-00-00 00:00:00\n"
        );
        check_at(&dated, "44", "2026-03-01T00:00:00Z", 60, "60 s 0.060000");
        check_at(&dated, "44", "2026-07-01T00:00:00Z", 60, "60 s 0.120000");
        check_at(&dated, "44", "2025-07-01T00:00:00Z", 60, "no rate");
    }

    #[test]
    fn problems_are_named() {
        let overlapping = format!(
            "{HEADER}44,UK,0.06,60,60,0,0,0,2026-01-01,\n44,UK,0.05,60,60,0,0,0,2026-06-01,\n"
        );
        check(
            &overlapping,
            1,
            ":3: column prefix: prefix 44 is also rated on line 2 for an overlapping period",
        );
        check(
            &card("defaultprefix,Any,0.06,60,60,0,0,0,,"),
            1,
            ":2: column dialprefix: defaultprefix",
        );
        check(
            &card("_44XX,UK,0.06,60,60,0,0,0,,"),
            1,
            ":2: column dialprefix: \"_44XX\" is an Asterisk pattern",
        );
        check(
            &card("44,UK,0.06,60,60,0,0,0,2026-13-01,"),
            1,
            ":2: column startdate: \"2026-13-01\" is not a time",
        );
        check(
            &card("44,UK,0.06,60,60,0,0,0,2026-02-01,2026-01-01"),
            1,
            ":2: column stopdate: is not after startdate",
        );
        check(
            &card("44,UK,,60,60,0,0,0,,"),
            1,
            ":2: column rateinitial: is empty",
        );
        check(
            &card("44,UK,0.0000001,60,60,0,0,0,,"),
            1,
            ":2: column rateinitial: 0.0000001 has more than 6 decimals, which A2Billing rounds away",
        );
        check(&card("44,UK,0.000001,60,60,0,0,0,,"), 60, "60 s 0.000001");
        let extra = "dialprefix,rateinitial,chargea,timechargea,rounding_calltime,rounding_threshold,additional_block_charge,additional_block_charge_time,additional_grace,disconnectcharge,disconnectcharge_after,starttime,endtime\n";
        let refused = format!("{extra}44,0.06,0.5,30,60,10,0.01,60,5,0.01,30,0,1439\n");
        for fragment in [
            ":2: column chargea: a progressive rate",
            ":2: column rounding_calltime: rounding a call up",
            ":2: column additional_block_charge: a charge per",
            ":2: column additional_grace: seconds added",
            ":2: column disconnectcharge_after: a disconnect charge only",
            ":2: column starttime: a rate for minutes 0..1439 of the week only",
        ] {
            check(&refused, 1, fragment);
        }
        // The same columns at their defaults are fine.
        let defaults = format!("{extra}44,0.06,0,0,0,0,0,0,0,0.01,0,0,10079\n");
        check(&defaults, 1, "1 s 0.011000");
        check(
            "dialprefix,rateinitial,idtariffplan\n44,0.1,1\n45,0.1,2\n",
            1,
            "rows of several tariff plans: 1 (line 2), 2 (line 3)",
        );
    }
}
