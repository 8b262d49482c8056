//! The batch job behind `tollgate rate`: files in, rated output, rejects and a summary out.

pub mod deck_choice;
pub mod pipeline;
pub mod progress;
pub mod rated_block;
pub mod summary;
mod switch_input;
pub mod trunk_pass;
