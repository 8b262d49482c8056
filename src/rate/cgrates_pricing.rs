//! Pricing one call against a CGRateS tariff plan the way CGRateS does, so that a user moving
//! from CGRateS sees the same bills. Pure integer arithmetic; every rounding goes through
//! [`crate::money::round_scaled_ratio`].
//!
//! The steps, as CGRateS's rating logic describes them:
//! 1. The rating profile of (tenant, category, subject), else of (tenant, category, `*any`); its
//!    latest activation at or before the call's start, and any later one that starts during the
//!    call (the call is split there).
//! 2. In that rating plan, the longest prefix of the number whose destination has a rate interval
//!    active at the start (among destinations sharing that prefix, the highest weight); `*any` only
//!    when no prefix matches. A plan without a rate for the number hands over to the profile's
//!    fallback subjects, in order.
//! 3. The call is cut into spans at activation times, local midnight, the instants where another
//!    rate interval takes over (highest weight; at equal weight the one that started last) and the
//!    rate's group interval starts. Each span is rounded up to its increment; a span that grows
//!    past the next cut swallows the time it covers, as CGRateS's spans do.
//! 4. With CGRateS-compatible rounding, a span's cost is rounded half-up to the system decimals,
//!    divided into its increments, each increment rounded half-up again and multiplied back; with
//!    exact rounding the span's exact cost is kept. The first span's connect fee is added, a
//!    `*free` maximum cost caps the running total, and the total is rounded once with the method of
//!    the destination rate that rounds to the most decimals.

use super::cgrates_plan::{
    ANY_DESTINATION, Activation, CgratesPlan, DestinationIndex, IntervalRating, ProfileKey,
    RateInterval, RatingPlan,
};
use crate::cdr::{Direction, RejectReason};
use crate::money::{RoundingMode, pow10, round_scaled_ratio};
use chrono::{NaiveDate, NaiveTime, TimeZone, Timelike};
use chrono_tz::Tz;
use rust_decimal::Decimal;

/// How deep fallback subjects may chain (a falls back to b, which falls back to c, …): CGRateS
/// stops at the same depth, and it keeps a cycle in a plan from looping.
const FALLBACK_DEPTH_MAX: u32 = 3;

/// A call as CGRateS rates it: who (tenant, category, subject), where to, when and how long.
#[derive(Clone, Copy, Debug)]
pub struct CgratesCall<'a> {
    pub tenant: &'a str,
    pub category: &'a str,
    pub subject: &'a str,
    /// The normalised callee.
    pub destination: &'a str,
    pub direction: Direction,
    pub start_micros: i64,
    pub billsec: u32,
    pub answered: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgratesRounding {
    /// CGRateS's own: every increment rounded half-up to `increment_decimals` (its
    /// `rounding_decimals` setting, 5 by default) before the final rounding.
    Compatible { increment_decimals: u32 },
    /// Only the final rounding, on the exact cost.
    Exact,
}

/// The rate that priced a call's start, for showing on the rated call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchedRate {
    pub destination: DestinationIndex,
    /// Digits of the callee that matched (0 for `*any`).
    pub prefix_length: usize,
    /// The first slot's price per minute, at the plan's `price_decimals`, rounded half-up when a
    /// rate unit does not divide a minute.
    pub price_per_minute_mantissa: i128,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgratesCharge {
    pub billable_seconds: u32,
    /// At the plan's `cost_decimals`.
    pub cost_mantissa: i128,
    pub matched: Option<MatchedRate>,
}

/// Prices a call. An unanswered or 0-second call costs nothing (no connect fee) and is not an error
/// even when nothing rates its number; an answered call that nothing rates is rejected.
pub fn price_cgrates_call(
    plan: &CgratesPlan,
    call: &CgratesCall<'_>,
    rounding: CgratesRounding,
    time_zone: Tz,
) -> Result<CgratesCharge, RejectReason> {
    let end_micros = call.start_micros + i64::from(call.billsec) * 1_000_000;
    let periods = rating_periods(plan, call, end_micros, time_zone);
    if !call.answered || call.billsec == 0 {
        return Ok(CgratesCharge {
            billable_seconds: 0,
            cost_mantissa: 0,
            matched: periods
                .ok()
                .map(|periods| matched_rate(plan, &periods[0], time_zone)),
        });
    }
    let periods = periods?;
    let matched = matched_rate(plan, &periods[0], time_zone);
    let (billable_seconds, cost_mantissa) =
        price_periods(plan, call, &periods, rounding, time_zone)?;
    Ok(CgratesCharge {
        billable_seconds,
        cost_mantissa,
        matched: Some(matched),
    })
}

