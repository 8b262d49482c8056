//! KAZOO ratedeck CSV (the hotornot rate documents, one per row, columns named by the header):
//! parsed into a [`Deck`] with KAZOO's defaults and its weight rule between equal prefixes.
//!
//! KAZOO bills `rate_surcharge + rate_cost × rate_minimum / 60` for a call up to `rate_minimum`
//! seconds, and `rate_increment` blocks after that; a call of at most `rate_nocharge_time` seconds
//! costs nothing. That is tollgate's min/increment rule exactly. Costs are truncated to 4 decimals,
//! as KAZOO's integer currency units do.

use super::deck_problems::{DeckError, DeckProblem};
use super::peer_deck::{
    PeerDeck, PeerDeckText, PeerRate, at_most_decimals, finish_peer_deck, minimum_then_increment,
    note_unpriced_columns, parse_prefix, price_or, read_settings, read_table, seconds_or,
};
use crate::cdr::Direction;
use crate::money::{Rounding, RoundingMode};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// KAZOO's rate_increment and rate_minimum when a rate does not set them.
pub const KAZOO_DEFAULT_INCREMENT_SECONDS: u32 = 60;
pub const KAZOO_DEFAULT_MINIMUM_SECONDS: u32 = 60;

const PRICED_COLUMNS: [&str; 9] = [
    "prefix",
    "rate_cost",
    "rate_increment",
    "rate_minimum",
    "rate_nocharge_time",
    "rate_surcharge",
    "direction",
    "weight",
    "description",
];

/// Columns of KAZOO rate documents that do not change what a call costs here. `caller_id_numbers`
/// would (a rate only for some callers), so a row that sets it is refused.
const KNOWN_UNPRICED_COLUMNS: [&str; 17] = [
    "iso_country_code",
    "rate_name",
    "name",
    "account_id",
    "ratedeck_id",
    "ratedeck_name",
    "pvt_rate_cost",
    "pvt_rate_surcharge",
    "pvt_internal_rate_cost",
    "internal_rate_cost",
    "carrier",
    "rate_version",
    "rate_suffix",
    "options",
    "routes",
    "caller_id_numbers",
    "id",
];

/// A row read, before weights decide between rows of one prefix.
struct KazooRow {
    rate: PeerRate,
    outbound: bool,
    inbound: bool,
    weight: Option<i64>,
}

