//! The native deck format: one CSV of rates and an optional TOML manifest of deck settings.
//! Parsing is pure (text in, [`Deck`] or every problem out); reading the files is the caller's job.

use super::bands::{Band, BandSchedule, parse_band_window};
use super::deck::{Deck, DeckParts, Rate, Slot};
use super::deck_problems::{DeckError, DeckProblem, deck_csv_reader, header_row, readable_row};
use crate::cdr::Direction;
use crate::ingest::timestamp::local_midnight_micros;
use crate::money::{Rounding, RoundingMode, RoundingScope, mantissa_at};
use chrono::NaiveDate;
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

pub const REQUIRED_COLUMNS: [&str; 8] = [
    "prefix",
    "destination",
    "rate",
    "connect_fee",
    "min_seconds",
    "increment",
    "effective_from",
    "effective_until",
];
pub const OPTIONAL_COLUMNS: [&str; 4] = ["no_charge_seconds", "max_cost", "band", "direction"];

/// Prices with more decimals than this are refused: nobody quotes a rate that finely, and the
/// integer pricing path stays far from overflow.
pub const PRICE_DECIMALS_MAX: u32 = 10;

/// Costs are rounded to at most this many decimals, so that the largest cost fits the 18-digit
/// decimal of the rated-calls file.
pub const COST_DECIMALS_MAX: u32 = 8;

/// The per-minute unit of native rates.
const NATIVE_UNIT_SECONDS: u32 = 60;

/// The files of one native deck, already read.
pub struct NativeDeckText<'a> {
    pub csv_file_name: &'a str,
    pub csv: &'a [u8],
    pub manifest_file_name: Option<&'a str>,
    pub manifest: Option<&'a str>,
    /// The name used when the manifest does not give one (the CSV's file stem).
    pub default_name: &'a str,
}

/// The manifest as written: every field optional, defaults applied in [`validate_manifest`].
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: Option<String>,
    currency: Option<String>,
    time_zone: Option<String>,
    rounding_decimals: Option<u32>,
    rounding_mode: Option<String>,
    rounding_scope: Option<String>,
    rounding_increment_decimals: Option<u32>,
    #[serde(default)]
    bands: Vec<RawBand>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBand {
    name: String,
    windows: Vec<String>,
}

/// A deck's settings from its manifest, defaults applied. Peer formats read the same manifest.
pub(crate) struct DeckSettings {
    pub(crate) name: String,
    pub(crate) currency: String,
    pub(crate) time_zone: Tz,
    pub(crate) rounding: Rounding,
    pub(crate) bands: BandSchedule,
}

/// One CSV row, validated but not yet placed in the deck.
struct ParsedRow {
    line: u64,
    prefix: String,
    destination: String,
    rate: Decimal,
    connect_fee: Decimal,
    min_seconds: u32,
    increment: u32,
    effective_from_micros: i64,
    effective_until_micros: i64,
    no_charge_seconds: u32,
    max_cost: Option<Decimal>,
    band: Option<u16>,
    direction: Option<Direction>,
}

/// Parses and validates a native deck. Any problem refuses the deck whole, with every problem listed.
pub fn parse_native_deck(text: &NativeDeckText<'_>) -> Result<Deck, DeckError> {
    let mut problems = Vec::new();
    let settings = validate_manifest(text, &mut problems);
    let rows = parse_rows(text, &settings, &mut problems);
    if !problems.is_empty() {
        return Err(DeckError {
            deck: settings.name,
            problems,
        });
    }
    build_deck(text, settings, rows)
}

