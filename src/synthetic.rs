//! `tollgate gen`: deterministic synthetic decks and CDR files for demos, tests and benchmarks.
//!
//! The same seed and sizes give byte-identical files on every machine (ChaCha8 is a portable
//! generator). The deck uses only the canonical columns, so peer tools price it by the same rules.

use anyhow::Context;
use chrono::{Datelike, Timelike};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

#[derive(Clone, Debug)]
pub struct GenOptions {
    pub n_cdrs: u64,
    pub n_prefixes: usize,
    pub n_accounts: usize,
    pub seed: u64,
    /// Days the calls are spread over, the last being 2026-11-20.
    pub days: u32,
    /// Accounts per reseller: every this-many-th account is a reseller over the ones after it.
    pub reseller_size: usize,
}

/// Country calling codes with a destination name; the deck gives each a base rate and sub-prefixes.
const COUNTRIES: [(&str, &str); 40] = [
    ("7", "Russia"),
    ("20", "Egypt"),
    ("27", "South Africa"),
    ("30", "Greece"),
    ("31", "Netherlands"),
    ("32", "Belgium"),
    ("33", "France"),
    ("34", "Spain"),
    ("36", "Hungary"),
    ("39", "Italy"),
    ("40", "Romania"),
    ("41", "Switzerland"),
    ("43", "Austria"),
    ("44", "United Kingdom"),
    ("45", "Denmark"),
    ("46", "Sweden"),
    ("47", "Norway"),
    ("48", "Poland"),
    ("49", "Germany"),
    ("51", "Peru"),
    ("52", "Mexico"),
    ("54", "Argentina"),
    ("55", "Brazil"),
    ("56", "Chile"),
    ("57", "Colombia"),
    ("60", "Malaysia"),
    ("61", "Australia"),
    ("62", "Indonesia"),
    ("63", "Philippines"),
    ("64", "New Zealand"),
    ("65", "Singapore"),
    ("66", "Thailand"),
    ("81", "Japan"),
    ("82", "South Korea"),
    ("84", "Vietnam"),
    ("86", "China"),
    ("90", "Turkey"),
    ("91", "India"),
    ("234", "Nigeria"),
    ("254", "Kenya"),
];

/// (min_seconds, increment) billing schemes and how often each is drawn.
const INCREMENT_SCHEMES: [((u32, u32), u32); 5] = [
    ((60, 60), 35),
    ((1, 1), 25),
    ((6, 6), 20),
    ((30, 6), 10),
    ((60, 1), 10),
];

const DAY_START_SECONDS: i64 = 1_795_132_800; // 2026-11-20T00:00:00Z

struct GeneratedRate {
    prefix: String,
}

/// Writes `deck.csv`, `cdrs.csv` and `accounts.csv` into `out_dir`.
pub fn generate(options: &GenOptions, out_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut random = ChaCha8Rng::seed_from_u64(options.seed);
    let rates = write_deck(options, &out_dir.join("deck.csv"), &mut random)?;
    write_accounts(options, &out_dir.join("accounts.csv"))?;
    write_cdrs(options, &rates, &out_dir.join("cdrs.csv"), &mut random)?;
    Ok(())
}

