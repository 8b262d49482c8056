//! Credit control: accounts, their import, and the rules of posting rated calls to the ledger.

pub mod account_import;
pub mod accounts;
pub mod posting;
