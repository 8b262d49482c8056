//! Which deck prices a CDR: the one deck of the run, or the deck its account names for the call's
//! direction (with the account's currency checked against the deck's).

use crate::cdr::{Direction, RejectReason};
use crate::credit::accounts::AccountBook;
use crate::rate::cgrates_pricing::CgratesTariff;
use crate::rate::deck::Deck;
use std::collections::HashMap;
use std::sync::Arc;

/// Index of a deck in the run's deck list.
pub type DeckIndex = u16;

pub enum DeckChoice {
    /// No accounts file: the one deck rates every CDR.
    Single(DeckIndex),
    /// Per account, the deck (or why there is none) for outbound and inbound calls.
    ByAccount(HashMap<String, [Result<DeckIndex, RejectReason>; 2]>),
    /// A CGRateS tariff plan prices every CDR, its account read as the CGRateS subject; deck 0
    /// stands for the plan in rated output and totals (see `CgratesTariff::display_deck`).
    Cgrates(Arc<CgratesTariff>),
}

impl DeckChoice {
    /// Resolves an accounts file against the loaded decks. A deck name that no `--deck` provides
    /// makes the run unusable, so it is an error here rather than a reject per CDR.
    pub fn by_account(book: &AccountBook, decks: &[Deck]) -> Result<DeckChoice, String> {
        let (choice, unknown_decks) = Self::by_account_listing_unknown_decks(book, decks);
        match unknown_decks {
            None => Ok(choice),
            Some(problem) => Err(problem),
        }
    }

    /// As [`Self::by_account`], but an account naming an unknown deck only has its CDRs rejected
    /// (`no_deck_for_account`); the problem comes back for the daemon to log.
    pub fn by_account_listing_unknown_decks(
        book: &AccountBook,
        decks: &[Deck],
    ) -> (DeckChoice, Option<String>) {
        let mut unknown_decks = Vec::new();
        let mut choices = HashMap::with_capacity(book.accounts.len());
        for account in book.accounts.values() {
            let choose = |direction: Direction| -> Result<DeckIndex, RejectReason> {
                let name = account
                    .deck_for(direction)
                    .ok_or(RejectReason::NoDeckForAccount)?;
                let index = decks
                    .iter()
                    .position(|deck| deck.name == name)
                    .ok_or(RejectReason::NoDeckForAccount)?;
                if decks[index].currency != account.currency {
                    return Err(RejectReason::CurrencyMismatch);
                }
                Ok(index as DeckIndex)
            };
            for direction in [Direction::Outbound, Direction::Inbound] {
                if let Some(name) = account.deck_for(direction)
                    && !decks.iter().any(|deck| deck.name == name)
                {
                    unknown_decks.push(format!("account {} names deck {name}", account.id));
                }
            }
            choices.insert(
                account.id.clone(),
                [choose(Direction::Outbound), choose(Direction::Inbound)],
            );
        }
        let problem = (!unknown_decks.is_empty()).then(|| {
            unknown_decks.sort();
            let loaded: Vec<&str> = decks.iter().map(|deck| deck.name.as_str()).collect();
            format!(
                "the accounts name decks that were not loaded (loaded: {}): {}",
                loaded.join(", "),
                unknown_decks.join("; ")
            )
        });
        (DeckChoice::ByAccount(choices), problem)
    }

    pub fn deck_for(&self, account: &str, direction: Direction) -> Result<DeckIndex, RejectReason> {
        match self {
            DeckChoice::Single(index) => Ok(*index),
            DeckChoice::Cgrates(_) => Ok(0),
            DeckChoice::ByAccount(choices) => {
                let choice = choices.get(account).ok_or(RejectReason::UnknownAccount)?;
                match direction {
                    Direction::Outbound => choice[0],
                    Direction::Inbound => choice[1],
                }
            }
        }
    }
}
