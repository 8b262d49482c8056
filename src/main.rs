//! The `tollgate` command line: parses arguments and hands each command to the library.

use clap::{Parser, Subcommand};

// Rating allocates and frees many short-lived column buffers; mimalloc keeps them in reusable
// pages instead of returning memory to the kernel and faulting it back in.
#[global_allocator]
static GLOBAL_ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use tollgate::batch::pipeline::{InputFormat, RateJob, run_rate_job};
use tollgate::credit::account_import::import_accounts;
use tollgate::credit::recharge::run_due_recharges;
use tollgate::daemon::config::ServeConfig;
use tollgate::daemon::run_daemon;
use tollgate::store::ledger_store::{LedgerStore, StoreLocation, open_store};
use tollgate::store::rated_output::OutputFormat;
use tollgate::synthetic::{GenOptions, generate};

#[derive(Parser)]
#[command(name = "tollgate", version, about = "CDR rating and credit control")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Rate CDR files against rate decks (the nightly batch).
    Rate {
        /// A rate deck CSV (a TOML manifest with the same name beside it is read too). Repeatable.
        #[arg(long = "deck", required = true)]
        decks: Vec<PathBuf>,
        /// Accounts CSV (account,parent,currency,outbound_deck,inbound_deck): each CDR's account
        /// picks its deck by direction. Needed when more than one deck is given.
        #[arg(long)]
        accounts: Option<PathBuf>,
        /// Output folder for rated.parquet (or rated.csv), rejects.csv and summary.json.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = OutputFormat::Parquet)]
        output_format: OutputFormat,
        /// Input format; canonical CSV, or canonical Parquet for files ending in .parquet.
        #[arg(long, value_enum, default_value_t = InputFormat::Canonical)]
        input_format: InputFormat,
        /// Time zone (IANA) of input times written without an offset.
        #[arg(long, default_value = "UTC")]
        input_timezone: chrono_tz::Tz,
        /// Feed name for the dedupe key (source, cdr_id) when the file has no source column.
        #[arg(long, default_value = "default")]
        source: String,
        /// No progress line on stderr.
        #[arg(long)]
        quiet: bool,
        /// CDR files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the daemon: spool folder and HTTP intake, rated and posted to the ledger exactly once.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on (overrides the config file).
        #[arg(long)]
        listen: Option<String>,
        /// Spool folder (overrides the config file).
        #[arg(long)]
        spool_dir: Option<PathBuf>,
        /// Rate deck CSV, repeatable (overrides the config file's decks).
        #[arg(long = "deck")]
        decks: Vec<PathBuf>,
    },
    /// Import or show accounts in the store.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Credit an account (a ledger entry of kind credit). The same idempotency key twice credits
    /// once; the same key with another account or amount is refused.
    Credit {
        #[command(flatten)]
        store: StoreArgs,
        account: String,
        /// Amount in the account's currency, e.g. 25.00.
        amount: rust_decimal::Decimal,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        idempotency_key: String,
    },
    /// Daily auto-recharge, for running from cron instead of (or besides) the daemon.
    Recharge {
        #[command(subcommand)]
        command: RechargeCommand,
    },
    /// List an account's threshold alerts.
    Alerts {
        #[command(flatten)]
        store: StoreArgs,
        account: String,
    },
    /// Write a deterministic synthetic deck, accounts and CDR file.
    Gen {
        #[arg(long, default_value_t = 100_000)]
        cdrs: u64,
        #[arg(long, default_value_t = 5_000)]
        prefixes: usize,
        #[arg(long, default_value_t = 100)]
        accounts: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
}

/// Where the store is: a config file, overridden by `--database-url` / `--data-dir`.
#[derive(clap::Args)]
struct StoreArgs {
    /// Config file (TOML); see tollgate.example.toml. Every setting has a default.
    #[arg(long)]
    config: Option<PathBuf>,
    /// PostgreSQL URL (postgres://user@host:port/database) instead of the embedded store.
    #[arg(long, env = "TOLLGATE_DATABASE_URL")]
    database_url: Option<String>,
    /// Folder of the embedded store.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl StoreArgs {
    fn config(&self) -> anyhow::Result<ServeConfig> {
        let mut config = match &self.config {
            Some(path) => ServeConfig::from_file(path)?,
            None => ServeConfig::default(),
        };
        if let Some(url) = &self.database_url {
            config.database_url = Some(url.clone());
        }
        if let Some(data_dir) = &self.data_dir {
            config.data_dir = data_dir.clone();
        }
        Ok(config)
    }

    fn open(&self) -> anyhow::Result<Box<dyn LedgerStore>> {
        let config = self.config()?;
        open_store(&StoreLocation::from_settings(
            config.database_url.as_deref(),
            &config.data_dir,
        )?)
    }
}

