//! Stores for the contract tests: a fresh embedded store in a temporary folder, and a fresh
//! schema of the test PostgreSQL (`TOLLGATE_TEST_DATABASE_URL`, by default the local server's
//! `test` database). An unreachable PostgreSQL fails the test; only the explicit value `skip`
//! leaves PostgreSQL out, and says so.

use std::sync::atomic::{AtomicU64, Ordering};
use tollgate::batch::deck_choice::DeckChoice;
use tollgate::batch::rated_block::{RatingContext, rate_csv_block};
use tollgate::credit::accounts::{Account, AccountBook};
use tollgate::credit::posting::{Origin, OriginKind, PostingBatch};
use tollgate::ingest::canonical_csv::read_canonical_header;
use tollgate::rate::deck::Deck;
use tollgate::store::ledger_store::{LedgerStore, StoreLocation, open_store};

pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The PostgreSQL to test against, or `None` when explicitly skipped.
pub fn test_database_url() -> Option<String> {
    match std::env::var("TOLLGATE_TEST_DATABASE_URL") {
        Ok(value) if value == "skip" => {
            eprintln!("TOLLGATE_TEST_DATABASE_URL=skip: PostgreSQL contract tests are NOT run");
            None
        }
        Ok(value) if !value.is_empty() => Some(value),
        _ => Some(DEFAULT_TEST_DATABASE_URL.to_string()),
    }
}

pub struct TestStore {
    pub label: &'static str,
    pub location: StoreLocation,
    _folder: tempfile::TempDir,
    postgres_schema: Option<(String, String)>,
}

impl TestStore {
    pub fn open(&self) -> Box<dyn LedgerStore> {
        open_store(&self.location)
            .unwrap_or_else(|error| panic!("{}: cannot open the store: {error:#}", self.label))
    }

    /// The `--database-url` / `--data-dir` arguments that point the binary at this store.
    pub fn cli_arguments(&self) -> Vec<String> {
        match &self.location {
            StoreLocation::Embedded(path) => vec![
                "--data-dir".into(),
                path.parent().unwrap().display().to_string(),
            ],
            StoreLocation::Postgres(url) => vec!["--database-url".into(), url.clone()],
        }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some((base_url, schema)) = &self.postgres_schema
            && let Ok(mut client) = postgres::Client::connect(base_url, postgres::NoTls)
        {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
}

/// Which kind of store a test store is, with the PostgreSQL schema name.
pub enum TestStoreLocation {
    Embedded,
    Postgres { schema: String },
}

impl TestStore {
    pub fn kind(&self) -> TestStoreLocation {
        match &self.postgres_schema {
            Some((_, schema)) => TestStoreLocation::Postgres {
                schema: schema.clone(),
            },
            None => TestStoreLocation::Embedded,
        }
    }

    /// The same PostgreSQL schema, reached as another role (the schema stays owned by this one).
    pub fn as_user(&self, role: &str) -> TestStore {
        let (base_url, _) = self
            .postgres_schema
            .as_ref()
            .expect("a PostgreSQL test store");
        let StoreLocation::Postgres(url) = &self.location else {
            unreachable!()
        };
        let with_user = url.replacen("postgres://postgres@", &format!("postgres://{role}@"), 1);
        assert_ne!(
            &with_user, url,
            "the test URL names the postgres user: {base_url}"
        );
        TestStore {
            label: "postgresql",
            location: StoreLocation::Postgres(with_user),
            _folder: tempfile::tempdir().unwrap(),
            postgres_schema: None,
        }
    }
}

pub fn embedded_store() -> TestStore {
    let folder = tempfile::tempdir().unwrap();
    TestStore {
        label: "embedded",
        location: StoreLocation::Embedded(folder.path().join("data").join("tollgate.sqlite")),
        _folder: folder,
        postgres_schema: None,
    }
}

/// A fresh, empty schema of the test PostgreSQL. Panics (never skips) when it is unreachable.
pub fn postgres_store(base_url: &str) -> TestStore {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let schema = format!(
        "tollgate_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        chrono::Utc::now().timestamp_micros() % 1_000_000
    );
    let mut client = postgres::Client::connect(base_url, postgres::NoTls).unwrap_or_else(|error| {
        panic!(
            "PostgreSQL at {base_url} is unreachable ({error}); start it, or set \
             TOLLGATE_TEST_DATABASE_URL to a reachable server (or to `skip`)"
        )
    });
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    let separator = if base_url.contains('?') { '&' } else { '?' };
    let url = format!("{base_url}{separator}options=-c%20search_path%3D{schema}");
    TestStore {
        label: "postgresql",
        location: StoreLocation::Postgres(url),
        _folder: tempfile::tempdir().unwrap(),
        postgres_schema: Some((base_url.to_string(), schema)),
    }
}

/// Every store the contract runs against.
pub fn test_stores() -> Vec<TestStore> {
    let mut stores = vec![embedded_store()];
    if let Some(url) = test_database_url() {
        stores.push(postgres_store(&url));
    }
    stores
}

/// A rating context for `accounts` (each naming deck `deck.name` both ways).
pub fn context_for(deck: Deck, accounts: &[Account]) -> RatingContext {
    let mut book = AccountBook::default();
    for account in accounts {
        let mut account = account.clone();
        account.outbound_deck = Some(deck.name.clone());
        account.inbound_deck = Some(deck.name.clone());
        book.accounts.insert(account.id.clone(), account);
    }
    let decks = vec![deck];
    let deck_choice = DeckChoice::by_account(&book, &decks).unwrap();
    RatingContext {
        decks: std::sync::Arc::new(decks),
        deck_choice,
        input_time_zone: chrono_tz::UTC,
        default_source: "test".into(),
    }
}

/// Rates a canonical CSV document (header included) into one posting batch.
pub fn batch_from_csv(
    context: &RatingContext,
    origin_key: &str,
    kind: OriginKind,
    csv: &str,
) -> PostingBatch {
    let header = read_canonical_header(csv.as_bytes()).unwrap().unwrap();
    let block = rate_csv_block(
        context,
        &header.columns,
        &csv.as_bytes()[header.header_bytes..],
    );
    PostingBatch::from_rated_blocks(
        Origin {
            key: origin_key.into(),
            label: origin_key.into(),
            kind,
        },
        context,
        &[(header.header_lines + 1, block)],
        0,
        csv.len() as u64,
        true,
    )
}
