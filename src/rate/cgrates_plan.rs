//! CGRateS tariff plans: the six CSV files of a plan folder, parsed and checked whole into the
//! immutable [`CgratesPlan`] that `cgrates_pricing` reads. Pure: the caller reads the files.
//!
//! What is read, file by file (lines starting with `#` and blank lines are skipped, so files with
//! or without CGRateS's header line both work):
//! - `Destinations.csv` (optional): `Id,Prefix` (a leading `+` is dropped, as numbers are
//!   normalised).
//! - `Timings.csv` (optional): `Id,Years,Months,MonthDays,WeekDays,Time`; `*any` or `;`-lists;
//!   week days 1–7 from Monday (0 is Sunday too); `*asap` reads as 00:00:00.
//! - `Rates.csv`: `Id,ConnectFee,Rate,RateUnit,RateIncrement,GroupIntervalStart`; durations as Go
//!   writes them (`60s`, `1m`, `1m30s`) or bare seconds; whole seconds only.
//! - `DestinationRates.csv`: `Id,DestinationId,RatesTag,RoundingMethod,RoundingDecimals,MaxCost,
//!   MaxCostStrategy`.
//! - `RatingPlans.csv`: `Id,DestinationRatesId,TimingTag,Weight`.
//! - `RatingProfiles.csv`: `Tenant,Category,Subject,ActivationTime,RatingPlanId,
//!   RatesFallbackSubject`, or the older layout with a leading `Direction` (`*out`, `*in`) and a
//!   trailing `CdrStatQueueIds`.

use super::deck_problems::{DeckError, DeckProblem};
use crate::cdr::Direction;
use crate::money::RoundingMode;
use chrono::{DateTime, Datelike, NaiveDate};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

/// Decimals of prices, fees and caps; beyond this a plan is refused (as native decks are).
pub const PLAN_PRICE_DECIMALS_MAX: u32 = super::native_deck::PRICE_DECIMALS_MAX;
/// Costs are kept to at most this many decimals. CGRateS plans sometimes ask for more (20);
/// those are rounded to this instead, which changes a cost only where its exact value has more
/// decimals than this.
pub const PLAN_COST_DECIMALS_MAX: u32 = super::native_deck::COST_DECIMALS_MAX;
/// The longest rate unit, increment or group start that prices calls: 2^24 units, enough for a
/// data rate per mebibyte written as a bare number (1048576), small enough that every exact sum
/// stays far inside i128.
const PLAN_DURATION_SECONDS_MAX: u64 = 1 << 24;
/// The least common multiple of every rate unit must stay below this, so that exact sums of
/// per-second prices fit comfortably in i128.
const PLAN_UNIT_DENOMINATOR_MAX: i128 = 1_000_000_000;

/// Index of a destination in [`CgratesPlan::destination_names`]; [`ANY_DESTINATION`] is `*any`.
pub type DestinationIndex = u32;
pub const ANY_DESTINATION: DestinationIndex = DestinationIndex::MAX;

/// The text of a plan's files, as read from its folder. `None` for a file that is not there.
pub struct TariffPlanText<'a> {
    pub plan_name: &'a str,
    pub destinations: Option<PlanFile<'a>>,
    pub timings: Option<PlanFile<'a>>,
    pub rates: Option<PlanFile<'a>>,
    pub destination_rates: Option<PlanFile<'a>>,
    pub rating_plans: Option<PlanFile<'a>>,
    pub rating_profiles: Option<PlanFile<'a>>,
}

pub struct PlanFile<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
}

/// A checked CGRateS tariff plan.
pub struct CgratesPlan {
    pub name: String,
    /// A digest of the plan's files, so a rated call records exactly which plan priced it.
    pub version: String,
    pub destination_names: Vec<Arc<str>>,
    /// Prefix → the destinations that list it, in file order.
    pub prefixes: HashMap<Box<str>, Vec<DestinationIndex>>,
    pub longest_prefix_digits: usize,
    pub rating_plans: Vec<RatingPlan>,
    /// (tenant, category, subject) → activations, oldest first.
    pub profiles: HashMap<ProfileKey, Vec<Activation>>,
    /// Decimals of every price mantissa in the plan.
    pub price_decimals: u32,
    /// The most decimals any destination rate rounds a cost to (at most [`PLAN_COST_DECIMALS_MAX`]).
    pub cost_decimals: u32,
    /// The least common multiple of every rate unit, in seconds.
    pub unit_denominator: i128,
    /// Things a user should know that did not refuse the plan (e.g. rounding decimals lowered).
    pub notes: Vec<String>,
    pub n_rates: usize,
    pub n_timings: usize,
}

