//! What the peer deck formats (KAZOO, ASTPP, A2Billing) share: a CSV read by header names, rates
//! as pricing blocks, the overlap check, the optional manifest, and building the [`Deck`].
//!
//! Each format's own parser maps its columns and its billing rule onto [`PeerRate`]s; everything
//! after that is here, so the formats differ only where their rules do.

use super::deck::{Deck, DeckParts, Rate, Slot};
use super::deck_problems::{DeckError, DeckProblem, deck_csv_reader, readable_row};
use super::native_deck::{DeckSettings, NativeDeckText, validate_manifest};
use crate::cdr::Direction;
use crate::money::{Rounding, RoundingMode, mantissa_at};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::Arc;

/// Peer rates are priced per minute, like native ones.
const PEER_UNIT_SECONDS: u32 = 60;

/// The files of one peer-format deck, already read.
pub struct PeerDeckText<'a> {
    pub file_name: &'a str,
    pub csv: &'a [u8],
    /// A native manifest (`NAME.toml`) beside the file: name, currency, time zone, rounding.
    pub manifest_file_name: Option<&'a str>,
    pub manifest: Option<&'a str>,
    /// The name used when the manifest does not give one (the file stem).
    pub default_name: &'a str,
}

/// A deck read from a peer format, with what the reader noticed but did not refuse (rows
/// shadowed by a heavier weight, inactive rows skipped, columns ignored).
pub struct PeerDeck {
    pub deck: Deck,
    pub notes: Vec<String>,
}

/// One piece of a peer rate's pricing: from `offset_seconds` into the call, billed in blocks of
/// `increment_seconds` at `price_per_minute` (zero for free seconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PricingBlock {
    pub offset_seconds: u32,
    pub increment_seconds: u32,
    pub price_per_minute: Decimal,
}

/// A rate as a peer parser produces it, before it is placed in a deck.
#[derive(Clone, Debug)]
pub struct PeerRate {
    pub line: u64,
    pub prefix: String,
    pub destination: String,
    pub rate_per_minute: Decimal,
    pub connect_fee: Decimal,
    /// Sorted by offset, the first at 0, every increment at least 1.
    pub blocks: Vec<PricingBlock>,
    pub no_charge_seconds: u32,
    pub effective_from_micros: i64,
    pub effective_until_micros: i64,
    pub direction: Option<Direction>,
}

/// A CSV file read by its header: names normalised, rows with their line numbers.
pub struct PeerTable {
    pub header: Vec<String>,
    pub rows: Vec<PeerRow>,
}

pub struct PeerRow {
    pub line: u64,
    pub fields: Vec<String>,
}

impl PeerTable {
    /// Where the first of `names` sits in the header.
    pub fn column(&self, names: &[&str]) -> Option<usize> {
        self.header
            .iter()
            .position(|name| names.contains(&name.as_str()))
    }

    /// Names, as a problem on the header line, each `(column, accepted names)` the header lacks.
    pub fn require_columns(
        &self,
        file: &str,
        required: &[(&str, &[&str])],
        problems: &mut Vec<DeckProblem>,
    ) {
        for &(column, names) in required {
            if self.column(names).is_none() {
                problems.push(DeckProblem::row(
                    file,
                    1,
                    Some(column),
                    "required column is missing".to_string(),
                ));
            }
        }
    }
}

impl PeerRow {
    /// The trimmed field of `column`, or "" when the column is absent.
    pub fn field(&self, column: Option<usize>) -> &str {
        column
            .and_then(|index| self.fields.get(index))
            .map_or("", |field| field.trim())
    }
}

/// Reads a CSV with a header. Blank lines are skipped, and so is the one empty field a trailing
/// comma leaves (peer exports end rows with one). Any other row of the wrong width is a problem.
pub fn read_table(file: &str, csv: &[u8], problems: &mut Vec<DeckProblem>) -> Option<PeerTable> {
    let mut reader = deck_csv_reader(csv);
    let mut header: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for record in reader.byte_records() {
        let Some((line, record)) = readable_row(file, record, problems) else {
            continue;
        };
        let mut fields: Vec<String> = record
            .iter()
            .map(|field| String::from_utf8_lossy(field).into_owned())
            .collect();
        if fields.iter().all(|field| field.trim().is_empty()) {
            continue;
        }
        let Some(names) = &header else {
            let mut names = crate::text::normalized_header_names(record.iter());
            if names.last().is_some_and(String::is_empty) {
                names.pop();
            }
            header = Some(names);
            continue;
        };
        if fields.len() == names.len() + 1 && fields.last().is_some_and(|last| last.is_empty()) {
            fields.pop();
        }
        if fields.len() != names.len() {
            problems.push(DeckProblem::row(
                file,
                line,
                None,
                format!(
                    "has {} columns, the header has {}",
                    fields.len(),
                    names.len()
                ),
            ));
            continue;
        }
        rows.push(PeerRow { line, fields });
    }
    match header {
        None => {
            problems.push(DeckProblem::file(file, "the deck is empty".to_string()));
            None
        }
        Some(header) => Some(PeerTable { header, rows }),
    }
}

