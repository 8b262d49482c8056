//! Rating: decks, prefix lookup and pricing. Pure: no I/O, no clock, no store.

pub mod a2billing_deck;
pub mod astpp_deck;
pub mod bands;
pub mod cgrates_plan;
pub mod cgrates_pricing;
pub mod deck;
pub mod deck_problems;
pub mod deck_summary;
pub mod jurisdiction;
pub mod kazoo_deck;
pub mod native_deck;
pub mod native_export;
pub mod peer_deck;
pub mod prefix_index;
pub mod pricing;
pub mod us_jurisdictional_deck;
