//! What the daemon rates with: the decks loaded at start and the accounts of the store, rebuilt
//! into a new rating context whenever the store's accounts generation moves (an import while the
//! daemon runs takes effect on the next file or request).

use crate::batch::deck_choice::DeckChoice;
use crate::batch::rated_block::RatingContext;
use crate::credit::accounts::AccountBook;
use crate::rate::deck::Deck;
use crate::store::ledger_store::LedgerStore;
use std::sync::{Arc, RwLock};

pub struct RatingState {
    decks: Arc<Vec<Deck>>,
    input_time_zone: chrono_tz::Tz,
    default_source: String,
    current: RwLock<(i64, Arc<RatingContext>)>,
}

impl RatingState {
    pub fn new(
        decks: Vec<Deck>,
        input_time_zone: chrono_tz::Tz,
        default_source: String,
        store: &mut dyn LedgerStore,
    ) -> anyhow::Result<RatingState> {
        let decks = Arc::new(decks);
        let generation = store.accounts_generation()?;
        let context = build_context(&decks, input_time_zone, &default_source, store)?;
        Ok(RatingState {
            decks,
            input_time_zone,
            default_source,
            current: RwLock::new((generation, Arc::new(context))),
        })
    }

    /// The context to rate with now.
    pub fn context(&self) -> Arc<RatingContext> {
        Arc::clone(&self.current.read().expect("rating state lock").1)
    }

    /// Rebuilds the context when the accounts changed since it was built.
    pub fn refresh(&self, store: &mut dyn LedgerStore) -> anyhow::Result<()> {
        let generation = store.accounts_generation()?;
        if generation == self.current.read().expect("rating state lock").0 {
            return Ok(());
        }
        let context = build_context(
            &self.decks,
            self.input_time_zone,
            &self.default_source,
            store,
        )?;
        *self.current.write().expect("rating state lock") = (generation, Arc::new(context));
        tracing::info!(generation, "accounts changed: rating context rebuilt");
        Ok(())
    }
}

fn build_context(
    decks: &Arc<Vec<Deck>>,
    input_time_zone: chrono_tz::Tz,
    default_source: &str,
    store: &mut dyn LedgerStore,
) -> anyhow::Result<RatingContext> {
    let mut book = AccountBook::default();
    for account in store.accounts()? {
        book.accounts.insert(account.id.clone(), account);
    }
    let (deck_choice, unknown_decks) = DeckChoice::by_account_listing_unknown_decks(&book, decks);
    if let Some(problem) = unknown_decks {
        tracing::warn!("{problem}; their CDRs are rejected as no_deck_for_account");
    }
    Ok(RatingContext {
        decks: Arc::clone(decks),
        deck_choice,
        input_time_zone,
        default_source: default_source.to_string(),
    })
}
