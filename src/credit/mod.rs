//! Credit control: accounts, their import, the rules of posting rated calls to the ledger,
//! balance thresholds and the events they raise, the daily auto-recharge, and rerating.

pub mod account_import;
pub mod accounts;
pub mod alert_events;
pub mod authorization;
pub mod posting;
pub mod recharge;
pub mod rerate;
pub mod thresholds;
pub mod trunk_sweep;
pub mod trunks;