pub(crate) fn validate_manifest(
    text: &NativeDeckText<'_>,
    problems: &mut Vec<DeckProblem>,
) -> DeckSettings {
    let manifest_file = text.manifest_file_name.unwrap_or("manifest");
    let mut problem = |reason: String| problems.push(DeckProblem::file(manifest_file, reason));
    let raw: RawManifest = match text.manifest {
        None => RawManifest::default(),
        Some(manifest) => toml::from_str(manifest).unwrap_or_else(|error| {
            problem(format!("manifest is not valid: {}", error.message()));
            RawManifest::default()
        }),
    };
    let time_zone = match raw.time_zone.as_deref() {
        None => chrono_tz::UTC,
        Some(name) => Tz::from_str(name).unwrap_or_else(|_| {
            problem(format!("time_zone {name:?} is not an IANA time zone"));
            chrono_tz::UTC
        }),
    };
    let currency = raw.currency.unwrap_or_else(|| "USD".to_string());
    if currency.len() != 3 || !currency.bytes().all(|byte| byte.is_ascii_uppercase()) {
        problem(format!(
            "currency {currency:?} is not an ISO 4217 code such as USD"
        ));
    }
    let decimals = raw.rounding_decimals.unwrap_or(4);
    if decimals > COST_DECIMALS_MAX {
        problem(format!(
            "rounding_decimals {decimals} is more than {COST_DECIMALS_MAX}"
        ));
    }
    let mode = match raw.rounding_mode.as_deref() {
        None => RoundingMode::HalfUp,
        Some(mode) => RoundingMode::parse(mode).unwrap_or_else(|| {
            problem(format!(
                "rounding_mode {mode:?} is not up, half_up, down or half_even"
            ));
            RoundingMode::HalfUp
        }),
    };
    let scope = match raw.rounding_scope.as_deref() {
        None | Some("call") => RoundingScope::Call,
        Some("increment") => RoundingScope::Increment {
            decimals: raw
                .rounding_increment_decimals
                .unwrap_or(5)
                .min(COST_DECIMALS_MAX),
        },
        Some(other) => {
            problem(format!("rounding_scope {other:?} is not call or increment"));
            RoundingScope::Call
        }
    };
    let mut bands = Vec::new();
    for raw_band in raw.bands {
        let mut windows = Vec::new();
        for window in &raw_band.windows {
            match parse_band_window(window) {
                Ok(window) => windows.push(window),
                Err(reason) => problem(format!("band {:?}: {reason}", raw_band.name)),
            }
        }
        if bands.iter().any(|band: &Band| band.name == raw_band.name) {
            problem(format!("band {:?} is defined twice", raw_band.name));
        }
        bands.push(Band {
            name: raw_band.name,
            windows,
        });
    }
    DeckSettings {
        name: raw.name.unwrap_or_else(|| text.default_name.to_string()),
        currency,
        time_zone,
        rounding: Rounding {
            decimals,
            mode,
            scope,
        },
        bands: BandSchedule::new(bands),
    }
}

fn parse_rows(
    text: &NativeDeckText<'_>,
    settings: &DeckSettings,
    problems: &mut Vec<DeckProblem>,
) -> Vec<ParsedRow> {
    let file = text.csv_file_name;
    let mut reader = deck_csv_reader(text.csv);
    let mut records = reader.byte_records();
    let Some(header) = header_row(file, &mut records, problems) else {
        return Vec::new();
    };
    let Some(columns) = DeckColumns::from_header(file, &header, problems) else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    let mut first_line_of_key: HashMap<(String, i64, Option<u16>, Option<Direction>), u64> =
        HashMap::new();
    for record in records {
        let Some((line, record)) = readable_row(file, record, problems) else {
            continue;
        };
        if record.len() != columns.n_columns {
            problems.push(DeckProblem::row(
                file,
                line,
                None,
                format!(
                    "has {} columns, the header has {}",
                    record.len(),
                    columns.n_columns
                ),
            ));
            continue;
        }
        let n_problems_before = problems.len();
        let row = columns.parse_row(file, line, &record, settings, problems);
        if let Some(row) = row.filter(|_| problems.len() == n_problems_before) {
            let key = (
                row.prefix.clone(),
                row.effective_from_micros,
                row.band,
                row.direction,
            );
            if let Some(first_line) = first_line_of_key.insert(key, line) {
                problems.push(DeckProblem::row(
                    file,
                    line,
                    Some("prefix"),
                    format!(
                        "duplicate of line {first_line}: same prefix {}, effective_from, band and direction",
                        row.prefix
                    ),
                ));
            }
            rows.push(row);
        }
    }
    if rows.is_empty() && problems.is_empty() {
        problems.push(DeckProblem::file(file, "the deck has no rates".to_string()));
    }
    rows
}

/// Where each known column sits in this file's header.
struct DeckColumns {
    n_columns: usize,
    required: [usize; 8],
    optional: [Option<usize>; 4],
}

