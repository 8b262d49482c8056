//! The `tollgate` command line: parses arguments and hands each command to the library.

use clap::{Parser, Subcommand};

// Rating allocates and frees many short-lived column buffers; mimalloc keeps them in reusable
// pages (see `keep_freed_memory_for_reuse`).
#[global_allocator]
static GLOBAL_ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use tollgate::batch::pipeline::{
    CgratesOptions, InputFormat, RateJob, RoundingScopeChoice, run_rate_job,
};
use tollgate::credit::account_import::import_accounts;
use tollgate::credit::alert_events::alert_listing;
use tollgate::credit::recharge::run_due_recharges;
use tollgate::credit::rerate::{RerateScope, rerate_report, run_rerate};
use tollgate::daemon::config::ServeConfig;
use tollgate::daemon::run_daemon;
use tollgate::ingest::deck_commands::{check_deck, convert_deck};
use tollgate::ingest::deck_files::{DeckFormat, load_decks};
use tollgate::ingest::timestamp::parse_time_bound_micros;
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
        /// Format of every --deck: native, a peer system's rates export (kazoo, astpp, a2billing),
        /// us-jurisdictional NPA-NXX rates, or a CGRateS tariff plan folder.
        #[arg(long, value_enum, default_value_t = DeckFormat::Native)]
        deck_format: DeckFormat,
        #[command(flatten)]
        cgrates: CgratesArgs,
        /// NPA-NXX states CSV (npanxx,state[,lata]) that decides each call's jurisdiction; needed
        /// by --deck-format us-jurisdictional.
        #[arg(long, value_name = "FILE")]
        npanxx_states: Option<PathBuf>,
        /// Accounts CSV (account,parent,currency,outbound_deck,inbound_deck): each CDR's account
        /// picks its deck by direction. Needed when more than one deck is given.
        #[arg(long)]
        accounts: Option<PathBuf>,
        /// Output folder for rated.parquet (or rated.csv), rejects.csv and summary.json.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = OutputFormat::Parquet)]
        output_format: OutputFormat,
        /// Input format: canonical CSV (or canonical Parquet for files ending in .parquet), or a
        /// switch's CDRs (docs/cdr-formats.md).
        #[arg(long, value_enum, default_value_t = InputFormat::Canonical)]
        input_format: InputFormat,
        /// The column names of a header-less switch CSV written with another template
        /// (freeswitch, asterisk-custom, cgrates), comma-separated; template text is accepted.
        #[arg(long)]
        input_columns: Option<String>,
        /// A dialplan context (Asterisk dcontext, FreeSWITCH context) whose calls are the
        /// account's inbound calls; others are outbound. Repeatable.
        #[arg(long = "inbound-context")]
        inbound_contexts: Vec<String>,
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
        /// The format of the decks (overrides the config file's deck_format).
        #[arg(long, value_enum)]
        deck_format: Option<DeckFormat>,
    },
    /// Import or show accounts in the store.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Bearer tokens of the portal API (`/v1/accounts/...`).
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
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
    /// List an account's alerts (threshold crossings, auto-recharges) and their delivery.
    Alerts {
        #[command(flatten)]
        store: StoreArgs,
        account: String,
    },
    /// Price a period's stored calls again with corrected decks: per call whose cost changed, a
    /// reversal of the old charge and the new charge (ledger kind rerate). Running it again
    /// changes nothing.
    Rerate {
        #[command(flatten)]
        store: StoreArgs,
        /// Rerate this account's calls.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        account: Option<String>,
        /// Rerate every account's calls.
        #[arg(long)]
        all: bool,
        /// Calls that started at or after this date (YYYY-MM-DD) or time.
        #[arg(long)]
        from: String,
        /// Calls that started before this date (YYYY-MM-DD) or time.
        #[arg(long)]
        to: String,
        /// Time zone (IANA) of --from and --to dates and times without an offset.
        #[arg(long, default_value = "UTC")]
        time_zone: chrono_tz::Tz,
        /// A corrected rate deck CSV, repeatable. Accounts whose deck has another name are left
        /// alone.
        #[arg(long = "deck", required = true)]
        decks: Vec<PathBuf>,
        /// The format of the decks: native, or a peer system's rates export.
        #[arg(long, value_enum, default_value_t = DeckFormat::Native)]
        deck_format: DeckFormat,
    },
    /// Check a rate deck in any supported format, or convert one to the native format.
    Deck {
        #[command(subcommand)]
        command: DeckCommand,
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
        /// Days the calls are spread over, ending 2026-11-20.
        #[arg(long, default_value_t = 1)]
        days: u32,
        /// Accounts per reseller: every N-th account is a reseller over the N-1 after it.
        #[arg(long, default_value_t = 10)]
        reseller_size: usize,
        #[arg(long)]
        out: PathBuf,
    },
}

