//! Integration tests, compiled as one binary.

/// Alerts delivered to real webhook receivers: signed, once each, retries bounded.
mod alert_delivery;

/// Real-time authorization: trunks, reservations, concurrency, expiry, restarts.
mod call_authorization;
/// CGRateS tariff plans priced end to end, both rounding modes, a broken plan refused.
mod cgrates_plans;
/// kill -9 at random points, and two daemons on one PostgreSQL: every CDR charged once.
mod crash_recovery;
/// `tollgate serve` end to end: spool, HTTP intake, bad input, metrics, stop.
mod daemon;
/// Running the daemon in tests.
mod daemon_support;
/// Peer deck formats (KAZOO, ASTPP, A2Billing): rating, `deck check` and `deck convert`.
mod deck_formats;
/// Deck loading: a bad deck is refused whole with every problem named.
mod deck_loading;
/// The portal API: tokens, tenant isolation, unbilled calls.
mod portal;
/// Data-driven pricing cases: increments, minimums, fees, caps, dates, bands, rounding.
mod pricing;
/// `tollgate rate` end to end: outputs, rejects, duplicates, invariants, unusable input.
mod rate_command;
/// Property tests of the rating invariants.
mod rating_properties;
/// Rerating: only the difference moves, twice is once, history kept.
mod rerate;
/// The store contract, against the embedded store and PostgreSQL.
mod store_contract;
/// PostgreSQL unreachable while the daemon runs: 503s, retries, nothing lost.
mod store_outage;
/// Fresh stores for tests (embedded and PostgreSQL).
mod store_support;
/// Shared helpers.
mod support;
/// `tollgate rate` on Asterisk, FreeSWITCH, KAZOO and CGRateS CDRs: mappings, rejects, resends.
mod switch_cdr_formats;
/// The trunk sweep: held CDRs classified in start order, across files and midnight.
mod trunk_sweep;
/// `tollgate rate` with US jurisdictional decks: inter/intra/indeterminate rates by NPA-NXX state.
mod us_jurisdictional;
/// The usage rollup: equal to its subtree's calls after every kind of change, both stores.
mod usage_rollup;
/// A real HTTP server on 127.0.0.1 playing a webhook endpoint.
mod webhook_receiver;
