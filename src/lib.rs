//! tollgate: CDR rating and credit control. The folder tree is the pipeline:
//! `ingest` (decoding) → `rate` (pure pricing) → `credit` (accounts, posting rules) → `store`
//! (outputs, ledger stores); `batch` runs the nightly job, `daemon` the streaming service and `portal` its read API.

pub mod batch;
pub mod cdr;
pub mod credit;
pub mod daemon;
pub mod ingest;
pub mod limits;
pub mod money;
pub mod portal;
pub mod rate;
pub mod store;
pub mod synthetic;
pub mod text;
