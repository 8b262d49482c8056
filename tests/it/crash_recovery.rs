//! Exactly once, whatever fails: a spool of several hundred thousand CDRs (repeated files,
//! overlapping files, bad rows) is fed to a daemon that is killed with SIGKILL at random points,
//! over and over, then allowed to finish; and two daemons share one PostgreSQL. Afterwards the
//! store must hold every valid CDR once, balances must equal their entries, each root's usage the
//! cost of its subtree, and every reject must be there.

use crate::daemon_support::{drop_into_spool, import_accounts_into, start_daemon, wait_until_done};
use crate::store_support::{TestStore, embedded_store, postgres_store, test_database_url};
use crate::support::{tollgate, tollgate_succeeds};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tollgate::money::ledger_units;

/// The generated spool and what `tollgate rate` says it must come to.
struct Scenario {
    folder: tempfile::TempDir,
    deck: PathBuf,
    accounts: PathBuf,
    /// (name, content) in the order they are dropped.
    files: Vec<(String, Vec<u8>)>,
    expected_rated: u64,
    expected_cost_units: i64,
    expected_rejects: u64,
    expected_root_usage: HashMap<String, i64>,
}

const CDRS: u64 = 400_000;
const PARTS: usize = 8;

fn scenario() -> Scenario {
    let folder = tempfile::tempdir().unwrap();
    let generated = folder.path().join("gen");
    let output = tollgate(&[
        "gen",
        "--cdrs",
        &CDRS.to_string(),
        "--prefixes",
        "2000",
        "--accounts",
        "300",
        "--seed",
        "11",
        "--out",
        generated.to_str().unwrap(),
    ]);
    assert!(output.status.success());
    let text = std::fs::read_to_string(generated.join("cdrs.csv")).unwrap();
    let (header, body) = text.split_at(text.find('\n').unwrap() + 1);
    let lines: Vec<&str> = body.lines().collect();
    let part_size = lines.len() / PARTS;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for part in 0..PARTS {
        let mut content = header.to_string();
        let end = if part == PARTS - 1 {
            lines.len()
        } else {
            (part + 1) * part_size
        };
        for (index, line) in lines[part * part_size..end].iter().enumerate() {
            content.push_str(line);
            content.push('\n');
            if (part == 2 || part == 5) && index % 5000 == 17 {
                content.push_str(&format!(
                    "bad-{part}-{index},acct-00001,sideways,1,1,2026-11-20T00:00:00Z,,,5,ANSWERED\n"
                ));
            }
        }
        files.push((format!("part-{part}.csv"), content.into_bytes()));
    }
    // A resent file (same content, another name) and one overlapping two others.
    files.push(("part-1-again.csv".into(), files[1].1.clone()));
    let mut overlap = header.to_string();
    for line in &lines[7 * part_size - 10_000..7 * part_size + 10_000] {
        overlap.push_str(line);
        overlap.push('\n');
    }
    files.push(("part-9-overlap.csv".into(), overlap.into_bytes()));

    // What the batch rater makes of the same files, in the order the spool takes them.
    let inputs = folder.path().join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    let mut names: Vec<&String> = files.iter().map(|(name, _)| name).collect();
    names.sort();
    let mut arguments: Vec<String> = vec![
        "rate".into(),
        "--deck".into(),
        generated.join("deck.csv").display().to_string(),
        "--accounts".into(),
        generated.join("accounts.csv").display().to_string(),
        "--output-format".into(),
        "csv".into(),
        "--quiet".into(),
        "--out".into(),
        folder.path().join("expected").display().to_string(),
    ];
    for name in &names {
        let content = &files.iter().find(|(file, _)| file == *name).unwrap().1;
        std::fs::write(inputs.join(name), content).unwrap();
        arguments.push(inputs.join(name).display().to_string());
    }
    tollgate_succeeds(&arguments);

    let parents: HashMap<String, Option<String>> =
        csv::Reader::from_path(generated.join("accounts.csv"))
            .unwrap()
            .records()
            .map(|record| {
                let record = record.unwrap();
                (
                    record[0].to_string(),
                    Some(record[1].to_string()).filter(|p| !p.is_empty()),
                )
            })
            .collect();
    let root_of = |account: &str| {
        let mut id = account.to_string();
        while let Some(Some(parent)) = parents.get(&id) {
            id = parent.clone();
        }
        id
    };
    let mut reader = csv::Reader::from_path(folder.path().join("expected/rated.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|header| header == name).unwrap();
    let (account, cost, status) = (column("account"), column("cost"), column("status"));
    let mut expected_rated = 0;
    let mut expected_cost_units = 0;
    let mut expected_root_usage: HashMap<String, i64> = HashMap::new();
    for record in reader.records() {
        let record = record.unwrap();
        if &record[status] != "rated" {
            continue;
        }
        let units = ledger_units(record[cost].parse().unwrap()).unwrap();
        expected_rated += 1;
        expected_cost_units += units;
        *expected_root_usage
            .entry(root_of(&record[account]))
            .or_default() -= units;
    }
    // The store keeps each file's rejects once per (file content, line): the resent file adds
    // none, while an unratable CDR repeated in another file is rejected there again (the batch
    // rater would call that repeat a duplicate). So count rejects file by file.
    let mut expected_rejects = 0;
    let mut distinct_contents = std::collections::HashSet::new();
    for (name, content) in &files {
        if !distinct_contents.insert(content.clone()) {
            continue;
        }
        let out = folder.path().join("expected-per-file").join(name);
        let output = tollgate(&[
            "rate",
            "--deck",
            generated.join("deck.csv").to_str().unwrap(),
            "--accounts",
            generated.join("accounts.csv").to_str().unwrap(),
            "--output-format",
            "csv",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
            inputs.join(name).to_str().unwrap(),
        ]);
        assert!(output.status.success());
        expected_rejects += csv::Reader::from_path(out.join("rejects.csv"))
            .unwrap()
            .records()
            .count() as u64;
    }
    assert!(expected_rejects >= 10, "the scenario has bad rows");
    Scenario {
        deck: generated.join("deck.csv"),
        accounts: generated.join("accounts.csv"),
        folder,
        files,
        expected_rated,
        expected_cost_units,
        expected_rejects,
        expected_root_usage,
    }
}

fn check_store(store: &TestStore, scenario: &Scenario) {
    let label = store.label;
    let mut opened = store.open();
    let totals = opened.ledger_totals().unwrap();
    assert_eq!(
        totals.rated_calls, scenario.expected_rated,
        "{label}: CDRs rated exactly once"
    );
    assert_eq!(
        totals.rated_cost_units, scenario.expected_cost_units,
        "{label}: total cost"
    );
    assert_eq!(totals.conflicts, 0, "{label}");
    assert_eq!(
        totals.rejects, scenario.expected_rejects,
        "{label}: rejects"
    );
    assert!(
        totals.balance_mismatches.is_empty(),
        "{label}: {:?}",
        totals.balance_mismatches
    );
    for (root, usage) in &scenario.expected_root_usage {
        assert_eq!(
            opened.usage_units(root).unwrap(),
            *usage,
            "{label}: usage of root {root}"
        );
        assert_eq!(
            opened.account(root).unwrap().unwrap().balance_units,
            *usage,
            "{label}: {root}"
        );
    }
}

/// Deterministic pseudo-random pauses, so a failure can be replayed.
fn pause_for(round: u64) -> Duration {
    let mixed = round.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
    Duration::from_millis(20 + mixed % 200)
}

fn kill_nine_again_and_again(store: TestStore) {
    let scenario = scenario();
    import_accounts_into(&store, &scenario.accounts);
    let spool = scenario
        .folder
        .path()
        .join(format!("spool-{}", store.label));
    std::fs::create_dir_all(&spool).unwrap();
    for (name, content) in &scenario.files {
        drop_into_spool(&spool, name, content);
    }
    let log = scenario
        .folder
        .path()
        .join(format!("serve-{}.log", store.label));
    let names: Vec<String> = scenario
        .files
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    let mut kills = 0;
    for round in 0..24u64 {
        let daemon = start_daemon(&store, &spool, &[&scenario.deck], &[], &log);
        std::thread::sleep(pause_for(round));
        daemon.kill_hard();
        kills += 1;
        if names
            .iter()
            .all(|name| spool.join("done").join(name).exists())
        {
            break;
        }
    }
    assert!(
        kills >= 20
            || names
                .iter()
                .all(|name| spool.join("done").join(name).exists())
    );
    let daemon = start_daemon(&store, &spool, &[&scenario.deck], &[], &log);
    assert!(
        wait_until_done(&spool, &names, Duration::from_secs(600)),
        "{}: spool not finished after {kills} kills:\n{}",
        store.label,
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(daemon.stop().success());
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        kills >= 20,
        "{}: only {kills} kills before the spool was done",
        store.label
    );
    assert!(log_text.contains("batch committed"));
    check_store(&store, &scenario);
}

#[test]
fn killed_twenty_times_the_embedded_store_charges_every_cdr_once() {
    kill_nine_again_and_again(embedded_store());
}

#[test]
fn killed_twenty_times_postgresql_charges_every_cdr_once() {
    let Some(url) = test_database_url() else {
        return;
    };
    kill_nine_again_and_again(postgres_store(&url));
}

#[test]
fn two_daemons_on_one_postgresql_charge_every_cdr_once() {
    let Some(url) = test_database_url() else {
        return;
    };
    let store = postgres_store(&url);
    let scenario = scenario();
    import_accounts_into(&store, &scenario.accounts);
    let mut daemons = Vec::new();
    let mut spools = Vec::new();
    for instance in 0..2 {
        let spool = scenario.folder.path().join(format!("spool-{instance}"));
        std::fs::create_dir_all(&spool).unwrap();
        let log = scenario.folder.path().join(format!("serve-{instance}.log"));
        daemons.push(start_daemon(&store, &spool, &[&scenario.deck], &[], &log));
        spools.push(spool);
    }
    // Both get every file, the second in reverse order, so they collide all the way through.
    for (index, (name, content)) in scenario.files.iter().enumerate() {
        drop_into_spool(&spools[0], name, content);
        let (other_name, other_content) = &scenario.files[scenario.files.len() - 1 - index];
        drop_into_spool(&spools[1], other_name, other_content);
    }
    let names: Vec<String> = scenario
        .files
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    for spool in &spools {
        assert!(wait_until_done(spool, &names, Duration::from_secs(600)));
    }
    for daemon in daemons {
        assert!(daemon.stop().success());
    }
    check_store(&store, &scenario);
}
