//! Outputs and storage: rated-call files, rejects files.

pub mod rated_output;
pub mod rejects_file;
