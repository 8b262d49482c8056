//! Outputs and storage: rated-call files, rejects files, and the ledger stores (embedded SQLite
//! and PostgreSQL) behind one contract.

pub mod dictionary_column;
pub mod ledger_store;
pub mod migrations;
pub mod postgres_store;
pub mod rated_output;
pub mod rejects_file;
pub mod sqlite_store;
pub mod usage_rollup;