impl CgratesPlan {
    /// What `tollgate deck check` says about a plan that loaded.
    pub fn summary(&self) -> String {
        let n_activations: usize = self.profiles.values().map(Vec::len).sum();
        let mut activation_times: Vec<i64> = self
            .profiles
            .values()
            .flatten()
            .map(|activation| activation.time_micros)
            .collect();
        activation_times.sort_unstable();
        let time_text = |micros: Option<&i64>| {
            micros
                .and_then(|&micros| chrono::DateTime::from_timestamp_micros(micros))
                .map_or_else(|| "-".to_string(), |time| time.to_rfc3339())
        };
        let mut tenants: Vec<String> = self
            .profiles
            .keys()
            .map(|key| format!("{}:{}", key.tenant, key.category))
            .collect();
        tenants.sort();
        tenants.dedup();
        format!(
            "  plan {}@{}\n  {} rating profiles ({} activations, {} to {}) for tenant:category {}\n  \
             {} rating plans, {} destinations, {} prefixes, {} rates, {} timings\n  \
             prices to {} decimals, costs to {} decimals\n",
            self.name,
            self.version,
            self.profiles.len(),
            n_activations,
            time_text(activation_times.first()),
            time_text(activation_times.last()),
            tenants.join(", "),
            self.rating_plans.len(),
            self.destination_names.len(),
            self.prefixes.len(),
            self.n_rates,
            self.n_timings,
            self.price_decimals,
            self.cost_decimals,
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProfileKey {
    pub tenant: String,
    pub category: String,
    pub subject: String,
}

#[derive(Clone, Debug)]
pub struct Activation {
    pub time_micros: i64,
    pub rating_plan: u32,
    /// Subjects tried in order when the plan has no rate for the destination.
    pub fallback_subjects: Vec<String>,
    /// `None` for both directions (the current layout); the older layout names one.
    pub direction: Option<Direction>,
}

pub struct RatingPlan {
    pub name: String,
    /// Destination → its rate intervals (one per RatingPlans row), in file order.
    pub intervals_by_destination: HashMap<DestinationIndex, Vec<RateInterval>>,
}

#[derive(Clone, Debug)]
pub struct RateInterval {
    pub timing: Timing,
    pub weight: Decimal,
    pub rating: Arc<IntervalRating>,
}

/// What a DestinationRates row and its Rates tag say about pricing.
#[derive(Debug)]
pub struct IntervalRating {
    pub destination_rate_name: String,
    /// The first Rates row's connect fee, as a mantissa at the plan's `price_decimals`.
    pub connect_fee_mantissa: i128,
    /// Sorted by `group_interval_start_seconds`, the first at 0; empty for a rate that cannot
    /// price calls (its units are not whole seconds: a data or SMS rate).
    pub slots: Vec<RateSlot>,
    pub rounding_mode: RoundingMode,
    pub rounding_decimals: u32,
    /// A `*free` maximum cost (mantissa at the plan's `price_decimals`): the call costs at most
    /// this. A `*disconnect` maximum does not change the price, so it is not kept.
    pub free_max_cost_mantissa: Option<i128>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSlot {
    pub group_interval_start_seconds: u64,
    /// Price per `unit_seconds`, as a mantissa at the plan's `price_decimals`.
    pub price_mantissa: i128,
    pub unit_seconds: u64,
    pub increment_seconds: u64,
}

/// When a rate interval applies: date filters (empty = any) and a start time of day. CGRateS
/// timings have no end: an interval runs until another one takes over, or the day ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    pub years: Vec<i32>,
    pub months: Vec<u32>,
    pub month_days: Vec<u32>,
    /// 1 = Monday … 7 = Sunday.
    pub week_days: Vec<u32>,
    pub start_second_of_day: u32,
}

impl Timing {
    /// True when the date passes every filter.
    pub fn matches_date(&self, date: NaiveDate) -> bool {
        (self.years.is_empty() || self.years.contains(&date.year()))
            && (self.months.is_empty() || self.months.contains(&date.month()))
            && (self.month_days.is_empty() || self.month_days.contains(&date.day()))
            && (self.week_days.is_empty()
                || self
                    .week_days
                    .contains(&date.weekday().number_from_monday()))
    }

    /// True when the interval has started by this local date and second of the day.
    pub fn is_active_at(&self, date: NaiveDate, second_of_day: u32) -> bool {
        self.matches_date(date) && self.start_second_of_day <= second_of_day
    }
}

/// Parses and checks a whole plan. Every problem is listed; nothing of a refused plan is used.
pub fn parse_cgrates_plan(text: &TariffPlanText<'_>) -> Result<CgratesPlan, DeckError> {
    let mut problems = Vec::new();
    if let Some(rates) = &text.rates
        && rates.bytes.starts_with(b"#Tenant,ID,FilterIDs")
    {
        return Err(DeckError {
            deck: text.plan_name.to_string(),
            problems: vec![DeckProblem::file(
                rates.name,
                "this is a CGRateS 1.0 rate profile (RateS), not a classic tariff plan's \
                 Rates.csv: not supported"
                    .to_string(),
            )],
        });
    }
    let mut reader = PlanReader {
        problems: &mut problems,
    };
    // A plan that rates only `*any` needs no destinations, and one whose intervals are all
    // `*any` no timings.
    let destination_rows = match &text.destinations {
        Some(_) => reader.rows(&text.destinations, "Destinations.csv", 2),
        None => Vec::new(),
    };
    let timing_rows = match &text.timings {
        Some(_) => reader.rows(&text.timings, "Timings.csv", 6),
        None => Vec::new(),
    };
    let rate_rows = reader.rows(&text.rates, "Rates.csv", 6);
    let destination_rate_rows = reader.rows(&text.destination_rates, "DestinationRates.csv", 5);
    let rating_plan_rows = reader.rows(&text.rating_plans, "RatingPlans.csv", 4);
    let profile_rows = reader.rows(&text.rating_profiles, "RatingProfiles.csv", 5);

    let mut notes = Vec::new();
    let (destination_names, destination_ids, prefixes) =
        read_destinations(&destination_rows, &mut problems, &mut notes);
    let timings = read_timings(&timing_rows, &mut problems);
    let rates = read_rates(&rate_rows, &mut problems);
    let destination_rates = read_destination_rates(&destination_rate_rows, &mut problems);

    // Mantissas need one number of decimals for the whole plan, known only once every price
    // has been read.
    let price_decimals = rates
        .values()
        .flat_map(|rows| rows.iter())
        .flat_map(|row| [row.connect_fee.scale(), row.price.scale()])
        .chain(
            destination_rates
                .values()
                .filter_map(|row| row.max_cost.map(|(max_cost, _)| max_cost.scale())),
        )
        .max()
        .unwrap_or(0);
    let mut unit_denominator: i128 = 1;
    for rows in rates.values() {
        for slot in rows.iter().filter_map(|row| row.slot.as_ref().ok()) {
            unit_denominator = lcm(unit_denominator, i128::from(slot.unit_seconds));
        }
    }
    let mut tags: Vec<&String> = rates.keys().collect();
    tags.sort();
    for tag in tags {
        if let Some((row, Err(reason))) = rates[tag]
            .iter()
            .map(|row| (row, &row.slot))
            .find(|(_, slot)| slot.is_err())
        {
            notes.push(format!(
                "Rates.csv:{}: rate {tag} cannot price calls: {reason}; a call it would price is rejected",
                row.line
            ));
        }
    }
    if unit_denominator > PLAN_UNIT_DENOMINATOR_MAX {
        problems.push(DeckProblem::file(
            "Rates.csv",
            format!(
                "the rate units have no common multiple below {PLAN_UNIT_DENOMINATOR_MAX} seconds"
            ),
        ));
    }

    let mut ratings: HashMap<String, Arc<IntervalRating>> = HashMap::new();
    for (name, row) in &destination_rates {
        if row.destination != "*any" && !destination_ids.contains_key(&row.destination) {
            problems.push(DeckProblem::row(
                "DestinationRates.csv",
                row.line,
                Some("DestinationId"),
                format!("no destination {} in Destinations.csv", row.destination),
            ));
        }
        let Some(rate_rows) = rates.get(&row.rates_tag) else {
            problems.push(DeckProblem::row(
                "DestinationRates.csv",
                row.line,
                Some("RatesTag"),
                format!("no rate {} in Rates.csv", row.rates_tag),
            ));
            continue;
        };
        let mut rounding_decimals = row.rounding_decimals;
        if rounding_decimals > PLAN_COST_DECIMALS_MAX {
            notes.push(format!(
                "DestinationRates.csv:{}: {} rounds to {rounding_decimals} decimals; tollgate keeps {PLAN_COST_DECIMALS_MAX}",
                row.line, row.id
            ));
            rounding_decimals = PLAN_COST_DECIMALS_MAX;
        }
        let mantissa = |value: Decimal| {
            crate::money::mantissa_at(value, price_decimals).expect("price_decimals is the most")
        };
        // A rate with any row that cannot price a call has no slots: pricing refuses it.
        let mut slots: Vec<RateSlot> = rate_rows
            .iter()
            .map(|rate| {
                rate.slot.as_ref().ok().map(|slot| RateSlot {
                    group_interval_start_seconds: slot.group_interval_start_seconds,
                    price_mantissa: mantissa(rate.price),
                    unit_seconds: slot.unit_seconds,
                    increment_seconds: slot.increment_seconds,
                })
            })
            .collect::<Option<Vec<RateSlot>>>()
            .unwrap_or_default();
        slots.sort_by_key(|slot| slot.group_interval_start_seconds);
        let free_max_cost_mantissa = match row.max_cost {
            Some((max_cost, MaxCostStrategy::Free)) if max_cost > Decimal::ZERO => {
                Some(mantissa(max_cost))
            }
            _ => None,
        };
        ratings.insert(
            name.clone(),
            Arc::new(IntervalRating {
                destination_rate_name: row.id.clone(),
                connect_fee_mantissa: mantissa(rate_rows[0].connect_fee),
                slots,
                rounding_mode: row.rounding_mode,
                rounding_decimals,
                free_max_cost_mantissa,
            }),
        );
    }

    let (rating_plans, plan_ids) = read_rating_plans(
        &rating_plan_rows,
        &destination_rates,
        &ratings,
        &timings,
        &destination_ids,
        &mut problems,
    );
    let profiles = read_profiles(&profile_rows, &plan_ids, &mut problems);
    if profiles.is_empty() && text.rating_profiles.is_some() {
        problems.push(DeckProblem::file(
            "RatingProfiles.csv",
            "no rating profile: nothing could be rated".to_string(),
        ));
    }
    if !problems.is_empty() {
        // Tables were read into hash maps; report in file and line order all the same.
        problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        return Err(DeckError {
            deck: text.plan_name.to_string(),
            problems,
        });
    }
    let cost_decimals = ratings
        .values()
        .map(|rating| rating.rounding_decimals)
        .max()
        .unwrap_or(4);
    let longest_prefix_digits = prefixes
        .keys()
        .map(|prefix| prefix.len())
        .max()
        .unwrap_or(0);
    Ok(CgratesPlan {
        name: text.plan_name.to_string(),
        version: plan_version(text),
        destination_names,
        prefixes,
        longest_prefix_digits,
        rating_plans,
        profiles,
        price_decimals,
        cost_decimals,
        unit_denominator,
        notes,
        n_rates: rates.len(),
        n_timings: timings.len(),
    })
}

/// One CSV row of a plan file: its line and trimmed fields.
struct PlanRow {
    line: u64,
    fields: Vec<String>,
}

impl PlanRow {
    fn field(&self, index: usize) -> &str {
        self.fields.get(index).map_or("", String::as_str)
    }
}

struct PlanReader<'p> {
    problems: &'p mut Vec<DeckProblem>,
}

impl PlanReader<'_> {
    /// The rows of a file, skipping comments and blank lines; a missing required file or a row
    /// with too few fields is a problem.
    fn rows(
        &mut self,
        file: &Option<PlanFile<'_>>,
        file_name: &str,
        n_fields_min: usize,
    ) -> Vec<PlanRow> {
        let Some(file) = file else {
            self.problems.push(DeckProblem::file(
                file_name,
                "missing from the tariff plan folder".to_string(),
            ));
            return Vec::new();
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .comment(Some(b'#'))
            .trim(csv::Trim::All)
            .from_reader(file.bytes);
        let mut rows = Vec::new();
        for record in reader.records() {
            match record {
                Ok(record) => {
                    let line = record.position().map_or(0, |position| position.line());
                    let fields: Vec<String> = record.iter().map(str::to_string).collect();
                    if fields.iter().all(String::is_empty) {
                        continue;
                    }
                    if fields.len() < n_fields_min {
                        self.problems.push(DeckProblem::row(
                            file_name,
                            line,
                            None,
                            format!(
                                "{} fields where at least {n_fields_min} are needed",
                                fields.len()
                            ),
                        ));
                        continue;
                    }
                    rows.push(PlanRow { line, fields });
                }
                Err(error) => {
                    let line = error.position().map_or(0, |position| position.line());
                    self.problems.push(DeckProblem::row(
                        file_name,
                        line,
                        None,
                        format!("not readable as CSV text: {error}"),
                    ));
                }
            }
        }
        rows
    }
}

type DestinationTables = (
    Vec<Arc<str>>,
    HashMap<String, DestinationIndex>,
    HashMap<Box<str>, Vec<DestinationIndex>>,
);

fn read_destinations(
    rows: &[PlanRow],
    problems: &mut Vec<DeckProblem>,
    notes: &mut Vec<String>,
) -> DestinationTables {
    let mut names = Vec::new();
    let mut ids: HashMap<String, DestinationIndex> = HashMap::new();
    let mut prefixes: HashMap<Box<str>, Vec<DestinationIndex>> = HashMap::new();
    for row in rows {
        let name = row.field(0);
        let prefix = row.field(1).trim_start_matches('+');
        if name.is_empty() {
            problems.push(missing("Destinations.csv", row.line, "Id"));
            continue;
        }
        if prefix.is_empty() {
            problems.push(missing("Destinations.csv", row.line, "Prefix"));
            continue;
        }
        let index = *ids.entry(name.to_string()).or_insert_with(|| {
            names.push(Arc::from(name));
            (names.len() - 1) as DestinationIndex
        });
        // CGRateS matches any text (`voicemail`); a normalised callee is digits, so such a
        // prefix can never match one. It is kept out of the index, and said.
        if !prefix.bytes().all(|byte| byte.is_ascii_digit()) {
            notes.push(format!(
                "Destinations.csv:{}: prefix {:?} of {name} is not digits: no call number matches it",
                row.line,
                row.field(1)
            ));
            continue;
        }
        if prefix.len() > super::prefix_index::PREFIX_DIGITS_MAX {
            problems.push(DeckProblem::row(
                "Destinations.csv",
                row.line,
                Some("Prefix"),
                format!(
                    "{prefix} is longer than {} digits",
                    super::prefix_index::PREFIX_DIGITS_MAX
                ),
            ));
            continue;
        }
        let listed = prefixes.entry(Box::from(prefix)).or_default();
        if !listed.contains(&index) {
            listed.push(index);
        }
    }
    (names, ids, prefixes)
}

fn read_timings(rows: &[PlanRow], problems: &mut Vec<DeckProblem>) -> HashMap<String, Timing> {
    let mut timings = HashMap::new();
    for row in rows {
        let file = "Timings.csv";
        let name = row.field(0);
        let mut ok = true;
        let mut list = |column: usize, column_name: &str, low: i64, high: i64| -> Vec<i64> {
            match parse_list(row.field(column), low, high) {
                Ok(values) => values,
                Err(reason) => {
                    problems.push(DeckProblem::row(file, row.line, Some(column_name), reason));
                    ok = false;
                    Vec::new()
                }
            }
        };
        let years = list(1, "Years", 1970, 9999);
        let months = list(2, "Months", 1, 12);
        let month_days = list(3, "MonthDays", 1, 31);
        let week_days = list(4, "WeekDays", 0, 7);
        let start = match parse_time_of_day(row.field(5)) {
            Ok(start) => start,
            Err(reason) => {
                problems.push(DeckProblem::row(file, row.line, Some("Time"), reason));
                ok = false;
                0
            }
        };
        if !ok {
            continue;
        }
        let timing = Timing {
            years: years.into_iter().map(|year| year as i32).collect(),
            months: months.into_iter().map(|month| month as u32).collect(),
            month_days: month_days.into_iter().map(|day| day as u32).collect(),
            // CGRateS counts Sunday as 0 (Go's numbering) or 7; tollgate as 7.
            week_days: week_days
                .into_iter()
                .map(|day| if day == 0 { 7 } else { day as u32 })
                .collect(),
            start_second_of_day: start,
        };
        if timings.insert(name.to_string(), timing).is_some() {
            problems.push(DeckProblem::row(
                file,
                row.line,
                Some("Id"),
                format!("timing {name} is defined twice"),
            ));
        }
    }
    timings
}

struct RateRow {
    line: u64,
    connect_fee: Decimal,
    price: Decimal,
    group_interval_start_nanoseconds: u128,
    /// The row in whole seconds, or why it cannot price a call (a data or SMS rate, whose units
    /// are bytes or messages written as nanoseconds).
    slot: Result<RateSlotSeconds, String>,
}

#[derive(Clone, Copy)]
struct RateSlotSeconds {
    unit_seconds: u64,
    increment_seconds: u64,
    group_interval_start_seconds: u64,
}

/// Rates tag → its rows in file order.
fn read_rates(rows: &[PlanRow], problems: &mut Vec<DeckProblem>) -> HashMap<String, Vec<RateRow>> {
    let file = "Rates.csv";
    let mut rates: HashMap<String, Vec<RateRow>> = HashMap::new();
    for row in rows {
        let mut ok = true;
        let mut price = |column: usize, column_name: &str| -> Decimal {
            // CGRateS's own plans leave a zero fee empty.
            if row.field(column).is_empty() {
                return Decimal::ZERO;
            }
            match parse_price(row.field(column)) {
                Ok(value) => value,
                Err(reason) => {
                    problems.push(DeckProblem::row(file, row.line, Some(column_name), reason));
                    ok = false;
                    Decimal::ZERO
                }
            }
        };
        let connect_fee = price(1, "ConnectFee");
        let rate = price(2, "Rate");
        let mut duration = |column: usize, column_name: &str| -> u128 {
            match parse_duration_nanoseconds(row.field(column)) {
                Ok(nanoseconds) => nanoseconds,
                Err(reason) => {
                    problems.push(DeckProblem::row(file, row.line, Some(column_name), reason));
                    ok = false;
                    0
                }
            }
        };
        let unit = duration(3, "RateUnit");
        let increment = duration(4, "RateIncrement");
        let group_interval_start = duration(5, "GroupIntervalStart");
        if !ok {
            continue;
        }
        let tag_rows = rates.entry(row.field(0).to_string()).or_default();
        if tag_rows
            .iter()
            .any(|earlier| earlier.group_interval_start_nanoseconds == group_interval_start)
        {
            problems.push(DeckProblem::row(
                file,
                row.line,
                Some("GroupIntervalStart"),
                format!(
                    "rate {} already has a row starting at {}",
                    row.field(0),
                    row.field(5)
                ),
            ));
            continue;
        }
        tag_rows.push(RateRow {
            line: row.line,
            connect_fee,
            price: rate,
            group_interval_start_nanoseconds: group_interval_start,
            slot: slot_in_seconds(unit, increment, group_interval_start, rate.is_zero()),
        });
    }
    for (tag, tag_rows) in &rates {
        if !tag_rows
            .iter()
            .any(|row| row.group_interval_start_nanoseconds == 0)
        {
            problems.push(DeckProblem::row(
                file,
                tag_rows[0].line,
                Some("GroupIntervalStart"),
                format!("rate {tag} has no row starting at 0s: the start of a call has no price"),
            ));
        }
    }
    rates
}

/// A Rates row in whole seconds, as pricing a call needs; or why it cannot price one.
fn slot_in_seconds(
    unit: u128,
    increment: u128,
    group_interval_start: u128,
    free: bool,
) -> Result<RateSlotSeconds, String> {
    const NANOSECONDS_PER_SECOND: u128 = 1_000_000_000;
    let seconds = |nanoseconds: u128, name: &str| -> Result<u64, String> {
        if !nanoseconds.is_multiple_of(NANOSECONDS_PER_SECOND) {
            return Err(format!("its {name} is not a whole number of seconds"));
        }
        let seconds = nanoseconds / NANOSECONDS_PER_SECOND;
        if seconds > u128::from(PLAN_DURATION_SECONDS_MAX) {
            return Err(format!(
                "its {name} is more than {PLAN_DURATION_SECONDS_MAX} seconds"
            ));
        }
        Ok(seconds as u64)
    };
    let increment_seconds = seconds(increment, "increment")?;
    if increment_seconds == 0 {
        return Err("its increment is 0".to_string());
    }
    // A rate of 0 per 0 (CGRateS's way of writing a fee-only rate) costs nothing per second.
    let unit_seconds = if unit == 0 && free {
        1
    } else {
        seconds(unit, "unit")?
    };
    if unit_seconds == 0 {
        return Err("its unit is 0".to_string());
    }
    Ok(RateSlotSeconds {
        unit_seconds,
        increment_seconds,
        group_interval_start_seconds: seconds(group_interval_start, "group interval start")?,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MaxCostStrategy {
    Free,
    Disconnect,
}

struct DestinationRateRow {
    line: u64,
    id: String,
    destination: String,
    rates_tag: String,
    rounding_mode: RoundingMode,
    rounding_decimals: u32,
    max_cost: Option<(Decimal, MaxCostStrategy)>,
}

/// Several rows may share an Id (one per destination): the key is (Id, DestinationId).
fn read_destination_rates(
    rows: &[PlanRow],
    problems: &mut Vec<DeckProblem>,
) -> HashMap<String, DestinationRateRow> {
    let file = "DestinationRates.csv";
    let mut destination_rates = HashMap::new();
    for row in rows {
        let mut ok = true;
        let rounding_mode = match row.field(3) {
            "*up" => RoundingMode::Up,
            "*middle" => RoundingMode::HalfUp,
            "*down" => RoundingMode::Down,
            other => {
                problems.push(DeckProblem::row(
                    file,
                    row.line,
                    Some("RoundingMethod"),
                    format!("{other:?} is not *up, *middle or *down"),
                ));
                ok = false;
                RoundingMode::HalfUp
            }
        };
        let rounding_decimals = match row.field(4).parse::<u32>() {
            Ok(decimals) if decimals <= 28 => decimals,
            _ => {
                problems.push(DeckProblem::row(
                    file,
                    row.line,
                    Some("RoundingDecimals"),
                    format!("{:?} is not a number of decimals", row.field(4)),
                ));
                ok = false;
                0
            }
        };
        let max_cost = match (row.field(5), row.field(6)) {
            ("", _) => None,
            (amount, strategy) => match parse_price(amount) {
                Ok(amount) if amount.is_zero() => None,
                Ok(amount) => match strategy {
                    "*free" => Some((amount, MaxCostStrategy::Free)),
                    "*disconnect" => Some((amount, MaxCostStrategy::Disconnect)),
                    // CGRateS applies no cap without a strategy.
                    "" => None,
                    other => {
                        problems.push(DeckProblem::row(
                            file,
                            row.line,
                            Some("MaxCostStrategy"),
                            format!("{other:?} is not *free or *disconnect"),
                        ));
                        ok = false;
                        None
                    }
                },
                Err(reason) => {
                    problems.push(DeckProblem::row(file, row.line, Some("MaxCost"), reason));
                    ok = false;
                    None
                }
            },
        };
        if !ok {
            continue;
        }
        let key = destination_rate_key(row.field(0), row.field(1));
        let previous = destination_rates.insert(
            key,
            DestinationRateRow {
                line: row.line,
                id: row.field(0).to_string(),
                destination: row.field(1).to_string(),
                rates_tag: row.field(2).to_string(),
                rounding_mode,
                rounding_decimals,
                max_cost,
            },
        );
        if previous.is_some() {
            problems.push(DeckProblem::row(
                file,
                row.line,
                Some("DestinationId"),
                format!(
                    "destination rate {} lists destination {} twice",
                    row.field(0),
                    row.field(1)
                ),
            ));
        }
    }
    destination_rates
}

fn destination_rate_key(id: &str, destination: &str) -> String {
    format!("{id}\u{1f}{destination}")
}

fn read_rating_plans(
    rows: &[PlanRow],
    destination_rates: &HashMap<String, DestinationRateRow>,
    ratings: &HashMap<String, Arc<IntervalRating>>,
    timings: &HashMap<String, Timing>,
    destination_ids: &HashMap<String, DestinationIndex>,
    problems: &mut Vec<DeckProblem>,
) -> (Vec<RatingPlan>, HashMap<String, u32>) {
    let file = "RatingPlans.csv";
    // A DestinationRates Id names one row per destination.
    let mut members_by_id: HashMap<&str, Vec<(&String, &DestinationRateRow)>> = HashMap::new();
    for (key, member) in destination_rates {
        members_by_id
            .entry(member.id.as_str())
            .or_default()
            .push((key, member));
    }
    for members in members_by_id.values_mut() {
        members.sort_by_key(|(_, member)| member.line);
    }
    let mut plans: Vec<RatingPlan> = Vec::new();
    let mut plan_ids: HashMap<String, u32> = HashMap::new();
    for row in rows {
        let plan_name = row.field(0);
        let destination_rate = row.field(1);
        // Named before its row is checked, so one bad row does not make every profile that
        // uses the plan a problem too.
        let plan_index = *plan_ids.entry(plan_name.to_string()).or_insert_with(|| {
            plans.push(RatingPlan {
                name: plan_name.to_string(),
                intervals_by_destination: HashMap::new(),
            });
            (plans.len() - 1) as u32
        });
        let timing = match row.field(2) {
            "*any" | "" => Some(Timing::default()),
            tag => timings.get(tag).cloned(),
        };
        let Some(timing) = timing else {
            problems.push(DeckProblem::row(
                file,
                row.line,
                Some("TimingTag"),
                format!("no timing {} in Timings.csv", row.field(2)),
            ));
            continue;
        };
        let weight = match Decimal::from_str(row.field(3)) {
            Ok(weight) => weight,
            Err(_) if row.field(3).is_empty() => Decimal::ZERO,
            Err(_) => {
                problems.push(DeckProblem::row(
                    file,
                    row.line,
                    Some("Weight"),
                    format!("{:?} is not a number", row.field(3)),
                ));
                continue;
            }
        };
        let Some(members) = members_by_id.get(destination_rate) else {
            problems.push(DeckProblem::row(
                file,
                row.line,
                Some("DestinationRatesId"),
                format!("no destination rate {destination_rate} in DestinationRates.csv"),
            ));
            continue;
        };
        for &(key, member) in members {
            let Some(rating) = ratings.get(key) else {
                continue; // Its own problem was reported with DestinationRates.csv.
            };
            let destination = if member.destination == "*any" {
                ANY_DESTINATION
            } else if let Some(&index) = destination_ids.get(&member.destination) {
                index
            } else {
                continue;
            };
            plans[plan_index as usize]
                .intervals_by_destination
                .entry(destination)
                .or_default()
                .push(RateInterval {
                    timing: timing.clone(),
                    weight,
                    rating: Arc::clone(rating),
                });
        }
    }
    (plans, plan_ids)
}

fn read_profiles(
    rows: &[PlanRow],
    plan_ids: &HashMap<String, u32>,
    problems: &mut Vec<DeckProblem>,
) -> HashMap<ProfileKey, Vec<Activation>> {
    let file = "RatingProfiles.csv";
    let mut profiles: HashMap<ProfileKey, Vec<Activation>> = HashMap::new();
    for row in rows {
        // The older layout starts with the direction and ends with CdrStatQueueIds.
        let (direction, fields) = match row.field(0) {
            "*out" => (Some(Direction::Outbound), &row.fields[1..]),
            "*in" => (Some(Direction::Inbound), &row.fields[1..]),
            _ => (None, &row.fields[..]),
        };
        if fields.len() < 5 {
            problems.push(DeckProblem::row(
                file,
                row.line,
                None,
                "too few fields for a rating profile".to_string(),
            ));
            continue;
        }
        let activation = match DateTime::parse_from_rfc3339(&fields[3]) {
            Ok(time) => time.timestamp_micros(),
            Err(_) => {
                problems.push(DeckProblem::row(
                    file,
                    row.line,
                    Some("ActivationTime"),
                    format!("{:?} is not an RFC 3339 time", fields[3]),
                ));
                continue;
            }
        };
        let Some(&rating_plan) = plan_ids.get(&fields[4]) else {
            problems.push(DeckProblem::row(
                file,
                row.line,
                Some("RatingPlanId"),
                format!("no rating plan {} in RatingPlans.csv", fields[4]),
            ));
            continue;
        };
        let fallback_subjects = fields
            .get(5)
            .map(|text| {
                text.split(';')
                    .map(str::trim)
                    .filter(|subject| !subject.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let key = ProfileKey {
            tenant: fields[0].clone(),
            category: fields[1].clone(),
            subject: fields[2].clone(),
        };
        let activations = profiles.entry(key).or_default();
        if activations
            .iter()
            .any(|earlier| earlier.time_micros == activation && earlier.direction == direction)
        {
            problems.push(DeckProblem::row(
                file,
                row.line,
                Some("ActivationTime"),
                format!(
                    "{}:{}:{} is activated twice at {}",
                    fields[0], fields[1], fields[2], fields[3]
                ),
            ));
            continue;
        }
        activations.push(Activation {
            time_micros: activation,
            rating_plan,
            fallback_subjects,
            direction,
        });
    }
    for activations in profiles.values_mut() {
        activations.sort_by_key(|activation| activation.time_micros);
    }
    profiles
}

fn missing(file: &str, line: u64, column: &str) -> DeckProblem {
    DeckProblem::row(file, line, Some(column), "is empty".to_string())
}

/// `*any` (or empty) is the empty list; otherwise `;`-separated integers in `low..=high`.
fn parse_list(text: &str, low: i64, high: i64) -> Result<Vec<i64>, String> {
    if text.is_empty() || text == "*any" {
        return Ok(Vec::new());
    }
    text.split(';')
        .map(|item| {
            item.trim()
                .parse::<i64>()
                .ok()
                .filter(|value| (low..=high).contains(value))
                .ok_or_else(|| format!("{item:?} is not a number from {low} to {high}"))
        })
        .collect()
}

/// `HH:MM:SS` as seconds of the day; `*asap` (an action timing) reads as midnight.
fn parse_time_of_day(text: &str) -> Result<u32, String> {
    if text == "*asap" || text.is_empty() {
        return Ok(0);
    }
    let parts: Vec<&str> = text.split(':').collect();
    let numbers: Option<Vec<u32>> = parts.iter().map(|part| part.parse().ok()).collect();
    match numbers.as_deref() {
        Some([hours, minutes, seconds]) if *hours < 24 && *minutes < 60 && *seconds < 60 => {
            Ok(hours * 3600 + minutes * 60 + seconds)
        }
        _ => Err(format!("{text:?} is not a time of day HH:MM:SS")),
    }
}

/// A non-negative price with at most [`PLAN_PRICE_DECIMALS_MAX`] decimals, below the price cap.
fn parse_price(text: &str) -> Result<Decimal, String> {
    let value = Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| format!("{text:?} is not a number"))?
        .normalize();
    if value.is_sign_negative() && !value.is_zero() {
        return Err(format!("{text} is negative"));
    }
    if value > Decimal::from(crate::limits::PRICE_MAX) {
        return Err(format!("{text} is more than {}", crate::limits::PRICE_MAX));
    }
    if value.scale() > PLAN_PRICE_DECIMALS_MAX {
        return Err(format!(
            "{text} has more than {PLAN_PRICE_DECIMALS_MAX} decimals"
        ));
    }
    Ok(value.abs())
}

/// A duration as a tariff plan writes one: Go's syntax (`60s`, `1m`, `1m30s`, `1.5m`, `500ms`),
/// or a bare number of seconds. A bare number is what SMS and data rates use for messages and
/// bytes; read as seconds, a CDR that gives its message or byte count as billsec is priced as
/// CGRateS prices that usage. In nanoseconds.
pub fn parse_duration_nanoseconds(text: &str) -> Result<u128, String> {
    let not_a_duration = || format!("{text:?} is not a duration such as 60s or 1m");
    if text.is_empty() {
        return Err(not_a_duration());
    }
    if let Ok(seconds) = Decimal::from_str(text) {
        return seconds
            .checked_mul(Decimal::from(1_000_000_000))
            .filter(|nanoseconds| nanoseconds.fract().is_zero())
            .and_then(|nanoseconds| u128::try_from(nanoseconds).ok())
            .ok_or_else(not_a_duration);
    }
    let mut nanoseconds: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_end = rest
            .find(|character: char| !(character.is_ascii_digit() || character == '.'))
            .ok_or_else(not_a_duration)?;
        let number = Decimal::from_str(&rest[..number_end]).map_err(|_| not_a_duration())?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|character: char| character.is_ascii_digit() || character == '.')
            .unwrap_or(rest.len());
        let nanoseconds_per_unit: i64 = match &rest[..unit_end] {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(not_a_duration()),
        };
        rest = &rest[unit_end..];
        let part = number
            .checked_mul(Decimal::from(nanoseconds_per_unit))
            .filter(|part| part.fract().is_zero())
            .and_then(|part| u128::try_from(part).ok())
            .ok_or_else(not_a_duration)?;
        nanoseconds = nanoseconds.checked_add(part).ok_or_else(not_a_duration)?;
    }
    Ok(nanoseconds)
}

fn lcm(a: i128, b: i128) -> i128 {
    fn gcd(mut a: i128, mut b: i128) -> i128 {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    }
    if a == 0 || b == 0 {
        return a.max(b).max(1);
    }
    // Saturates rather than overflows: the caller refuses anything this large anyway.
    (a / gcd(a, b)).saturating_mul(b)
}

fn plan_version(text: &TariffPlanText<'_>) -> String {
    let files = [
        &text.destinations,
        &text.timings,
        &text.rates,
        &text.destination_rates,
        &text.rating_plans,
        &text.rating_profiles,
    ];
    super::deck::deck_version(
        files
            .into_iter()
            .flatten()
            .flat_map(|file| [file.name.as_bytes(), &[0], file.bytes, &[0]]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let check = |text: &str, expected: Result<u128, ()>| {
            assert_eq!(
                parse_duration_nanoseconds(text).map_err(|_| ()),
                expected,
                "{text}"
            );
        };
        const SECOND: u128 = 1_000_000_000;
        check("60s", Ok(60 * SECOND));
        check("1m", Ok(60 * SECOND));
        check("1m30s", Ok(90 * SECOND));
        check("1.5m", Ok(90 * SECOND));
        check("0s", Ok(0));
        check("500ms", Ok(SECOND / 2));
        // A bare number is seconds (or messages, or bytes).
        check("0", Ok(0));
        check("60", Ok(60 * SECOND));
        check("1048576", Ok(1_048_576 * SECOND));
        check("1.5", Ok(SECOND * 3 / 2));
        check("", Err(()));
        check("s", Err(()));
        check("10x", Err(()));
        check("-1s", Err(()));
        check("-1", Err(()));
    }

    #[test]
    fn rows_that_cannot_price_calls() {
        const SECOND: u128 = 1_000_000_000;
        let check = |unit, increment, start, free, expected: Result<(u64, u64, u64), &str>| {
            let slot = slot_in_seconds(unit, increment, start, free).map(|slot| {
                (
                    slot.unit_seconds,
                    slot.increment_seconds,
                    slot.group_interval_start_seconds,
                )
            });
            assert_eq!(slot, expected.map_err(str::to_string));
        };
        check(60 * SECOND, SECOND, 60 * SECOND, false, Ok((60, 1, 60)));
        check(0, SECOND, 0, true, Ok((1, 1, 0)));
        check(0, SECOND, 0, false, Err("its unit is 0"));
        check(SECOND, 0, 0, false, Err("its increment is 0"));
        check(
            1_048_576,
            10_240,
            0,
            false,
            Err("its increment is not a whole number of seconds"),
        );
        check(
            (1 << 25) * SECOND,
            SECOND,
            0,
            false,
            Err("its unit is more than 16777216 seconds"),
        );
    }

    #[test]
    fn timings_read_go_week_days_and_any() {
        assert_eq!(parse_list("*any", 0, 7), Ok(vec![]));
        assert_eq!(parse_list("1;2;3", 0, 7), Ok(vec![1, 2, 3]));
        assert!(parse_list("8", 0, 7).is_err());
        assert_eq!(parse_time_of_day("18:00:00"), Ok(64_800));
        assert_eq!(parse_time_of_day("*asap"), Ok(0));
        assert!(parse_time_of_day("25:00:00").is_err());
    }
}