impl DeckColumns {
    fn from_header(
        file: &str,
        header: &csv::ByteRecord,
        problems: &mut Vec<DeckProblem>,
    ) -> Option<DeckColumns> {
        let names = crate::text::normalized_header_names(header);
        let position = |wanted: &str| names.iter().position(|name| name == wanted);
        let mut required = [0usize; 8];
        let mut complete = true;
        for (slot, wanted) in required.iter_mut().zip(REQUIRED_COLUMNS) {
            match position(wanted) {
                Some(index) => *slot = index,
                None => {
                    problems.push(DeckProblem::row(
                        file,
                        1,
                        Some(wanted),
                        "required column is missing".to_string(),
                    ));
                    complete = false;
                }
            }
        }
        for name in &names {
            if !REQUIRED_COLUMNS.contains(&name.as_str())
                && !OPTIONAL_COLUMNS.contains(&name.as_str())
            {
                problems.push(DeckProblem::row(
                    file,
                    1,
                    Some(name),
                    format!(
                        "unknown column (known: {}, {})",
                        REQUIRED_COLUMNS.join(", "),
                        OPTIONAL_COLUMNS.join(", ")
                    ),
                ));
                complete = false;
            }
        }
        let optional = OPTIONAL_COLUMNS.map(position);
        complete.then_some(DeckColumns {
            n_columns: names.len(),
            required,
            optional,
        })
    }

    fn parse_row(
        &self,
        file: &str,
        line: u64,
        record: &csv::ByteRecord,
        settings: &DeckSettings,
        problems: &mut Vec<DeckProblem>,
    ) -> Option<ParsedRow> {
        let field = |index: usize| -> &str {
            std::str::from_utf8(&record[index])
                .map(str::trim)
                .unwrap_or("\u{fffd}")
        };
        let required = |column: usize| field(self.required[column]);
        let optional = |column: usize| self.optional[column].map(field).unwrap_or("");
        let mut problem = |column: &str, reason: String| {
            problems.push(DeckProblem::row(file, line, Some(column), reason));
        };

        let prefix = required(0);
        if prefix.is_empty() {
            problem("prefix", "is empty".to_string());
        } else if !prefix.bytes().all(|byte| byte.is_ascii_digit()) {
            problem("prefix", format!("{prefix:?} is not digits only"));
        } else if prefix.len() > super::prefix_index::PREFIX_DIGITS_MAX {
            problem(
                "prefix",
                format!(
                    "{prefix:?} is longer than {} digits",
                    super::prefix_index::PREFIX_DIGITS_MAX
                ),
            );
        }
        let rate = parse_price("rate", required(2), &mut problem);
        let connect_fee = parse_price("connect_fee", required(3), &mut problem);
        let min_seconds = parse_seconds("min_seconds", required(4), true, &mut problem);
        let increment = parse_seconds("increment", required(5), false, &mut problem);
        let effective_from = parse_effective_date(
            "effective_from",
            required(6),
            settings.time_zone,
            &mut problem,
        );
        let effective_until = parse_effective_date(
            "effective_until",
            required(7),
            settings.time_zone,
            &mut problem,
        );
        let no_charge_seconds = match optional(0) {
            "" => Some(0),
            text => parse_seconds("no_charge_seconds", text, true, &mut problem),
        };
        let max_cost = match optional(1) {
            "" => Some(None),
            text => parse_price("max_cost", text, &mut problem).map(Some),
        };
        if let Some(Some(max_cost)) = max_cost
            && mantissa_at(max_cost, settings.rounding.decimals).is_none()
        {
            problem(
                "max_cost",
                format!(
                    "{max_cost} has more decimals than the deck rounds to ({})",
                    settings.rounding.decimals
                ),
            );
        }
        let band = match optional(2) {
            "" => Some(None),
            name => match settings.bands.band_id(name) {
                Some(band) => Some(Some(band)),
                None => {
                    problem(
                        "band",
                        format!("{name:?} is not a band defined in the deck's manifest"),
                    );
                    None
                }
            },
        };
        let direction = match optional(3) {
            "" => Some(None),
            text => match Direction::parse(text) {
                Some(direction) => Some(Some(direction)),
                None => {
                    problem("direction", format!("{text:?} is not inbound or outbound"));
                    None
                }
            },
        };
        let effective_from_micros = effective_from?.unwrap_or(i64::MIN);
        let effective_until_micros = effective_until?.unwrap_or(i64::MAX);
        if effective_until_micros <= effective_from_micros {
            problem("effective_until", "is not after effective_from".to_string());
            return None;
        }
        Some(ParsedRow {
            line,
            prefix: prefix.to_string(),
            destination: required(1).to_string(),
            rate: rate?,
            connect_fee: connect_fee?,
            min_seconds: min_seconds?,
            increment: increment?,
            effective_from_micros,
            effective_until_micros,
            no_charge_seconds: no_charge_seconds?,
            max_cost: max_cost?,
            band: band?,
            direction: direction?,
        })
    }
}

