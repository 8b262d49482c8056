//! `tollgate accounts import`: an idempotent upsert of an accounts file into the store. The file's
//! accounts are checked together with those already stored (every parent known, no cycles), and
//! the file is refused whole when anything is wrong.

use super::accounts::{Account, AccountBook, parse_accounts_file};
use crate::store::ledger_store::LedgerStore;
use std::collections::HashMap;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub added: usize,
    pub changed: usize,
    pub unchanged: usize,
}

pub fn import_accounts(
    store: &mut dyn LedgerStore,
    file_name: &str,
    text: &[u8],
) -> anyhow::Result<ImportReport> {
    let refused = |problems: Vec<String>| {
        anyhow::anyhow!(
            "{file_name} is refused: {} problem(s), nothing was imported\n  {}",
            problems.len(),
            problems.join("\n  ")
        )
    };
    let incoming = parse_accounts_file(file_name, text).map_err(refused)?;
    let stored: HashMap<String, Account> = store
        .accounts()?
        .into_iter()
        .map(|account| (account.id.clone(), account))
        .collect();
    AccountBook::merged(
        file_name,
        stored.values().cloned().collect(),
        incoming.clone(),
    )
    .map_err(refused)?;
    let mut report = ImportReport::default();
    let mut to_write = Vec::new();
    for account in incoming {
        match stored.get(&account.id) {
            None => report.added += 1,
            Some(existing) if *existing == account => {
                report.unchanged += 1;
                continue;
            }
            Some(_) => report.changed += 1,
        }
        to_write.push(account);
    }
    if !to_write.is_empty() {
        store.upsert_accounts(&to_write)?;
    }
    Ok(report)
}
