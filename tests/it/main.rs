//! Integration tests, compiled as one binary.

/// Deck loading: a bad deck is refused whole with every problem named.
mod deck_loading;
/// Data-driven pricing cases: increments, minimums, fees, caps, dates, bands, rounding.
mod pricing;
/// `tollgate rate` end to end: outputs, rejects, duplicates, invariants, unusable input.
mod rate_command;
/// Property tests of the rating invariants.
mod rating_properties;
/// Shared helpers.
mod support;