/// The deck settings: the manifest's when there is one, with the format's own rounding (and
/// currency, when the file names one) wherever the manifest is silent. Peer formats have no band
/// column, so a manifest with bands is refused.
pub(crate) fn read_settings(
    text: &PeerDeckText<'_>,
    default_rounding: Rounding,
    default_currency: Option<&str>,
    problems: &mut Vec<DeckProblem>,
) -> DeckSettings {
    let mut settings = validate_manifest(
        &NativeDeckText {
            csv_file_name: text.file_name,
            csv: b"",
            manifest_file_name: text.manifest_file_name,
            manifest: text.manifest,
            default_name: text.default_name,
        },
        problems,
    );
    let manifest_keys: Vec<String> = text
        .manifest
        .and_then(|manifest| manifest.parse::<toml::Table>().ok())
        .map(|table| table.keys().cloned().collect())
        .unwrap_or_default();
    let says = |key: &str| manifest_keys.iter().any(|name| name == key);
    if !says("rounding_decimals") {
        settings.rounding.decimals = default_rounding.decimals;
    }
    if !says("rounding_mode") {
        settings.rounding.mode = default_rounding.mode;
    }
    if let Some(currency) = default_currency.filter(|_| !says("currency")) {
        settings.currency = currency.to_string();
    }
    if !settings.bands.is_empty() {
        problems.push(DeckProblem::file(
            text.manifest_file_name.unwrap_or("manifest"),
            "bands: this deck format has no band column, so bands cannot be used".to_string(),
        ));
    }
    settings
}

/// Rounding that peer formats round costs with: half away from zero, as PHP's `round` does.
pub fn half_up(decimals: u32) -> Rounding {
    Rounding {
        decimals,
        mode: RoundingMode::HalfUp,
        ..Rounding::default()
    }
}

/// A prefix as peer formats write it: digits, perhaps after a `+`. Anything else is a problem.
pub fn parse_prefix(text: &str, problem: &mut impl FnMut(String)) -> Option<String> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.is_empty() {
        problem("is empty".to_string());
        None
    } else if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        problem(format!("{text:?} is not digits only"));
        None
    } else if digits.len() > super::prefix_index::PREFIX_DIGITS_MAX {
        problem(format!(
            "{text:?} is longer than {} digits",
            super::prefix_index::PREFIX_DIGITS_MAX
        ));
        None
    } else {
        Some(digits.to_string())
    }
}

/// A price, or `default` when the field is empty.
pub fn price_or(
    column: &str,
    text: &str,
    default: Decimal,
    problem: &mut impl FnMut(&str, String),
) -> Option<Decimal> {
    if text.is_empty() {
        return Some(default);
    }
    super::native_deck::parse_price(column, text, problem)
}

/// Refuses a price with more decimals than the peer system keeps: it would round the price before
/// billing, and an exact price here would then bill differently.
pub fn at_most_decimals(
    column: &str,
    price: Option<Decimal>,
    decimals_max: u32,
    system: &str,
    problem: &mut impl FnMut(&str, String),
) -> Option<Decimal> {
    let price = price?;
    if price.normalize().scale() > decimals_max {
        problem(
            column,
            format!(
                "{price} has more than {decimals_max} decimals, which {system} rounds away: write the price it bills"
            ),
        );
        return None;
    }
    Some(price)
}

/// Whole seconds, or `default` when the field is empty. A decimal point with only zeros after it
/// (`60.0`, as spreadsheets write integers) is accepted.
pub fn seconds_or(
    column: &str,
    text: &str,
    default: u32,
    problem: &mut impl FnMut(&str, String),
) -> Option<u32> {
    if text.is_empty() {
        return Some(default);
    }
    let whole = match text.split_once('.') {
        Some((whole, fraction)) if fraction.bytes().all(|byte| byte == b'0') => whole,
        _ => text,
    };
    super::native_deck::parse_seconds(column, whole, true, problem)
}

/// Blocks for the common "first block, then increments" rule: `min_seconds` billed whole, then
/// `increment_seconds` blocks (the native and KAZOO rule).
pub fn minimum_then_increment(
    min_seconds: u32,
    increment_seconds: u32,
    price_per_minute: Decimal,
) -> Vec<PricingBlock> {
    let block = |offset_seconds, increment_seconds| PricingBlock {
        offset_seconds,
        increment_seconds,
        price_per_minute,
    };
    if min_seconds == 0 {
        vec![block(0, increment_seconds)]
    } else {
        vec![block(0, min_seconds), block(min_seconds, increment_seconds)]
    }
}

