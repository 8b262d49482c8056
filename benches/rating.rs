//! Criterion benches of the rating core: prefix lookup, pricing, deck loading and a whole block.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tollgate::batch::deck_choice::DeckChoice;
use tollgate::batch::rated_block::{RatingContext, rate_csv_block};
use tollgate::cdr::Direction;
use tollgate::ingest::canonical_csv::CanonicalColumns;
use tollgate::rate::deck::Deck;
use tollgate::rate::native_deck::{NativeDeckText, parse_native_deck};
use tollgate::rate::pricing::price_call;
use tollgate::synthetic::{GenOptions, generate};

const N_CDRS: u64 = 100_000;

struct Fixture {
    deck_csv: Vec<u8>,
    cdrs_csv: Vec<u8>,
}

fn fixture(n_prefixes: usize, n_cdrs: u64) -> Fixture {
    let folder = tempfile::tempdir().unwrap();
    let options = GenOptions {
        n_cdrs,
        n_prefixes,
        n_accounts: 1000,
        seed: 42,
        days: 1,
        reseller_size: 10,
    };
    generate(&options, folder.path()).unwrap();
    Fixture {
        deck_csv: std::fs::read(folder.path().join("deck.csv")).unwrap(),
        cdrs_csv: std::fs::read(folder.path().join("cdrs.csv")).unwrap(),
    }
}

fn parse_deck(csv: &[u8]) -> Deck {
    parse_native_deck(&NativeDeckText {
        csv_file_name: "deck.csv",
        csv,
        manifest_file_name: None,
        manifest: None,
        default_name: "deck",
    })
    .unwrap()
}

fn callees(cdrs_csv: &[u8]) -> Vec<String> {
    let mut reader = csv::Reader::from_reader(cdrs_csv);
    reader
        .records()
        .map(|record| record.unwrap()[4].to_string())
        .collect()
}

fn bench_lookup_and_pricing(criterion: &mut Criterion) {
    let fixture = fixture(50_000, N_CDRS);
    let deck = parse_deck(&fixture.deck_csv);
    let callees = callees(&fixture.cdrs_csv);
    let instant = 1_795_132_800_000_000;
    let mut group = criterion.benchmark_group("rating");
    group.throughput(Throughput::Elements(callees.len() as u64));
    group.bench_function("prefix_lookup_50k_prefixes", |bencher| {
        bencher.iter(|| {
            for callee in &callees {
                black_box(deck.find_rate(black_box(callee), instant, Direction::Outbound));
            }
        })
    });
    let rate_ids: Vec<u32> = callees
        .iter()
        .filter_map(|callee| deck.find_rate(callee, instant, Direction::Outbound))
        .collect();
    group.throughput(Throughput::Elements(rate_ids.len() as u64));
    group.bench_function("price_call", |bencher| {
        bencher.iter(|| {
            for (index, &rate_id) in rate_ids.iter().enumerate() {
                black_box(price_call(
                    &deck,
                    rate_id,
                    instant,
                    (index % 600) as u32 + 1,
                    Direction::Outbound,
                ));
            }
        })
    });
    let columns = CanonicalColumns::from_header(
        "cdr_id,account,direction,caller,callee,start_time,answer_time,end_time,billsec,disposition"
            .split(',')
            .map(str::as_bytes),
    )
    .unwrap();
    let body_start = fixture
        .cdrs_csv
        .iter()
        .position(|&byte| byte == b'\n')
        .unwrap()
        + 1;
    let context = RatingContext {
        decks: std::sync::Arc::new(vec![deck]),
        deck_choice: DeckChoice::Single(0),
        input_time_zone: chrono_tz::UTC,
        default_source: "bench".into(),
    };
    group.throughput(Throughput::Elements(N_CDRS));
    group.bench_function("decode_and_rate_block", |bencher| {
        bencher.iter(|| {
            black_box(rate_csv_block(
                &context,
                &columns,
                &fixture.cdrs_csv[body_start..],
            ))
        })
    });
    group.finish();
}

fn bench_deck_load(criterion: &mut Criterion) {
    let fixture = fixture(300_000, 10);
    let mut group = criterion.benchmark_group("deck");
    group.sample_size(10);
    group.throughput(Throughput::Elements(300_000));
    group.bench_function("load_300k_prefixes", |bencher| {
        bencher.iter(|| black_box(parse_deck(&fixture.deck_csv)))
    });
    group.finish();
}

criterion_group!(benches, bench_lookup_and_pricing, bench_deck_load);
criterion_main!(benches);
