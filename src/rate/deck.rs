//! A validated, immutable rate deck: rates as slots, prefix groups, and the lookup of the rate in
//! force for a number at an instant.

use super::bands::{BandId, BandSchedule};
use super::jurisdiction::{Jurisdiction, NpaNxxStates};
use super::prefix_index::{PrefixIndex, prefetch_read};
use crate::cdr::Direction;
use crate::money::Rounding;
use chrono_tz::Tz;
use rust_decimal::Decimal;
use std::sync::Arc;

/// A deck's version: the first 12 hex digits of a digest of `parts` (its files' bytes, in order),
/// so a rated call records exactly which files priced it.
pub fn deck_version<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for part in parts {
        hasher.update(part);
    }
    format!("{:016x}", hasher.digest())[..12].to_string()
}

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
    /// `None` for a rate of every jurisdiction (every native deck's rate).
    pub jurisdiction: Option<Jurisdiction>,
    /// Where the rate came from, for explaining a price: source line in the deck file.
    pub source_line: u64,
}

/// What pricing reads of a rate, packed into about one cache line and stored contiguously, so
/// that rating millions of calls against a large deck costs one memory access per rate, not a
/// chain of them. Derived from [`Rate`] by [`Deck::assemble`].
#[derive(Clone, Copy, Debug)]
pub struct RatePricing {
    pub effective_from_micros: i64,
    pub effective_until_micros: i64,
    pub connect_fee_mantissa: i64,
    /// The per-minute price shown on rated calls, at the deck's `price_decimals`.
    pub rate_per_minute_mantissa: i64,
    /// `i64::MAX` when the rate has no maximum cost.
    pub max_cost_mantissa: i64,
    /// The prefix as a number, with `prefix_length` digits (leading zeros allowed).
    pub prefix_digits: u64,
    pub no_charge_seconds: u32,
    /// Index into [`Deck::destinations`].
    pub destination: u32,
    /// `NO_BAND` for an all-day rate.
    pub band: BandId,
    /// 0 for both directions, else 1 + the direction.
    pub direction: u8,
    /// 0 for every jurisdiction, else [`Jurisdiction::code`].
    pub jurisdiction: u8,
    pub prefix_length: u8,
    /// Slots stored inline (at most 2) or, when 0, in `Deck::overflow_slots` from
    /// `overflow_start` for `overflow_count`.
    pub n_inline_slots: u8,
    pub inline_slots: [PricingSlot; 2],
    pub overflow_start: u32,
    pub overflow_count: u32,
}

/// A slot as pricing needs it: where it starts, its block, its price per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PricingSlot {
    pub offset_seconds: u32,
    pub increment_seconds: u32,
    /// Over the deck's `price_denominator`, at its `price_decimals`.
    pub price_per_second_numerator: i64,
}

pub const NO_BAND: BandId = BandId::MAX;

impl RatePricing {
    pub fn is_in_force_at(&self, instant_micros: i64) -> bool {
        self.effective_from_micros <= instant_micros && instant_micros < self.effective_until_micros
    }

    pub fn applies_to(&self, direction: Direction) -> bool {
        self.direction == 0 || self.direction == direction_code(direction)
    }

    /// `jurisdiction` is a [`Jurisdiction::code`].
    pub fn applies_in(&self, jurisdiction: u8) -> bool {
        self.jurisdiction == 0 || self.jurisdiction == jurisdiction
    }

    /// The jurisdiction the rate is for; `None` when it is for every one.
    pub fn jurisdiction(&self) -> Option<Jurisdiction> {
        Jurisdiction::from_code(self.jurisdiction)
    }

    pub fn max_cost(&self) -> Option<i64> {
        (self.max_cost_mantissa != i64::MAX).then_some(self.max_cost_mantissa)
    }
}

fn direction_code(direction: Direction) -> u8 {
    match direction {
        Direction::Outbound => 1,
        Direction::Inbound => 2,
    }
}

/// Index values with this bit set name a group of several rates; without it, the one rate.
const GROUP_TAG: u32 = 1 << 31;

