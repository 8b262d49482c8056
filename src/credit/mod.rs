//! Credit control: accounts and (to come) the ledger, trunks, alerts and recharge.

pub mod accounts;
