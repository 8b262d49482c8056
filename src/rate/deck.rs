//! A validated, immutable rate deck: rates as slots, prefix groups, and the lookup of the rate in
//! force for a number at an instant.

use super::bands::{BandId, BandSchedule};
use super::prefix_index::PrefixIndex;
use crate::cdr::Direction;
use crate::money::Rounding;
use chrono_tz::Tz;
use rust_decimal::Decimal;
use std::sync::Arc;

/// Index of a rate in its deck's `rates`.
pub type RateId = u32;

/// One piece of a rate's pricing: from `offset_seconds` into the call, `price` per `unit_seconds`,
/// billed in blocks of `increment_seconds`. A native "60/6" rate is two slots: the first block of
/// 60 s from 0 s, then 6 s blocks from 60 s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub offset_seconds: u32,
    pub price: Decimal,
    pub unit_seconds: u32,
    pub increment_seconds: u32,
    /// `price` as a cost per second: a mantissa at the deck's `price_decimals`, over the deck's
    /// `price_denominator` (so 0.0125/min with a denominator of 60 is 125 at 4 decimals).
    pub price_per_second_numerator: i128,
}

#[derive(Clone, Debug)]
pub struct Rate {
    pub prefix: Box<str>,
    pub destination: Arc<str>,
    /// The price per minute of the first slot, shown on rated calls.
    pub rate_per_minute: Decimal,
    pub connect_fee: Decimal,
    /// `connect_fee` as a mantissa at the deck's `price_decimals`.
    pub connect_fee_mantissa: i128,
    pub slots: Vec<Slot>,
    pub no_charge_seconds: u32,
    /// The most a call can cost, as a mantissa at the deck's rounding decimals.
    pub max_cost_mantissa: Option<i128>,
    /// In force from this instant (inclusive) until `effective_until_micros` (exclusive).
    pub effective_from_micros: i64,
    pub effective_until_micros: i64,
    pub band: Option<BandId>,
    pub direction: Option<Direction>,
    /// Where the rate came from, for explaining a price: source line in the deck file.
    pub source_line: u64,
}

impl Rate {
    pub fn is_in_force_at(&self, instant_micros: i64) -> bool {
        self.effective_from_micros <= instant_micros && instant_micros < self.effective_until_micros
    }

    /// The slot that applies at `offset_seconds` into the call.
    pub fn slot_at(&self, offset_seconds: u32) -> &Slot {
        self.slots
            .iter()
            .rev()
            .find(|slot| slot.offset_seconds <= offset_seconds)
            .unwrap_or(&self.slots[0])
    }
}

/// A loaded deck. Built only by the deck parsers, which validate everything first: a deck that
/// exists is a deck that is whole.
#[derive(Clone)]
pub struct Deck {
    pub name: String,
    /// A digest of the deck's files, so a rated call records exactly which deck priced it.
    pub version: String,
    pub currency: String,
    pub time_zone: Tz,
    pub rounding: Rounding,
    pub bands: BandSchedule,
    pub rates: Vec<Rate>,
    /// For each prefix, the rates sharing it (different dates, bands, directions), newest first.
    pub prefix_groups: Vec<Vec<RateId>>,
    pub prefix_index: PrefixIndex,
    /// Decimals of every price mantissa in the deck.
    pub price_decimals: u32,
    /// The least common multiple of every slot's unit: prices per second are over this.
    pub price_denominator: i128,
}

impl Deck {
    /// The rate for `number` at `instant_micros`: the longest prefix that has a rate in force for
    /// this direction and band. A longer prefix with nothing in force does not hide a shorter one.
    pub fn find_rate(
        &self,
        number: &str,
        instant_micros: i64,
        direction: Direction,
    ) -> Option<RateId> {
        let band = self.bands.band_at(self.time_zone, instant_micros);
        self.prefix_index.find_longest(number, |_, group| {
            self.select_in_group(group, instant_micros, band, direction)
        })
    }

    /// Among rates of one prefix, the one in force: a band-specific rate over an all-day one, a
    /// direction-specific rate over one for both, then the latest effective_from.
    pub fn select_in_group(
        &self,
        group: u32,
        instant_micros: i64,
        band: Option<BandId>,
        direction: Direction,
    ) -> Option<RateId> {
        let rate_ids = &self.prefix_groups[group as usize];
        if let [rate_id] = rate_ids[..] {
            // Most prefixes have one rate: no ranking needed.
            let rate = &self.rates[rate_id as usize];
            let applies = rate.is_in_force_at(instant_micros)
                && rate.direction.is_none_or(|wanted| wanted == direction)
                && (rate.band.is_none() || rate.band == band);
            return applies.then_some(rate_id);
        }
        let mut best: Option<(u8, RateId)> = None;
        for &rate_id in rate_ids {
            let rate = &self.rates[rate_id as usize];
            if !rate.is_in_force_at(instant_micros) {
                continue;
            }
            if rate.direction.is_some_and(|wanted| wanted != direction) {
                continue;
            }
            if rate.band.is_some() && rate.band != band {
                continue;
            }
            let specificity =
                2 * u8::from(rate.band.is_some()) + u8::from(rate.direction.is_some());
            // Groups are sorted newest first, so the first rate of the best specificity wins.
            if best.is_none_or(|(best_specificity, _)| specificity > best_specificity) {
                best = Some((specificity, rate_id));
            }
        }
        best.map(|(_, rate_id)| rate_id)
    }

    pub fn rate(&self, rate_id: RateId) -> &Rate {
        &self.rates[rate_id as usize]
    }

    /// The group of the rate's own prefix, for re-selecting a rate when a call changes band.
    pub fn group_of(&self, rate_id: RateId) -> u32 {
        self.prefix_index
            .get(&self.rate(rate_id).prefix)
            .expect("every rate's prefix is indexed")
    }

    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}