fn uniform(random: &mut ChaCha8Rng) -> f64 {
    (random.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn below(random: &mut ChaCha8Rng, bound: u64) -> u64 {
    random.next_u64() % bound.max(1)
}

fn digits(random: &mut ChaCha8Rng, text: &mut String, n_digits: usize) {
    for _ in 0..n_digits {
        text.push(char::from(b'0' + below(random, 10) as u8));
    }
}

fn write_deck(
    options: &GenOptions,
    path: &Path,
    random: &mut ChaCha8Rng,
) -> anyhow::Result<Vec<GeneratedRate>> {
    let mut out = BufWriter::new(
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    writeln!(
        out,
        "prefix,destination,rate,connect_fee,min_seconds,increment,effective_from,effective_until"
    )?;
    let mut seen = HashSet::new();
    let mut rates = Vec::with_capacity(options.n_prefixes);
    let n_prefixes = options.n_prefixes.max(COUNTRIES.len() + 2);
    // About 40% of the deck is a US NPA-NXX block, as in real wholesale decks.
    let n_us = n_prefixes * 2 / 5;
    let mut candidates: Vec<(String, String)> =
        vec![("1".to_string(), "United States".to_string())];
    candidates.extend(
        COUNTRIES
            .iter()
            .map(|(code, name)| (code.to_string(), name.to_string())),
    );
    while candidates.len() < n_us + COUNTRIES.len() + 1 {
        let mut prefix = String::from("1");
        prefix.push(char::from(b'2' + below(random, 8) as u8));
        digits(random, &mut prefix, 2);
        prefix.push(char::from(b'2' + below(random, 8) as u8));
        digits(random, &mut prefix, 2);
        candidates.push((prefix, "United States - NPA-NXX".to_string()));
    }
    while candidates.len() < n_prefixes {
        let (code, name) = COUNTRIES[below(random, COUNTRIES.len() as u64) as usize];
        let mut prefix = code.to_string();
        let extra = 1 + below(random, 4) as usize;
        digits(random, &mut prefix, extra);
        let kind = if prefix.as_bytes()[code.len()] >= b'6' {
            "Mobile"
        } else {
            "Fixed"
        };
        candidates.push((prefix, format!("{name} - {kind}")));
    }
    for (prefix, destination) in candidates {
        if !seen.insert(prefix.clone()) {
            continue;
        }
        let rate_ten_thousandths = 10 + below(random, 4990);
        let connect_fee = if below(random, 10) == 0 {
            format!("0.0{}", 1 + below(random, 9))
        } else {
            "0".to_string()
        };
        let mut draw = below(random, 100) as u32;
        let mut scheme = INCREMENT_SCHEMES[0].0;
        for (candidate, weight) in INCREMENT_SCHEMES {
            if draw < weight {
                scheme = candidate;
                break;
            }
            draw -= weight;
        }
        writeln!(
            out,
            "{prefix},{destination},{}.{:04},{connect_fee},{},{},2026-01-01,",
            rate_ten_thousandths / 10_000,
            rate_ten_thousandths % 10_000,
            scheme.0,
            scheme.1
        )?;
        rates.push(GeneratedRate { prefix });
    }
    out.flush()?;
    Ok(rates)
}

fn write_accounts(options: &GenOptions, path: &Path) -> anyhow::Result<()> {
    let mut out = BufWriter::new(
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    writeln!(out, "account,parent,currency,outbound_deck,inbound_deck")?;
    // Every `reseller_size`-th account is a reseller; the accounts after it are its sub-accounts.
    let size = options.reseller_size.max(1);
    for index in 0..options.n_accounts.max(1) {
        let parent = if index % size == 0 {
            String::new()
        } else {
            account_id(index - index % size)
        };
        writeln!(out, "{},{parent},USD,deck,deck", account_id(index))?;
    }
    out.flush()?;
    Ok(())
}

fn account_id(index: usize) -> String {
    format!("acct-{index:05}")
}

fn write_cdrs(
    options: &GenOptions,
    rates: &[GeneratedRate],
    path: &Path,
    random: &mut ChaCha8Rng,
) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    writeln!(
        out,
        "cdr_id,account,direction,caller,callee,start_time,answer_time,end_time,billsec,disposition"
    )?;
    let accounts: Vec<String> = (0..options.n_accounts.max(1)).map(account_id).collect();
    let mut line = String::with_capacity(256);
    for index in 0..options.n_cdrs {
        line.clear();
        let days = i64::from(options.days.max(1));
        let start = DAY_START_SECONDS - (days - 1) * 86_400
            + (index as i64 * 86_400 * days) / options.n_cdrs.max(1) as i64
            + below(random, 60) as i64;
        let account = &accounts[below(random, accounts.len() as u64) as usize];
        let direction = if below(random, 10) == 0 {
            "inbound"
        } else {
            "outbound"
        };
        let mut caller = String::from("1");
        digits(random, &mut caller, 10);
        let mut callee = if below(random, 500) == 0 {
            String::from("999") // no country uses 999: a no-rate reject
        } else {
            rates[below(random, rates.len() as u64) as usize]
                .prefix
                .clone()
        };
        let target_length = (11 + below(random, 3) as usize).max(callee.len() + 1);
        let remaining = target_length - callee.len();
        digits(random, &mut callee, remaining);
        let ring = below(random, 20) as i64;
        use std::fmt::Write as _;
        write!(
            line,
            "g{}-{index:010},{account},{direction},{caller},{callee},",
            options.seed
        )?;
        push_time(&mut line, start);
        line.push(',');
        let answered = below(random, 100) >= 30;
        if answered {
            // Exponential durations with a mean of two minutes, capped at four hours.
            let billsec = ((-uniform(random).max(1e-12).ln()) * 120.0).min(14_400.0) as i64;
            push_time(&mut line, start + ring);
            line.push(',');
            push_time(&mut line, start + ring + billsec);
            write!(line, ",{billsec},ANSWERED")?;
        } else {
            line.push(',');
            push_time(&mut line, start + ring);
            let disposition = ["NO ANSWER", "BUSY", "FAILED"][below(random, 3) as usize];
            write!(line, ",0,{disposition}")?;
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

fn push_time(line: &mut String, epoch_seconds: i64) {
    use std::fmt::Write as _;
    let time =
        chrono::DateTime::from_timestamp(epoch_seconds, 0).expect("generated times are in range");
    let _ = write!(
        line,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        time.year(),
        time.month(),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    );
}
