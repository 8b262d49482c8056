//! Fuzzes the canonical CDR CSV decoder and rater (`rate_csv_block`) with arbitrary bytes as one block of records.
//!
//! The block is rated against three fixture decks (no manifest; peak/off-peak bands; a Berlin
//! time zone with a rate change at local midnight), each as the run's single deck, with the
//! canonical header `cdr_id,account,direction,caller,callee,start_time,answer_time,end_time,
//! billsec,disposition` and input times read in UTC.
//!
//! Contract checked: never panics, whatever the bytes; the rated block's columns all have one
//! entry per row; rejects point at real rows; rated costs are never negative.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use tollgate::batch::deck_choice::DeckChoice;
use tollgate::batch::rated_block::{RatedBlock, RatingContext, RowStatus, rate_csv_block};
use tollgate::ingest::canonical_csv::CanonicalColumns;
use tollgate::rate::native_deck::{NativeDeckText, parse_native_deck};

const CANONICAL_HEADER: &str =
    "cdr_id,account,direction,caller,callee,start_time,answer_time,end_time,billsec,disposition";

/// The fixture decks, embedded so the target does not depend on the working directory.
const DECKS: [(&str, &str, Option<&str>); 3] = [
    ("basic", include_str!("../../fixtures/decks/basic.csv"), None),
    (
        "bands",
        include_str!("../../fixtures/decks/bands.csv"),
        Some(include_str!("../../fixtures/decks/bands.toml")),
    ),
    (
        "effective-midnight",
        include_str!("../../fixtures/decks/effective-midnight.csv"),
        Some(include_str!("../../fixtures/decks/effective-midnight.toml")),
    ),
];

struct Setup {
    columns: CanonicalColumns,
    contexts: Vec<RatingContext>,
}

static SETUP: LazyLock<Setup> = LazyLock::new(|| {
    let columns = CanonicalColumns::from_header(CANONICAL_HEADER.split(',').map(str::as_bytes))
        .expect("the canonical header is valid");
    let contexts = DECKS
        .iter()
        .map(|&(name, csv, manifest)| {
            let deck = parse_native_deck(&NativeDeckText {
                csv_file_name: name,
                csv: csv.as_bytes(),
                manifest_file_name: manifest.map(|_| name),
                manifest,
                default_name: name,
            })
            .unwrap_or_else(|error| panic!("fixture deck {name} is refused: {error}"));
            RatingContext {
                decks: vec![deck],
                deck_choice: DeckChoice::Single(0),
                input_time_zone: chrono_tz::UTC,
                default_source: "fuzz".into(),
            }
        })
        .collect();
    Setup { columns, contexts }
});

fn check(block: &RatedBlock) {
    let n_rows = block.n_rows();
    assert_eq!(block.deck.len(), n_rows);
    assert_eq!(block.rate.len(), n_rows);
    assert_eq!(block.billable_seconds.len(), n_rows);
    assert_eq!(block.cost_mantissa.len(), n_rows);
    assert_eq!(block.key_digest.len(), n_rows);
    assert_eq!(block.content_digest.len(), n_rows);
    for column in &block.input_columns {
        assert_eq!(column.len(), n_rows);
    }
    assert!(block.n_records >= n_rows as u64);
    for reject in &block.rejected_records {
        if let Some(row) = reject.row {
            assert!(row < n_rows, "reject points at row {row} of {n_rows}");
        }
    }
    for (status, cost) in block.status.iter().zip(&block.cost_mantissa) {
        if *status == RowStatus::Rated {
            assert!(*cost >= 0, "negative cost {cost}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let setup = &*SETUP;
    for context in &setup.contexts {
        check(&rate_csv_block(context, &setup.columns, data));
    }
});