/// Parses a KAZOO ratedeck CSV. Any problem refuses the deck whole, with every problem listed.
pub fn parse_kazoo_deck(text: &PeerDeckText<'_>) -> Result<PeerDeck, DeckError> {
    let file = text.file_name;
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let settings = read_settings(
        text,
        Rounding {
            decimals: 4,
            mode: RoundingMode::Down,
            ..Rounding::default()
        },
        None,
        &mut problems,
    );
    let Some(table) = read_table(file, text.csv, &mut problems) else {
        return finish_peer_deck(text, settings, Vec::new(), problems, notes);
    };
    table.require_columns(
        file,
        &[("prefix", &["prefix"]), ("rate_cost", &["rate_cost"])],
        &mut problems,
    );
    if !problems.is_empty() {
        return finish_peer_deck(text, settings, Vec::new(), problems, notes);
    }
    note_unpriced_columns(&table, &PRICED_COLUMNS, &KNOWN_UNPRICED_COLUMNS, &mut notes);
    let column = |name: &str| table.column(&[name]);
    let ratedeck_column = table.column(&["ratedeck_id", "ratedeck_name"]);
    let mut ratedecks: BTreeMap<String, u64> = BTreeMap::new();
    let mut rows = Vec::new();
    for row in &table.rows {
        let line = row.line;
        let mut problem = |column: &str, reason: String| {
            problems.push(DeckProblem::row(file, line, Some(column), reason));
        };
        let ratedeck = row.field(ratedeck_column);
        if !ratedeck.is_empty() {
            ratedecks.entry(ratedeck.to_string()).or_insert(line);
        }
        if !row.field(column("caller_id_numbers")).is_empty() {
            problem(
                "caller_id_numbers",
                "a rate for some callers only cannot be expressed: tollgate rates by the called number"
                    .to_string(),
            );
        }
        let prefix = parse_prefix(row.field(column("prefix")), &mut |reason| {
            problem("prefix", reason)
        });
        let rate_cost = match row.field(column("rate_cost")) {
            "" => {
                problem("rate_cost", "is empty".to_string());
                None
            }
            text => price_or("rate_cost", text, Decimal::ZERO, &mut problem),
        };
        // KAZOO reads an increment of 0 as 60 seconds.
        let increment = seconds_or(
            "rate_increment",
            row.field(column("rate_increment")),
            KAZOO_DEFAULT_INCREMENT_SECONDS,
            &mut problem,
        )
        .map(|seconds| if seconds == 0 { 60 } else { seconds });
        let minimum = seconds_or(
            "rate_minimum",
            row.field(column("rate_minimum")),
            KAZOO_DEFAULT_MINIMUM_SECONDS,
            &mut problem,
        );
        let no_charge = seconds_or(
            "rate_nocharge_time",
            row.field(column("rate_nocharge_time")),
            0,
            &mut problem,
        );
        let surcharge = price_or(
            "rate_surcharge",
            row.field(column("rate_surcharge")),
            Decimal::ZERO,
            &mut problem,
        );
        // KAZOO keeps money in units of 1/10,000 and rounds prices to them when it loads a rate.
        let rate_cost = at_most_decimals("rate_cost", rate_cost, 4, "KAZOO", &mut problem);
        let surcharge = at_most_decimals("rate_surcharge", surcharge, 4, "KAZOO", &mut problem);
        let directions = parse_directions(row.field(column("direction")), &mut problem);
        let weight = match row.field(column("weight")) {
            "" => Some(None),
            text => match text.parse::<i64>() {
                // KAZOO keeps weights within 1..=100.
                Ok(weight) => Some(Some(weight.clamp(1, 100))),
                Err(_) => {
                    problem("weight", format!("{text:?} is not a whole number"));
                    None
                }
            },
        };
        let destination = [
            row.field(column("description")),
            row.field(column("rate_name")),
            row.field(column("iso_country_code")),
        ]
        .into_iter()
        .find(|name| !name.is_empty())
        .or(prefix.as_deref())
        .unwrap_or("")
        .to_string();
        let (
            Some(prefix),
            Some(rate_cost),
            Some(increment),
            Some(minimum),
            Some(no_charge),
            Some(surcharge),
            Some((outbound, inbound)),
            Some(weight),
        ) = (
            prefix, rate_cost, increment, minimum, no_charge, surcharge, directions, weight,
        )
        else {
            continue;
        };
        rows.push(KazooRow {
            rate: PeerRate {
                line,
                prefix,
                destination,
                rate_per_minute: rate_cost,
                connect_fee: surcharge,
                blocks: minimum_then_increment(minimum, increment, rate_cost),
                no_charge_seconds: no_charge,
                effective_from_micros: i64::MIN,
                effective_until_micros: i64::MAX,
                direction: None,
            },
            outbound,
            inbound,
            weight,
        });
    }
    if ratedecks.len() > 1 {
        let names: Vec<String> = ratedecks
            .iter()
            .map(|(name, line)| format!("{name} (line {line})"))
            .collect();
        problems.push(DeckProblem::file(
            file,
            format!(
                "rows of several ratedecks: {}; give each ratedeck a file of its own",
                names.join(", ")
            ),
        ));
    }
    let rates = resolve_weights(file, rows, &mut problems, &mut notes);
    finish_peer_deck(text, settings, rates, problems, notes)
}

/// `inbound`, `outbound`, both (listed, `both`) or empty for both: (outbound, inbound).
fn parse_directions(text: &str, problem: &mut impl FnMut(&str, String)) -> Option<(bool, bool)> {
    if text.is_empty() || text.eq_ignore_ascii_case("both") {
        return Some((true, true));
    }
    let mut outbound = false;
    let mut inbound = false;
    for part in text
        .split([',', ';', '|', ' '])
        .filter(|part| !part.is_empty())
    {
        match Direction::parse(part) {
            Some(Direction::Outbound) => outbound = true,
            Some(Direction::Inbound) => inbound = true,
            None => {
                problem("direction", format!("{text:?} is not inbound or outbound"));
                return None;
            }
        }
    }
    Some((outbound, inbound))
}

