//! ASTPP termination and origination rate CSVs (the import samples and the web interface's
//! export), parsed into a [`Deck`] that prices calls as ASTPP's CDR billing does.
//!
//! ASTPP charges the connect cost on every call of at least one second, gives the included
//! seconds free, bills the initial increment whole, then the rest in increments (an increment
//! below 1 is 1). Free included seconds are a zero-price first block, so a call's billable
//! seconds count them. Costs are rounded half up to 4 decimals, ASTPP's default.

use super::deck_problems::{DeckError, DeckProblem};
use super::peer_deck::{
    PeerDeck, PeerDeckText, PeerRate, PricingBlock, check_no_overlaps, finish_peer_deck, half_up,
    note_unpriced_columns, price_or, read_settings, read_table, seconds_or,
};
use rust_decimal::Decimal;

const CODE: &[&str] = &["code"];
const DESTINATION: &[&str] = &["destination"];
const CONNECT_COST: &[&str] = &["connect cost", "connection cost"];
/// The export calls the import's "Included Seconds" "Grace Time" (same place, same meaning).
const INCLUDED_SECONDS: &[&str] = &["included seconds", "grace time"];
const PER_MINUTE_COST: &[&str] = &["per minute cost", "cost / min", "cost/min"];
const INITIAL_INCREMENT: &[&str] = &["initial increment"];
const INCREMENT: &[&str] = &["increment"];
const STATUS: &[&str] = &["status"];

/// Routing and bookkeeping columns: they do not change what a call costs.
const KNOWN_UNPRICED_COLUMNS: [&str; 9] = [
    "prepend",
    "strip",
    "precedence",
    "priority",
    "trunk",
    "created date",
    "modified date",
    "last modified date",
    "rate group",
];

/// Parses an ASTPP rates CSV. Any problem refuses the deck whole, with every problem listed.
pub fn parse_astpp_deck(text: &PeerDeckText<'_>) -> Result<PeerDeck, DeckError> {
    let file = text.file_name;
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut table = read_table(file, text.csv, &mut problems);
    // "Cost / Min (USD)": the currency in the export's header names the deck's currency.
    let mut currencies: Vec<String> = Vec::new();
    if let Some(table) = &mut table {
        for name in &mut table.header {
            if let Some((bare, currency)) = split_currency_suffix(name) {
                if !currencies.contains(&currency) {
                    currencies.push(currency);
                }
                *name = bare;
            }
            *name = name.split_whitespace().collect::<Vec<_>>().join(" ");
        }
    }
    if currencies.len() > 1 {
        problems.push(DeckProblem::row(
            file,
            1,
            None,
            format!(
                "the header names several currencies: {}",
                currencies.join(", ")
            ),
        ));
    }
    let settings = read_settings(
        text,
        half_up(4),
        currencies.first().map(String::as_str),
        &mut problems,
    );
    let Some(table) = table else {
        return finish_peer_deck(text, settings, Vec::new(), problems, notes);
    };
    table.require_columns(
        file,
        &[("Code", CODE), ("Per Minute Cost", PER_MINUTE_COST)],
        &mut problems,
    );
    if !problems.is_empty() {
        return finish_peer_deck(text, settings, Vec::new(), problems, notes);
    }
    let priced: Vec<&str> = [
        CODE,
        DESTINATION,
        CONNECT_COST,
        INCLUDED_SECONDS,
        PER_MINUTE_COST,
        INITIAL_INCREMENT,
        INCREMENT,
        STATUS,
    ]
    .concat();
    note_unpriced_columns(&table, &priced, &KNOWN_UNPRICED_COLUMNS, &mut notes);
    let mut rates = Vec::new();
    let mut inactive_lines = Vec::new();
    for row in &table.rows {
        let line = row.line;
        let field = |names: &[&str]| row.field(table.column(names));
        let mut problem = |column: &str, reason: String| {
            problems.push(DeckProblem::row(file, line, Some(column), reason));
        };
        match field(STATUS).to_ascii_lowercase().as_str() {
            "" | "active" | "0" => {}
            "inactive" | "1" => {
                inactive_lines.push(line.to_string());
                continue;
            }
            other => {
                problem("Status", format!("{other:?} is not Active or Inactive"));
                continue;
            }
        }
        let prefix = parse_code(field(CODE), &mut |reason| problem("Code", reason));
        let destination = field(DESTINATION);
        if !destination.is_empty() && destination.parse::<Decimal>().is_ok() {
            problem(
                "Destination",
                format!(
                    "{destination:?} is a number, not a destination name: the row looks garbled"
                ),
            );
        }
        let rate = price_or(
            "Per Minute Cost",
            field(PER_MINUTE_COST),
            Decimal::ZERO,
            &mut problem,
        );
        let connect_cost = price_or(
            "Connect Cost",
            field(CONNECT_COST),
            Decimal::ZERO,
            &mut problem,
        );
        let included = seconds_or("Included Seconds", field(INCLUDED_SECONDS), 0, &mut problem);
        let initial = seconds_or(
            "Initial Increment",
            field(INITIAL_INCREMENT),
            0,
            &mut problem,
        );
        // ASTPP bills in 1-second steps when the increment is empty or below 1.
        let increment = seconds_or("Increment", field(INCREMENT), 1, &mut problem)
            .map(|seconds| seconds.max(1));
        let (
            Some(prefix),
            Some(rate),
            Some(connect_cost),
            Some(included),
            Some(initial),
            Some(increment),
        ) = (prefix, rate, connect_cost, included, initial, increment)
        else {
            continue;
        };
        rates.push(PeerRate {
            line,
            destination: if destination.is_empty() {
                prefix.clone()
            } else {
                destination.to_string()
            },
            prefix,
            rate_per_minute: rate,
            connect_fee: connect_cost,
            blocks: astpp_blocks(included, initial, increment, rate),
            no_charge_seconds: 0,
            effective_from_micros: i64::MIN,
            effective_until_micros: i64::MAX,
            direction: None,
        });
    }
    if !inactive_lines.is_empty() {
        notes.push(format!(
            "inactive rows skipped: line {}",
            inactive_lines.join(", ")
        ));
    }
    check_no_overlaps(file, &rates, &mut problems);
    finish_peer_deck(text, settings, rates, problems, notes)
}

