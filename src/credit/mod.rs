//! Credit control: accounts, their import, the rules of posting rated calls to the ledger, and
//! balance thresholds.

pub mod account_import;
pub mod accounts;
pub mod posting;
pub mod recharge;
pub mod thresholds;
