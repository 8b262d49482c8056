//! Reading deck files from disk and handing their text to the pure parsers in `rate/`.

use crate::rate::cgrates_plan::{CgratesPlan, PlanFile, TariffPlanText, parse_cgrates_plan};
use crate::rate::deck::Deck;
use crate::rate::jurisdiction::{NpaNxxStates, parse_npanxx_states};
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

/// The deck formats `tollgate rate` reads, chosen with `--deck-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DeckFormat {
    /// tollgate's own CSV, with an optional TOML manifest beside it.
    #[default]
    Native,
    /// NPA-NXX rows with interstate, intrastate and indeterminate rates; needs `--npanxx-states`.
    UsJurisdictional,
    /// A CGRateS tariff plan folder; the CDR's account is the CGRateS subject.
    Cgrates,
}

/// Loads every deck of one format. A US jurisdictional deck needs the NPA-NXX states file that
/// decides each call's jurisdiction, and only it uses one. Every problem of every file is listed.
pub fn load_decks(
    format: DeckFormat,
    paths: &[std::path::PathBuf],
    npanxx_states: Option<&Path>,
) -> Result<Vec<Deck>, String> {
    match (format, npanxx_states) {
        (DeckFormat::Cgrates, _) => Err(
            "a CGRateS tariff plan is not a deck: it is loaded with load_cgrates_plan".to_string(),
        ),
        (DeckFormat::Native, None) => load_native_decks(paths),
        (DeckFormat::Native, Some(_)) => {
            Err("--npanxx-states is only used by --deck-format us-jurisdictional decks".to_string())
        }
        (DeckFormat::UsJurisdictional, None) => Err(
            "--deck-format us-jurisdictional needs --npanxx-states FILE (npanxx,state[,lata]) to \
             tell interstate from intrastate calls"
                .to_string(),
        ),
        (DeckFormat::UsJurisdictional, Some(states_path)) => {
            let mut problems = Vec::new();
            let states = load_npanxx_states(states_path)
                .map_err(|problem| problems.push(problem))
                .ok()
                .map(std::sync::Arc::new);
            let mut decks = Vec::new();
            for path in paths {
                match load_us_jurisdictional_deck(path) {
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
            match states {
                Some(states) if problems.is_empty() => Ok(decks
                    .into_iter()
                    .map(|deck| deck.with_npanxx_states(std::sync::Arc::clone(&states)))
                    .collect()),
                _ => Err(problems.join("\n")),
            }
        }
    }
}

/// Loads a US jurisdictional deck (`NAME.csv`, and `NAME.toml` beside it when present), without
/// NPA-NXX states: enough to check it, not to rate with it (see [`load_decks`]).
pub fn load_us_jurisdictional_deck(csv_path: &Path) -> Result<Deck, String> {
    let files = read_deck_files(csv_path)?;
    crate::rate::us_jurisdictional_deck::parse_us_jurisdictional_deck(&files.text())
        .map_err(|error| error.to_string())
}

/// Loads an NPA-NXX states file (`npanxx,state[,lata]`), refused whole with every problem listed.
pub fn load_npanxx_states(path: &Path) -> Result<NpaNxxStates, String> {
    let text = std::fs::read(path).map_err(|error| {
        format!(
            "cannot read the NPA-NXX states file {}: {error}",
            path.display()
        )
    })?;
    parse_npanxx_states(&path.display().to_string(), &text).map_err(|problems| {
        let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
        format!(
            "NPA-NXX states file {} refused whole: {} problem{}\n  {}",
            path.display(),
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            listed.join("\n  ")
        )
    })
}

/// A deck's CSV and optional manifest, read.
struct DeckFiles {
    csv_file_name: String,
    csv: Vec<u8>,
    manifest_file_name: String,
    manifest: Option<String>,
    default_name: String,
}

impl DeckFiles {
    fn text(&self) -> NativeDeckText<'_> {
        NativeDeckText {
            csv_file_name: &self.csv_file_name,
            csv: &self.csv,
            manifest_file_name: self
                .manifest
                .as_ref()
                .map(|_| self.manifest_file_name.as_str()),
            manifest: self.manifest.as_deref(),
            default_name: &self.default_name,
        }
    }
}

fn read_deck_files(csv_path: &Path) -> Result<DeckFiles, String> {
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
    Ok(DeckFiles {
        default_name: csv_path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| csv_file_name.clone()),
        csv_file_name,
        csv,
        manifest_file_name: manifest_path.display().to_string(),
        manifest,
    })
}