/// `connection cost (usd)` → (`connection cost`, `USD`).
fn split_currency_suffix(name: &str) -> Option<(String, String)> {
    let open = name.rfind('(')?;
    let inside = name[open + 1..].strip_suffix(')')?.trim();
    (inside.len() == 3 && inside.bytes().all(|byte| byte.is_ascii_alphabetic()))
        .then(|| (name[..open].trim().to_string(), inside.to_ascii_uppercase()))
}

/// A code as ASTPP writes it: digits, or the stored pattern form `^digits.*`.
fn parse_code(text: &str, problem: &mut impl FnMut(String)) -> Option<String> {
    let digits = text
        .strip_prefix('^')
        .map(|rest| rest.strip_suffix(".*").unwrap_or(rest))
        .unwrap_or(text);
    super::peer_deck::parse_prefix(digits, problem)
}

/// Included seconds free, the initial increment whole, then increments.
fn astpp_blocks(
    included_seconds: u32,
    initial_seconds: u32,
    increment_seconds: u32,
    price_per_minute: Decimal,
) -> Vec<PricingBlock> {
    let mut blocks = Vec::new();
    if included_seconds > 0 {
        blocks.push(PricingBlock {
            offset_seconds: 0,
            increment_seconds: included_seconds,
            price_per_minute: Decimal::ZERO,
        });
    }
    if initial_seconds > 0 {
        blocks.push(PricingBlock {
            offset_seconds: included_seconds,
            increment_seconds: initial_seconds,
            price_per_minute,
        });
    }
    blocks.push(PricingBlock {
        offset_seconds: included_seconds + initial_seconds,
        increment_seconds,
        price_per_minute,
    });
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::Direction;
    use crate::rate::pricing::price_call;

    fn parse(csv: &str) -> Result<PeerDeck, DeckError> {
        parse_astpp_deck(&PeerDeckText {
            file_name: "rates.csv",
            csv: csv.as_bytes(),
            manifest_file_name: None,
            manifest: None,
            default_name: "rates",
        })
    }

    /// "(billable seconds) s (cost)" for `billsec` seconds to `number`, or the deck's problems.
    fn check(csv: &str, number: &str, billsec: u32, expected: &str) {
        let actual = match parse(csv) {
            Err(error) => error
                .problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            Ok(peer) => match peer.deck.find_rate(number, 0, Direction::Outbound) {
                None => "no rate".to_string(),
                Some(rate_id) => {
                    let charge = price_call(&peer.deck, rate_id, 0, billsec, Direction::Outbound);
                    format!(
                        "{} s {} {}",
                        charge.billable_seconds,
                        crate::money::Money::from_scaled(
                            charge.cost_mantissa,
                            peer.deck.rounding.decimals
                        ),
                        peer.deck.currency
                    )
                }
            },
        };
        assert!(
            actual.contains(expected),
            "{csv:?} {number} {billsec}s: expected {expected:?}, got {actual:?}"
        );
    }

    const IMPORT: &str = "Code,Destination,Connect Cost,Included Seconds,Per Minute Cost,Initial Increment,Increment\n";
    const EXPORT: &str = "Code,Destination,\"Connection Cost (EUR)\",\"Grace Time\",\"Cost / Min (EUR)\",\"Initial Increment\",Increment,Priority,Strip,Prepend,Trunk,Status\n";

    #[test]
    fn pricing() {
        // 0.06/min, 1 s steps: 7 s cost 0.007.
        check(
            &format!("{IMPORT}44,UK,0,0,0.06,0,1\n"),
            "4420",
            7,
            "7 s 0.0070 USD",
        );
        // Connect cost on any answered call; 30 s included free, then 6 s steps.
        check(
            &format!("{IMPORT}44,UK,0.01,30,0.06,0,6\n"),
            "44",
            10,
            "30 s 0.0100",
        );
        check(
            &format!("{IMPORT}44,UK,0.01,30,0.06,0,6\n"),
            "44",
            31,
            "36 s 0.0160",
        );
        // Initial increment billed whole, then increments.
        check(
            &format!("{IMPORT}44,UK,0,0,0.06,60,6\n"),
            "44",
            1,
            "60 s 0.0600",
        );
        check(
            &format!("{IMPORT}44,UK,0,0,0.06,60,6\n"),
            "44",
            61,
            "66 s 0.0660",
        );
        // Included, initial and increment together: 10 free, 20 whole, then 10s.
        check(
            &format!("{IMPORT}44,UK,0,10,0.60,20,10\n"),
            "44",
            31,
            "40 s 0.3000",
        );
        // Increment 0 is ASTPP's 1 second; a trailing comma and a blank line, as ASTPP's sample
        // files have, are fine.
        check(
            "Code,Destination,Connect Cost,Included Seconds,Per Minute Cost,Increment,Precedence\n94,LK,0,0,0.6,0,0,\n \n",
            "94",
            7,
            "7 s 0.0700",
        );
        // Codes in ASTPP's stored pattern form.
        check(
            &format!("{IMPORT}^44.*,UK,0,0,0.06,0,1\n"),
            "44",
            60,
            "60 s 0.0600",
        );
        // The export's currency comes from its header; Grace Time is the included seconds.
        check(
            &format!("{EXPORT}44,UK,0.5,10,0.6,0,10,0,0,,T1,Active\n"),
            "44",
            11,
            "20 s 0.6000 EUR",
        );
        check(
            &format!("{EXPORT}44,UK,0.5,10,0.6,0,10,0,0,,T1,Inactive\n"),
            "44",
            11,
            "the deck has no rates",
        );
    }

    /// The seconds ASTPP's `calc_cost` charges the per-minute cost for (included seconds free).
    fn astpp_charged_seconds(duration: u32, included: u32, initial: u32, increment: u32) -> u32 {
        let mut remaining = duration.saturating_sub(included);
        let mut charged = 0;
        if remaining > 0 {
            charged += initial;
            remaining = remaining.saturating_sub(initial);
            if remaining > 0 {
                let increment = increment.max(1);
                charged += remaining.div_ceil(increment) * increment;
            }
        }
        charged
    }

    /// The deck reproduces ASTPP's cost for every included, initial and increment in range.
    #[test]
    fn pricing_matches_astpp_for_every_block_combination() {
        for included in [0, 5, 30] {
            for initial in 0..=70 {
                for increment in 0..=30 {
                    let deck = parse(&format!(
                        "{IMPORT}44,UK,0.05,{included},0.6,{initial},{increment}\n"
                    ))
                    .unwrap_or_else(|error| panic!("{error}"))
                    .deck;
                    let rate_id = deck.find_rate("44", 0, Direction::Outbound).unwrap();
                    for duration in 1..=200 {
                        let charged = astpp_charged_seconds(duration, included, initial, increment);
                        let charge = price_call(&deck, rate_id, 0, duration, Direction::Outbound);
                        // 0.05 connect cost, then 0.01 per second: exact at 4 decimals.
                        assert_eq!(
                            charge.cost_mantissa,
                            500 + i128::from(charged) * 100,
                            "included {included}, initial {initial}, increment {increment}, {duration} s"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn problems_are_named() {
        check(
            &format!("{EXPORT}38,12.75,0.2,10,0.000,10,10,0,10,38,T1,Active\n"),
            "36",
            1,
            ":2: column Destination: \"12.75\" is a number, not a destination name",
        );
        check(
            &format!("{IMPORT}44,UK,0,0,0.06,0,1\n44,UK2,0,0,0.07,0,1\n"),
            "44",
            1,
            ":3: column prefix: prefix 44 is also rated on line 2",
        );
        check(
            &format!("{IMPORT}4x,UK,0,0,0.06,0,1\n"),
            "44",
            1,
            ":2: column Code: \"4x\" is not digits only",
        );
        check(
            &format!("{IMPORT}44,UK,0,0,abc,0,1\n"),
            "44",
            1,
            ":2: column Per Minute Cost: \"abc\" is not a decimal number",
        );
        check(
            &format!("{IMPORT}44,UK,0,-5,0.1,0,1\n"),
            "44",
            1,
            ":2: column Included Seconds: \"-5\" is not a whole number",
        );
        check(
            &format!("{IMPORT}44,UK,0,0\n"),
            "44",
            1,
            ":2: has 4 columns, the header has 7",
        );
        check(
            "Code,Destination\n44,UK\n",
            "44",
            1,
            "column Per Minute Cost: required column is missing",
        );
        check(
            &format!("{EXPORT}44,UK,0.5,10,0.6,0,10,0,0,,T1,Maybe\n"),
            "44",
            1,
            "column Status: \"maybe\" is not Active or Inactive",
        );
    }
}