/// The rate intervals in force from `from_micros`: one rating plan's intervals for the matched
/// destination.
struct RatingPeriod<'p> {
    from_micros: i64,
    destination: DestinationIndex,
    prefix_length: usize,
    intervals: &'p [RateInterval],
}

fn rating_periods<'p>(
    plan: &'p CgratesPlan,
    call: &CgratesCall<'_>,
    end_micros: i64,
    time_zone: Tz,
) -> Result<Vec<RatingPeriod<'p>>, RejectReason> {
    let has_profile = |subject: &str| {
        profile(plan, call, subject).is_some_and(|mut activations| activations.next().is_some())
    };
    let subject = if has_profile(call.subject) {
        call.subject
    } else if has_profile("*any") {
        "*any"
    } else {
        return Err(RejectReason::NoRatingProfile);
    };
    resolve_periods(
        plan,
        call,
        subject,
        call.start_micros,
        end_micros,
        time_zone,
        0,
    )
}

fn profile<'p>(
    plan: &'p CgratesPlan,
    call: &CgratesCall<'_>,
    subject: &str,
) -> Option<impl Iterator<Item = &'p Activation>> {
    let key = ProfileKey {
        tenant: call.tenant.to_string(),
        category: call.category.to_string(),
        subject: subject.to_string(),
    };
    let direction = call.direction;
    plan.profiles.get(&key).map(move |activations| {
        activations.iter().filter(move |activation| {
            activation
                .direction
                .is_none_or(|activation_direction| activation_direction == direction)
        })
    })
}

fn resolve_periods<'p>(
    plan: &'p CgratesPlan,
    call: &CgratesCall<'_>,
    subject: &str,
    from_micros: i64,
    to_micros: i64,
    time_zone: Tz,
    depth: u32,
) -> Result<Vec<RatingPeriod<'p>>, RejectReason> {
    let activations: Vec<&Activation> = profile(plan, call, subject)
        .ok_or(RejectReason::NoRatingProfile)?
        .collect();
    let first = activations
        .iter()
        .rposition(|activation| activation.time_micros <= from_micros)
        .ok_or(RejectReason::NoRatingProfile)?;
    let mut periods = Vec::new();
    for (index, activation) in activations.iter().enumerate().skip(first) {
        let period_from = if index == first {
            from_micros
        } else if activation.time_micros < to_micros {
            activation.time_micros
        } else {
            break;
        };
        let period_to = activations
            .get(index + 1)
            .map_or(to_micros, |next| next.time_micros.min(to_micros));
        let rating_plan = &plan.rating_plans[activation.rating_plan as usize];
        if let Some(period) =
            match_destination(plan, rating_plan, call.destination, period_from, time_zone)
        {
            periods.push(period);
            continue;
        }
        if depth >= FALLBACK_DEPTH_MAX {
            return Err(RejectReason::NoRateForDestination);
        }
        let fallback = activation.fallback_subjects.iter().find_map(|fallback| {
            resolve_periods(
                plan,
                call,
                fallback,
                period_from,
                period_to,
                time_zone,
                depth + 1,
            )
            .ok()
        });
        periods.extend(fallback.ok_or(RejectReason::NoRateForDestination)?);
    }
    Ok(periods)
}

/// The longest prefix of `number` whose destination the rating plan rates with an interval active
/// at `instant_micros`; `*any` when no prefix does.
fn match_destination<'p>(
    plan: &'p CgratesPlan,
    rating_plan: &'p RatingPlan,
    number: &str,
    instant_micros: i64,
    time_zone: Tz,
) -> Option<RatingPeriod<'p>> {
    let (date, second_of_day) = local_date_and_second(time_zone, instant_micros);
    let longest = number.len().min(plan.longest_prefix_digits);
    for length in (1..=longest).rev() {
        let Some(destinations) = number
            .get(..length)
            .and_then(|prefix| plan.prefixes.get(prefix))
        else {
            continue;
        };
        let mut best: Option<(Decimal, DestinationIndex, &[RateInterval])> = None;
        for &destination in destinations {
            let Some(intervals) = rating_plan.intervals_by_destination.get(&destination) else {
                continue;
            };
            if !intervals
                .iter()
                .any(|interval| interval.timing.is_active_at(date, second_of_day))
            {
                continue;
            }
            let weight = intervals
                .iter()
                .map(|interval| interval.weight)
                .max()
                .unwrap_or_default();
            if best.is_none_or(|(best_weight, _, _)| weight > best_weight) {
                best = Some((weight, destination, intervals));
            }
        }
        if let Some((_, destination, intervals)) = best {
            return Some(RatingPeriod {
                from_micros: instant_micros,
                destination,
                prefix_length: length,
                intervals,
            });
        }
    }
    rating_plan
        .intervals_by_destination
        .get(&ANY_DESTINATION)
        .filter(|intervals| {
            intervals
                .iter()
                .any(|interval| interval.timing.is_active_at(date, second_of_day))
        })
        .map(|intervals| RatingPeriod {
            from_micros: instant_micros,
            destination: ANY_DESTINATION,
            prefix_length: 0,
            intervals,
        })
}