pub(crate) fn parse_price(
    column: &str,
    text: &str,
    problem: &mut impl FnMut(&str, String),
) -> Option<Decimal> {
    let Ok(value) = Decimal::from_str(text) else {
        problem(column, format!("{text:?} is not a decimal number"));
        return None;
    };
    if value.is_sign_negative() && !value.is_zero() {
        problem(column, format!("{text} is negative"));
        return None;
    }
    if value > Decimal::from(crate::limits::PRICE_MAX) {
        problem(
            column,
            format!("{text} is more than {}", crate::limits::PRICE_MAX),
        );
        return None;
    }
    if value.scale() > PRICE_DECIMALS_MAX {
        problem(
            column,
            format!("{text} has more than {PRICE_DECIMALS_MAX} decimals"),
        );
        return None;
    }
    Some(value.normalize())
}

pub(crate) fn parse_seconds(
    column: &str,
    text: &str,
    zero_allowed: bool,
    problem: &mut impl FnMut(&str, String),
) -> Option<u32> {
    match text.parse::<u32>() {
        Ok(0) if !zero_allowed => {
            problem(column, "must be at least 1 second".to_string());
            None
        }
        Ok(seconds) if seconds <= 86_400 => Some(seconds),
        _ => {
            problem(
                column,
                format!("{text:?} is not a whole number of seconds (0 to 86400)"),
            );
            None
        }
    }
}

/// `YYYY-MM-DD` (midnight in the deck's time zone) or RFC 3339; empty means open-ended.
pub(crate) fn parse_effective_date(
    column: &str,
    text: &str,
    time_zone: Tz,
    problem: &mut impl FnMut(&str, String),
) -> Option<Option<i64>> {
    if text.is_empty() {
        return Some(None);
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some(Some(local_midnight_micros(date, time_zone)));
    }
    if let Ok(instant) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(Some(instant.timestamp_micros()));
    }
    problem(
        column,
        format!("{text:?} is not a date YYYY-MM-DD or an RFC 3339 time"),
    );
    None
}

fn build_deck(
    text: &NativeDeckText<'_>,
    settings: DeckSettings,
    rows: Vec<ParsedRow>,
) -> Result<Deck, DeckError> {
    let price_decimals = rows
        .iter()
        .flat_map(|row| [row.rate.scale(), row.connect_fee.scale()])
        .max()
        .unwrap_or(0);
    let price_denominator = i128::from(NATIVE_UNIT_SECONDS);
    let mut destinations: HashMap<String, Arc<str>> = HashMap::new();
    let mut rates = Vec::with_capacity(rows.len());
    for row in rows {
        let destination = destinations
            .entry(row.destination)
            .or_insert_with_key(|name| Arc::from(name.as_str()))
            .clone();
        let price_per_second_numerator =
            mantissa_at(row.rate, price_decimals).expect("price_decimals is the largest scale");
        let slot = |offset_seconds: u32, increment_seconds: u32| Slot {
            offset_seconds,
            price: row.rate,
            unit_seconds: NATIVE_UNIT_SECONDS,
            increment_seconds,
            price_per_second_numerator,
        };
        let slots = if row.min_seconds == 0 {
            vec![slot(0, row.increment)]
        } else {
            vec![
                slot(0, row.min_seconds),
                slot(row.min_seconds, row.increment),
            ]
        };
        rates.push(Rate {
            prefix: row.prefix.into_boxed_str(),
            destination,
            rate_per_minute: row.rate,
            connect_fee: row.connect_fee,
            connect_fee_mantissa: mantissa_at(row.connect_fee, price_decimals)
                .expect("price_decimals is the largest scale"),
            slots,
            no_charge_seconds: row.no_charge_seconds,
            max_cost_mantissa: row.max_cost.map(|max_cost| {
                mantissa_at(max_cost, settings.rounding.decimals).expect("checked when parsed")
            }),
            effective_from_micros: row.effective_from_micros,
            effective_until_micros: row.effective_until_micros,
            band: row.band,
            direction: row.direction,
            jurisdiction: None,
            source_line: row.line,
        });
    }
    Ok(Deck::assemble(DeckParts {
        name: settings.name,
        version: super::deck::deck_version([
            text.csv,
            text.manifest.unwrap_or_default().as_bytes(),
        ]),
        currency: settings.currency,
        time_zone: settings.time_zone,
        rounding: settings.rounding,
        bands: settings.bands,
        rates,
        price_decimals,
        price_denominator,
    }))
}
