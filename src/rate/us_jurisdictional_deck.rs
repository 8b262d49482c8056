//! US jurisdictional decks: one row per NPA-NXX with an interstate, an intrastate and an
//! indeterminate rate per minute, e.g.
//! `code,duration,increment,interrate,intrarate,ijrate,effective_date` and `1212555,6,6,0.0040,
//! 0.0065,0.0090,8/16/2022`. Each row becomes three rates of the prefix `1` + NPA-NXX, one per
//! [`Jurisdiction`]; which one prices a call is decided by the NPA-NXX states the deck is given
//! (see [`super::jurisdiction`]).
//!
//! Pure, like the native parser: text in, a [`Deck`] or every problem out (file, line, column),
//! a deck with any bad row refused whole. The optional TOML manifest beside the CSV is the native
//! one (name, currency, time zone, rounding); bands are refused, since rows have no band.

use super::deck::{Deck, DeckParts, Rate, Slot};
use super::deck_problems::{DeckError, DeckProblem, deck_csv_reader, header_row, readable_row};
use super::jurisdiction::{Jurisdiction, npanxx_text, parse_npanxx};
use super::native_deck::{
    DeckSettings, NativeDeckText, parse_price, parse_seconds, validate_manifest,
};
use crate::ingest::timestamp::local_midnight_micros;
use crate::money::mantissa_at;
use chrono::NaiveDate;
use chrono_tz::Tz;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::Arc;

/// Rates are per minute.
const UNIT_SECONDS: u32 = 60;

/// The destination shown on rated calls when the deck has no destination column.
const DEFAULT_DESTINATION: &str = "United States";

/// A column's role and the header names that give it (the first is the name used in problems).
struct Role {
    aliases: &'static [&'static str],
    required: bool,
}

const CODE: usize = 0;
const DURATION: usize = 1;
const INCREMENT: usize = 2;
const INTER_RATE: usize = 3;
const INTRA_RATE: usize = 4;
const IJ_RATE: usize = 5;
const EFFECTIVE_DATE: usize = 6;
const DESTINATION: usize = 7;

const ROLES: [Role; 8] = [
    Role {
        aliases: &["code", "npanxx", "npa_nxx", "prefix"],
        required: true,
    },
    Role {
        aliases: &[
            "duration",
            "min_seconds",
            "first_increment",
            "initial_increment",
        ],
        required: true,
    },
    Role {
        aliases: &["increment", "next_increment", "additional_increment"],
        required: true,
    },
    Role {
        aliases: &["interrate", "interstate", "inter_rate", "interstate_rate"],
        required: true,
    },
    Role {
        aliases: &["intrarate", "intrastate", "intra_rate", "intrastate_rate"],
        required: true,
    },
    Role {
        aliases: &["ijrate", "indeterminate", "ij_rate", "indeterminate_rate"],
        required: true,
    },
    Role {
        aliases: &["effective_date", "effective_from", "effective"],
        required: true,
    },
    Role {
        aliases: &["destination", "description"],
        required: false,
    },
];

/// Columns US decks often carry for information. Read past, never used: the jurisdiction comes from
/// the NPA-NXX states file, not from the deck.
pub const IGNORED_COLUMNS: [&str; 5] = ["lata", "state", "ocn", "rate_center", "city"];

/// One validated row.
struct ParsedRow {
    line: u64,
    /// `1` + NPA-NXX.
    prefix: String,
    destination: String,
    min_seconds: u32,
    increment: u32,
    /// Per minute, in the order of [`Jurisdiction::ALL`].
    rates: [Decimal; 3],
    effective_from_micros: i64,
}

/// Parses and validates a US jurisdictional deck. Any problem refuses the deck whole, with every
/// problem listed. The deck has no NPA-NXX states yet: see [`Deck::with_npanxx_states`].
pub fn parse_us_jurisdictional_deck(text: &NativeDeckText<'_>) -> Result<Deck, DeckError> {
    let mut problems = Vec::new();
    let settings = validate_manifest(text, &mut problems);
    if !settings.bands.is_empty() {
        problems.push(DeckProblem::file(
            text.manifest_file_name.unwrap_or("manifest"),
            "bands: a US jurisdictional deck has no band column, so bands would never apply"
                .to_string(),
        ));
    }
    let rows = parse_rows(text, &settings, &mut problems);
    if !problems.is_empty() {
        return Err(DeckError {
            deck: settings.name,
            problems,
        });
    }
    Ok(build_deck(text, settings, rows))
}