/// A loaded deck. Built only through [`Deck::assemble`], after a parser has validated everything:
/// a deck that exists is a deck that is whole.
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
    /// Hot pricing data, one per rate, same order as `rates`.
    pub pricing: Vec<RatePricing>,
    pub overflow_slots: Vec<PricingSlot>,
    pub destinations: Vec<Arc<str>>,
    /// Rates of prefixes that have several (dates, bands, directions), newest first: group `g` is
    /// `group_rates[group_starts[g]..group_starts[g + 1]]`.
    group_starts: Vec<u32>,
    group_rates: Vec<RateId>,
    prefix_index: PrefixIndex,
    /// Decimals of every price mantissa in the deck.
    pub price_decimals: u32,
    /// The least common multiple of every slot's unit: prices per second are over this.
    pub price_denominator: i128,
    /// For a deck whose rates are per jurisdiction: the NPA-NXX states that decide a call's
    /// jurisdiction (see [`Deck::with_npanxx_states`]). `None` for every other deck.
    pub npanxx_states: Option<Arc<NpaNxxStates>>,
}

/// Everything about a deck except its indexes, as a parser produces it.
pub struct DeckParts {
    pub name: String,
    pub version: String,
    pub currency: String,
    pub time_zone: Tz,
    pub rounding: Rounding,
    pub bands: BandSchedule,
    pub rates: Vec<Rate>,
    pub price_decimals: u32,
    pub price_denominator: i128,
}

impl Deck {
    /// Indexes validated rates: prefix lookup, groups, and the packed pricing array.
    pub fn assemble(parts: DeckParts) -> Deck {
        let DeckParts {
            name,
            version,
            currency,
            time_zone,
            rounding,
            bands,
            rates,
            price_decimals,
            price_denominator,
        } = parts;
        let mut destinations: Vec<Arc<str>> = Vec::new();
        let mut destination_ids: std::collections::HashMap<Arc<str>, u32> =
            std::collections::HashMap::new();
        let mut overflow_slots = Vec::new();
        let mut pricing = Vec::with_capacity(rates.len());
        for rate in &rates {
            let destination = *destination_ids
                .entry(Arc::clone(&rate.destination))
                .or_insert_with(|| {
                    destinations.push(Arc::clone(&rate.destination));
                    (destinations.len() - 1) as u32
                });
            let slots: Vec<PricingSlot> = rate
                .slots
                .iter()
                .map(|slot| PricingSlot {
                    offset_seconds: slot.offset_seconds,
                    increment_seconds: slot.increment_seconds,
                    price_per_second_numerator: i64::try_from(slot.price_per_second_numerator)
                        .expect("prices are capped at load"),
                })
                .collect();
            let mut inline_slots = [PricingSlot::default(); 2];
            let (n_inline_slots, overflow_start, overflow_count) = if slots.len() <= 2 {
                inline_slots[..slots.len()].copy_from_slice(&slots);
                (slots.len() as u8, 0, 0)
            } else {
                overflow_slots.extend_from_slice(&slots);
                (
                    0,
                    (overflow_slots.len() - slots.len()) as u32,
                    slots.len() as u32,
                )
            };
            pricing.push(RatePricing {
                effective_from_micros: rate.effective_from_micros,
                effective_until_micros: rate.effective_until_micros,
                connect_fee_mantissa: i64::try_from(rate.connect_fee_mantissa)
                    .expect("prices are capped at load"),
                rate_per_minute_mantissa: crate::money::mantissa_at(
                    rate.rate_per_minute,
                    price_decimals,
                )
                .and_then(|mantissa| i64::try_from(mantissa).ok())
                .expect("price_decimals covers every price, and prices are capped at load"),
                max_cost_mantissa: rate
                    .max_cost_mantissa
                    .map(|max_cost| i64::try_from(max_cost).expect("prices are capped at load"))
                    .unwrap_or(i64::MAX),
                prefix_digits: rate.prefix.parse().expect("prefixes are digits"),
                no_charge_seconds: rate.no_charge_seconds,
                destination,
                band: rate.band.unwrap_or(NO_BAND),
                direction: rate.direction.map(direction_code).unwrap_or(0),
                jurisdiction: rate.jurisdiction.map_or(0, Jurisdiction::code),
                prefix_length: rate.prefix.len() as u8,
                n_inline_slots,
                inline_slots,
                overflow_start,
                overflow_count,
            });
        }
        let mut by_prefix: std::collections::HashMap<&str, Vec<RateId>> =
            std::collections::HashMap::new();
        let mut prefixes_in_order: Vec<&str> = Vec::new();
        for (rate_id, rate) in rates.iter().enumerate() {
            let entry = by_prefix.entry(&rate.prefix).or_default();
            if entry.is_empty() {
                prefixes_in_order.push(&rate.prefix);
            }
            entry.push(rate_id as RateId);
        }
        let mut prefix_index = PrefixIndex::default();
        let mut group_starts = vec![0u32];
        let mut group_rates = Vec::new();
        for prefix in prefixes_in_order {
            let mut rate_ids = by_prefix.remove(prefix).expect("listed above");
            let value = if let [rate_id] = rate_ids[..] {
                rate_id
            } else {
                rate_ids.sort_by_key(|&rate_id| {
                    std::cmp::Reverse(pricing[rate_id as usize].effective_from_micros)
                });
                group_rates.extend_from_slice(&rate_ids);
                group_starts.push(group_rates.len() as u32);
                (group_starts.len() as u32 - 2) | GROUP_TAG
            };
            prefix_index.insert(prefix, value);
        }
        Deck {
            name,
            version,
            currency,
            time_zone,
            rounding,
            bands,
            rates,
            pricing,
            overflow_slots,
            destinations,
            group_starts,
            group_rates,
            prefix_index,
            price_decimals,
            price_denominator,
            npanxx_states: None,
        }
    }

