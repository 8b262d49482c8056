//! Accounts: the tree, the currency, which deck prices each direction, and the credit-control
//! profile (status, credit limit, trunks, thresholds, auto-recharge, webhook). Read from CSV or
//! TOML; a file with any problem is refused whole, every problem listed.

use crate::cdr::Direction;
use chrono::NaiveTime;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

/// Every column an accounts CSV may have; only `account` and `currency` are required.
pub const ACCOUNT_COLUMNS: [&str; 19] = [
    "account",
    "parent",
    "currency",
    "outbound_deck",
    "inbound_deck",
    "name",
    "time_zone",
    "status",
    "credit_limit",
    "allow_per_minute",
    "trunks_inbound",
    "trunks_outbound",
    "trunks_two_way",
    "thresholds",
    "recharge_threshold",
    "recharge_amount",
    "recharge_local_time",
    "webhook_url",
    "webhook_secret",
];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    #[default]
    Active,
    Suspended,
    Closed,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<AccountStatus> {
        match text {
            "active" => Some(AccountStatus::Active),
            "suspended" => Some(AccountStatus::Suspended),
            "closed" => Some(AccountStatus::Closed),
            _ => None,
        }
    }
}

/// Once per local day, an account below `threshold` is credited `amount`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoRecharge {
    pub threshold: Decimal,
    pub amount: Decimal,
    pub local_time: NaiveTime,
}

/// The default local time of the daily auto-recharge.
pub fn default_recharge_local_time() -> NaiveTime {
    NaiveTime::from_hms_opt(0, 5, 0).expect("00:05 is a time")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub name: Option<String>,
    pub parent: Option<String>,
    pub currency: String,
    /// IANA time zone name.
    pub time_zone: String,
    pub status: AccountStatus,
    /// How far below zero the balance may go; `None` is unlimited (postpaid), 0 is prepaid.
    pub credit_limit: Option<Decimal>,
    pub outbound_deck: Option<String>,
    pub inbound_deck: Option<String>,
    pub allow_per_minute: bool,
    pub trunks_inbound: u32,
    pub trunks_outbound: u32,
    pub trunks_two_way: u32,
    /// Balance thresholds, highest first.
    pub thresholds: Vec<Decimal>,
    pub auto_recharge: Option<AutoRecharge>,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
}

impl Account {
    /// An active prepaid account in UTC with no trunks, thresholds or recharge.
    pub fn new(id: &str, parent: Option<&str>, currency: &str) -> Account {
        Account {
            id: id.to_string(),
            name: None,
            parent: parent.map(str::to_string),
            currency: currency.to_string(),
            time_zone: "UTC".to_string(),
            status: AccountStatus::Active,
            credit_limit: Some(Decimal::ZERO),
            outbound_deck: None,
            inbound_deck: None,
            allow_per_minute: true,
            trunks_inbound: 0,
            trunks_outbound: 0,
            trunks_two_way: 0,
            thresholds: Vec::new(),
            auto_recharge: None,
            webhook_url: None,
            webhook_secret: None,
        }
    }

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

