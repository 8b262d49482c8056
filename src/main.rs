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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
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
