//! Ingest: reading CDR files and decoding their records into [`crate::cdr::Cdr`]s.

pub mod canonical_csv;
pub mod deck_commands;
pub mod deck_files;
pub mod parquet_cdrs;
pub mod record_blocks;
pub mod separator_scan;
pub mod switch_cdrs;
pub mod timestamp;