#[derive(Subcommand)]
enum RechargeCommand {
    /// Credit every account whose recharge is due now (its local time has come today) and whose
    /// balance is below its recharge threshold; at most once per account and local day.
    Run {
        #[command(flatten)]
        store: StoreArgs,
        /// Run every account's recharge for this local date (YYYY-MM-DD), whatever the hour.
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
    },
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Insert or update accounts from a CSV or TOML file (idempotent; refused whole when any
    /// account is wrong).
    Import {
        #[command(flatten)]
        store: StoreArgs,
        file: PathBuf,
    },
    /// Show one account: profile and balance.
    Show {
        #[command(flatten)]
        store: StoreArgs,
        id: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            store,
            listen,
            spool_dir,
            decks,
        } => store.config().and_then(|mut config| {
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if let Some(spool_dir) = spool_dir {
                config.spool_dir = spool_dir;
            }
            if !decks.is_empty() {
                config.decks = decks;
            }
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(std::io::stderr().is_terminal())
                .init();
            run_daemon(config)
        }),
        Command::Accounts {
            command: AccountsCommand::Import { store, file },
        } => store.open().and_then(|mut opened| {
            let text = std::fs::read(&file)
                .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", file.display()))?;
            let report = import_accounts(opened.as_mut(), &file.display().to_string(), &text)?;
            println!(
                "accounts imported into the {} store: {} added, {} changed, {} unchanged",
                opened.backend_name(),
                report.added,
                report.changed,
                report.unchanged
            );
            Ok(())
        }),
        Command::Accounts {
            command: AccountsCommand::Show { store, id },
        } => store.open().and_then(|mut opened| {
            let stored = opened
                .account(&id)?
                .ok_or_else(|| anyhow::anyhow!("no account {id:?} in the store"))?;
            let shown = serde_json::json!({
                "account": stored.account,
                "balance": tollgate::money::ledger_decimal(stored.balance_units).to_string(),
                "usage": tollgate::money::ledger_decimal(opened.usage_units(&id)?).to_string(),
            });
            println!("{}", serde_json::to_string_pretty(&shown)?);
            Ok(())
        }),
        Command::Rate {
            decks,
            accounts,
            out,
            output_format,
            input_format,
            input_timezone,
            source,
            quiet,
            files,
        } => {
            let job = RateJob {
                deck_paths: decks,
                accounts_path: accounts,
                out_dir: out,
                output_format,
                input_format,
                input_time_zone: input_timezone,
                source,
                files,
                show_progress: !quiet && std::io::stderr().is_terminal(),
            };
            run_rate_job(&job).map(|summary| {
                let costs: Vec<String> = summary
                    .total_cost
                    .iter()
                    .map(|(currency, cost)| format!("{cost} {currency}"))
                    .collect();
                let mut stdout = std::io::stdout().lock();
                // A closed stdout (`| head`) is no reason to fail a finished run.
                let _ = writeln!(
                    stdout,
                    "rated {} of {} CDRs ({} rejected, {} duplicates) in {:.2} s; total cost {}",
                    summary.rated,
                    summary.rows_read,
                    summary.rejected,
                    summary.duplicates,
                    summary.seconds_taken,
                    if costs.is_empty() {
                        "0".to_string()
                    } else {
                        costs.join(", ")
                    }
                );
                let _ = writeln!(
                    stdout,
                    "output: {}, {}, {}",
                    summary.rated_output,
                    summary.rejects_output,
                    job.out_dir.join("summary.json").display()
                );
            })
        }
        Command::Credit {
            store,
            account,
            amount,
            reason,
            idempotency_key,
        } => store.open().and_then(|mut opened| {
            let units = tollgate::money::ledger_units(amount).ok_or_else(|| {
                anyhow::anyhow!("amount {amount} has more than 8 decimals or is too large")
            })?;
            let credited = opened.credit(&account, units, &reason, &idempotency_key)?;
            println!(
                "{} {account}: {amount} (entry {}), balance {}",
                if credited.replayed {
                    "already credited"
                } else {
                    "credited"
                },
                credited.entry_id,
                tollgate::money::ledger_decimal(credited.balance_after_units)
            );
            Ok(())
        }),
        Command::Recharge {
            command: RechargeCommand::Run { store, date },
        } => store.open().and_then(|mut opened| {
            let runs = run_due_recharges(opened.as_mut(), chrono::Utc::now(), date)?;
            let credited: Vec<_> = runs.iter().filter(|run| run.run.credited_units > 0).collect();
            for run in &credited {
                println!(
                    "credited {} {} for {} (balance {})",
                    run.account,
                    tollgate::money::ledger_decimal(run.run.credited_units),
                    run.local_date,
                    tollgate::money::ledger_decimal(run.run.balance_after_units)
                );
            }
            println!(
                "auto-recharge: {} account(s) due, {} credited, {} already run for their date",
                runs.len(),
                credited.len(),
                runs.iter().filter(|run| run.run.already_ran).count()
            );
            Ok(())
        }),
        Command::Alerts { store, account } => store.open().and_then(|mut opened| {
            let alerts = opened.alerts_of(&account)?;
            let shown: Vec<serde_json::Value> = alerts
                .iter()
                .map(|alert| {
                    serde_json::json!({
                        "alert_id": alert.id,
                        "account": alert.account,
                        "threshold": tollgate::money::ledger_decimal(alert.threshold_units).to_string(),
                        "balance": tollgate::money::ledger_decimal(alert.balance_units).to_string(),
                        "time": chrono::DateTime::from_timestamp_micros(alert.created_at_micros)
                            .map(|time| time.to_rfc3339()),
                        "delivery": alert.delivery_state,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&shown)?);
            Ok(())
        }),
        Command::Gen {
            cdrs,
            prefixes,
            accounts,
            seed,
            out,
        } => generate(
            &GenOptions {
                n_cdrs: cdrs,
                n_prefixes: prefixes,
                n_accounts: accounts,
                seed,
            },
            &out,
        )
        .map(|()| {
            println!(
                "wrote {}/deck.csv, accounts.csv and cdrs.csv",
                out.display()
            )
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tollgate: {error:#}");
            ExitCode::FAILURE
        }
    }
}