/// How CDRs are read against a CGRateS tariff plan (`--deck-format cgrates`).
#[derive(clap::Args)]
struct CgratesArgs {
    /// The CGRateS tenant of every CDR.
    #[arg(long, default_value = "cgrates.org")]
    cgrates_tenant: String,
    /// The CGRateS category of every CDR.
    #[arg(long, default_value = "call")]
    cgrates_category: String,
    /// CGRateS's system rounding decimals: each increment's cost is rounded to these first.
    #[arg(long, default_value_t = 5)]
    cgrates_rounding_decimals: u32,
    /// `increment` (CGRateS's own rounding, the default for CGRateS plans) or `call` (exact:
    /// rounded once, per call).
    #[arg(long, value_enum)]
    rounding_scope: Option<RoundingScopeChoice>,
    /// Currency of a CGRateS plan's prices (its files do not say).
    #[arg(long, default_value = "USD")]
    cgrates_currency: String,
    /// Time zone (IANA) of a CGRateS plan's timings and midnight.
    #[arg(long, default_value = "UTC")]
    cgrates_timezone: chrono_tz::Tz,
}

impl CgratesArgs {
    fn options(self) -> CgratesOptions {
        CgratesOptions {
            tenant: self.cgrates_tenant,
            category: self.cgrates_category,
            rounding_decimals: self.cgrates_rounding_decimals,
            rounding_scope: self.rounding_scope,
            currency: self.cgrates_currency,
            time_zone: self.cgrates_timezone,
        }
    }
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
enum DeckCommand {
    /// Validate a deck and print a summary (rates, prefixes, effective dates, bands, billing);
    /// every problem named and a non-zero exit when it would be refused.
    Check {
        /// The deck's format; read from its header when not given.
        #[arg(long, value_enum)]
        deck_format: Option<DeckFormat>,
        path: PathBuf,
    },
    /// Write a deck as a native CSV and TOML manifest that price every call the same, or say
    /// what the native format cannot express.
    Convert {
        /// The deck's format; read from its header when not given.
        #[arg(long, value_enum)]
        deck_format: Option<DeckFormat>,
        path: PathBuf,
        /// The native CSV to write (NAME.csv); NAME.toml is written beside it.
        #[arg(long)]
        out: PathBuf,
    },
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
enum TokensCommand {
    /// Create a token and print it (shown this once; only its SHA-256 is stored). An account token
    /// sees that account and every account below it; an operator token sees everything.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(
            long,
            conflicts_with = "operator",
            required_unless_present = "operator"
        )]
        account: Option<String>,
        #[arg(long)]
        operator: bool,
        /// Who or what the token is for, kept with it.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Revoke a token by the id `tokens create` printed: it answers 401 from then on.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        id: i64,
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

/// mimalloc's `purge_delay` option (`mi_option_purge_delay` in its header; the Rust binding
/// names no constant for it).
const MIMALLOC_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// By default mimalloc hands freed pages back to the kernel 10 ms after they empty, and the next
/// block's buffers fault them back in, zeroed: in a batch run that recycles hundreds of megabytes
/// of column buffers a second, that zeroing was a quarter of all CPU time. A batch command's peak
/// is bounded by its queues, so it keeps what it freed until it exits.
fn keep_freed_memory_for_reuse() {
    // SAFETY: sets a plain integer option before any other thread exists.
    unsafe { libmimalloc_sys::mi_option_set(MIMALLOC_OPTION_PURGE_DELAY, -1) };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            store,
            listen,
            spool_dir,
            decks,
            deck_format,
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
            if let Some(deck_format) = deck_format {
                config.deck_format = deck_format;
            }
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(std::io::stderr().is_terminal())
                .init();
            run_daemon(config)
        }),
        Command::Tokens {
            command:
                TokensCommand::Create {
                    store,
                    account,
                    operator: _,
                    label,
                },
        } => store.open().and_then(|mut opened| {
            if let Some(account) = &account {
                opened
                    .account(account)?
                    .ok_or_else(|| anyhow::anyhow!("no account {account:?} in the store"))?;
            }
            let (token, digest) = tollgate::portal::tokens::new_token()?;
            let id = opened.create_token(&digest, account.as_deref(), &label)?;
            eprintln!(
                "token {id} for {}: shown once, keep it safe",
                account
                    .as_deref()
                    .map_or("the operator".to_string(), |account| format!(
                        "account {account}"
                    ))
            );
            println!("{token}");
            Ok(())
        }),
        Command::Tokens {
            command: TokensCommand::Revoke { store, id },
        } => store.open().and_then(|mut opened| {
            if !opened.revoke_token(id)? {
                anyhow::bail!("no token {id}");
            }
            println!("token {id} revoked");
            Ok(())
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
            let mut profile = serde_json::to_value(&stored.account)?;
            if profile["webhook_secret"].is_string() {
                profile["webhook_secret"] = "(hidden)".into();
            }
            let shown = serde_json::json!({
                "account": profile,
                "balance": tollgate::money::ledger_decimal(stored.balance_units).to_string(),
                "usage": tollgate::money::ledger_decimal(opened.usage_units(&id)?).to_string(),
            });
            println!("{}", serde_json::to_string_pretty(&shown)?);
            Ok(())
        }),
        Command::Deck {
            command: DeckCommand::Check { deck_format, path },
        } => {
            let check = check_deck(deck_format, &path);
            print!("{}", check.report);
            return if check.accepted {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        Command::Deck {
            command:
                DeckCommand::Convert {
                    deck_format,
                    path,
                    out,
                },
        } => convert_deck(deck_format, &path, &out)
            .map(|written| println!("{written}"))
            .map_err(|reason| anyhow::anyhow!(reason)),
        Command::Rate {
            decks,
            deck_format,
            cgrates,
            npanxx_states,
            accounts,
            out,
            output_format,
            input_format,
            input_columns,
            inbound_contexts,
            input_timezone,
            source,
            quiet,
            files,
        } => {
            keep_freed_memory_for_reuse();
            let job = RateJob {
                deck_paths: decks,
                deck_format,
                cgrates: cgrates.options(),
                npanxx_states,
                accounts_path: accounts,
                out_dir: out,
                output_format,
                input_format,
                input_columns,
                inbound_contexts,
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
            let credited: Vec<_> = runs
                .iter()
                .filter(|run| run.run.credited_units > 0)
                .collect();
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
            let currency = opened
                .account(&account)?
                .ok_or_else(|| anyhow::anyhow!("no account {account:?} in the store"))?
                .account
                .currency;
            let shown: Vec<serde_json::Value> = opened
                .alerts_of(&account)?
                .iter()
                .map(|alert| alert_listing(alert, &currency))
                .collect();
            println!("{}", serde_json::to_string_pretty(&shown)?);
            Ok(())
        }),
        Command::Rerate {
            store,
            account,
            all,
            from,
            to,
            time_zone,
            decks,
            deck_format,
        } => store.open().and_then(|mut opened| {
            let scope = match (account, all) {
                (Some(account), false) => RerateScope::Account(account),
                (None, true) => RerateScope::All,
                _ => anyhow::bail!("give --account ID or --all"),
            };
            let bound = |text: &str, flag: &str| {
                parse_time_bound_micros(text, time_zone).ok_or_else(|| {
                    anyhow::anyhow!("--{flag} {text:?} is not a date YYYY-MM-DD or a time")
                })
            };
            let (from_micros, to_micros) = (bound(&from, "from")?, bound(&to, "to")?);
            if from_micros >= to_micros {
                anyhow::bail!("--from must be before --to");
            }
            deck_format
                .check_outside_batch()
                .map_err(|problem| anyhow::anyhow!(problem))?;
            let loaded = load_decks(deck_format, &decks, None)
                .map_err(|problems| anyhow::anyhow!(problems))?;
            let quiet = !std::io::stderr().is_terminal();
            let summary = run_rerate(
                opened.as_mut(),
                &loaded,
                &scope,
                from_micros,
                to_micros,
                |progress| {
                    if !quiet {
                        eprint!(
                            "\rrerate: {} calls examined, {} changed",
                            progress.calls_examined, progress.calls_changed
                        );
                    }
                },
            )?;
            if !quiet {
                eprintln!();
            }
            print!("{}", rerate_report(&summary));
            Ok(())
        }),
        Command::Gen {
            cdrs,
            prefixes,
            accounts,
            seed,
            days,
            reseller_size,
            out,
        } => generate(
            &GenOptions {
                n_cdrs: cdrs,
                n_prefixes: prefixes,
                n_accounts: accounts,
                seed,
                days,
                reseller_size,
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