/// Where each role's column is in this file's header, and the name it has there.
struct Columns {
    n_columns: usize,
    index: [Option<usize>; 8],
    name: [String; 8],
}

impl Columns {
    fn from_header(
        file: &str,
        header: &csv::ByteRecord,
        problems: &mut Vec<DeckProblem>,
    ) -> Option<Columns> {
        let names = crate::text::normalized_header_names(header);
        let mut complete = true;
        let mut index = [None; 8];
        let mut name: [String; 8] = Default::default();
        for (role_index, role) in ROLES.iter().enumerate() {
            let found: Vec<usize> = (0..names.len())
                .filter(|&column| role.aliases.contains(&names[column].as_str()))
                .collect();
            match found[..] {
                [] => {
                    name[role_index] = role.aliases[0].to_string();
                    if role.required {
                        problems.push(DeckProblem::row(
                            file,
                            1,
                            Some(role.aliases[0]),
                            format!(
                                "required column is missing (any of {})",
                                role.aliases.join(", ")
                            ),
                        ));
                        complete = false;
                    }
                }
                [column] => {
                    index[role_index] = Some(column);
                    name[role_index] = names[column].clone();
                }
                _ => {
                    let given: Vec<&str> =
                        found.iter().map(|&column| names[column].as_str()).collect();
                    problems.push(DeckProblem::row(
                        file,
                        1,
                        Some(role.aliases[0]),
                        format!("given twice, as {}", given.join(" and ")),
                    ));
                    complete = false;
                }
            }
        }
        for column_name in &names {
            let known = ROLES
                .iter()
                .any(|role| role.aliases.contains(&column_name.as_str()))
                || IGNORED_COLUMNS.contains(&column_name.as_str());
            if !known {
                let known_names: Vec<&str> = ROLES
                    .iter()
                    .map(|role| role.aliases[0])
                    .chain(IGNORED_COLUMNS)
                    .collect();
                problems.push(DeckProblem::row(
                    file,
                    1,
                    Some(column_name),
                    format!("unknown column (known: {})", known_names.join(", ")),
                ));
                complete = false;
            }
        }
        complete.then_some(Columns {
            n_columns: names.len(),
            index,
            name,
        })
    }

    fn parse_row(
        &self,
        file: &str,
        line: u64,
        record: &csv::ByteRecord,
        time_zone: Tz,
        problems: &mut Vec<DeckProblem>,
    ) -> Option<ParsedRow> {
        let field = |role: usize| -> &str {
            self.index[role].map_or("", |column| {
                std::str::from_utf8(&record[column])
                    .map(str::trim)
                    .unwrap_or("\u{fffd}")
            })
        };
        let name = |role: usize| self.name[role].as_str();
        let mut problem = |column: &str, reason: String| {
            problems.push(DeckProblem::row(file, line, Some(column), reason));
        };
        let code = match parse_npanxx(field(CODE)) {
            Ok(code) => Some(code),
            Err(reason) => {
                problem(name(CODE), reason);
                None
            }
        };
        let min_seconds = parse_seconds(name(DURATION), field(DURATION), true, &mut problem);
        let increment = parse_seconds(name(INCREMENT), field(INCREMENT), false, &mut problem);
        let mut rate = |role: usize| match field(role) {
            "" => {
                problem(
                    name(role),
                    "is empty: every row needs its interstate, intrastate and indeterminate rates"
                        .to_string(),
                );
                None
            }
            text => parse_price(name(role), text, &mut problem),
        };
        let rates = [rate(INTER_RATE), rate(INTRA_RATE), rate(IJ_RATE)];
        let effective_from = match parse_deck_date(field(EFFECTIVE_DATE), time_zone) {
            Ok(instant) => Some(instant.unwrap_or(i64::MIN)),
            Err(reason) => {
                problem(name(EFFECTIVE_DATE), reason);
                None
            }
        };
        let destination = match field(DESTINATION) {
            "" => DEFAULT_DESTINATION,
            text => text,
        };
        let [inter, intra, ij] = rates;
        Some(ParsedRow {
            line,
            prefix: npanxx_text(code?),
            destination: destination.to_string(),
            min_seconds: min_seconds?,
            increment: increment?,
            rates: [inter?, intra?, ij?],
            effective_from_micros: effective_from?,
        })
    }
}

