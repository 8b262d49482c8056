//! `tollgate deck check` and `tollgate deck convert`: load a deck in any format, say what is in
//! it or what is wrong with it, and write it in the native format when that can express it.

use super::deck_files::{DeckFormat, LoadedDeck, load_cgrates_plan, load_deck_with_notes};
use crate::rate::deck_summary::summarize_deck;
use crate::rate::native_export::write_native_deck;
use std::fmt::Write as _;
use std::path::Path;

/// What `deck check` prints, and whether the deck was accepted.
pub struct DeckCheck {
    pub report: String,
    pub accepted: bool,
}

/// The format to read `path` in: the one given, else the one its header names.
fn choose_format(format: Option<DeckFormat>, path: &Path) -> Result<(DeckFormat, String), String> {
    if let Some(format) = format {
        return Ok((format, format!("format {} (given)", format.name())));
    }
    if path.is_dir() {
        return Ok((
            DeckFormat::Cgrates,
            "format cgrates (a folder: a CGRateS tariff plan)".to_string(),
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|error| format!("cannot read deck {}: {error}", path.display()))?;
    let format = DeckFormat::detect(&bytes).ok_or_else(|| {
        format!(
            "cannot tell the format of {} from its header: give --deck-format native, kazoo, astpp, a2billing, us-jurisdictional or cgrates",
            path.display()
        )
    })?;
    Ok((
        format,
        format!("format {} (read from the file)", format.name()),
    ))
}

/// Loads and validates a deck: a summary when it is accepted, every problem when it is not.
pub fn check_deck(format: Option<DeckFormat>, path: &Path) -> DeckCheck {
    let (format, format_line) = match choose_format(format, path) {
        Ok(chosen) => chosen,
        Err(reason) => {
            return DeckCheck {
                report: format!("{reason}\n"),
                accepted: false,
            };
        }
    };
    let mut report = format!("{}: {format_line}\n", path.display());
    if format == DeckFormat::Cgrates {
        let loaded = load_cgrates_plan(path).map(|plan| {
            let mut summary = plan.summary();
            for note in &plan.notes {
                let _ = writeln!(summary, "  note: {note}");
            }
            summary
        });
        let accepted = loaded.is_ok();
        match loaded {
            Ok(summary) => {
                report.push_str(&summary);
                report.push_str("ok: no problems\n");
            }
            Err(problems) => {
                let _ = writeln!(report, "{problems}");
            }
        }
        return DeckCheck { report, accepted };
    }
    match load_deck_with_notes(format, path) {
        Ok(LoadedDeck { deck, notes }) => {
            report.push_str(&summarize_deck(&deck).to_string());
            for note in notes {
                let _ = writeln!(report, "  note: {note}");
            }
            let _ = writeln!(report, "ok: no problems");
            DeckCheck {
                report,
                accepted: true,
            }
        }
        Err(problems) => {
            let _ = writeln!(report, "{problems}");
            DeckCheck {
                report,
                accepted: false,
            }
        }
    }
}

/// Writes the deck at `path` as native `out` (`NAME.csv`) and `NAME.toml`, or says why not.
/// Files are written under temporary names and renamed when complete.
pub fn convert_deck(format: Option<DeckFormat>, path: &Path, out: &Path) -> Result<String, String> {
    if out.extension().and_then(|extension| extension.to_str()) != Some("csv") {
        return Err(format!("--out {} must name a .csv file", out.display()));
    }
    let (format, _) = choose_format(format, path)?;
    if format == DeckFormat::Cgrates {
        return Err(format!(
            "{} is a CGRateS tariff plan: the native format cannot express its rating profiles, \
             fallback subjects and per-increment rounding; rate with it directly \
             (tollgate rate --deck-format cgrates)",
            path.display()
        ));
    }
    let LoadedDeck { deck, .. } = load_deck_with_notes(format, path)?;
    let files = write_native_deck(&deck).map_err(|reasons| {
        format!(
            "deck {} cannot be converted: the native format cannot express\n  {}",
            deck.name,
            reasons.join("\n  ")
        )
    })?;
    let manifest_path = out.with_extension("toml");
    for (target, content) in [
        (out, &files.csv),
        (manifest_path.as_path(), &files.manifest),
    ] {
        let partial = target.with_extension(format!(
            "{}.partial",
            target.extension().and_then(|e| e.to_str()).unwrap_or("")
        ));
        std::fs::write(&partial, content)
            .map_err(|error| format!("cannot write {}: {error}", partial.display()))?;
        std::fs::rename(&partial, target)
            .map_err(|error| format!("cannot write {}: {error}", target.display()))?;
    }
    Ok(format!(
        "wrote {} and {}: {} rates of deck {} ({} format)",
        out.display(),
        manifest_path.display(),
        deck.rates.len(),
        deck.name,
        format.name()
    ))
}
