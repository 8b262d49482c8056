//! tollgate: CDR rating and credit control. The folder tree is the pipeline:
//! `ingest` (decoding) → `rate` (pure pricing) → `credit` (accounts, posting rules) → `store`
//! (outputs, ledger stores); `batch` runs the nightly job and `daemon` the streaming service.

pub mod batch;
pub mod cdr;
pub mod credit;
pub mod daemon;
pub mod ingest;
pub mod limits;
pub mod money;
pub mod rate;
pub mod store;
pub mod synthetic;
pub mod text;