/// An effective date: `M/D/YYYY` (US order, one or two digits for month and day) or `YYYY-MM-DD`,
/// both midnight in the deck's time zone, or an RFC 3339 time. Empty means in force since always.
pub fn parse_deck_date(text: &str, time_zone: Tz) -> Result<Option<i64>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    if text.contains('/') {
        let parts: Vec<&str> = text.split('/').collect();
        let digits = |part: &str, lengths: std::ops::RangeInclusive<usize>| {
            lengths.contains(&part.len()) && part.bytes().all(|byte| byte.is_ascii_digit())
        };
        if let [month, day, year] = parts[..]
            && digits(month, 1..=2)
            && digits(day, 1..=2)
        {
            if digits(year, 2..=2) {
                return Err(format!(
                    "{text:?} has a two-digit year: write the year in full (M/D/YYYY)"
                ));
            }
            if digits(year, 4..=4) {
                let parse = |part: &str| part.parse::<u32>().expect("checked digits");
                let year = i32::try_from(parse(year)).expect("four digits");
                return match NaiveDate::from_ymd_opt(year, parse(month), parse(day)) {
                    Some(date) => Ok(Some(local_midnight_micros(date, time_zone))),
                    None => Err(format!("{text:?} is not a day of the calendar (M/D/YYYY)")),
                };
            }
        }
    } else if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(Some(local_midnight_micros(date, time_zone)));
    } else if let Ok(instant) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(Some(instant.timestamp_micros()));
    }
    Err(format!(
        "{text:?} is not a date M/D/YYYY or YYYY-MM-DD, or an RFC 3339 time"
    ))
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
    let Some(columns) = Columns::from_header(file, &header, problems) else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    let mut first_line_of_key: HashMap<(String, i64), u64> = HashMap::new();
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
        let row = columns.parse_row(file, line, &record, settings.time_zone, problems);
        let Some(row) = row.filter(|_| problems.len() == n_problems_before) else {
            continue;
        };
        let key = (row.prefix.clone(), row.effective_from_micros);
        if let Some(&first_line) = first_line_of_key.get(&key) {
            problems.push(DeckProblem::row(
                file,
                line,
                Some(&columns.name[CODE]),
                format!(
                    "duplicate of line {first_line}: same NPA-NXX {} and effective date",
                    row.prefix
                ),
            ));
            continue;
        }
        first_line_of_key.insert(key, line);
        rows.push(row);
    }
    if rows.is_empty() && problems.is_empty() {
        problems.push(DeckProblem::file(file, "the deck has no rates".to_string()));
    }
    rows
}

