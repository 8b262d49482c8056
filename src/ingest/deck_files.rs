//! Reading deck files from disk and handing their text to the pure parsers in `rate/`.

use crate::rate::deck::Deck;
use crate::rate::native_deck::{NativeDeckText, parse_native_deck};
use std::path::Path;

/// Loads a native deck: `NAME.csv`, with `NAME.toml` beside it when present. The error lists every
/// problem (or says why the files cannot be read); nothing of a refused deck is used.
pub fn load_native_deck(csv_path: &Path) -> Result<Deck, String> {
    let csv = std::fs::read(csv_path)
        .map_err(|error| format!("cannot read deck {}: {error}", csv_path.display()))?;
    let manifest_path = csv_path.with_extension("toml");
    let manifest = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => {
            return Err(format!(
                "cannot read deck manifest {}: {error}",
                manifest_path.display()
            ));
        }
    };
    let csv_file_name = csv_path.display().to_string();
    let manifest_file_name = manifest_path.display().to_string();
    let default_name = csv_path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| csv_file_name.clone());
    parse_native_deck(&NativeDeckText {
        csv_file_name: &csv_file_name,
        csv: &csv,
        manifest_file_name: manifest.as_ref().map(|_| manifest_file_name.as_str()),
        manifest: manifest.as_deref(),
        default_name: &default_name,
    })
    .map_err(|error| error.to_string())
}

/// Loads every deck, reporting the problems of all of them at once. Two decks with one name
/// would make `--accounts` ambiguous, so that is refused too.
pub fn load_native_decks(paths: &[std::path::PathBuf]) -> Result<Vec<Deck>, String> {
    let mut decks = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match load_native_deck(path) {
            Ok(deck) => decks.push(deck),
            Err(problem) => problems.push(problem),
        }
    }
    for (index, deck) in decks.iter().enumerate() {
        if decks[..index]
            .iter()
            .any(|earlier| earlier.name == deck.name)
        {
            problems.push(format!(
                "two decks are named {}: give each a distinct name in its manifest",
                deck.name
            ));
        }
    }
    if problems.is_empty() {
        Ok(decks)
    } else {
        Err(problems.join("\n"))
    }
}