    /// True when some rate is for one jurisdiction only: such a deck needs NPA-NXX states.
    pub fn has_jurisdictions(&self) -> bool {
        self.pricing.iter().any(|pricing| pricing.jurisdiction != 0)
    }

    /// Gives a deck with jurisdictional rates the table that decides each call's jurisdiction. The
    /// deck's version takes in the table's digest: the same deck with another table prices calls
    /// differently, so it is another version.
    pub fn with_npanxx_states(mut self, states: Arc<NpaNxxStates>) -> Deck {
        self.version = deck_version([
            self.version.as_bytes(),
            states.digest().to_le_bytes().as_slice(),
        ]);
        self.npanxx_states = Some(states);
        self
    }

    /// The jurisdiction of a call from `caller` to `callee` under this deck's NPA-NXX states:
    /// indeterminate when the deck has none (its rates then are for every jurisdiction anyway,
    /// or the deck was not given states and every call is indeterminate).
    pub fn jurisdiction_of_call(&self, caller: &str, callee: &str) -> Jurisdiction {
        match &self.npanxx_states {
            Some(states) => states.jurisdiction_of_call(caller, callee),
            None => Jurisdiction::Indeterminate,
        }
    }

    /// The rate for `number` at `instant_micros`: the longest prefix that has a rate in force for
    /// this direction and band. A longer prefix with nothing in force does not hide a shorter one.
    /// A call whose caller is not known is indeterminate (see [`Self::find_rate_in_jurisdiction`]).
    pub fn find_rate(
        &self,
        number: &str,
        instant_micros: i64,
        direction: Direction,
    ) -> Option<RateId> {
        self.find_rate_in_jurisdiction(
            number,
            instant_micros,
            direction,
            Jurisdiction::Indeterminate.code(),
        )
    }

    /// As [`Self::find_rate`], for a call of a jurisdiction ([`Jurisdiction::code`]): rates for
    /// another jurisdiction do not apply; rates for every jurisdiction do.
    pub fn find_rate_in_jurisdiction(
        &self,
        number: &str,
        instant_micros: i64,
        direction: Direction,
        jurisdiction: u8,
    ) -> Option<RateId> {
        let band = self.bands.band_at(self.time_zone, instant_micros);
        self.prefix_index
            .find_longest(number.as_bytes(), |_, value| {
                self.select_for_prefix(value, instant_micros, band, direction, jurisdiction)
            })
    }