    /// Builds a book from accounts already stored plus new or changed ones (which replace stored
    /// accounts of the same id), checking the merged tree: every parent known, no cycles.
    pub fn merged(
        file_name: &str,
        stored: Vec<Account>,
        incoming: Vec<Account>,
    ) -> Result<AccountBook, Vec<String>> {
        let mut book = AccountBook::default();
        for account in stored.into_iter().chain(incoming) {
            book.accounts.insert(account.id.clone(), account);
        }
        let mut problems = Vec::new();
        let mut ids: Vec<&String> = book.accounts.keys().collect();
        ids.sort();
        for id in &ids {
            if let Some(parent) = &book.accounts[*id].parent
                && !book.accounts.contains_key(parent)
            {
                problems.push(format!(
                    "{file_name}: account {id}: parent {parent} is neither in the file nor stored"
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
}

/// Parses an accounts file: TOML (`[[account]]` tables) when the name ends in `.toml`, else CSV.
pub fn parse_accounts_file(file_name: &str, text: &[u8]) -> Result<Vec<Account>, Vec<String>> {
    if file_name.ends_with(".toml") {
        parse_accounts_toml(file_name, text)
    } else {
        parse_accounts_csv_rows(file_name, text)
    }
}

/// Parses an accounts CSV into a validated book (for `tollgate rate --accounts`).
pub fn parse_accounts_csv(file_name: &str, text: &[u8]) -> Result<AccountBook, Vec<String>> {
    let accounts = parse_accounts_csv_rows(file_name, text)?;
    AccountBook::merged(file_name, Vec::new(), accounts)
}

/// One account's fields as text, whatever file format they came from.
type AccountFields = BTreeMap<String, String>;

fn parse_accounts_csv_rows(file_name: &str, text: &[u8]) -> Result<Vec<Account>, Vec<String>> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(text);
    let header: Vec<String> = match reader.headers() {
        Ok(header) => crate::text::normalized_header_names(header.iter().map(str::as_bytes)),
        Err(error) => {
            return Err(vec![format!(
                "{file_name}: cannot read the header: {error}"
            )]);
        }
    };
    let mut problems = Vec::new();
    for name in &header {
        if !ACCOUNT_COLUMNS.contains(&name.as_str()) {
            problems.push(format!(
                "{file_name}:1: unknown column {name:?} (known: {})",
                ACCOUNT_COLUMNS.join(", ")
            ));
        }
    }
    if !header.iter().any(|name| name == "account") || !header.iter().any(|name| name == "currency")
    {
        problems.push(format!(
            "{file_name}: the header needs at least the columns account and currency"
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                problems.push(format!("{file_name}: {error}"));
                continue;
            }
        };
        let line = record.position().map_or(0, |position| position.line());
        let fields: AccountFields = header
            .iter()
            .zip(record.iter())
            .map(|(name, value)| (name.clone(), value.trim().to_string()))
            .filter(|(_, value)| !value.is_empty())
            .collect();
        rows.push((format!("{file_name}:{line}"), fields));
    }
    accounts_from_fields(rows, problems)
}

fn parse_accounts_toml(file_name: &str, text: &[u8]) -> Result<Vec<Account>, Vec<String>> {
    let text = std::str::from_utf8(text)
        .map_err(|error| vec![format!("{file_name}: not UTF-8: {error}")])?;
    let document: toml::Table =
        toml::from_str(text).map_err(|error| vec![format!("{file_name}: {error}")])?;
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    for (key, value) in &document {
        if key != "account" {
            problems.push(format!(
                "{file_name}: unknown key {key:?} (accounts are [[account]] tables)"
            ));
            continue;
        }
        let Some(tables) = value.as_array() else {
            problems.push(format!("{file_name}: account must be an array of tables"));
            continue;
        };
        for (index, table) in tables.iter().enumerate() {
            let place = format!("{file_name}: account #{}", index + 1);
            let Some(table) = table.as_table() else {
                problems.push(format!("{place}: not a table"));
                continue;
            };
            let mut fields = AccountFields::new();
            for (name, value) in table {
                if !ACCOUNT_COLUMNS.contains(&name.as_str()) {
                    problems.push(format!("{place}: unknown key {name:?}"));
                    continue;
                }
                let text = match value {
                    toml::Value::String(text) => text.clone(),
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|item| match item {
                            toml::Value::String(text) => text.clone(),
                            other => other.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(";"),
                    other => other.to_string(),
                };
                if !text.trim().is_empty() {
                    fields.insert(name.clone(), text.trim().to_string());
                }
            }
            rows.push((place, fields));
        }
    }
    accounts_from_fields(rows, problems)
}

fn accounts_from_fields(
    rows: Vec<(String, AccountFields)>,
    mut problems: Vec<String>,
) -> Result<Vec<Account>, Vec<String>> {
    let mut accounts = Vec::with_capacity(rows.len());
    let mut first_place: HashMap<String, String> = HashMap::new();
    for (place, fields) in rows {
        match account_from_fields(&fields) {
            Ok(account) => {
                if let Some(earlier) = first_place.get(&account.id) {
                    problems.push(format!(
                        "{place}: account {} is listed twice (first at {earlier})",
                        account.id
                    ));
                } else {
                    first_place.insert(account.id.clone(), place);
                    accounts.push(account);
                }
            }
            Err(field_problems) => {
                problems.extend(
                    field_problems
                        .into_iter()
                        .map(|problem| format!("{place}: {problem}")),
                );
            }
        }
    }
    if problems.is_empty() {
        Ok(accounts)
    } else {
        Err(problems)
    }
}

fn account_from_fields(fields: &AccountFields) -> Result<Account, Vec<String>> {
    let mut problems = Vec::new();
    let text = |name: &str| fields.get(name).cloned();
    let Some(id) = text("account") else {
        return Err(vec!["column account is empty".to_string()]);
    };
    let mut account = Account::new(&id, None, "");
    account.parent = text("parent");
    account.name = text("name");
    account.currency = text("currency").unwrap_or_default();
    if account.currency.len() != 3 || !account.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        problems.push(format!(
            "column currency: {:?} is not an ISO 4217 code",
            account.currency
        ));
    }
    if let Some(zone) = text("time_zone") {
        if chrono_tz::Tz::from_str(&zone).is_err() {
            problems.push(format!(
                "column time_zone: {zone:?} is not an IANA time zone"
            ));
        }
        account.time_zone = zone;
    }
    if let Some(status) = text("status") {
        match AccountStatus::parse(&status) {
            Some(status) => account.status = status,
            None => problems.push(format!(
                "column status: {status:?} is not active, suspended or closed"
            )),
        }
    }
    let amount = |name: &str, problems: &mut Vec<String>| -> Option<Decimal> {
        let value = text(name)?;
        match Decimal::from_str(&value) {
            Ok(amount) if crate::money::ledger_units(amount).is_some() => Some(amount),
            _ => {
                problems.push(format!(
                    "column {name}: {value:?} is not an amount with at most {} decimals",
                    crate::money::LEDGER_DECIMALS
                ));
                None
            }
        }
    };
    match text("credit_limit").as_deref() {
        Some("unlimited") => account.credit_limit = None,
        Some(_) => {
            account.credit_limit = amount("credit_limit", &mut problems);
            if account
                .credit_limit
                .is_some_and(|limit| limit < Decimal::ZERO)
            {
                problems.push("column credit_limit: must not be negative".to_string());
            }
        }
        None => {}
    }
    account.outbound_deck = text("outbound_deck");
    account.inbound_deck = text("inbound_deck");
    if let Some(value) = text("allow_per_minute") {
        match value.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => account.allow_per_minute = true,
            "false" | "no" | "0" => account.allow_per_minute = false,
            _ => problems.push(format!(
                "column allow_per_minute: {value:?} is not true or false"
            )),
        }
    }
    for (name, slot) in [
        ("trunks_inbound", &mut account.trunks_inbound),
        ("trunks_outbound", &mut account.trunks_outbound),
        ("trunks_two_way", &mut account.trunks_two_way),
    ] {
        if let Some(value) = text(name) {
            match value.parse::<u32>() {
                Ok(count) => *slot = count,
                Err(_) => problems.push(format!(
                    "column {name}: {value:?} is not a whole number of trunks"
                )),
            }
        }
    }
    if let Some(list) = text("thresholds") {
        for item in list
            .split(';')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            match Decimal::from_str(item) {
                Ok(threshold) if crate::money::ledger_units(threshold).is_some() => {
                    account.thresholds.push(threshold)
                }
                _ => problems.push(format!(
                    "column thresholds: {item:?} is not an amount (list them separated by ';')"
                )),
            }
        }
        account.thresholds.sort_by(|a, b| b.cmp(a));
        account.thresholds.dedup();
    }
    let recharge_threshold = amount("recharge_threshold", &mut problems);
    let recharge_amount = amount("recharge_amount", &mut problems);
    let recharge_time = text("recharge_local_time");
    match (recharge_threshold, recharge_amount) {
        (Some(threshold), Some(amount)) => {
            let local_time = match recharge_time.as_deref() {
                None => Some(default_recharge_local_time()),
                Some(value) => match NaiveTime::parse_from_str(value, "%H:%M") {
                    Ok(time) => Some(time),
                    Err(_) => {
                        problems.push(format!(
                            "column recharge_local_time: {value:?} is not HH:MM"
                        ));
                        None
                    }
                },
            };
            if amount <= Decimal::ZERO {
                problems.push("column recharge_amount: must be more than 0".to_string());
            }
            if let Some(local_time) = local_time {
                account.auto_recharge = Some(AutoRecharge {
                    threshold,
                    amount,
                    local_time,
                });
            }
        }
        (None, None) if recharge_time.is_none() => {}
        _ => problems
            .push("auto-recharge needs both recharge_threshold and recharge_amount".to_string()),
    }
    account.webhook_url = text("webhook_url");
    account.webhook_secret = text("webhook_secret");
    if let Some(url) = &account.webhook_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        problems.push(format!("column webhook_url: {url:?} is not an http(s) URL"));
    }
    if account.webhook_url.is_some() && account.webhook_secret.is_none() {
        problems.push(
            "column webhook_secret: needed with webhook_url (every alert is signed with it)"
                .to_string(),
        );
    }
    if problems.is_empty() {
        Ok(account)
    } else {
        Err(problems)
    }
}

/// An account that is its own ancestor in `parents` (id → parent), if any. Stores check this
/// inside the import's transaction, so two imports at once cannot close a cycle between them.
pub fn account_in_cycle(parents: &HashMap<String, Option<String>>) -> Option<String> {
    let mut ids: Vec<&String> = parents.keys().collect();
    ids.sort();
    ids.into_iter().find_map(|id| {
        let mut next = parents.get(id).cloned().flatten();
        for _ in 0..=parents.len() {
            match next {
                None => return None,
                Some(parent) if parent == *id => return Some(id.clone()),
                Some(parent) => next = parents.get(&parent).cloned().flatten(),
            }
        }
        None
    })
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
        let text = "account,parent,currency\na,b,USD\nc,,USD\nc,,USD\nd,,usd\n";
        let problems = parse_accounts_csv("accounts.csv", text.as_bytes()).unwrap_err();
        let all = problems.join("\n");
        assert!(all.contains("listed twice"), "{all}");
        assert!(all.contains("\"usd\" is not an ISO 4217 code"), "{all}");
        let text = "account,parent,currency\na,b,USD\nb,a,USD\nc,nobody,USD\n";
        let problems = parse_accounts_csv("accounts.csv", text.as_bytes()).unwrap_err();
        let all = problems.join("\n");
        assert!(all.contains("account a is its own ancestor"), "{all}");
        assert!(all.contains("account b is its own ancestor"), "{all}");
        assert!(all.contains("parent nobody is neither"), "{all}");
    }

