//! Writing a loaded deck in the native format (CSV and TOML manifest), for `tollgate deck
//! convert`: only when the native format can say everything the deck does, so that the written
//! deck prices every call exactly as the loaded one.

use super::deck::{Deck, Rate};
use super::deck_summary::rounding_mode_name;
use crate::money::{Money, RoundingScope};
use rust_decimal::Decimal;

/// The native files of a deck: `NAME.csv` and `NAME.toml`.
pub struct NativeDeckFiles {
    pub csv: String,
    pub manifest: String,
}

/// The native CSV and manifest of `deck`, or every reason the native format cannot express it.
pub fn write_native_deck(deck: &Deck) -> Result<NativeDeckFiles, Vec<String>> {
    let mut reasons = Vec::new();
    if !deck.bands.is_empty() {
        reasons.push("the deck has time-of-day bands: convert does not write bands".to_string());
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record([
            "prefix",
            "destination",
            "rate",
            "connect_fee",
            "min_seconds",
            "increment",
            "effective_from",
            "effective_until",
            "no_charge_seconds",
            "max_cost",
            "direction",
        ])
        .expect("writing to memory");
    for rate in &deck.rates {
        match native_row(deck, rate) {
            Ok(row) => writer.write_record(&row).expect("writing to memory"),
            Err(reason) => reasons.push(format!(
                "line {} (prefix {}): {reason}",
                rate.source_line, rate.prefix
            )),
        }
    }
    if !reasons.is_empty() {
        return Err(reasons);
    }
    let csv = String::from_utf8(writer.into_inner().expect("writing to memory"))
        .expect("the fields are text");
    let rounding = deck.rounding;
    let mut manifest = format!(
        "name = {}\ncurrency = {}\ntime_zone = {}\nrounding_decimals = {}\nrounding_mode = \"{}\"\n",
        toml_string(&deck.name),
        toml_string(&deck.currency),
        toml_string(deck.time_zone.name()),
        rounding.decimals,
        rounding_mode_name(rounding.mode),
    );
    match rounding.scope {
        RoundingScope::Call => manifest.push_str("rounding_scope = \"call\"\n"),
        RoundingScope::Increment { decimals } => manifest.push_str(&format!(
            "rounding_scope = \"increment\"\nrounding_increment_decimals = {decimals}\n"
        )),
    }
    Ok(NativeDeckFiles { csv, manifest })
}

/// One native row, or why the rate has no native form.
fn native_row(deck: &Deck, rate: &Rate) -> Result<Vec<String>, String> {
    if let Some(jurisdiction) = rate.jurisdiction {
        return Err(format!(
            "an {} rate: the native format has no per-jurisdiction rates",
            jurisdiction.as_str()
        ));
    }
    let slots = &rate.slots;
    let (min_seconds, increment) = match slots.as_slice() {
        [only] => (0, only.increment_seconds),
        [first, second]
            if first.price == second.price
                && first.unit_seconds == second.unit_seconds
                && second.offset_seconds == first.increment_seconds =>
        {
            (first.increment_seconds, second.increment_seconds)
        }
        _ => {
            let blocks: Vec<String> = slots
                .iter()
                .map(|slot| {
                    format!(
                        "{} s blocks from {} s at {}",
                        slot.increment_seconds, slot.offset_seconds, slot.price
                    )
                })
                .collect();
            return Err(format!(
                "its billing ({}) is not one price with a first block and increments (min_seconds/increment)",
                blocks.join(", then ")
            ));
        }
    };
    let unit_seconds = Decimal::from(slots[0].unit_seconds);
    let per_minute = slots[0].price * Decimal::from(60) / unit_seconds;
    if per_minute * unit_seconds != slots[0].price * Decimal::from(60) {
        return Err(format!(
            "its price {} per {} s has no exact per-minute decimal",
            slots[0].price, slots[0].unit_seconds
        ));
    }
    let instant = |micros: i64, open: i64| {
        if micros == open {
            String::new()
        } else {
            chrono::DateTime::from_timestamp_micros(micros)
                .map(|instant| instant.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                .unwrap_or_default()
        }
    };
    Ok(vec![
        rate.prefix.to_string(),
        rate.destination.to_string(),
        per_minute.normalize().to_string(),
        rate.connect_fee.normalize().to_string(),
        min_seconds.to_string(),
        increment.to_string(),
        instant(rate.effective_from_micros, i64::MIN),
        instant(rate.effective_until_micros, i64::MAX),
        rate.no_charge_seconds.to_string(),
        rate.max_cost_mantissa
            .map(|mantissa| Money::from_scaled(mantissa, deck.rounding.decimals).to_string())
            .unwrap_or_default(),
        rate.direction
            .map(|direction| direction.as_str().to_string())
            .unwrap_or_default(),
    ])
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::native_deck::{NativeDeckText, parse_native_deck};

    fn native(csv: &str, manifest: Option<&str>) -> Deck {
        parse_native_deck(&NativeDeckText {
            csv_file_name: "deck.csv",
            csv: csv.as_bytes(),
            manifest_file_name: manifest.map(|_| "deck.toml"),
            manifest,
            default_name: "deck",
        })
        .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Writing a native deck and reading it back gives the same rates.
    #[test]
    fn native_round_trip() {
        let csv = "prefix,destination,rate,connect_fee,min_seconds,increment,effective_from,effective_until,no_charge_seconds,max_cost,direction\n\
                   44,\"UK, London\",0.0125,0.05,30,6,2026-01-01,2026-06-01T12:00:00Z,5,1.50,outbound\n\
                   1,US,0.01,0,0,1,,,0,,\n";
        let deck = native(
            csv,
            Some(
                "name = \"x\"\ncurrency = \"EUR\"\ntime_zone = \"Europe/Paris\"\nrounding_decimals = 5\nrounding_mode = \"down\"\n",
            ),
        );
        let files = write_native_deck(&deck).unwrap();
        assert!(files.csv.contains("44,\"UK, London\",0.0125,0.05,30,6,2025-12-31T23:00:00Z,2026-06-01T12:00:00Z,5,1.50000,outbound"), "{}", files.csv);
        assert!(
            files.csv.contains("\n1,US,0.01,0,0,1,,,0,,\n"),
            "{}",
            files.csv
        );
        let again = native(&files.csv, Some(&files.manifest));
        assert_eq!(again.name, "x");
        assert_eq!(again.currency, "EUR");
        assert_eq!(again.rounding, deck.rounding);
        assert_eq!(again.time_zone, deck.time_zone);
        for (left, right) in deck.rates.iter().zip(&again.rates) {
            assert_eq!(left.slots, right.slots);
            assert_eq!(left.connect_fee, right.connect_fee);
            assert_eq!(left.effective_from_micros, right.effective_from_micros);
            assert_eq!(left.effective_until_micros, right.effective_until_micros);
            assert_eq!(left.max_cost_mantissa, right.max_cost_mantissa);
            assert_eq!(left.direction, right.direction);
            assert_eq!(left.no_charge_seconds, right.no_charge_seconds);
        }
    }

    #[test]
    fn bands_are_refused() {
        let deck = native(
            "prefix,destination,rate,connect_fee,min_seconds,increment,effective_from,effective_until,band\n1,US,0.01,0,1,1,,,peak\n",
            Some("[[bands]]\nname = \"peak\"\nwindows = [\"Mon-Fri 08:00-19:00\"]\n"),
        );
        let reasons = write_native_deck(&deck).err().unwrap();
        assert!(reasons[0].contains("bands"), "{reasons:?}");
    }
}