    /// Starts loading the index slots a lookup of `number` will probe (see
    /// [`PrefixIndex::prefetch`]): the first of the two steps of a lookup that can wait on memory.
    pub fn prefetch_index_slots(&self, number: &[u8]) {
        self.prefix_index.prefetch(number);
    }

    /// Starts loading the pricing record of `number`'s longest prefix, the second step. Reads
    /// the index slots, so it pays off once [`Self::prefetch_index_slots`] has brought them in.
    pub fn prefetch_pricing(&self, number: &[u8]) {
        self.prefix_index.find_longest(number, |_, value| {
            let rate_id = if value & GROUP_TAG == 0 {
                value
            } else {
                self.group_rates[self.group_starts[(value & !GROUP_TAG) as usize] as usize]
            };
            let pricing = &self.pricing[rate_id as usize];
            prefetch_read(pricing);
            // A record is wider than a cache line: bring in its last line too.
            prefetch_read(&pricing.overflow_count);
            Some(())
        });
    }

    /// Among the rates of one prefix (an index value), the one in force: a band-specific rate over
    /// an all-day one, a direction-specific rate over one for both, a jurisdiction-specific rate
    /// over one for every jurisdiction, then the latest effective_from.
    fn select_for_prefix(
        &self,
        value: u32,
        instant_micros: i64,
        band: Option<BandId>,
        direction: Direction,
        jurisdiction: u8,
    ) -> Option<RateId> {
        let band = band.unwrap_or(NO_BAND);
        let applies = |rate_id: RateId| {
            let pricing = &self.pricing[rate_id as usize];
            pricing.is_in_force_at(instant_micros)
                && pricing.applies_to(direction)
                && pricing.applies_in(jurisdiction)
                && (pricing.band == NO_BAND || pricing.band == band)
        };
        if value & GROUP_TAG == 0 {
            return applies(value).then_some(value);
        }
        let group = (value & !GROUP_TAG) as usize;
        let rate_ids = &self.group_rates
            [self.group_starts[group] as usize..self.group_starts[group + 1] as usize];
        let mut best: Option<(u8, RateId)> = None;
        for &rate_id in rate_ids {
            if !applies(rate_id) {
                continue;
            }
            let pricing = &self.pricing[rate_id as usize];
            let specificity = 4 * u8::from(pricing.band != NO_BAND)
                + 2 * u8::from(pricing.direction != 0)
                + u8::from(pricing.jurisdiction != 0);
            // Groups are sorted newest first, so the first rate of the best specificity wins.
            if best.is_none_or(|(best_specificity, _)| specificity > best_specificity) {
                best = Some((specificity, rate_id));
            }
        }
        best.map(|(_, rate_id)| rate_id)
    }

    /// The rate of `rate_id`'s own prefix in force at an instant in a band: what prices the part
    /// of a call after it crosses into another band. The call keeps its jurisdiction: the one of
    /// `rate_id` (a rate for every jurisdiction matches only such rates, as in native decks).
    pub fn rate_of_same_prefix(
        &self,
        rate_id: RateId,
        instant_micros: i64,
        band: Option<BandId>,
        direction: Direction,
    ) -> Option<RateId> {
        let value = self
            .prefix_index
            .get(&self.rates[rate_id as usize].prefix)?;
        let jurisdiction = self.pricing[rate_id as usize].jurisdiction;
        self.select_for_prefix(value, instant_micros, band, direction, jurisdiction)
    }

    pub fn rate(&self, rate_id: RateId) -> &Rate {
        &self.rates[rate_id as usize]
    }

    pub fn pricing(&self, rate_id: RateId) -> &RatePricing {
        &self.pricing[rate_id as usize]
    }

    /// The slots of a rate, sorted by offset, the first at 0.
    pub fn slots<'a>(&'a self, pricing: &'a RatePricing) -> &'a [PricingSlot] {
        if pricing.n_inline_slots > 0 {
            &pricing.inline_slots[..usize::from(pricing.n_inline_slots)]
        } else {
            let start = pricing.overflow_start as usize;
            &self.overflow_slots[start..start + pricing.overflow_count as usize]
        }
    }

    pub fn n_prefixes(&self) -> usize {
        self.prefix_index.n_prefixes()
    }

    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}
