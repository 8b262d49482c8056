//! Why a deck was refused: every problem, each with its file, line and column.

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