    #[test]
    fn csv_and_toml_give_the_same_profile() {
        let csv = "account,parent,currency,time_zone,status,credit_limit,allow_per_minute,trunks_outbound,thresholds,recharge_threshold,recharge_amount,webhook_url,webhook_secret\n\
                   r,,EUR,Europe/Paris,suspended,unlimited,no,3,5;20,10,50,https://example.com/hook,k3y\n";
        let toml = r#"
[[account]]
account = "r"
currency = "EUR"
time_zone = "Europe/Paris"
status = "suspended"
credit_limit = "unlimited"
allow_per_minute = false
trunks_outbound = 3
thresholds = ["5", "20"]
recharge_threshold = "10"
recharge_amount = "50"
webhook_url = "https://example.com/hook"
webhook_secret = "k3y"
"#;
        let from_csv = parse_accounts_file("a.csv", csv.as_bytes()).unwrap();
        let from_toml = parse_accounts_file("a.toml", toml.as_bytes()).unwrap();
        assert_eq!(from_csv, from_toml);
        let account = &from_csv[0];
        assert_eq!(account.credit_limit, None);
        assert_eq!(account.thresholds, [Decimal::from(20), Decimal::from(5)]);
        assert_eq!(
            account.auto_recharge.as_ref().unwrap().local_time,
            default_recharge_local_time()
        );
    }

    #[test]
    fn lists_every_bad_field() {
        let csv = "account,currency,time_zone,status,credit_limit,trunks_inbound,recharge_amount,colour\n";
        let problems = parse_accounts_file("a.csv", csv.as_bytes()).unwrap_err();
        assert!(
            problems[0].contains("unknown column \"colour\""),
            "{problems:?}"
        );
        let csv = "account,currency,time_zone,status,credit_limit,trunks_inbound,recharge_amount,webhook_url\n\
                   x,USD,Mars/Base,frozen,-5,many,10,https://example.com/hook\n";
        let problems = parse_accounts_file("a.csv", csv.as_bytes()).unwrap_err();
        let all = problems.join("\n");
        for expected in [
            "a.csv:2: column time_zone",
            "column status",
            "credit_limit: must not be negative",
            "column trunks_inbound",
            "needs both recharge_threshold and recharge_amount",
            "column webhook_secret: needed with webhook_url",
        ] {
            assert!(all.contains(expected), "{expected} missing from {all}");
        }
    }
}