/// Refuses rates of one prefix and direction whose effective periods overlap: tollgate would
/// pick the newest, and a peer system may pick otherwise, so the deck must say which applies.
pub fn check_no_overlaps(file: &str, rates: &[PeerRate], problems: &mut Vec<DeckProblem>) {
    let mut by_key: HashMap<(&str, Option<Direction>), Vec<&PeerRate>> = HashMap::new();
    for rate in rates {
        by_key
            .entry((rate.prefix.as_str(), rate.direction))
            .or_default()
            .push(rate);
    }
    let mut found = Vec::new();
    for group in by_key.values_mut() {
        group.sort_by_key(|rate| (rate.effective_from_micros, rate.line));
        for pair in group.windows(2) {
            if pair[1].effective_from_micros < pair[0].effective_until_micros {
                found.push((pair[1].line, pair[0].line, pair[1].prefix.clone()));
            }
        }
    }
    found.sort();
    for (line, earlier_line, prefix) in found {
        problems.push(DeckProblem::row(
            file,
            line,
            Some("prefix"),
            format!(
                "prefix {prefix} is also rated on line {earlier_line} for an overlapping period: \
                 keep one rate per prefix at a time"
            ),
        ));
    }
}

/// Builds the deck from validated rates, or refuses it with every problem.
pub(crate) fn finish_peer_deck(
    text: &PeerDeckText<'_>,
    settings: DeckSettings,
    rates: Vec<PeerRate>,
    problems: Vec<DeckProblem>,
    notes: Vec<String>,
) -> Result<PeerDeck, DeckError> {
    let mut problems = problems;
    if rates.is_empty() && problems.is_empty() {
        problems.push(DeckProblem::file(
            text.file_name,
            "the deck has no rates".to_string(),
        ));
    }
    if !problems.is_empty() {
        return Err(DeckError {
            deck: settings.name,
            problems,
        });
    }
    let price_decimals = rates
        .iter()
        .flat_map(|rate| {
            rate.blocks
                .iter()
                .map(|block| block.price_per_minute.scale())
                .chain([rate.connect_fee.scale(), rate.rate_per_minute.scale()])
        })
        .max()
        .unwrap_or(0);
    let mut destinations: HashMap<String, Arc<str>> = HashMap::new();
    let deck_rates = rates
        .into_iter()
        .map(|rate| {
            let destination = destinations
                .entry(rate.destination)
                .or_insert_with_key(|name| Arc::from(name.as_str()))
                .clone();
            let at_price_decimals = |value: Decimal| {
                mantissa_at(value, price_decimals).expect("price_decimals is the largest scale")
            };
            let slots = rate
                .blocks
                .iter()
                .map(|block| Slot {
                    offset_seconds: block.offset_seconds,
                    price: block.price_per_minute,
                    unit_seconds: PEER_UNIT_SECONDS,
                    increment_seconds: block.increment_seconds,
                    price_per_second_numerator: at_price_decimals(block.price_per_minute),
                })
                .collect();
            Rate {
                prefix: rate.prefix.into_boxed_str(),
                destination,
                rate_per_minute: rate.rate_per_minute,
                connect_fee: rate.connect_fee,
                connect_fee_mantissa: at_price_decimals(rate.connect_fee),
                slots,
                no_charge_seconds: rate.no_charge_seconds,
                max_cost_mantissa: None,
                effective_from_micros: rate.effective_from_micros,
                effective_until_micros: rate.effective_until_micros,
                band: None,
                direction: rate.direction,
                jurisdiction: None,
                source_line: rate.line,
            }
        })
        .collect();
    let deck = Deck::assemble(DeckParts {
        name: settings.name,
        version: super::deck::deck_version([
            text.csv,
            text.manifest.unwrap_or_default().as_bytes(),
        ]),
        currency: settings.currency,
        time_zone: settings.time_zone,
        rounding: settings.rounding,
        bands: settings.bands,
        rates: deck_rates,
        price_decimals,
        price_denominator: i128::from(PEER_UNIT_SECONDS),
    });
    Ok(PeerDeck { deck, notes })
}

/// Columns a format knows but does not price with, and columns it does not know at all, as notes.
pub fn note_unpriced_columns(
    table: &PeerTable,
    priced: &[&str],
    known_unpriced: &[&str],
    notes: &mut Vec<String>,
) {
    let ignored: Vec<&str> = table
        .header
        .iter()
        .map(String::as_str)
        .filter(|name| known_unpriced.contains(name))
        .collect();
    if !ignored.is_empty() {
        notes.push(format!(
            "columns not used for pricing: {}",
            ignored.join(", ")
        ));
    }
    let unknown: Vec<&str> = table
        .header
        .iter()
        .map(String::as_str)
        .filter(|name| !priced.contains(name) && !known_unpriced.contains(name))
        .collect();
    if !unknown.is_empty() {
        notes.push(format!("unknown columns, ignored: {}", unknown.join(", ")));
    }
}