fn build_deck(text: &NativeDeckText<'_>, settings: DeckSettings, rows: Vec<ParsedRow>) -> Deck {
    let price_decimals = rows
        .iter()
        .flat_map(|row| row.rates.iter().map(Decimal::scale))
        .max()
        .unwrap_or(0);
    let mut destinations: HashMap<String, Arc<str>> = HashMap::new();
    let mut rates = Vec::with_capacity(rows.len() * 3);
    for row in rows {
        let destination = destinations
            .entry(row.destination)
            .or_insert_with_key(|name| Arc::from(name.as_str()))
            .clone();
        for (jurisdiction, price) in Jurisdiction::ALL.into_iter().zip(row.rates) {
            let price_per_second_numerator =
                mantissa_at(price, price_decimals).expect("price_decimals is the largest scale");
            let slot = |offset_seconds: u32, increment_seconds: u32| Slot {
                offset_seconds,
                price,
                unit_seconds: UNIT_SECONDS,
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
                prefix: row.prefix.clone().into_boxed_str(),
                destination: Arc::clone(&destination),
                rate_per_minute: price,
                connect_fee: Decimal::ZERO,
                connect_fee_mantissa: 0,
                slots,
                no_charge_seconds: 0,
                max_cost_mantissa: None,
                effective_from_micros: row.effective_from_micros,
                effective_until_micros: i64::MAX,
                band: None,
                direction: None,
                jurisdiction: Some(jurisdiction),
                source_line: row.line,
            });
        }
    }
    Deck::assemble(DeckParts {
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
        price_denominator: i128::from(UNIT_SECONDS),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::Direction;
    use crate::ingest::timestamp::parse_timestamp_micros;

    fn parse(csv: &str, manifest: Option<&str>) -> Result<Deck, DeckError> {
        parse_us_jurisdictional_deck(&NativeDeckText {
            csv_file_name: "us.csv",
            csv: csv.as_bytes(),
            manifest_file_name: manifest.map(|_| "us.toml"),
            manifest,
            default_name: "us",
        })
    }

    fn problems_of(csv: &str, manifest: Option<&str>) -> Vec<String> {
        parse(csv, manifest)
            .err()
            .expect("the deck is refused")
            .problems
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn micros(text: &str) -> i64 {
        parse_timestamp_micros(text, chrono_tz::UTC).unwrap()
    }

    const HEADER: &str = "code,duration,increment,interrate,intrarate,ijrate,effective_date";

    #[test]
    fn dates() {
        let new_york = chrono_tz::America::New_York;
        let check = |text: &str, expected: Result<Option<&str>, &str>| {
            let got = parse_deck_date(text, new_york);
            match expected {
                Ok(instant) => assert_eq!(got, Ok(instant.map(micros)), "{text:?}"),
                Err(reason) => assert_eq!(got, Err(reason.to_string()), "{text:?}"),
            }
        };
        // US order, midnight in the deck's zone (EDT in August, EST in January).
        check("8/16/2022", Ok(Some("2022-08-16T04:00:00Z")));
        check("08/06/2022", Ok(Some("2022-08-06T04:00:00Z")));
        check("1/2/2023", Ok(Some("2023-01-02T05:00:00Z")));
        check("2022-08-16", Ok(Some("2022-08-16T04:00:00Z")));
        check("2022-08-16T12:00:00Z", Ok(Some("2022-08-16T12:00:00Z")));
        check("", Ok(None));
        check(
            "8/16/22",
            Err("\"8/16/22\" has a two-digit year: write the year in full (M/D/YYYY)"),
        );
        check(
            "2/30/2023",
            Err("\"2/30/2023\" is not a day of the calendar (M/D/YYYY)"),
        );
        check(
            "13/1/2023",
            Err("\"13/1/2023\" is not a day of the calendar (M/D/YYYY)"),
        );
        for bad in ["2022/08/16", "16.08.2022", "8/16", "yesterday", "8-16-2022"] {
            check(
                bad,
                Err(&format!(
                    "{bad:?} is not a date M/D/YYYY or YYYY-MM-DD, or an RFC 3339 time"
                )),
            );
        }
    }

    #[test]
    fn each_row_is_three_rates_and_the_call_jurisdiction_picks_one() {
        let deck = parse(
            &format!(
                "{HEADER}\n\
                 1212555,6,6,0.0040,0.0065,0.0090,8/16/2022\n\
                 1212555,6,6,0.0050,0.0075,0.0100,2026-03-01\n\
                 415555,60,6,0.0100,0.0200,0.0300,\n"
            ),
            None,
        )
        .unwrap();
        assert_eq!(deck.rates.len(), 9);
        assert!(deck.has_jurisdictions());
        assert_eq!(deck.price_decimals, 4);
        let rate_at = |number: &str, time: &str, jurisdiction: Jurisdiction| {
            deck.find_rate_in_jurisdiction(
                number,
                micros(time),
                Direction::Outbound,
                jurisdiction.code(),
            )
            .map(|rate_id| {
                let rate = deck.rate(rate_id);
                assert_eq!(deck.pricing(rate_id).jurisdiction(), Some(jurisdiction));
                (rate.rate_per_minute, rate.source_line)
            })
        };
        let check = |number: &str,
                     time: &str,
                     jurisdiction: Jurisdiction,
                     expected: Option<(&str, u64)>| {
            assert_eq!(
                rate_at(number, time, jurisdiction),
                expected.map(|(rate, line)| (Decimal::from_str_exact(rate).unwrap(), line)),
                "{number} at {time} ({jurisdiction})"
            );
        };
        use Jurisdiction::*;
        check(
            "12125550100",
            "2026-02-28T23:59:59Z",
            Interstate,
            Some(("0.0040", 2)),
        );
        check(
            "12125550100",
            "2026-02-28T23:59:59Z",
            Intrastate,
            Some(("0.0065", 2)),
        );
        check(
            "12125550100",
            "2026-02-28T23:59:59Z",
            Indeterminate,
            Some(("0.0090", 2)),
        );
        check(
            "12125550100",
            "2026-03-01T00:00:00Z",
            Interstate,
            Some(("0.0050", 3)),
        );
        check(
            "12125550100",
            "2026-03-01T00:00:00Z",
            Indeterminate,
            Some(("0.0100", 3)),
        );
        // Before the first effective date there is no rate.
        check("12125550100", "2022-08-15T23:59:59Z", Interstate, None);
        // A 6-digit code is read as 1 + the code; an empty date is in force since always.
        check(
            "14155550100",
            "2000-01-01T00:00:00Z",
            Intrastate,
            Some(("0.0200", 4)),
        );
        check(
            "14155550100",
            "2000-01-01T00:00:00Z",
            Interstate,
            Some(("0.0100", 4)),
        );
        // No row for the NPA-NXX.
        check("13105550100", "2026-03-01T00:00:00Z", Interstate, None);
        // Without a caller's jurisdiction, the indeterminate rate.
        assert_eq!(
            deck.find_rate(
                "12125550100",
                micros("2026-03-01T00:00:00Z"),
                Direction::Outbound
            )
            .map(|rate_id| deck.rate(rate_id).rate_per_minute),
            Some(Decimal::new(100, 4))
        );
        // 60/6 becomes two slots; rates are per minute.
        assert_eq!(deck.rates[6].slots.len(), 2);
        assert_eq!(deck.rates[6].slots[0].increment_seconds, 60);
        assert_eq!(deck.rates[6].slots[1].increment_seconds, 6);
        assert_eq!(deck.destinations.len(), 1);
        assert_eq!(&*deck.destinations[0], "United States");
    }

    #[test]
    fn rate_cdr_prices_a_call_at_its_jurisdictions_rate() {
        use crate::cdr::Cdr;
        use crate::rate::jurisdiction::parse_npanxx_states;
        use crate::rate::pricing::rate_cdr;
        use std::borrow::Cow;
        let states = parse_npanxx_states(
            "states.csv",
            b"1212555,NY\n1518555,NY\n1415555,CA\n1416555,ON\n",
        )
        .unwrap();
        let deck = parse(
            &format!("{HEADER}\n1212555,60,6,0.0060,0.0120,0.0300,\n"),
            None,
        )
        .unwrap();
        let version_without_states = deck.version.clone();
        let deck = deck.with_npanxx_states(Arc::new(states));
        assert_ne!(deck.version, version_without_states);
        // 90 s at 60/6 is 90 billable seconds: 1.5 minutes.
        let check = |caller: &str, expected_cost: i128, expected: Jurisdiction| {
            let cdr = Cdr {
                source: "default",
                cdr_id: "c-1",
                account: "a-1",
                direction: Direction::Outbound,
                caller: Cow::Borrowed(caller),
                callee: Cow::Borrowed("12125550199"),
                start_time_micros: 0,
                answer_time_micros: Some(0),
                end_time_micros: Some(90_000_000),
                billsec: 90,
                disposition: "ANSWERED",
            };
            let charge = rate_cdr(&deck, &cdr).unwrap();
            let rate_id = charge.rate_id.unwrap();
            assert_eq!(
                (charge.cost_mantissa, deck.pricing(rate_id).jurisdiction()),
                (expected_cost, Some(expected)),
                "{caller:?}"
            );
        };
        check("15185550100", 180, Jurisdiction::Intrastate);
        check("14155550100", 90, Jurisdiction::Interstate);
        check("14165550100", 450, Jurisdiction::Indeterminate);
        check("", 450, Jurisdiction::Indeterminate);
    }

    #[test]
    fn the_jurisdiction_fits_in_the_packed_pricing() {
        // A u8 in what was padding: the hot pricing array of native decks does not grow.
        assert_eq!(std::mem::size_of::<crate::rate::deck::RatePricing>(), 104);
    }

    #[test]
    fn header_variants_and_manifest() {
        let deck = parse(
            "NPANXX,LATA,State,First_Increment,Next_Increment,Interstate,Intrastate,Indeterminate,Effective_From,Description\n\
             1212555,132,NY,6,6,0.004,0.0065,0.009,2022-08-16,New York NY\n",
            Some("name = \"carrier-x\"\ncurrency = \"USD\"\ntime_zone = \"America/New_York\"\n"),
        )
        .unwrap();
        assert_eq!(deck.name, "carrier-x");
        assert_eq!(&*deck.rates[0].destination, "New York NY");
        assert_eq!(
            deck.rates[0].effective_from_micros,
            micros("2022-08-16T04:00:00Z")
        );
    }

    #[test]
    fn bad_decks_name_every_problem() {
        let check = |csv: &str, manifest: Option<&str>, expected: &[&str]| {
            assert_eq!(problems_of(csv, manifest), expected, "{csv}");
        };
        check(
            &format!(
                "{HEADER}\n\
                 1212555,6,6,0.0040,0.0065,0.0090,8/16/2022\n\
                 12125,6,6,0.0040,0.0065,0.0090,8/16/2022\n\
                 2212555,6,6,0.0040,0.0065,0.0090,8/16/2022\n\
                 1112555,6,6,0.0040,0.0065,0.0090,8/16/2022\n\
                 1212556,6,6,0.0040,,0.0090,8/16/2022\n\
                 1212557,6,6,abc,0.0065,-0.01,8/16/2022\n\
                 1212558,6,0,0.0040,0.0065,0.0090,8/16/22\n\
                 212555,6,6,0.0041,0.0066,0.0091,2022-08-16\n\
                 1212559,6,6,0.0040\n\
                 1212-559,x,6,0.0040,0.0065,0.0090,16.08.2022\n"
            ),
            None,
            &[
                "us.csv:3: column code: \"12125\" has 5 digits (an NPA-NXX code is 1 + 6 digits, \
                 e.g. 1212555, or the 6 digits alone)",
                "us.csv:4: column code: \"2212555\" does not start with 1 (an NPA-NXX code is 1 \
                 + 6 digits, e.g. 1212555)",
                "us.csv:5: column code: \"1112555\": NPA 112 starts with 0 or 1",
                "us.csv:6: column intrarate: is empty: every row needs its interstate, \
                 intrastate and indeterminate rates",
                "us.csv:7: column interrate: \"abc\" is not a decimal number",
                "us.csv:7: column ijrate: -0.01 is negative",
                "us.csv:8: column increment: must be at least 1 second",
                "us.csv:8: column effective_date: \"8/16/22\" has a two-digit year: write the \
                 year in full (M/D/YYYY)",
                "us.csv:9: column code: duplicate of line 2: same NPA-NXX 1212555 and effective \
                 date",
                "us.csv:10: has 4 columns, the header has 7",
                "us.csv:11: column code: \"1212-559\" is not digits only (an NPA-NXX code is 1 + \
                 6 digits, e.g. 1212555)",
                "us.csv:11: column duration: \"x\" is not a whole number of seconds (0 to 86400)",
                "us.csv:11: column effective_date: \"16.08.2022\" is not a date M/D/YYYY or \
                 YYYY-MM-DD, or an RFC 3339 time",
            ],
        );
        check(
            "code,npanxx,interrate,intrarate,rate,effective_date\n1212555,1212555,1,1,1,\n",
            None,
            &[
                "us.csv:1: column code: given twice, as code and npanxx",
                "us.csv:1: column duration: required column is missing (any of duration, \
                 min_seconds, first_increment, initial_increment)",
                "us.csv:1: column increment: required column is missing (any of increment, \
                 next_increment, additional_increment)",
                "us.csv:1: column ijrate: required column is missing (any of ijrate, \
                 indeterminate, ij_rate, indeterminate_rate)",
                "us.csv:1: column rate: unknown column (known: code, duration, increment, \
                 interrate, intrarate, ijrate, effective_date, destination, lata, state, ocn, \
                 rate_center, city)",
            ],
        );
        check(
            &format!("{HEADER}\n"),
            None,
            &["us.csv: the deck has no rates"],
        );
        check("", None, &["us.csv: the deck is empty"]);
        check(
            &format!("{HEADER}\n1212555,6,6,0.0040,0.0065,0.0090,8/16/2022\n"),
            Some(
                "time_zone = \"Mars/Olympus\"\n[[bands]]\nname = \"peak\"\nwindows = [\"Mon-Fri 08:00-19:00\"]\n",
            ),
            &[
                "us.toml: time_zone \"Mars/Olympus\" is not an IANA time zone",
                "us.toml: bands: a US jurisdictional deck has no band column, so bands would \
                 never apply",
            ],
        );
    }
}
