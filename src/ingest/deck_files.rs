//! Reading deck files from disk and handing their text to the pure parsers in `rate/`.

use crate::rate::cgrates_plan::{CgratesPlan, PlanFile, TariffPlanText, parse_cgrates_plan};
use crate::rate::deck::Deck;
use crate::rate::jurisdiction::{NpaNxxStates, parse_npanxx_states};
use crate::rate::native_deck::{NativeDeckText, parse_native_deck};
use crate::rate::peer_deck::{PeerDeck, PeerDeckText};
use std::path::Path;

/// The deck formats tollgate reads. Native is tollgate's own; the others are peer systems' rate
/// exports, each parsed by its module in `rate/` into the same [`Deck`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
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
    /// US NPA-NXX rows with interstate, intrastate and indeterminate rates; rating needs
    /// `--npanxx-states`.
    UsJurisdictional,
    /// A CGRateS tariff plan folder; the CDR's account is the CGRateS subject. Not a deck: its
    /// own model (`rate::cgrates_plan`), loaded with [`load_cgrates_plan`].
    Cgrates,
}

impl DeckFormat {
    pub fn name(self) -> &'static str {
        match self {
            DeckFormat::Native => "native",
            DeckFormat::Kazoo => "kazoo",
            DeckFormat::Astpp => "astpp",
            DeckFormat::A2billing => "a2billing",
            DeckFormat::UsJurisdictional => "us-jurisdictional",
            DeckFormat::Cgrates => "cgrates",
        }
    }

    /// Refuses the formats only the batch rater reads (`tollgate rate`): a CGRateS plan is not a
    /// deck, and a jurisdictional deck needs an NPA-NXX states file the daemon does not take yet.
    pub fn check_outside_batch(self) -> Result<(), String> {
        match self {
            DeckFormat::Cgrates | DeckFormat::UsJurisdictional => Err(format!(
                "--deck-format {} is read only by `tollgate rate` for now; the daemon and rerate \
                 take native, kazoo, astpp and a2billing decks",
                self.name()
            )),
            DeckFormat::Native | DeckFormat::Kazoo | DeckFormat::Astpp | DeckFormat::A2billing => {
                Ok(())
            }
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
        if has("interrate") || has("interstate") || has("ijrate") {
            Some(DeckFormat::UsJurisdictional)
        } else if has("min_seconds") {
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
    let without_notes = |deck| LoadedDeck {
        deck,
        notes: Vec::new(),
    };
    match format {
        DeckFormat::Native => return load_native_deck(path).map(without_notes),
        DeckFormat::UsJurisdictional => {
            return load_us_jurisdictional_deck(path).map(without_notes);
        }
        DeckFormat::Cgrates => {
            return Err(format!(
                "{} is a CGRateS tariff plan, not a deck: it rates only with `tollgate rate`",
                path.display()
            ));
        }
        DeckFormat::Kazoo | DeckFormat::Astpp | DeckFormat::A2billing => {}
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
        DeckFormat::Native | DeckFormat::UsJurisdictional | DeckFormat::Cgrates => {
            unreachable!("handled above")
        }
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
    let files = read_deck_files(csv_path)?;
    parse_native_deck(&files.text()).map_err(|error| error.to_string())
}

/// Loads every deck, reporting the problems of all of them at once. Two decks with one name
/// would make `--accounts` ambiguous, so that is refused too.
pub fn load_native_decks(paths: &[std::path::PathBuf]) -> Result<Vec<Deck>, String> {
    load_decks(DeckFormat::Native, paths, None)
}

/// Loads every deck in `format`, reporting the problems of all of them at once; two decks with
/// one name are refused, as for native decks. A US jurisdictional deck needs the NPA-NXX states
/// file that decides each call's jurisdiction, and only it uses one.
pub fn load_decks(
    format: DeckFormat,
    paths: &[std::path::PathBuf],
    npanxx_states: Option<&Path>,
) -> Result<Vec<Deck>, String> {
    load_decks_with_notes(format, paths, npanxx_states).map(|(decks, _)| decks)
}

/// As [`load_decks`], with what the readers noticed without refusing a deck (a column ignored,
/// a row shadowed), each prefixed with its deck's file.
pub fn load_decks_with_notes(
    format: DeckFormat,
    paths: &[std::path::PathBuf],
    npanxx_states: Option<&Path>,
) -> Result<(Vec<Deck>, Vec<String>), String> {
    let mut decks = Vec::new();
    let mut notes = Vec::new();
    let mut problems = Vec::new();
    let states = match (format, npanxx_states) {
        (DeckFormat::UsJurisdictional, Some(states_path)) => load_npanxx_states(states_path)
            .map_err(|problem| problems.push(problem))
            .ok()
            .map(std::sync::Arc::new),
        (DeckFormat::UsJurisdictional, None) => {
            return Err(
                "--deck-format us-jurisdictional needs --npanxx-states FILE (npanxx,state[,lata]) \
                 to tell interstate from intrastate calls"
                    .to_string(),
            );
        }
        (_, Some(_)) => {
            return Err(
                "--npanxx-states is only used by --deck-format us-jurisdictional decks".to_string(),
            );
        }
        (_, None) => None,
    };
    for path in paths {
        match load_deck_with_notes(format, path) {
            Ok(loaded) => {
                notes.extend(
                    loaded
                        .notes
                        .into_iter()
                        .map(|note| format!("{}: {note}", path.display())),
                );
                decks.push(loaded.deck);
            }
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
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    let decks = match states {
        Some(states) => decks
            .into_iter()
            .map(|deck| deck.with_npanxx_states(std::sync::Arc::clone(&states)))
            .collect(),
        None => decks,
    };
    Ok((decks, notes))
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
    let manifest = read_manifest_beside(csv_path)?;
    let csv_file_name = csv_path.display().to_string();
    Ok(DeckFiles {
        default_name: csv_path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| csv_file_name.clone()),
        csv_file_name,
        csv,
        manifest_file_name: csv_path.with_extension("toml").display().to_string(),
        manifest,
    })
}
