//! What `tollgate deck check` says about a loaded deck: counts, effective dates, bands,
//! directions and billing shapes, whatever format the deck came from.

use super::deck::{Deck, Rate};
use crate::money::RoundingScope;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeckSummary {
    pub label: String,
    pub currency: String,
    pub time_zone: String,
    pub rounding: String,
    pub n_rates: usize,
    pub n_prefixes: usize,
    pub n_destinations: usize,
    /// Distinct effective_from instants (open-ended starts count as one).
    pub n_effective_dates: usize,
    /// The earliest effective_from and the latest effective_until, `None` when open-ended.
    pub earliest_from: Option<String>,
    pub latest_until: Option<String>,
    pub bands: Vec<String>,
    /// Rates for both directions, outbound only, inbound only.
    pub n_rates_by_direction: [usize; 3],
    /// Billing shape (e.g. `60/6`) → number of rates.
    pub shapes: BTreeMap<String, usize>,
    pub n_with_connect_fee: usize,
    pub n_with_no_charge_seconds: usize,
    pub n_with_max_cost: usize,
}

pub fn summarize_deck(deck: &Deck) -> DeckSummary {
    let mut shapes: BTreeMap<String, usize> = BTreeMap::new();
    let mut n_rates_by_direction = [0; 3];
    let mut effective_dates = BTreeSet::new();
    for rate in &deck.rates {
        *shapes.entry(billing_shape(rate)).or_default() += 1;
        let direction_index = match rate.direction {
            None => 0,
            Some(crate::cdr::Direction::Outbound) => 1,
            Some(crate::cdr::Direction::Inbound) => 2,
        };
        n_rates_by_direction[direction_index] += 1;
        effective_dates.insert(rate.effective_from_micros);
    }
    let earliest_from = deck
        .rates
        .iter()
        .map(|rate| rate.effective_from_micros)
        .min()
        .filter(|&micros| micros != i64::MIN);
    let latest_until = deck
        .rates
        .iter()
        .map(|rate| rate.effective_until_micros)
        .max()
        .filter(|&micros| micros != i64::MAX);
    let rounding = deck.rounding;
    DeckSummary {
        label: deck.label(),
        currency: deck.currency.clone(),
        time_zone: deck.time_zone.name().to_string(),
        rounding: format!(
            "{} decimals, {}, {}",
            rounding.decimals,
            rounding_mode_name(rounding.mode),
            match rounding.scope {
                RoundingScope::Call => "per call".to_string(),
                RoundingScope::Increment { decimals } =>
                    format!("per increment at {decimals} decimals"),
            }
        ),
        n_rates: deck.rates.len(),
        n_prefixes: deck.n_prefixes(),
        n_destinations: deck.destinations.len(),
        n_effective_dates: effective_dates.len(),
        earliest_from: earliest_from.map(|micros| instant_text(micros, deck.time_zone)),
        latest_until: latest_until.map(|micros| instant_text(micros, deck.time_zone)),
        bands: deck
            .rates
            .iter()
            .filter_map(|rate| rate.band)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|band| deck.bands.band_name(band).to_string())
            .collect(),
        n_rates_by_direction,
        shapes,
        n_with_connect_fee: deck
            .rates
            .iter()
            .filter(|rate| !rate.connect_fee.is_zero())
            .count(),
        n_with_no_charge_seconds: deck
            .rates
            .iter()
            .filter(|rate| rate.no_charge_seconds > 0)
            .count(),
        n_with_max_cost: deck
            .rates
            .iter()
            .filter(|rate| rate.max_cost_mantissa.is_some())
            .count(),
    }
}

pub fn rounding_mode_name(mode: crate::money::RoundingMode) -> &'static str {
    match mode {
        crate::money::RoundingMode::Up => "up",
        crate::money::RoundingMode::HalfUp => "half_up",
        crate::money::RoundingMode::Down => "down",
        crate::money::RoundingMode::HalfEven => "half_even",
    }
}

/// `min/increment` for the native shapes; otherwise each block, free ones marked.
fn billing_shape(rate: &Rate) -> String {
    let slots = &rate.slots;
    let same_price = slots.windows(2).all(|pair| pair[0].price == pair[1].price);
    match slots.as_slice() {
        [only] => format!("{0}/{0}", only.increment_seconds),
        [first, second] if same_price && second.offset_seconds == first.increment_seconds => {
            format!("{}/{}", first.increment_seconds, second.increment_seconds)
        }
        _ => slots
            .iter()
            .map(|slot| {
                format!(
                    "{}s blocks from {}s{}",
                    slot.increment_seconds,
                    slot.offset_seconds,
                    if slot.price.is_zero() { " free" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(", then "),
    }
}

/// An instant as RFC 3339 in the deck's time zone.
fn instant_text(micros: i64, time_zone: chrono_tz::Tz) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|instant| instant.with_timezone(&time_zone).to_rfc3339())
        .unwrap_or_else(|| micros.to_string())
}

impl fmt::Display for DeckSummary {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(formatter, "deck {}", self.label)?;
        writeln!(
            formatter,
            "  currency {}, time zone {}, rounding {}",
            self.currency, self.time_zone, self.rounding
        )?;
        writeln!(
            formatter,
            "  rates: {} ({} prefixes, {} destinations)",
            self.n_rates, self.n_prefixes, self.n_destinations
        )?;
        writeln!(
            formatter,
            "  effective dates: {} distinct, from {} until {}",
            self.n_effective_dates,
            self.earliest_from.as_deref().unwrap_or("always"),
            self.latest_until.as_deref().unwrap_or("open-ended")
        )?;
        writeln!(
            formatter,
            "  bands: {}",
            if self.bands.is_empty() {
                "none (all day)".to_string()
            } else {
                self.bands.join(", ")
            }
        )?;
        let [both, outbound, inbound] = self.n_rates_by_direction;
        writeln!(
            formatter,
            "  directions: {both} both, {outbound} outbound only, {inbound} inbound only"
        )?;
        let shapes: Vec<String> = self
            .shapes
            .iter()
            .map(|(shape, count)| format!("{shape} ×{count}"))
            .collect();
        writeln!(formatter, "  billing: {}", shapes.join("; "))?;
        writeln!(
            formatter,
            "  connect fees: {}, no-charge seconds: {}, maximum costs: {}",
            self.n_with_connect_fee, self.n_with_no_charge_seconds, self.n_with_max_cost
        )
    }
}
