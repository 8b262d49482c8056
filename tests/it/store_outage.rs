//! The store goes away while the daemon runs (its PostgreSQL role is locked out and its sessions
//! killed): intake answers 503 with Retry-After, the spool file waits in the spool, failures and
//! retries are counted, and once the store is back everything is posted, once.

use crate::daemon_support::{
    drop_into_spool, import_accounts_into, start_sample_daemon, wait_until_done,
};
use crate::store_support::{TestStore, postgres_store, test_database_url};
use crate::support::repo_path;
use std::time::{Duration, Instant};

struct LockedOutRole {
    admin: postgres::Client,
    role: String,
}

impl LockedOutRole {
    fn set_login(&mut self, allowed: bool) {
        let login = if allowed { "LOGIN" } else { "NOLOGIN" };
        self.admin
            .batch_execute(&format!("ALTER ROLE {} {login}", self.role))
            .unwrap();
        if !allowed {
            self.admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                    &[&self.role],
                )
                .unwrap();
        }
    }
}

impl Drop for LockedOutRole {
    fn drop(&mut self) {
        let _ = self
            .admin
            .batch_execute(&format!("ALTER ROLE {} LOGIN", self.role));
        let _ = self.admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            &[&self.role],
        );
        let _ = self.admin.batch_execute(&format!(
            "DROP OWNED BY {0}; DROP ROLE IF EXISTS {0}",
            self.role
        ));
    }
}

fn metric_value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn while_postgresql_is_unreachable_intake_waits_and_nothing_is_lost() {
    let Some(base_url) = test_database_url() else {
        return;
    };
    let admin_store = postgres_store(&base_url);
    let crate::store_support::TestStoreLocation::Postgres { schema } = admin_store.kind() else {
        unreachable!()
    };
    let role = format!("{schema}_daemon");
    let mut admin = postgres::Client::connect(&base_url, postgres::NoTls).unwrap();
    let database: String = admin
        .query_one("SELECT current_database()", &[])
        .unwrap()
        .get(0);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; GRANT ALL ON SCHEMA {schema} TO {role};
             GRANT CONNECT ON DATABASE {database} TO {role}"
        ))
        .unwrap();
    let mut outage = LockedOutRole {
        admin,
        role: role.clone(),
    };
    let store: TestStore = admin_store.as_user(&role);
    import_accounts_into(&store, &repo_path("fixtures/cdrs/sample-accounts.csv"));

    let folder = tempfile::tempdir().unwrap();
    let spool = folder.path().join("spool");
    let daemon = start_sample_daemon(&store, folder.path(), "store_attempts_max = 2\n");
    let small = std::fs::read(repo_path("fixtures/cdrs/small.csv")).unwrap();
    let csv = |key: &'static str| [("Content-Type", "text/csv"), ("Idempotency-Key", key)];

    outage.set_login(false);
    let (status, body) = daemon.request("POST", "/v1/cdrs", &csv("during-outage"), &small);
    assert_eq!(status, 503, "{body}");
    drop_into_spool(
        &spool,
        "day.csv",
        &std::fs::read(repo_path("fixtures/cdrs/sample-day.csv")).unwrap(),
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        spool.join("day.csv").exists(),
        "the file waits in the spool"
    );
    assert!(
        !spool.join("failed/day.csv").exists(),
        "a store outage does not fail the file"
    );
    let (status, _) = daemon.request("GET", "/readyz", &[], b"");
    assert_eq!(status, 503);
    let (_, metrics) = daemon.request("GET", "/metrics", &[], b"");
    assert!(
        metric_value(&metrics, "tollgate_store_errors_total") >= 2.0,
        "{metrics}"
    );
    assert!(
        metric_value(&metrics, "tollgate_store_retries_total") >= 1.0,
        "{metrics}"
    );
    let (status, answer) = daemon.request("POST", "/v1/cdrs", &csv("during-outage"), &small);
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("retry later"), "{answer}");

    outage.set_login(true);
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        let (status, answer) = daemon.request("POST", "/v1/cdrs", &csv("during-outage"), &small);
        if status == 200 {
            break answer;
        }
        assert_eq!(status, 503, "{answer}");
        assert!(Instant::now() < deadline, "intake never reopened");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        answer.contains("\"rated\":21") && answer.contains("\"replayed\":false"),
        "{answer}"
    );
    assert!(wait_until_done(
        &spool,
        &["day.csv".to_string()],
        Duration::from_secs(60)
    ));
    assert!(daemon.stop().success());

    let mut opened = store.open();
    let totals = opened.ledger_totals().unwrap();
    assert!(totals.balance_mismatches.is_empty());
    // The sample day (1987 rated) and small.csv (21 rated), each once.
    assert_eq!(totals.rated_calls, 1987 + 21, "{totals:?}");
}