/// The interval in force at a local date and second: the highest weight among those started, and
/// at equal weight the one that started last (then the first listed).
fn select_interval(
    intervals: &[RateInterval],
    date: NaiveDate,
    second_of_day: u32,
) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (index, interval) in intervals.iter().enumerate() {
        if !interval.timing.is_active_at(date, second_of_day) {
            continue;
        }
        let better = match best {
            None => true,
            Some(best_index) => {
                let incumbent = &intervals[best_index];
                interval.weight > incumbent.weight
                    || (interval.weight == incumbent.weight
                        && interval.timing.start_second_of_day
                            > incumbent.timing.start_second_of_day)
            }
        };
        if better {
            best = Some(index);
        }
    }
    best
}

/// Walks the call span by span; returns the billable seconds and the cost at `cost_decimals`.
fn price_periods(
    plan: &CgratesPlan,
    call: &CgratesCall<'_>,
    periods: &[RatingPeriod<'_>],
    rounding: CgratesRounding,
    time_zone: Tz,
) -> Result<(u32, i128), RejectReason> {
    let price_decimals = plan.price_decimals;
    // The running cost is a numerator at `accumulator_decimals` over `denominator`.
    let (accumulator_decimals, denominator) = match rounding {
        CgratesRounding::Compatible { increment_decimals } => {
            (price_decimals.max(increment_decimals), 1)
        }
        CgratesRounding::Exact => (price_decimals, plan.unit_denominator),
    };
    let from_price = pow10(accumulator_decimals - price_decimals) * denominator;
    let billsec = u64::from(call.billsec);
    let mut numerator: i128 = 0;
    let mut final_rounding: Option<(u32, RoundingMode)> = None;
    let mut offset_seconds: u64 = 0;
    let mut current: Option<(usize, usize)> = None;
    while offset_seconds < billsec {
        let now_micros = call.start_micros + offset_seconds as i64 * 1_000_000;
        let period_index = periods
            .iter()
            .rposition(|period| period.from_micros <= now_micros)
            .unwrap_or(0);
        let period = &periods[period_index];
        let (date, second_of_day) = local_date_and_second(time_zone, now_micros);
        let interval_index = select_interval(period.intervals, date, second_of_day)
            .or_else(|| {
                // A plan that leaves an instant uncovered keeps the rate it had, rather than
                // giving the rest of the call away.
                current
                    .filter(|&(previous_period, _)| previous_period == period_index)
                    .map(|(_, interval)| interval)
            })
            .unwrap_or(0);
        let rating: &IntervalRating = &period.intervals[interval_index].rating;
        if rating.slots.is_empty() {
            return Err(RejectReason::RateNotForCalls);
        }
        let is_first_span = current.is_none();
        current = Some((period_index, interval_index));

        let slot_index = rating
            .slots
            .iter()
            .rposition(|slot| slot.group_interval_start_seconds <= offset_seconds)
            .unwrap_or(0);
        let slot = rating.slots[slot_index];
        let mut span_end = billsec;
        if let Some(next_slot) = rating.slots.get(slot_index + 1) {
            span_end = span_end.min(next_slot.group_interval_start_seconds);
        }
        if let Some(next_period) = periods.get(period_index + 1) {
            span_end = span_end.min(seconds_after(call.start_micros, next_period.from_micros));
        }
        let midnight_micros = next_local_midnight(time_zone, date);
        span_end = span_end.min(seconds_after(call.start_micros, midnight_micros));
        // On a day whose clocks go back, a start time can map to an instant already passed.
        if let Some(change_micros) = next_interval_change(
            period.intervals,
            interval_index,
            date,
            second_of_day,
            time_zone,
        )
        .filter(|&change_micros| change_micros > now_micros)
        {
            span_end = span_end.min(seconds_after(call.start_micros, change_micros));
        }
        let span_seconds = span_end.max(offset_seconds + 1) - offset_seconds;
        let n_increments = span_seconds.div_ceil(slot.increment_seconds);
        let billed_seconds = n_increments * slot.increment_seconds;

        if is_first_span {
            numerator += rating.connect_fee_mantissa * from_price;
        }
        numerator += match rounding {
            CgratesRounding::Exact => {
                i128::from(billed_seconds)
                    * slot.price_mantissa
                    * (denominator / i128::from(slot.unit_seconds))
            }
            CgratesRounding::Compatible { increment_decimals } => {
                let span_cost = round_scaled_ratio(
                    i128::from(billed_seconds) * slot.price_mantissa,
                    price_decimals,
                    i128::from(slot.unit_seconds),
                    increment_decimals,
                    RoundingMode::HalfUp,
                );
                let increment_cost = round_scaled_ratio(
                    span_cost,
                    increment_decimals,
                    i128::from(n_increments),
                    increment_decimals,
                    RoundingMode::HalfUp,
                );
                increment_cost
                    * i128::from(n_increments)
                    * pow10(accumulator_decimals - increment_decimals)
            }
        };
        if let Some(max_cost_mantissa) = rating.free_max_cost_mantissa {
            numerator = numerator.min(max_cost_mantissa * from_price);
        }
        if final_rounding.is_none_or(|(decimals, _)| rating.rounding_decimals > decimals) {
            final_rounding = Some((rating.rounding_decimals, rating.rounding_mode));
        }
        offset_seconds += billed_seconds;
    }
    let (decimals, mode) = final_rounding.unwrap_or((plan.cost_decimals, RoundingMode::HalfUp));
    let cost = round_scaled_ratio(numerator, accumulator_decimals, denominator, decimals, mode);
    let billable_seconds = u32::try_from(offset_seconds).unwrap_or(u32::MAX);
    Ok((
        billable_seconds,
        cost * pow10(plan.cost_decimals - decimals),
    ))
}

/// The instant in the same local day after which another interval is in force, if any.
fn next_interval_change(
    intervals: &[RateInterval],
    current: usize,
    date: NaiveDate,
    second_of_day: u32,
    time_zone: Tz,
) -> Option<i64> {
    let mut starts: Vec<u32> = intervals
        .iter()
        .map(|interval| interval.timing.start_second_of_day)
        .filter(|&start| start > second_of_day)
        .collect();
    starts.sort_unstable();
    starts.dedup();
    starts.into_iter().find_map(|start| {
        let changes = select_interval(intervals, date, start).is_some_and(|next| next != current);
        changes.then(|| local_instant_micros(time_zone, date, start))
    })
}

fn matched_rate(plan: &CgratesPlan, period: &RatingPeriod<'_>, time_zone: Tz) -> MatchedRate {
    let (date, second_of_day) = local_date_and_second(time_zone, period.from_micros);
    let interval = select_interval(period.intervals, date, second_of_day).unwrap_or(0);
    let rating = &period.intervals[interval].rating;
    MatchedRate {
        destination: period.destination,
        prefix_length: period.prefix_length,
        price_per_minute_mantissa: rating.slots.first().map_or(0, |slot| {
            round_scaled_ratio(
                slot.price_mantissa * 60,
                plan.price_decimals,
                i128::from(slot.unit_seconds),
                plan.price_decimals,
                RoundingMode::HalfUp,
            )
        }),
    }
}

/// Whole seconds from `start_micros` to `instant_micros`, rounded up (a cut inside a second belongs
/// to the next one); 0 for an instant before the start.
fn seconds_after(start_micros: i64, instant_micros: i64) -> u64 {
    let micros = (instant_micros - start_micros).max(0);
    (micros as u64).div_ceil(1_000_000)
}

fn local_date_and_second(time_zone: Tz, instant_micros: i64) -> (NaiveDate, u32) {
    let local = time_zone
        .timestamp_micros(instant_micros)
        .earliest()
        .map(|time| time.naive_local())
        .unwrap_or_default();
    (local.date(), local.time().num_seconds_from_midnight())
}

/// The UTC instant of a local date and second of the day; on a day whose clocks skip that time,
/// the first instant after the gap.
fn local_instant_micros(time_zone: Tz, date: NaiveDate, second_of_day: u32) -> i64 {
    let time = NaiveTime::from_num_seconds_from_midnight_opt(second_of_day, 0).unwrap_or_default();
    let mut local = date.and_time(time);
    for _ in 0..4 {
        if let Some(instant) = time_zone.from_local_datetime(&local).earliest() {
            return instant.timestamp_micros();
        }
        local += chrono::Duration::minutes(30);
    }
    local.and_utc().timestamp_micros()
}

fn next_local_midnight(time_zone: Tz, date: NaiveDate) -> i64 {
    let next_day = date.succ_opt().unwrap_or(date);
    local_instant_micros(time_zone, next_day, 0)
}

/// A CGRateS plan and how CDRs are read against it: the tenant and category of every CDR (its
/// account is the subject), the rounding, and the time zone of timings and midnight.
pub struct CgratesTariff {
    pub plan: CgratesPlan,
    pub tenant: String,
    pub category: String,
    pub rounding: CgratesRounding,
    pub time_zone: Tz,
}

impl CgratesTariff {
    /// Prices a decoded CDR: its account is the subject, its callee the destination, and it is
    /// priced from its answer time (else its start).
    pub fn price(&self, cdr: &crate::cdr::Cdr<'_>) -> Result<CgratesCharge, RejectReason> {
        price_cgrates_call(
            &self.plan,
            &CgratesCall {
                tenant: &self.tenant,
                category: &self.category,
                subject: cdr.account,
                destination: &cdr.callee,
                direction: cdr.direction,
                start_micros: cdr.pricing_time_micros(),
                billsec: cdr.billsec,
                answered: cdr.is_answered(),
            },
            self.rounding,
            self.time_zone,
        )
    }

    /// A deck with no rates that stands for the plan in rated output and totals: its name,
    /// version, currency, decimals and destination names (`*any` last, at index
    /// [`Self::destination_position`] of [`ANY_DESTINATION`]).
    pub fn display_deck(&self, currency: &str) -> super::deck::Deck {
        let mut deck = super::deck::Deck::assemble(super::deck::DeckParts {
            name: self.plan.name.clone(),
            version: self.plan.version.clone(),
            currency: currency.to_string(),
            time_zone: self.time_zone,
            rounding: crate::money::Rounding {
                decimals: self.plan.cost_decimals,
                mode: RoundingMode::HalfUp,
                scope: crate::money::RoundingScope::Call,
            },
            bands: super::bands::BandSchedule::new(Vec::new()),
            rates: Vec::new(),
            price_decimals: self.plan.price_decimals,
            price_denominator: 1,
        });
        deck.destinations = self.plan.destination_names.clone();
        deck.destinations.push(std::sync::Arc::from("*any"));
        deck
    }

    /// Where a destination sits in [`Self::display_deck`]'s destinations.
    pub fn destination_position(&self, destination: DestinationIndex) -> u32 {
        if destination == ANY_DESTINATION {
            self.plan.destination_names.len() as u32
        } else {
            destination
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::cgrates_plan::{PlanFile, TariffPlanText, parse_cgrates_plan};

    fn retail_plan() -> CgratesPlan {
        let file = |name, bytes| Some(PlanFile { name, bytes });
        parse_cgrates_plan(&TariffPlanText {
            plan_name: "retail",
            destinations: file(
                "Destinations.csv",
                include_bytes!("../../fixtures/cgrates/retail/Destinations.csv"),
            ),
            timings: file(
                "Timings.csv",
                include_bytes!("../../fixtures/cgrates/retail/Timings.csv"),
            ),
            rates: file(
                "Rates.csv",
                include_bytes!("../../fixtures/cgrates/retail/Rates.csv"),
            ),
            destination_rates: file(
                "DestinationRates.csv",
                include_bytes!("../../fixtures/cgrates/retail/DestinationRates.csv"),
            ),
            rating_plans: file(
                "RatingPlans.csv",
                include_bytes!("../../fixtures/cgrates/retail/RatingPlans.csv"),
            ),
            rating_profiles: file(
                "RatingProfiles.csv",
                include_bytes!("../../fixtures/cgrates/retail/RatingProfiles.csv"),
            ),
        })
        .unwrap()
    }

    /// Prices a call both ways; `expected` is (CGRateS-compatible cost, exact cost, billable
    /// seconds), or the reject reason.
    fn check(
        plan: &CgratesPlan,
        subject: &str,
        destination: &str,
        start: &str,
        billsec: u32,
        expected: Result<(&str, &str, u32), RejectReason>,
    ) {
        let call = CgratesCall {
            tenant: "cgrates.org",
            category: "call",
            subject,
            destination,
            direction: Direction::Outbound,
            start_micros: chrono::DateTime::parse_from_rfc3339(start)
                .unwrap()
                .timestamp_micros(),
            billsec,
            answered: true,
        };
        let price = |rounding| {
            price_cgrates_call(plan, &call, rounding, chrono_tz::UTC).map(|charge| {
                (
                    Decimal::from_i128_with_scale(charge.cost_mantissa, plan.cost_decimals)
                        .normalize()
                        .to_string(),
                    charge.billable_seconds,
                )
            })
        };
        let compatible = price(CgratesRounding::Compatible {
            increment_decimals: 5,
        });
        let exact = price(CgratesRounding::Exact);
        let context = format!("{subject} → {destination} at {start} for {billsec}s");
        match expected {
            Ok((compatible_cost, exact_cost, billable_seconds)) => {
                assert_eq!(
                    compatible,
                    Ok((compatible_cost.to_string(), billable_seconds)),
                    "compatible: {context}"
                );
                assert_eq!(
                    exact,
                    Ok((exact_cost.to_string(), billable_seconds)),
                    "exact: {context}"
                );
            }
            Err(reason) => {
                assert_eq!(compatible, Err(reason), "{context}");
                assert_eq!(exact, Err(reason), "{context}");
            }
        }
    }

    #[test]
    fn prices_as_cgrates_does() {
        let plan = retail_plan();
        let monday_10 = "2025-03-03T10:00:00Z";
        // Two slots, each increment rounded to 5 decimals: the tutorial's 0.7002 against 0.7.
        check(
            &plan,
            "1001",
            "4915123456",
            monday_10,
            120,
            Ok(("0.7002", "0.7", 120)),
        );
        // Peak: a whole first minute, then 30 s blocks.
        check(
            &plan,
            "1001",
            "4930123456",
            "2025-03-03T17:00:00Z",
            100,
            Ok(("1", "1", 120)),
        );
        // Across 18:00: the peak minute runs past 18:00 and swallows 40 s of the evening, which
        // is then priced off-peak per second.
        check(
            &plan,
            "1001",
            "4930123456",
            "2025-03-03T17:59:40Z",
            100,
            Ok(("0.9", "0.9", 100)),
        );
        // Across midnight into New Year's Day: the weight-20 timing wins over the weekday
        // morning, and its 60 s block rounds up the 31 s after midnight.
        check(
            &plan,
            "1001",
            "4930123456",
            "2025-12-31T23:59:30Z",
            61,
            Ok(("0.2", "0.2", 90)),
        );
        // A new activation at midnight: the second minute is priced by the new rating plan
        // (0.02/min per second: each second 0.00033 once rounded, so 0.0198 for the minute).
        check(
            &plan,
            "1001",
            "4930123456",
            "2026-02-28T23:59:00Z",
            120,
            Ok(("0.3698", "0.37", 120)),
        );
        // 2002's own plan has no German rate: its fallback subject 1001 prices the call.
        check(
            &plan,
            "2002",
            "4930123456",
            monday_10,
            60,
            Ok(("0.7", "0.7", 60)),
        );
        check(
            &plan,
            "2002",
            "12125550100",
            monday_10,
            13,
            Ok(("0.0039", "0.0039", 18)),
        );
        // A longer prefix that no plan rates (49172) does not hide the shorter one (49).
        check(
            &plan,
            "1001",
            "491721234567",
            monday_10,
            60,
            Ok(("0.7", "0.7", 60)),
        );
        // MaxCost 5 with *free caps the cost; with *disconnect it does not.
        check(
            &plan,
            "1001",
            "4990123456",
            monday_10,
            10,
            Ok(("5", "5", 10)),
        );
        check(&plan, "1001", "4990123456", monday_10, 3, Ok(("3", "3", 3)));
        check(
            &plan,
            "3003",
            "4990123456",
            monday_10,
            10,
            Ok(("10", "10", 10)),
        );
        // No profile of its own: the *any subject's plan, whose *any destination rates it.
        check(
            &plan,
            "9999",
            "33123456789",
            monday_10,
            30,
            Ok(("0.0351", "0.035", 30)),
        );
        check(
            &plan,
            "2002",
            "33123456789",
            monday_10,
            30,
            Err(RejectReason::NoRateForDestination),
        );
        check(
            &plan,
            "1001",
            "4930123456",
            "2023-06-01T10:00:00Z",
            30,
            Err(RejectReason::NoRatingProfile),
        );
    }

    #[test]
    fn unanswered_and_zero_second_calls_cost_nothing() {
        let plan = retail_plan();
        let mut call = CgratesCall {
            tenant: "cgrates.org",
            category: "call",
            subject: "1001",
            destination: "4915123456",
            direction: Direction::Outbound,
            start_micros: 1_741_000_000_000_000,
            billsec: 0,
            answered: true,
        };
        let exact = CgratesRounding::Exact;
        let charge = price_cgrates_call(&plan, &call, exact, chrono_tz::UTC).unwrap();
        assert_eq!((charge.cost_mantissa, charge.billable_seconds), (0, 0));
        assert!(charge.matched.is_some());
        // The rate shown is the one in force at the start (peak at 10:00, 0.6/min at 3
        // decimals), not the destination's first interval (off-peak).
        call.destination = "4930123456";
        call.start_micros = chrono::DateTime::parse_from_rfc3339("2025-03-03T10:00:00Z")
            .unwrap()
            .timestamp_micros();
        let charge = price_cgrates_call(&plan, &call, exact, chrono_tz::UTC).unwrap();
        assert_eq!(charge.matched.unwrap().price_per_minute_mantissa, 600);
        call.billsec = 30;
        call.answered = false;
        call.destination = "33123456789";
        call.subject = "2002";
        let charge = price_cgrates_call(&plan, &call, exact, chrono_tz::UTC).unwrap();
        assert_eq!((charge.cost_mantissa, charge.matched), (0, None));
    }

    #[test]
    fn another_tenant_has_no_profile() {
        let plan = retail_plan();
        let call = CgratesCall {
            tenant: "example.net",
            category: "call",
            subject: "1001",
            destination: "4915123456",
            direction: Direction::Outbound,
            start_micros: 1_741_000_000_000_000,
            billsec: 30,
            answered: true,
        };
        assert_eq!(
            price_cgrates_call(&plan, &call, CgratesRounding::Exact, chrono_tz::UTC),
            Err(RejectReason::NoRatingProfile)
        );
    }
}

#[cfg(test)]
mod properties {
    //! Arbitrary plans (built from plausible and broken pieces of each file) never make the
    //! parser or the pricer panic or loop, and an accepted plan never prices a call below zero or
    //! bills less than its duration.

    use super::*;
    use crate::rate::cgrates_plan::{PlanFile, TariffPlanText, parse_cgrates_plan};
    use proptest::prelude::*;
    use proptest::sample::select;

    /// Every id a row refers to exists, so most plans load and the pricer gets exercised; the
    /// values still include zero units, sub-second increments, odd weights and timings.
    fn plan_files() -> impl Strategy<Value = [String; 6]> {
        let prefix = select(vec!["1", "12", "49", "491", "4915", "+44", "voicemail"]);
        let destinations = proptest::collection::vec((0..3u8, prefix), 3..8).prop_map(|rows| {
            let mut text: Vec<String> = (0..3).map(|id| format!("D{id},9{id}")).collect();
            text.extend(rows.iter().map(|(id, prefix)| format!("D{id},{prefix}")));
            text.join("\n")
        });
        let timing = (
            select(vec!["*any", "2025", "2024;2026"]),
            select(vec!["*any", "1;2", "3", "12"]),
            select(vec!["*any", "1", "28;29;30;31"]),
            select(vec!["*any", "1;2;3;4;5", "6;7", "0"]),
            select(vec![
                "00:00:00", "08:00:00", "18:00:00", "23:59:59", "*asap", "02:30:00",
            ]),
        )
            .prop_map(|(years, months, days, week_days, time)| {
                format!("{years},{months},{days},{week_days},{time}")
            });
        let timings = proptest::collection::vec(timing, 3).prop_map(|rows| {
            rows.iter()
                .enumerate()
                .map(|(id, row)| format!("T{id},{row}"))
                .collect::<Vec<_>>()
                .join("\n")
        });
        let durations = vec![
            "1s", "60s", "1m", "0", "7", "500ms", "1h", "30s", "1.5m", "6",
        ];
        let rate_row = (
            select(vec!["0", "0.1", "0.4", "", "1.2345678"]),
            select(vec!["0", "0.01", "0.2", "1", "5.55555", "9999"]),
            select(durations.clone()),
            select(durations),
        );
        let rates = (
            proptest::collection::vec(rate_row.clone(), 3),
            proptest::collection::vec(
                (0..3u8, select(vec!["30s", "60s", "1m30s"]), rate_row),
                0..4,
            ),
        )
            .prop_map(|(base, extra)| {
                let mut text: Vec<String> = base
                    .iter()
                    .enumerate()
                    .map(|(id, (fee, price, unit, increment))| {
                        format!("R{id},{fee},{price},{unit},{increment},0s")
                    })
                    .collect();
                text.extend(
                    extra
                        .iter()
                        .map(|(id, start, (fee, price, unit, increment))| {
                            format!("R{id},{fee},{price},{unit},{increment},{start}")
                        }),
                );
                text.join("\n")
            });
        let destination_rate = (
            select(vec!["D0", "D1", "D2", "*any"]),
            0..3u8,
            select(vec!["*up", "*middle", "*down"]),
            select(vec!["0", "2", "4", "5", "8", "20"]),
            select(vec!["", "0", "0.5", "5"]),
            select(vec!["", "*free", "*disconnect"]),
        );
        let destination_rates = proptest::collection::vec(destination_rate, 3).prop_map(|rows| {
            rows.iter()
                .enumerate()
                .map(
                    |(id, (destination, rate, method, decimals, max_cost, strategy))| {
                        format!(
                            "DR{id},{destination},R{rate},{method},{decimals},{max_cost},{strategy}"
                        )
                    },
                )
                .collect::<Vec<_>>()
                .join("\n")
        });
        let rating_plans = proptest::collection::vec(
            (
                0..2u8,
                0..3u8,
                select(vec!["*any", "T0", "T1", "T2"]),
                select(vec!["0", "10", "20"]),
            ),
            2..8,
        )
        .prop_map(|rows| {
            let mut text = vec!["RP0,DR0,*any,10".to_string(), "RP1,DR1,T0,10".to_string()];
            text.extend(rows.iter().map(|(id, destination_rate, timing, weight)| {
                format!("RP{id},DR{destination_rate},{timing},{weight}")
            }));
            text.join("\n")
        });
        let profiles = proptest::collection::vec(
            (
                select(vec!["1001", "2002", "*any"]),
                select(vec![
                    "2024-01-01T00:00:00Z",
                    "2025-03-03T12:00:00Z",
                    "2025-11-02T06:30:00Z",
                ]),
                0..2u8,
                select(vec!["", "1001", "2002;*any", "*any"]),
            ),
            1..5,
        )
        .prop_map(|rows| {
            let mut seen = std::collections::HashSet::new();
            rows.iter()
                .filter(|(subject, activation, _, _)| seen.insert((*subject, *activation)))
                .map(|(subject, activation, plan, fallback)| {
                    format!("cgrates.org,call,{subject},{activation},RP{plan},{fallback}")
                })
                .collect::<Vec<_>>()
                .join("\n")
        });
        (
            destinations,
            timings,
            rates,
            destination_rates,
            rating_plans,
            profiles,
        )
            .prop_map(|(a, b, c, d, e, f)| [a, b, c, d, e, f])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn arbitrary_plans_price_calls_without_panic(
            files in plan_files(),
            calls in proptest::collection::vec(
                (
                    select(vec!["1001", "2002", "3003"]),
                    select(vec!["4915123", "491234", "1212555", "999", "90", "44"]),
                    1_704_067_200_000_000i64..1_798_761_600_000_000,
                    0u32..200_000,
                ),
                1..6,
            ),
        ) {
            let names = [
                "Destinations.csv", "Timings.csv", "Rates.csv",
                "DestinationRates.csv", "RatingPlans.csv", "RatingProfiles.csv",
            ];
            let file = |index: usize| Some(PlanFile { name: names[index], bytes: files[index].as_bytes() });
            let parsed = parse_cgrates_plan(&TariffPlanText {
                plan_name: "arbitrary",
                destinations: file(0),
                timings: file(1),
                rates: file(2),
                destination_rates: file(3),
                rating_plans: file(4),
                rating_profiles: file(5),
            });
            let plan = match parsed {
                Ok(plan) => plan,
                Err(error) => {
                    prop_assert!(!error.problems.is_empty());
                    return Ok(());
                }
            };
            for (subject, destination, start_micros, billsec) in calls {
                let call = CgratesCall {
                    tenant: "cgrates.org",
                    category: "call",
                    subject,
                    destination,
                    direction: Direction::Outbound,
                    start_micros,
                    billsec,
                    answered: true,
                };
                for rounding in [
                    CgratesRounding::Exact,
                    CgratesRounding::Compatible { increment_decimals: 5 },
                ] {
                    for time_zone in [chrono_tz::UTC, chrono_tz::America::New_York] {
                        if let Ok(charge) = price_cgrates_call(&plan, &call, rounding, time_zone) {
                            prop_assert!(charge.cost_mantissa >= 0);
                            prop_assert!(charge.billable_seconds >= billsec);
                        }
                    }
                }
            }
        }
    }
}