/// KAZOO's rule between rows of one prefix: for each direction, the row of highest weight wins.
/// A row that wins both directions is one rate for both; rows that win one are rates for that
/// direction; rows that win none are dropped, with a note. Equal top weights (or a missing weight
/// among several rows) leave KAZOO's choice undefined by the deck, so they are a problem.
fn resolve_weights(
    file: &str,
    rows: Vec<KazooRow>,
    problems: &mut Vec<DeckProblem>,
    notes: &mut Vec<String>,
) -> Vec<PeerRate> {
    let mut by_prefix: BTreeMap<String, Vec<KazooRow>> = BTreeMap::new();
    for row in rows {
        by_prefix
            .entry(row.rate.prefix.clone())
            .or_default()
            .push(row);
    }
    let mut rates = Vec::new();
    for (prefix, group) in by_prefix {
        let winner = |direction: Direction| -> Result<Option<usize>, String> {
            let candidates: Vec<usize> = (0..group.len())
                .filter(|&index| match direction {
                    Direction::Outbound => group[index].outbound,
                    Direction::Inbound => group[index].inbound,
                })
                .collect();
            if candidates.len() <= 1 {
                return Ok(candidates.first().copied());
            }
            let lines = || {
                candidates
                    .iter()
                    .map(|&index| group[index].rate.line.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if candidates
                .iter()
                .any(|&index| group[index].weight.is_none())
            {
                return Err(format!(
                    "lines {} all rate prefix {prefix} {} and not all have a weight: give each a weight (highest wins)",
                    lines(),
                    direction.as_str()
                ));
            }
            let top = candidates
                .iter()
                .map(|&index| group[index].weight)
                .max()
                .flatten();
            let best: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&index| group[index].weight == top)
                .collect();
            if best.len() > 1 {
                return Err(format!(
                    "lines {} all rate prefix {prefix} {} with weight {}: give them different weights (highest wins)",
                    lines(),
                    direction.as_str(),
                    top.unwrap_or_default()
                ));
            }
            Ok(Some(best[0]))
        };
        let first_line = group[0].rate.line;
        let (outbound, inbound) = match (winner(Direction::Outbound), winner(Direction::Inbound)) {
            (Ok(outbound), Ok(inbound)) => (outbound, inbound),
            (outbound, inbound) => {
                let mut reasons: Vec<String> = [outbound.err(), inbound.err()]
                    .into_iter()
                    .flatten()
                    .collect();
                reasons.dedup();
                for reason in reasons {
                    problems.push(DeckProblem::row(file, first_line, Some("weight"), reason));
                }
                continue;
            }
        };
        for (index, row) in group.iter().enumerate() {
            let wins_outbound = outbound == Some(index);
            let wins_inbound = inbound == Some(index);
            let direction = match (wins_outbound, wins_inbound) {
                (true, true) => None,
                (true, false) => Some(Direction::Outbound),
                (false, true) => Some(Direction::Inbound),
                (false, false) => {
                    notes.push(format!(
                        "line {}: prefix {prefix} (weight {}) is shadowed by a heavier rate and not used",
                        row.rate.line,
                        row.weight.unwrap_or_default()
                    ));
                    continue;
                }
            };
            // A row for both directions that wins only one is still used for that one.
            if (row.outbound && row.inbound) && direction.is_some() {
                notes.push(format!(
                    "line {}: prefix {prefix} is used for {} only; a heavier rate takes the other direction",
                    row.rate.line,
                    direction.map_or("", Direction::as_str)
                ));
            }
            let mut rate = row.rate.clone();
            rate.direction = if row.outbound && row.inbound {
                direction
            } else if row.outbound {
                Some(Direction::Outbound)
            } else {
                Some(Direction::Inbound)
            };
            rates.push(rate);
        }
    }
    rates.sort_by_key(|rate| rate.line);
    rates
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::Direction;
    use crate::rate::pricing::price_call;

    fn parse(csv: &str) -> Result<PeerDeck, DeckError> {
        parse_kazoo_deck(&PeerDeckText {
            file_name: "rates.csv",
            csv: csv.as_bytes(),
            manifest_file_name: None,
            manifest: None,
            default_name: "rates",
        })
    }

    /// Prices `billsec` seconds to `number` outbound (or inbound) and returns
    /// (billable seconds, cost), or the deck's problems.
    fn check(csv: &str, number: &str, direction: Direction, billsec: u32, expected: &str) {
        let actual = match parse(csv) {
            Err(error) => error
                .problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            Ok(peer) => {
                let deck = peer.deck;
                match deck.find_rate(number, 0, direction) {
                    None => "no rate".to_string(),
                    Some(rate_id) => {
                        let charge = price_call(&deck, rate_id, 0, billsec, direction);
                        format!(
                            "{} s {}",
                            charge.billable_seconds,
                            crate::money::Money::from_scaled(
                                charge.cost_mantissa,
                                deck.rounding.decimals
                            )
                        )
                    }
                }
            }
        };
        assert!(
            actual.contains(expected),
            "{csv:?} {number} {billsec}s: expected {expected:?}, got {actual:?}"
        );
    }

    const OUT: Direction = Direction::Outbound;
    const IN: Direction = Direction::Inbound;

    #[test]
    fn pricing_and_defaults() {
        // Missing increment and minimum are KAZOO's 60/60.
        check("prefix,rate_cost\n44,0.12\n", "4420", OUT, 1, "60 s 0.1200");
        check(
            "prefix,rate_cost\n44,0.12\n",
            "4420",
            OUT,
            61,
            "120 s 0.2400",
        );
        // Empty fields are defaults too; 0 increment is 60 as in KAZOO.
        check(
            "prefix,rate_cost,rate_increment,rate_minimum\n44,0.12,,\n",
            "44",
            OUT,
            61,
            "120 s 0.2400",
        );
        check(
            "prefix,rate_cost,rate_increment,rate_minimum\n44,0.12,0,0\n",
            "44",
            OUT,
            61,
            "120 s 0.2400",
        );
        // 30/6 with a surcharge.
        check(
            "prefix,rate_cost,rate_increment,rate_minimum,rate_surcharge\n44,0.12,6,30,0.05\n",
            "44",
            OUT,
            31,
            "36 s 0.1220",
        );
        // No-charge time: free up to it, fully billed after.
        check(
            "prefix,rate_cost,rate_increment,rate_minimum,rate_nocharge_time,rate_surcharge\n1,0.01,6,6,5,0.02\n",
            "1",
            OUT,
            5,
            "0 s 0",
        );
        check(
            "prefix,rate_cost,rate_increment,rate_minimum,rate_nocharge_time,rate_surcharge\n1,0.01,6,6,5,0.02\n",
            "1",
            OUT,
            6,
            "6 s 0.0210",
        );
        // Costs are truncated to 4 decimals: 7 s of 0.0001/s-ish rates.
        check(
            "prefix,rate_cost,rate_increment,rate_minimum\n1,0.0059,1,1\n",
            "1",
            OUT,
            7,
            "7 s 0.0006",
        );
        // Longest prefix wins; a leading + is accepted.
        check(
            "prefix,rate_cost\n+1,0.1\n1212,0.2\n",
            "12125550000",
            OUT,
            60,
            "60 s 0.2000",
        );
    }

    /// KAZOO's billed seconds as `kapps_call_util` computes them.
    fn kazoo_billed_seconds(seconds: u32, minimum: u32, increment: u32, no_charge: u32) -> u32 {
        let increment = if increment == 0 { 60 } else { increment };
        if seconds <= no_charge {
            0
        } else if seconds <= minimum {
            minimum
        } else {
            minimum + (seconds - minimum).div_ceil(increment) * increment
        }
    }

    /// The deck reproduces KAZOO's rule for every minimum, increment and duration in range.
    #[test]
    fn pricing_matches_kazoo_for_every_minimum_and_increment() {
        for minimum in 0..=90 {
            for increment in 0..=70 {
                for no_charge in [0, 7] {
                    let csv = format!(
                        "prefix,rate_cost,rate_increment,rate_minimum,rate_nocharge_time\n44,0.6,{increment},{minimum},{no_charge}\n"
                    );
                    let deck = parse(&csv).unwrap_or_else(|error| panic!("{error}")).deck;
                    let rate_id = deck.find_rate("44", 0, OUT).unwrap();
                    for seconds in 1..=250 {
                        let billed = kazoo_billed_seconds(seconds, minimum, increment, no_charge);
                        let charge = price_call(&deck, rate_id, 0, seconds, OUT);
                        // 0.6 per minute is 0.01 per second: billed / 100, exact at 4 decimals.
                        assert_eq!(
                            (charge.billable_seconds, charge.cost_mantissa),
                            (billed, i128::from(billed) * 100),
                            "minimum {minimum}, increment {increment}, no charge {no_charge}, {seconds} s"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn weights_and_directions() {
        let heavier_wins = "prefix,rate_cost,weight\n44,0.10,10\n44,0.20,50\n";
        check(heavier_wins, "44", OUT, 60, "60 s 0.2000");
        check(heavier_wins, "44", IN, 60, "60 s 0.2000");
        let notes = parse(heavier_wins).ok().unwrap().notes;
        assert!(
            notes
                .iter()
                .any(|note| note.contains("line 2: prefix 44 (weight 10) is shadowed")),
            "{notes:?}"
        );
        // An outbound-only heavier rate takes outbound; the lighter both-ways rate keeps inbound.
        let split = "prefix,rate_cost,weight,direction\n44,0.10,10,\n44,0.20,50,outbound\n";
        check(split, "44", OUT, 60, "60 s 0.2000");
        check(split, "44", IN, 60, "60 s 0.1000");
        // A lighter direction-specific rate loses to a heavier rate for both.
        let both_wins = "prefix,rate_cost,weight,direction\n44,0.10,90,\n44,0.20,50,outbound\n";
        check(both_wins, "44", OUT, 60, "60 s 0.1000");
        // Weights are kept within 1..=100 as KAZOO does: 500 and 100 tie.
        check(
            "prefix,rate_cost,weight\n44,0.10,500\n44,0.20,100\n",
            "44",
            OUT,
            60,
            "with weight 100: give them different weights",
        );
        check(
            "prefix,rate_cost,weight\n44,0.10,\n44,0.20,5\n",
            "44",
            OUT,
            60,
            "not all have a weight",
        );
        check(
            "prefix,rate_cost,direction\n44,0.10,inbound\n",
            "44",
            OUT,
            60,
            "no rate",
        );
    }

    #[test]
    fn problems_are_named() {
        check(
            "rate_cost\n0.1\n",
            "1",
            OUT,
            1,
            "column prefix: required column is missing",
        );
        check(
            "prefix,rate_cost\n4A,0.1\n",
            "1",
            OUT,
            1,
            ":2: column prefix: \"4A\" is not digits only",
        );
        check(
            "prefix,rate_cost\n44,\n",
            "1",
            OUT,
            1,
            ":2: column rate_cost: is empty",
        );
        check(
            "prefix,rate_cost\n44,-1\n",
            "1",
            OUT,
            1,
            ":2: column rate_cost: -1 is negative",
        );
        check(
            "prefix,rate_cost,direction\n44,0.1,sideways\n",
            "1",
            OUT,
            1,
            "column direction: \"sideways\" is not inbound or outbound",
        );
        check(
            "prefix,rate_cost,caller_id_numbers\n44,0.1,4420\n",
            "1",
            OUT,
            1,
            "column caller_id_numbers: a rate for some callers only",
        );
        check(
            "prefix,rate_cost,ratedeck_id\n44,0.1,a\n45,0.1,b\n",
            "1",
            OUT,
            1,
            "rows of several ratedecks: a (line 2), b (line 3)",
        );
        check("prefix,rate_cost\n", "1", OUT, 1, "the deck has no rates");
        check(
            "prefix,rate_cost,rate_surcharge\n44,0.00125,0.00001\n",
            "1",
            OUT,
            1,
            ":2: column rate_cost: 0.00125 has more than 4 decimals, which KAZOO rounds away",
        );
        check(
            "prefix,rate_cost,rate_surcharge\n44,0.0012,0.00001\n",
            "1",
            OUT,
            1,
            ":2: column rate_surcharge: 0.00001 has more than 4 decimals",
        );
    }
}
