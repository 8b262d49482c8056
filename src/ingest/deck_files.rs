//! Reading deck files from disk and handing their text to the pure parsers in `rate/`.

use crate::rate::deck::Deck;
use crate::rate::native_deck::{NativeDeckText, parse_native_deck};
use crate::rate::peer_deck::{PeerDeck, PeerDeckText};
use std::path::Path;

/// The deck formats tollgate reads. Native is tollgate's own; the others are peer systems' rate
/// exports, each parsed by its module in `rate/` into the same [`Deck`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeckFormat {
    /// tollgate's CSV (+ optional TOML manifest).
    #[default]
    Native,
    /// KAZOO ratedeck CSV (hotornot rates).
    Kazoo,
    /// ASTPP termination or origination rates CSV.
    Astpp,
    /// A2Billing ratecard CSV (cc_ratecard columns).
    A2billing,
}

impl DeckFormat {
    pub fn name(self) -> &'static str {
        match self {
            DeckFormat::Native => "native",
            DeckFormat::Kazoo => "kazoo",
            DeckFormat::Astpp => "astpp",
            DeckFormat::A2billing => "a2billing",
        }
    }

    /// The format a deck file's header names, when it is one tollgate knows.
    pub fn detect(bytes: &[u8]) -> Option<DeckFormat> {
        if looks_like_json(bytes) {
            return Some(DeckFormat::Kazoo);
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(bytes);
        let header = reader.byte_records().next()?.ok()?;
        let names = crate::text::normalized_header_names(header.iter());
        let has = |wanted: &str| names.iter().any(|name| name.starts_with(wanted));
        if has("min_seconds") {
            Some(DeckFormat::Native)
        } else if has("rate_cost") {
            Some(DeckFormat::Kazoo)
        } else if has("dialprefix") || has("rateinitial") {
            Some(DeckFormat::A2billing)
        } else if has("code") && (has("per minute cost") || has("cost / min")) {
            Some(DeckFormat::Astpp)
        } else {
            None
        }
    }
}

fn looks_like_json(bytes: &[u8]) -> bool {
    matches!(bytes.trim_ascii_start().first(), Some(b'{' | b'['))
}

/// A loaded deck and what its reader noticed without refusing it.
pub struct LoadedDeck {
    pub deck: Deck,
    pub notes: Vec<String>,
}

/// Loads a deck in `format`: the file, with `NAME.toml` beside it when present. The error lists
/// every problem (or says why the files cannot be read); nothing of a refused deck is used.
pub fn load_deck_with_notes(format: DeckFormat, path: &Path) -> Result<LoadedDeck, String> {
    if format == DeckFormat::Native {
        return load_native_deck(path).map(|deck| LoadedDeck {
            deck,
            notes: Vec::new(),
        });
    }
    let csv = std::fs::read(path)
        .map_err(|error| format!("cannot read deck {}: {error}", path.display()))?;
    if looks_like_json(&csv) {
        return Err(format!(
            "deck {} is JSON, not a {} rates CSV (a KAZOO trunkstore rates document routes by \
             regular expression, which a prefix deck cannot express)",
            path.display(),
            format.name()
        ));
    }
    let manifest = read_manifest_beside(path)?;
    let file_name = path.display().to_string();
    let manifest_file_name = path.with_extension("toml").display().to_string();
    let default_name = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| file_name.clone());
    let text = PeerDeckText {
        file_name: &file_name,
        csv: &csv,
        manifest_file_name: manifest.as_ref().map(|_| manifest_file_name.as_str()),
        manifest: manifest.as_deref(),
        default_name: &default_name,
    };
    let parsed = match format {
        DeckFormat::Native => unreachable!("handled above"),
        DeckFormat::Kazoo => crate::rate::kazoo_deck::parse_kazoo_deck(&text),
        DeckFormat::Astpp => crate::rate::astpp_deck::parse_astpp_deck(&text),
        DeckFormat::A2billing => crate::rate::a2billing_deck::parse_a2billing_deck(&text),
    };
    parsed
        .map(|PeerDeck { deck, notes }| LoadedDeck { deck, notes })
        .map_err(|error| error.to_string())
}

/// Loads a deck in `format`, for rating.
pub fn load_deck(format: DeckFormat, path: &Path) -> Result<Deck, String> {
    load_deck_with_notes(format, path).map(|loaded| loaded.deck)
}

fn read_manifest_beside(path: &Path) -> Result<Option<String>, String> {
    let manifest_path = path.with_extension("toml");
    match std::fs::read_to_string(&manifest_path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(format!(
            "cannot read deck manifest {}: {error}",
            manifest_path.display()
        )),
    }
}

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
    load_decks(DeckFormat::Native, paths)
}

/// Loads every deck in `format`, reporting the problems of all of them at once; two decks with
/// one name are refused, as for native decks.
pub fn load_decks(format: DeckFormat, paths: &[std::path::PathBuf]) -> Result<Vec<Deck>, String> {
    let mut decks = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match load_deck(format, path) {
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
