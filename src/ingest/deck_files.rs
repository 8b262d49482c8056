//! Reading deck files from disk and handing their text to the pure parsers in `rate/`.

use crate::rate::cgrates_plan::{CgratesPlan, PlanFile, TariffPlanText, parse_cgrates_plan};
use crate::rate::deck::Deck;
use crate::rate::native_deck::{NativeDeckText, parse_native_deck};
use std::path::Path;

/// The format of the files given with `--deck`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeckFormat {
    /// tollgate's CSV (with an optional TOML manifest beside it).
    Native,
    /// A CGRateS tariff plan folder; the CDR's account is the CGRateS subject.
    Cgrates,
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

/// Loads a CGRateS tariff plan folder (`Destinations.csv`, `Timings.csv`, `Rates.csv`,
/// `DestinationRates.csv`, `RatingPlans.csv`, `RatingProfiles.csv`). The error lists every
/// problem; nothing of a refused plan is used.
pub fn load_cgrates_plan(folder: &Path) -> Result<CgratesPlan, String> {
    if !folder.is_dir() {
        return Err(format!(
            "{} is not a folder: a CGRateS tariff plan is a folder of CSV files",
            folder.display()
        ));
    }
    const FILE_NAMES: [&str; 6] = [
        "Destinations.csv",
        "Timings.csv",
        "Rates.csv",
        "DestinationRates.csv",
        "RatingPlans.csv",
        "RatingProfiles.csv",
    ];
    let mut contents: Vec<Option<Vec<u8>>> = Vec::new();
    for file_name in FILE_NAMES {
        let path = folder.join(file_name);
        match std::fs::read(&path) {
            Ok(bytes) => contents.push(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => contents.push(None),
            Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
        }
    }
    let file = |index: usize| {
        contents[index].as_deref().map(|bytes| PlanFile {
            name: FILE_NAMES[index],
            bytes,
        })
    };
    let plan_name = folder
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| folder.display().to_string());
    parse_cgrates_plan(&TariffPlanText {
        plan_name: &plan_name,
        destinations: file(0),
        timings: file(1),
        rates: file(2),
        destination_rates: file(3),
        rating_plans: file(4),
        rating_profiles: file(5),
    })
    .map_err(|error| format!("{} ({})", error, folder.display()))
}
