//! Helpers shared by the integration tests: building decks from text, running the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tollgate::rate::deck::Deck;
use tollgate::rate::native_deck::{NativeDeckText, parse_native_deck};

pub fn deck_from_text(csv: &str, manifest: Option<&str>) -> Deck {
    parse_native_deck(&NativeDeckText {
        csv_file_name: "test.csv",
        csv: csv.as_bytes(),
        manifest_file_name: manifest.map(|_| "test.toml"),
        manifest,
        default_name: "test",
    })
    .unwrap_or_else(|error| panic!("{error}"))
}

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub fn tollgate(arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(arguments)
        .output()
        .expect("the tollgate binary runs")
}

/// Runs the binary and fails the test, showing stderr, unless it succeeds.
pub fn tollgate_succeeds(arguments: &[String]) -> Output {
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let output = tollgate(&arguments);
    assert!(
        output.status.success(),
        "tollgate {}: {}",
        arguments.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub fn micros(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_micros()
}
