//! Accounts as the batch rater needs them: the tree, the currency, and which deck prices each
//! direction. The credit-control fields (limits, thresholds, trunks) join this type with the ledger.

use crate::cdr::Direction;
use std::collections::HashMap;

pub const ACCOUNT_COLUMNS: [&str; 5] = [
    "account",
    "parent",
    "currency",
    "outbound_deck",
    "inbound_deck",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub parent: Option<String>,
    pub currency: String,
    pub outbound_deck: Option<String>,
    pub inbound_deck: Option<String>,
}

impl Account {
    pub fn deck_for(&self, direction: Direction) -> Option<&str> {
        match direction {
            Direction::Outbound => self.outbound_deck.as_deref(),
            Direction::Inbound => self.inbound_deck.as_deref(),
        }
    }
}

/// Every account by id, validated as a whole: unique ids, known parents, no cycles.
#[derive(Clone, Debug, Default)]
pub struct AccountBook {
    pub accounts: HashMap<String, Account>,
}

impl AccountBook {
    pub fn get(&self, id: &str) -> Option<&Account> {
        self.accounts.get(id)
    }

    /// The account and its ancestors up to the root, nearest first.
    pub fn chain<'a>(&'a self, id: &str) -> Vec<&'a Account> {
        let mut chain = Vec::new();
        let mut next = self.accounts.get(id);
        while let Some(account) = next {
            chain.push(account);
            next = account
                .parent
                .as_deref()
                .and_then(|parent| self.accounts.get(parent));
            assert!(
                chain.len() <= self.accounts.len(),
                "account tree has a cycle"
            );
        }
        chain
    }
}

/// Parses an accounts CSV (`account,parent,currency,outbound_deck,inbound_deck`). Every problem is
/// listed; a file with any problem is refused whole.
pub fn parse_accounts_csv(file_name: &str, text: &[u8]) -> Result<AccountBook, Vec<String>> {
    let mut problems = Vec::new();
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(text);
    let header: Vec<String> = match reader.headers() {
        Ok(header) => header
            .iter()
            .map(|name| name.trim().to_ascii_lowercase())
            .collect(),
        Err(error) => {
            return Err(vec![format!(
                "{file_name}: cannot read the header: {error}"
            )]);
        }
    };
    let positions: Vec<Option<usize>> = ACCOUNT_COLUMNS
        .iter()
        .map(|wanted| header.iter().position(|name| name == wanted))
        .collect();
    if positions[0].is_none() || positions[2].is_none() {
        return Err(vec![format!(
            "{file_name}: the header needs at least the columns account and currency"
        )]);
    }
    let mut book = AccountBook::default();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                problems.push(format!("{file_name}: {error}"));
                continue;
            }
        };
        let line = record
            .position()
            .map(|position| position.line())
            .unwrap_or(0);
        let field = |column: usize| -> Option<String> {
            positions[column]
                .and_then(|position| record.get(position))
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_string)
        };
        let Some(id) = field(0) else {
            problems.push(format!("{file_name}:{line}: column account is empty"));
            continue;
        };
        let currency = field(2).unwrap_or_default();
        if currency.len() != 3 || !currency.bytes().all(|byte| byte.is_ascii_uppercase()) {
            problems.push(format!(
                "{file_name}:{line}: column currency: {currency:?} is not an ISO 4217 code"
            ));
        }
        let account = Account {
            id: id.clone(),
            parent: field(1),
            currency,
            outbound_deck: field(3),
            inbound_deck: field(4),
        };
        if book.accounts.insert(id.clone(), account).is_some() {
            problems.push(format!("{file_name}:{line}: account {id} is listed twice"));
        }
    }
    for account in book.accounts.values() {
        if let Some(parent) = &account.parent
            && !book.accounts.contains_key(parent)
        {
            problems.push(format!(
                "{file_name}: account {}: parent {parent} is not in the file",
                account.id
            ));
        }
    }
    problems.extend(find_cycles(&book, file_name));
    if problems.is_empty() {
        Ok(book)
    } else {
        Err(problems)
    }
}

fn find_cycles(book: &AccountBook, file_name: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut ids: Vec<&String> = book.accounts.keys().collect();
    ids.sort();
    for id in ids {
        let mut seen = vec![id.as_str()];
        let mut next = book.accounts[id].parent.as_deref();
        while let Some(parent) = next {
            if parent == id {
                problems.push(format!(
                    "{file_name}: account {id} is its own ancestor ({})",
                    seen.join(" → ")
                ));
                break;
            }
            if seen.contains(&parent) || seen.len() > book.accounts.len() {
                break;
            }
            seen.push(parent);
            next = book
                .accounts
                .get(parent)
                .and_then(|account| account.parent.as_deref());
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_tree() {
        let text = "account,parent,currency,outbound_deck,inbound_deck\nroot,,USD,az,us\nchild,root,USD,az,\n";
        let book = parse_accounts_csv("accounts.csv", text.as_bytes()).unwrap();
        let chain: Vec<&str> = book
            .chain("child")
            .iter()
            .map(|account| account.id.as_str())
            .collect();
        assert_eq!(chain, ["child", "root"]);
        assert_eq!(
            book.get("child").unwrap().deck_for(Direction::Inbound),
            None
        );
    }

    #[test]
    fn refuses_cycles_unknown_parents_and_repeats() {
        let text = "account,parent,currency\na,b,USD\nb,a,USD\nc,nobody,USD\nc,,usd\n";
        let problems = parse_accounts_csv("accounts.csv", text.as_bytes()).unwrap_err();
        let all = problems.join("\n");
        assert!(all.contains("account a is its own ancestor"), "{all}");
        assert!(all.contains("account b is its own ancestor"), "{all}");
        assert!(all.contains("listed twice"), "{all}");
        assert!(all.contains("\"usd\" is not an ISO 4217 code"), "{all}");
    }
}
