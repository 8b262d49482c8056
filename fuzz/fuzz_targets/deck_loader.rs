//! Fuzzes the native deck loader (`parse_native_deck`) with arbitrary CSV bytes and an optional TOML manifest, then rates a few calls with any deck it accepts.
//!
//! Input layout: when the input holds a NUL byte, the bytes before the first NUL are the
//! manifest (used only if they are valid UTF-8) and the bytes after it are the CSV; otherwise the
//! whole input is the CSV and there is no manifest.
//!
//! Contract checked: the loader never panics; a refused deck lists at least one problem; a deck
//! it accepts is whole, so rating calls with it (its first few prefixes, short and very long
//! calls) never panics either and never gives a negative cost.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::batch::deck_choice::DeckChoice;
use tollgate::batch::rated_block::{RatingContext, RowStatus, rate_csv_block};
use tollgate::ingest::canonical_csv::{CANONICAL_COLUMNS, CanonicalColumns};
use tollgate::rate::deck::Deck;
use tollgate::rate::native_deck::{NativeDeckText, parse_native_deck};

/// Rates with an accepted deck: one answered call per prefix (at most a few prefixes), at a few
/// instants and durations, from 1 s up to 4 000 000 000 s. The longest call stays a few days
/// below `u32::MAX` seconds so that it probes the deck's prices, not the billsec range (calls
/// right at the top of that range are the CDR decoder target's business).
fn rate_with(deck: Deck) {
    let mut block = String::new();
    let instants = ["2026-11-20T10:00:00Z", "2026-03-01T00:00:00Z", "1970-01-01T00:00:00Z"];
    let billsecs = [1u32, 61, 86_400, 4_000_000_000];
    for (rate_number, rate) in deck.rates.iter().take(4).enumerate() {
        let callee = format!("{}0123", rate.prefix);
        for instant in instants {
            for billsec in billsecs {
                for direction in ["outbound", "inbound"] {
                    block.push_str(&format!(
                        "fz-{rate_number}-{billsec},acct-1,{direction},15550001,{callee},{instant},{instant},,{billsec},ANSWERED\n"
                    ));
                }
            }
        }
    }
    let columns = CanonicalColumns::from_header(CANONICAL_COLUMNS.iter().map(|name| name.as_bytes()))
        .expect("the canonical header has every canonical column");
    let context = RatingContext {
        decks: vec![deck],
        deck_choice: DeckChoice::Single(0),
        input_time_zone: chrono_tz::UTC,
        default_source: "fuzz".into(),
    };
    let rated = rate_csv_block(&context, &columns, block.as_bytes());
    for (status, cost) in rated.status.iter().zip(&rated.cost_mantissa) {
        if *status == RowStatus::Rated {
            assert!(*cost >= 0, "negative cost {cost} from an accepted deck");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (manifest, csv) = match data.iter().position(|&byte| byte == 0) {
        Some(nul) => (std::str::from_utf8(&data[..nul]).ok(), &data[nul + 1..]),
        None => (None, data),
    };
    let text = NativeDeckText {
        csv_file_name: "fuzz.csv",
        csv,
        manifest_file_name: manifest.map(|_| "fuzz.toml"),
        manifest,
        default_name: "fuzz",
    };
    match parse_native_deck(&text) {
        Ok(deck) => rate_with(deck),
        Err(error) => {
            assert!(!error.problems.is_empty(), "a refused deck must say why");
            let _ = error.to_string();
        }
    }
});
