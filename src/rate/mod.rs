//! Rating: decks, prefix lookup and pricing. Pure: no I/O, no clock, no store.

pub mod bands;
pub mod cgrates_plan;
pub mod cgrates_pricing;
pub mod deck;
pub mod deck_problems;
pub mod jurisdiction;
pub mod native_deck;
pub mod prefix_index;
pub mod pricing;
pub mod us_jurisdictional_deck;
