//! Pricing one call: billable seconds from a rate's slots, the cost, band splits, the cap.
//!
//! Pure integer arithmetic on mantissas prepared by the deck loader; the only rounding is the call
//! to [`crate::money::round_scaled_ratio`].

use super::deck::{Deck, RateId};
use crate::cdr::{Cdr, Direction, RejectReason};
use crate::money::{RoundingMode, RoundingScope, round_scaled_ratio};

/// What a call costs under a deck.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Charge {
    /// The rate that priced the call's start (and so its prefix and destination); `None` only for
    /// an unanswered call to a number the deck has no rate for, which costs nothing either way.
    pub rate_id: Option<RateId>,
    pub billable_seconds: u32,
    /// The cost as a mantissa at the deck's rounding decimals.
    pub cost_mantissa: i128,
}

/// Rates one decoded CDR against a deck: a charge, or the reason it cannot be priced.
/// Unanswered calls are looked up too (the destination is still worth showing) but cost 0, and
/// one to a number without a rate is not an error: there is nothing to charge. A deck with rates
/// per jurisdiction prices the call with the rate of its caller's and callee's jurisdiction.
pub fn rate_cdr(deck: &Deck, cdr: &Cdr<'_>) -> Result<Charge, RejectReason> {
    let pricing_time_micros = cdr.pricing_time_micros();
    let jurisdiction = deck.jurisdiction_of_call(&cdr.caller, &cdr.callee);
    let rate_id = deck.find_rate_in_jurisdiction(
        &cdr.callee,
        pricing_time_micros,
        cdr.direction,
        jurisdiction.code(),
    );
    charge_for(
        deck,
        rate_id,
        pricing_time_micros,
        cdr.billsec,
        cdr.is_answered(),
        cdr.direction,
    )
}

/// The charge for a call once its rate has been looked up: priced when answered, free when not,
/// a reject when answered with no rate.
pub fn charge_for(
    deck: &Deck,
    rate_id: Option<RateId>,
    pricing_time_micros: i64,
    billsec: u32,
    answered: bool,
    direction: Direction,
) -> Result<Charge, RejectReason> {
    match (rate_id, answered) {
        (Some(rate_id), true) => Ok(price_call(
            deck,
            rate_id,
            pricing_time_micros,
            billsec,
            direction,
        )),
        (None, true) => Err(RejectReason::NoRateForDestination),
        (rate_id, false) => Ok(Charge {
            rate_id,
            billable_seconds: 0,
            cost_mantissa: 0,
        }),
    }
}

/// Prices `billsec` seconds starting at `pricing_time_micros` with the rate `rate_id`.
///
/// Billable seconds: 0 when billsec is 0 or at most the no-charge time; otherwise the call is walked
/// slot by slot, each span rounded up to its slot's increment (for a native "min/increment" rate that
/// is min + ceil((billsec − min) / increment) × increment). When the deck has bands and the call
/// crosses a band boundary, the span is cut there and what follows is priced by the same prefix's
/// rate for the new band (kept unchanged when that prefix has none). The connect fee, no-charge time
/// and maximum cost come from the first rate.
pub fn price_call(
    deck: &Deck,
    rate_id: RateId,
    pricing_time_micros: i64,
    billsec: u32,
    direction: Direction,
) -> Charge {
    let first = deck.pricing(rate_id);
    if billsec == 0 || billsec <= first.no_charge_seconds {
        return Charge {
            rate_id: Some(rate_id),
            billable_seconds: 0,
            cost_mantissa: 0,
        };
    }
    let rounding = deck.rounding;
    let increment_decimals = match rounding.scope {
        RoundingScope::Call => None,
        RoundingScope::Increment { decimals } => Some(decimals),
    };
    // The running cost is a numerator at `accumulator_decimals` over `price_denominator`.
    let accumulator_decimals = deck.price_decimals.max(increment_decimals.unwrap_or(0));
    let to_accumulator = crate::money::pow10(accumulator_decimals - deck.price_decimals);
    let mut numerator =
        i128::from(first.connect_fee_mantissa) * to_accumulator * deck.price_denominator;

    let billsec = u64::from(billsec);
    let call_end_micros = pricing_time_micros + billsec as i64 * 1_000_000;
    let mut next_band_change_micros =
        deck.bands
            .next_change(deck.time_zone, pricing_time_micros, call_end_micros);
    let mut current = first;
    let mut offset_seconds: u64 = 0;
    while offset_seconds < billsec {
        let slots = deck.slots(current);
        let slot_index = slots
            .iter()
            .rposition(|slot| u64::from(slot.offset_seconds) <= offset_seconds)
            .unwrap_or(0);
        let slot = slots[slot_index];
        let next_slot_offset = slots
            .get(slot_index + 1)
            .map_or(u64::MAX, |next| u64::from(next.offset_seconds));
        let band_change_offset = next_band_change_micros
            .map(|change| seconds_between(pricing_time_micros, change))
            .unwrap_or(u64::MAX);
        let span_end = billsec.min(next_slot_offset).min(band_change_offset);
        let increment = u64::from(slot.increment_seconds);
        let n_increments = (span_end - offset_seconds).div_ceil(increment);
        let span_seconds = n_increments * increment;
        let price_per_second = i128::from(slot.price_per_second_numerator);
        numerator += match increment_decimals {
            None => price_per_second * to_accumulator * i128::from(span_seconds),
            Some(decimals) => {
                let increment_cost = round_scaled_ratio(
                    price_per_second * i128::from(increment),
                    deck.price_decimals,
                    deck.price_denominator,
                    decimals,
                    RoundingMode::HalfUp,
                );
                increment_cost
                    * crate::money::pow10(accumulator_decimals - decimals)
                    * deck.price_denominator
                    * i128::from(n_increments)
            }
        };
        offset_seconds += span_seconds;
        if offset_seconds >= band_change_offset {
            let now_micros = pricing_time_micros + offset_seconds as i64 * 1_000_000;
            let band = deck.bands.band_at(deck.time_zone, now_micros);
            if let Some(next_rate_id) =
                deck.rate_of_same_prefix(rate_id, now_micros, band, direction)
            {
                current = deck.pricing(next_rate_id);
            }
            next_band_change_micros =
                deck.bands
                    .next_change(deck.time_zone, now_micros, call_end_micros);
        }
    }
    let mut cost_mantissa = round_scaled_ratio(
        numerator,
        accumulator_decimals,
        deck.price_denominator,
        rounding.decimals,
        rounding.mode,
    );
    if let Some(max_cost_mantissa) = first.max_cost() {
        cost_mantissa = cost_mantissa.min(i128::from(max_cost_mantissa));
    }
    Charge {
        rate_id: Some(rate_id),
        billable_seconds: u32::try_from(offset_seconds)
            .expect("billsec is capped, so billable seconds fit in u32"),
        cost_mantissa,
    }
}

/// Whole seconds from `from_micros` to `to_micros`, rounded up (a boundary inside a second belongs
/// to the next one).
fn seconds_between(from_micros: i64, to_micros: i64) -> u64 {
    let micros = (to_micros - from_micros).max(0);
    ((micros + 999_999) / 1_000_000) as u64
}
