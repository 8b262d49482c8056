//! Why a deck was refused: every problem, each with its file, line and column; and reading a
//! deck's CSV rows so that an unreadable one becomes such a problem.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeckProblem {
    pub file: String,
    /// 1-based line in the file; `None` for a problem with the file as a whole.
    pub line: Option<u64>,
    pub column: Option<String>,
    pub reason: String,
}

impl DeckProblem {
    pub fn file(file: &str, reason: String) -> DeckProblem {
        DeckProblem {
            file: file.to_string(),
            line: None,
            column: None,
            reason,
        }
    }

    pub fn row(file: &str, line: u64, column: Option<&str>, reason: String) -> DeckProblem {
        DeckProblem {
            file: file.to_string(),
            line: Some(line),
            column: column.map(str::to_string),
            reason,
        }
    }
}

impl fmt::Display for DeckProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(formatter, ":{line}")?;
        }
        if let Some(column) = &self.column {
            write!(formatter, ": column {column}")?;
        }
        write!(formatter, ": {}", self.reason)
    }
}

/// A refused deck. Nothing of it was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeckError {
    pub deck: String,
    pub problems: Vec<DeckProblem>,
}

impl fmt::Display for DeckError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "deck {} refused whole: {} problem{}",
            self.deck,
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            write!(formatter, "\n  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DeckError {}

/// A reader of a deck's CSV that yields every row, the header too, and lets each parser check
/// widths itself (so a short row is a named problem, not a reader error).
pub fn deck_csv_reader(csv: &[u8]) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(csv)
}

/// A row with its 1-based line, or `None` after naming the problem when it cannot be read.
pub fn readable_row(
    file: &str,
    record: Result<csv::ByteRecord, csv::Error>,
    problems: &mut Vec<DeckProblem>,
) -> Option<(u64, csv::ByteRecord)> {
    match record {
        Ok(record) => Some((
            record.position().map_or(0, |position| position.line()),
            record,
        )),
        Err(error) => {
            let line = error.position().map_or(0, |position| position.line());
            problems.push(DeckProblem::row(
                file,
                line,
                None,
                format!("unreadable row: {error}"),
            ));
            None
        }
    }
}

/// The first row of a deck's CSV, its header; `None` after naming the problem when the file is
/// empty or the row cannot be read.
pub fn header_row(
    file: &str,
    records: &mut impl Iterator<Item = Result<csv::ByteRecord, csv::Error>>,
    problems: &mut Vec<DeckProblem>,
) -> Option<csv::ByteRecord> {
    match records.next() {
        Some(Ok(header)) => Some(header),
        Some(Err(error)) => {
            problems.push(DeckProblem::file(
                file,
                format!("cannot read the header: {error}"),
            ));
            None
        }
        None => {
            problems.push(DeckProblem::file(file, "the deck is empty".to_string()));
            None
        }
    }
}
