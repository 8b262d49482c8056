//! The batch rating pipeline: a reader thread cuts files into record blocks → rayon rates blocks in
//! parallel → one ordered pass marks duplicates and writes rejects in file order → a writer thread
//! writes the rated file. Every queue between stages is bounded, so memory stays flat whatever the
//! input size (the duplicate set is the one thing that grows: 16 bytes per distinct CDR, plus
//! its hash table's free slots).

use super::deck_choice::DeckChoice;
use super::progress::Progress;
use super::rated_block::{
    RatedBlock, RatingContext, RowStatus, rate_csv_block, rate_decoded_records,
    rate_kazoo_documents, rate_switch_csv_block,
};
use super::summary::Summary;
use super::switch_input::{SwitchInput, SwitchOptions, open_switch_input, read_kazoo_input};
use super::trunk_pass::{BillingClasses, classify_by_trunk_sweep};
use crate::credit::accounts::{AccountBook, parse_accounts_csv};
use crate::credit::trunks::TrunkEligibility;
use crate::ingest::canonical_csv::{CanonicalColumns, read_canonical_header};
use crate::ingest::deck_files::{DeckFormat, load_cgrates_plan, load_decks_with_notes};
use crate::ingest::parquet_cdrs::ParquetCdrReader;
use crate::ingest::record_blocks::RecordBlockReader;
use crate::ingest::switch_cdrs::json_documents::JsonDocumentBatch;
use crate::ingest::switch_cdrs::{SwitchFormat, parse_column_names};
use crate::limits::{BLOCKS_PER_GROUP, BLOCKS_QUEUED_MAX, RATED_BATCHES_QUEUED_MAX};
use crate::rate::cgrates_pricing::{CgratesRounding, CgratesTariff};
use crate::store::rated_output::{
    MoneyScales, OutputFormat, RatedRows, RatedWriter, rated_rows, rated_schema,
};
use crate::store::rejects_file::RejectsFile;
use anyhow::{Context, anyhow, bail};
use chrono_tz::Tz;
use crossbeam_channel::{Receiver, Sender, bounded};
use rayon::prelude::*;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// Canonical CSV, or canonical Parquet for files ending in `.parquet`.
    Canonical,
    /// Asterisk cdr_csv `Master.csv` (see docs/cdr-formats.md for every switch format).
    Asterisk,
    /// Asterisk cdr_custom, stock `Master.csv` mapping.
    AsteriskCustom,
    /// FreeSWITCH mod_cdr_csv, `example` template (or `--input-columns`).
    Freeswitch,
    /// KAZOO CDR JSON documents, one per line or in an array.
    Kazoo,
    /// CGRateS CDR CSV export.
    Cgrates,
}

impl InputFormat {
    pub fn switch_format(self) -> Option<SwitchFormat> {
        match self {
            InputFormat::Canonical => None,
            InputFormat::Asterisk => Some(SwitchFormat::Asterisk),
            InputFormat::AsteriskCustom => Some(SwitchFormat::AsteriskCustom),
            InputFormat::Freeswitch => Some(SwitchFormat::Freeswitch),
            InputFormat::Kazoo => Some(SwitchFormat::Kazoo),
            InputFormat::Cgrates => Some(SwitchFormat::Cgrates),
        }
    }
}

/// Everything `tollgate rate` was asked to do.
#[derive(Clone, Debug)]
pub struct RateJob {
    pub deck_paths: Vec<PathBuf>,
    pub deck_format: DeckFormat,
    /// How CDRs are read against a CGRateS plan (`--deck-format cgrates` only).
    pub cgrates: CgratesOptions,
    /// NPA-NXX states for US jurisdictional decks.
    pub npanxx_states: Option<PathBuf>,
    pub accounts_path: Option<PathBuf>,
    pub out_dir: PathBuf,
    pub output_format: OutputFormat,
    pub input_format: InputFormat,
    /// The columns of a header-less switch CSV whose template is not the stock one.
    pub input_columns: Option<String>,
    /// Dialplan contexts whose calls are inbound (Asterisk, FreeSWITCH).
    pub inbound_contexts: Vec<String>,
    pub input_time_zone: Tz,
    pub source: String,
    pub files: Vec<PathBuf>,
    pub show_progress: bool,
}

/// The `--cgrates-*` settings and `--rounding-scope`.
#[derive(Clone, Debug)]
pub struct CgratesOptions {
    pub tenant: String,
    pub category: String,
    /// CGRateS's system rounding decimals, used for every increment in compatible rounding.
    pub rounding_decimals: u32,
    /// `None`: CGRateS-compatible (per increment); `Some(Call)`: exact, rounded once per call.
    pub rounding_scope: Option<RoundingScopeChoice>,
    pub currency: String,
    pub time_zone: Tz,
}

/// `--rounding-scope`: where a CGRateS plan's costs are rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RoundingScopeChoice {
    /// Only the call's total (exact).
    Call,
    /// Every increment first, as CGRateS bills (the default for CGRateS plans).
    Increment,
}

/// An input file, checked before anything is written.
pub(super) struct InputFile {
    path: PathBuf,
    name: String,
    kind: InputKind,
    size_bytes: u64,
}

enum InputKind {
    /// `columns` is `None` for an empty file (no header, no records).
    Csv {
        columns: Option<CanonicalColumns>,
        header_bytes: usize,
        header_lines: u64,
    },
    Parquet,
    Switch(SwitchInput),
}

/// A unit of work for the raters.
pub(super) struct WorkItem {
    file_index: usize,
    content: WorkContent,
    /// Bytes of the file (or rows of a Parquet file) done once this item is.
    progress_end: u64,
}

enum WorkContent {
    Csv {
        bytes: Vec<u8>,
        skip_bytes: usize,
    },
    Records {
        columns: CanonicalColumns,
        records: Vec<(u64, csv::StringRecord)>,
    },
    KazooDocuments(JsonDocumentBatch),
}

/// Runs the batch job. Returns an error (and writes nothing) when the input is unusable: a
/// refused deck or accounts file, a missing or unreadable file, a file without the canonical
/// columns. Bad rows are not errors: they go to the rejects file.
pub fn run_rate_job(job: &RateJob) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let (context, book) = load_rating_context(job)?;
    let context = Arc::new(context);
    let switch_options = SwitchOptions {
        named_columns: match &job.input_columns {
            Some(text) => Some(parse_column_names(text).map_err(|problem| anyhow!(problem))?),
            None => None,
        },
        inbound_contexts: job.inbound_contexts.clone(),
    };
    let inputs = Arc::new(
        job.files
            .iter()
            .map(|path| open_input(path, job.input_format, &switch_options))
            .collect::<anyhow::Result<Vec<_>>>()?,
    );
    let classes = match &book {
        Some(book) => {
            classify_by_trunk_sweep(&context, &inputs, book, &TrunkEligibility::default())?
        }
        None => None,
    };
    std::fs::create_dir_all(&job.out_dir)
        .with_context(|| format!("cannot create the output folder {}", job.out_dir.display()))?;
    let rated_name = match job.output_format {
        OutputFormat::Parquet => "rated.parquet",
        OutputFormat::Csv => "rated.csv",
    };
    let rated_path = job.out_dir.join(rated_name);
    let rejects_path = job.out_dir.join("rejects.csv");
    let summary_path = job.out_dir.join("summary.json");
    // Outputs are written under a temporary name and renamed when complete, and an old summary is
    // removed first, so a run that dies never leaves files that look finished.
    let _ = std::fs::remove_file(&summary_path);
    // The last run's outputs are removed while this one runs rather than by the final renames:
    // unlinking a rated file of hundreds of megabytes keeps the kernel busy for 50-70 ms, which
    // would otherwise come after the last row is written. With the summary gone they no longer
    // look finished anyway.
    let old_outputs = [rated_path.clone(), rejects_path.clone()];
    let old_outputs_removal = std::thread::spawn(move || {
        for path in old_outputs {
            let _ = std::fs::remove_file(path);
        }
    });
    let rated_partial = partial_path(&rated_path);
    let rejects_partial = partial_path(&rejects_path);

    let scales = MoneyScales::for_context(&context);
    let schema = rated_schema(scales);
    let (batch_sender, batch_receiver) = bounded::<RatedRows>(RATED_BATCHES_QUEUED_MAX);
    let writer = RatedWriter::create(&rated_partial, Arc::clone(&schema), job.output_format)?;
    let writer_thread = std::thread::spawn(move || write_batches(writer, batch_receiver));
    let (work_sender, work_receiver) = bounded::<Result<WorkItem, String>>(BLOCKS_QUEUED_MAX);
    let reader_inputs = Arc::clone(&inputs);
    let reader_thread = std::thread::spawn(move || read_inputs(&reader_inputs, &work_sender));

    let mut rejects = RejectsFile::create(&rejects_partial)?;
    let mut summary = Summary {
        files: inputs.iter().map(|input| input.name.clone()).collect(),
        decks: context.decks.iter().map(|deck| deck.label()).collect(),
        rated_output: rated_path.display().to_string(),
        rejects_output: rejects_path.display().to_string(),
        ..Summary::default()
    };
    let no_classes = BillingClasses::default();
    let classes = classes.as_ref().map_or(&no_classes, |classes| {
        summary.billing_classes = Some(Default::default());
        classes
    });
    let mut ordered = OrderedPass::new(&inputs, context.decks.len());
    let total_progress: u64 = inputs.iter().map(|input| input.size_bytes).sum();
    let mut progress = Progress::new(job.show_progress, total_progress);
    let mut failure: Option<anyhow::Error> = None;
    // While one group of blocks is rated, the previous group goes through the ordered pass and
    // into Arrow batches: the sequential pass no longer leaves a core idle.
    let mut previous: Option<(Vec<WorkItem>, Vec<RatedBlock>)> = None;
    loop {
        let mut group: Vec<WorkItem> = Vec::with_capacity(BLOCKS_PER_GROUP);
        while failure.is_none() && group.len() < BLOCKS_PER_GROUP {
            match work_receiver.recv() {
                Ok(Ok(item)) => group.push(item),
                Ok(Err(problem)) => failure = Some(anyhow!(problem)),
                Err(_) => break,
            }
        }
        let (rated, finished) = rayon::join(
            || {
                group
                    .par_iter()
                    .map(|item| rate_item(&context, &inputs, item))
                    .collect::<Vec<RatedBlock>>()
            },
            || -> anyhow::Result<Option<Vec<RatedRows>>> {
                let Some((items, mut blocks)) = previous.take() else {
                    return Ok(None);
                };
                for (item, block) in items.iter().zip(&mut blocks) {
                    ordered.apply(
                        item.file_index,
                        &inputs,
                        block,
                        classes,
                        &mut rejects,
                        &mut summary,
                    )?;
                }
                let done = items
                    .last()
                    .map(|item| ordered.progress_before(item.file_index) + item.progress_end);
                progress.update(summary.rows_read, done.unwrap_or(0));
                Ok(Some(
                    blocks
                        .par_iter()
                        .map(|block| rated_rows(block, &context, scales, classes))
                        .collect(),
                ))
            },
        );
        let mut writer_gone = false;
        for batch in finished?.into_iter().flatten() {
            if batch_sender.send(batch).is_err() {
                writer_gone = true;
                break;
            }
        }
        if group.is_empty() || writer_gone || failure.is_some() {
            break;
        }
        previous = Some((group, rated));
    }
    drop(work_receiver);
    drop(batch_sender);
    progress.finish();
    let writer_result = writer_thread
        .join()
        .expect("the writer thread does not panic");
    reader_thread
        .join()
        .expect("the reader thread does not panic");
    if let Some(failure) = failure {
        return Err(failure);
    }
    writer_result?;
    rejects.finish()?;
    summary.set_total_cost(&context, &ordered.cost_by_deck, &ordered.trunk_cost_by_deck);
    assert!(
        summary.invariant_holds(),
        "rows_read = rated + rejected + duplicates: {summary:?}"
    );
    old_outputs_removal
        .join()
        .expect("removing old outputs does not panic");
    std::fs::rename(&rated_partial, &rated_path)?;
    std::fs::rename(&rejects_partial, &rejects_path)?;
    summary.seconds_taken = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    std::fs::write(
        &summary_path,
        serde_json::to_string_pretty(&summary)? + "\n",
    )
    .with_context(|| format!("cannot write {}", summary_path.display()))?;
    Ok(summary)
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .expect("output files have names")
        .to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// The decks and deck choice, and the accounts when `--accounts` was given.
fn load_rating_context(job: &RateJob) -> anyhow::Result<(RatingContext, Option<AccountBook>)> {
    if job.deck_paths.is_empty() {
        bail!("no deck: give at least one --deck");
    }
    if job.deck_format == DeckFormat::Cgrates {
        return load_cgrates_context(job);
    }
    if job.cgrates.rounding_scope.is_some() {
        bail!(
            "--rounding-scope is for CGRateS plans; a native deck sets its rounding in its manifest"
        );
    }
    let (decks, notes) = load_decks_with_notes(
        job.deck_format,
        &job.deck_paths,
        job.npanxx_states.as_deref(),
    )
    .map_err(|problems| anyhow!(problems))?;
    // A column ignored or a row shadowed changes what prices a call: say so, once per run.
    for note in notes {
        eprintln!("tollgate: note: {note}");
    }
    let (deck_choice, book) = match &job.accounts_path {
        None if decks.len() == 1 => (DeckChoice::Single(0), None),
        None => bail!(
            "{} decks were given: --accounts must say which account uses which",
            decks.len()
        ),
        Some(path) => {
            let text = std::fs::read(path)
                .with_context(|| format!("cannot read the accounts file {}", path.display()))?;
            let book =
                parse_accounts_csv(&path.display().to_string(), &text).map_err(|problems| {
                    anyhow!(
                        "the accounts file is refused: {} problem(s)\n  {}",
                        problems.len(),
                        problems.join("\n  ")
                    )
                })?;
            let choice =
                DeckChoice::by_account(&book, &decks).map_err(|problem| anyhow!(problem))?;
            (choice, Some(book))
        }
    };
    let context = RatingContext {
        decks: Arc::new(decks),
        deck_choice,
        input_time_zone: job.input_time_zone,
        default_source: job.source.clone(),
    };
    Ok((context, book))
}

/// The context for rating against one CGRateS tariff plan folder.
fn load_cgrates_context(job: &RateJob) -> anyhow::Result<(RatingContext, Option<AccountBook>)> {
    let [plan_folder] = &job.deck_paths[..] else {
        bail!(
            "{} tariff plans were given: rate against one CGRateS tariff plan folder at a time",
            job.deck_paths.len()
        );
    };
    if job.npanxx_states.is_some() {
        bail!("--npanxx-states is only used by --deck-format us-jurisdictional decks");
    }
    if job.accounts_path.is_some() {
        bail!(
            "--accounts cannot be combined with --deck-format cgrates: the plan's rating profiles \
             say which subject pays what"
        );
    }
    let options = &job.cgrates;
    if options.rounding_decimals > crate::rate::cgrates_plan::PLAN_PRICE_DECIMALS_MAX {
        bail!(
            "--cgrates-rounding-decimals {} is more than {}",
            options.rounding_decimals,
            crate::rate::cgrates_plan::PLAN_PRICE_DECIMALS_MAX
        );
    }
    let plan = load_cgrates_plan(plan_folder).map_err(|problems| anyhow!(problems))?;
    // What loaded but deserves a look (a data rate, a text prefix) goes to stderr, once per run.
    for note in &plan.notes {
        eprintln!("tollgate: note: {}: {note}", plan_folder.display());
    }
    let rounding = match options.rounding_scope {
        Some(RoundingScopeChoice::Call) => CgratesRounding::Exact,
        None | Some(RoundingScopeChoice::Increment) => CgratesRounding::Compatible {
            increment_decimals: options.rounding_decimals,
        },
    };
    let tariff = CgratesTariff {
        plan,
        tenant: options.tenant.clone(),
        category: options.category.clone(),
        rounding,
        time_zone: options.time_zone,
    };
    let display_deck = tariff.display_deck(&options.currency);
    let context = RatingContext {
        decks: Arc::new(vec![display_deck]),
        deck_choice: DeckChoice::Cgrates(Arc::new(tariff)),
        input_time_zone: job.input_time_zone,
        default_source: job.source.clone(),
    };
    Ok((context, None))
}

/// Opens an input and checks its header, so that an unusable file stops the run before any output.
fn open_input(
    path: &Path,
    input_format: InputFormat,
    switch_options: &SwitchOptions,
) -> anyhow::Result<InputFile> {
    let metadata =
        std::fs::metadata(path).with_context(|| format!("cannot read input {}", path.display()))?;
    if !metadata.is_file() {
        bail!("input {} is not a file", path.display());
    }
    let name = path.display().to_string();
    if let Some(format) = input_format.switch_format() {
        return Ok(InputFile {
            path: path.to_path_buf(),
            name,
            kind: InputKind::Switch(open_switch_input(path, format, switch_options)?),
            size_bytes: metadata.len(),
        });
    }
    if !switch_options.is_empty() {
        bail!("--input-columns and --inbound-context are for switch formats, not canonical CDRs");
    }
    let is_parquet = path
        .extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("parquet"));
    if is_parquet {
        let reader = ParquetCdrReader::open(path).map_err(|problem| anyhow!(problem))?;
        return Ok(InputFile {
            path: path.to_path_buf(),
            name,
            kind: InputKind::Parquet,
            size_bytes: reader.n_rows,
        });
    }
    let mut head = Vec::new();
    File::open(path)
        .with_context(|| format!("cannot open input {}", path.display()))?
        .take(1 << 20)
        .read_to_end(&mut head)?;
    let kind = match read_canonical_header(&head).map_err(|problem| anyhow!("{name}: {problem}"))? {
        Some(header) => InputKind::Csv {
            columns: Some(header.columns),
            header_bytes: header.header_bytes,
            header_lines: header.header_lines,
        },
        None => InputKind::Csv {
            columns: None,
            header_bytes: 0,
            header_lines: 0,
        },
    };
    Ok(InputFile {
        path: path.to_path_buf(),
        name,
        kind,
        size_bytes: metadata.len(),
    })
}

/// The reader thread: every input, in order, as work items. Stops early when the receiver is gone.
pub(super) fn read_inputs(inputs: &[InputFile], sender: &Sender<Result<WorkItem, String>>) {
    for (file_index, input) in inputs.iter().enumerate() {
        let result = match &input.kind {
            InputKind::Csv { columns: None, .. } => Ok(()),
            InputKind::Csv { header_bytes, .. } => {
                read_csv_input(file_index, input, *header_bytes, sender)
            }
            InputKind::Parquet => read_parquet_input(file_index, input, sender),
            InputKind::Switch(SwitchInput::Csv { header_bytes, .. }) => {
                read_csv_input(file_index, input, *header_bytes, sender)
            }
            InputKind::Switch(SwitchInput::Kazoo) => read_kazoo_input(&input.path, |batch| {
                let progress_end = batch.file_offset_end;
                let content = WorkContent::KazooDocuments(batch);
                let item = WorkItem {
                    file_index,
                    content,
                    progress_end,
                };
                sender.send(Ok(item)).is_ok()
            }),
        };
        if let Err(problem) = result {
            let _ = sender.send(Err(problem));
            return;
        }
    }
}

fn read_csv_input(
    file_index: usize,
    input: &InputFile,
    header_bytes: usize,
    sender: &Sender<Result<WorkItem, String>>,
) -> Result<(), String> {
    let file =
        File::open(&input.path).map_err(|error| format!("cannot open {}: {error}", input.name))?;
    let mut blocks = RecordBlockReader::new(file);
    let mut skip_bytes = header_bytes;
    while let Some(block) = blocks
        .next_block()
        .map_err(|error| format!("cannot read {}: {error}", input.name))?
    {
        let progress_end = block.file_offset + block.bytes.len() as u64;
        let item = WorkItem {
            file_index,
            content: WorkContent::Csv {
                bytes: block.bytes,
                skip_bytes,
            },
            progress_end,
        };
        skip_bytes = 0;
        if sender.send(Ok(item)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

fn read_parquet_input(
    file_index: usize,
    input: &InputFile,
    sender: &Sender<Result<WorkItem, String>>,
) -> Result<(), String> {
    let mut reader = ParquetCdrReader::open(&input.path)?;
    let mut rows_done = 0;
    while let Some(records) = reader.next_records() {
        let records = records.map_err(|problem| format!("{}: {problem}", input.name))?;
        rows_done += records.len() as u64;
        let content = WorkContent::Records {
            columns: reader.columns.clone(),
            records,
        };
        if sender
            .send(Ok(WorkItem {
                file_index,
                content,
                progress_end: rows_done,
            }))
            .is_err()
        {
            return Ok(());
        }
    }
    Ok(())
}

pub(super) fn rate_item(
    context: &RatingContext,
    inputs: &[InputFile],
    item: &WorkItem,
) -> RatedBlock {
    match (&item.content, &inputs[item.file_index].kind) {
        (
            WorkContent::Csv { bytes, skip_bytes },
            InputKind::Csv {
                columns: Some(columns),
                ..
            },
        ) => rate_csv_block(context, columns, &bytes[(*skip_bytes).min(bytes.len())..]),
        (
            WorkContent::Csv { bytes, skip_bytes },
            InputKind::Switch(SwitchInput::Csv { decoder, .. }),
        ) => rate_switch_csv_block(context, decoder, &bytes[(*skip_bytes).min(bytes.len())..]),
        (WorkContent::Records { columns, records }, _) => {
            rate_decoded_records(context, columns, records)
        }
        (WorkContent::KazooDocuments(batch), _) => rate_kazoo_documents(context, batch),
        _ => unreachable!("CSV blocks come only from CSV files with a header"),
    }
}

/// A dedupe key: 96 bits of the digest of (source, cdr_id), as three u32s so that an entry with
/// its u32 content digest packs into 16 bytes. Two distinct keys of a 20M-CDR run share 96 bits
/// with a chance of about 10^-14. Its hash is the digest's first 64 bits (already uniformly
/// distributed).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct DedupeKey([u32; 3]);

impl DedupeKey {
    pub(super) fn of(digest: u128) -> DedupeKey {
        DedupeKey([digest as u32, (digest >> 32) as u32, (digest >> 64) as u32])
    }
}

impl std::hash::Hash for DedupeKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from(self.0[0]) | u64::from(self.0[1]) << 32);
    }
}

/// Passes a [`DedupeKey`]'s hash through untouched.
#[derive(Default)]
pub(super) struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _bytes: &[u8]) {
        unreachable!("only DedupeKey is hashed, through write_u64");
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// The sequential part of the pipeline, run on blocks in file order.
struct OrderedPass {
    /// Dedupe key → content digest of the first occurrence (16 bytes an entry).
    seen: HashMap<DedupeKey, u32, BuildHasherDefault<DigestHasher>>,
    /// Next line number to expect, per file.
    next_line: Vec<u64>,
    /// Progress units of the files before each file.
    progress_before: Vec<u64>,
    pub cost_by_deck: Vec<i128>,
    /// List price of the calls on trunks (not charged), per deck.
    pub trunk_cost_by_deck: Vec<i128>,
}

impl OrderedPass {
    fn new(inputs: &[InputFile], n_decks: usize) -> OrderedPass {
        let mut progress_before = Vec::with_capacity(inputs.len());
        let mut total = 0;
        for input in inputs {
            progress_before.push(total);
            total += input.size_bytes;
        }
        // Sized up front from the input (CDR lines are about 100 bytes or more): growing a table of
        // millions of entries rehashes it several times over.
        let expected_cdrs = (total / 100).min(crate::limits::DEDUPE_RESERVE_MAX) as usize;
        OrderedPass {
            seen: HashMap::with_capacity_and_hasher(expected_cdrs, Default::default()),
            next_line: inputs
                .iter()
                .map(|input| match input.kind {
                    InputKind::Csv { header_lines, .. } => header_lines + 1,
                    InputKind::Parquet => 1,
                    InputKind::Switch(ref switch) => switch.first_line(),
                })
                .collect(),
            progress_before,
            cost_by_deck: vec![0; n_decks],
            trunk_cost_by_deck: vec![0; n_decks],
        }
    }

    fn progress_before(&self, file_index: usize) -> u64 {
        self.progress_before[file_index]
    }

    /// Marks repeats of a dedupe key as duplicates (first occurrence wins), writes the block's
    /// rejects with absolute line numbers, and counts everything.
    fn apply(
        &mut self,
        file_index: usize,
        inputs: &[InputFile],
        block: &mut RatedBlock,
        classes: &BillingClasses,
        rejects: &mut RejectsFile,
        summary: &mut Summary,
    ) -> anyhow::Result<()> {
        for row in 0..block.n_rows() {
            let digest = block.key_digest[row];
            let content = block.content_digest[row] as u32;
            match self.seen.entry(DedupeKey::of(digest)) {
                Entry::Vacant(vacant) => {
                    vacant.insert(content);
                }
                Entry::Occupied(occupied) => {
                    let same_content = *occupied.get() == content;
                    block.status[row] = RowStatus::Duplicate { same_content };
                }
            }
        }
        let input = &inputs[file_index];
        // Parquet rows and KAZOO documents carry their own line numbers; blocks count from 1.
        let is_parquet = matches!(
            input.kind,
            InputKind::Parquet | InputKind::Switch(SwitchInput::Kazoo)
        );
        let first_line = self.next_line[file_index];
        for reject in &block.rejected_records {
            if reject
                .row
                .is_some_and(|row| matches!(block.status[row], RowStatus::Duplicate { .. }))
            {
                continue;
            }
            let line = if is_parquet {
                reject.line_in_block
            } else {
                first_line + reject.line_in_block - 1
            };
            rejects.write(&input.name, line, reject.reason.as_str(), &reject.raw)?;
            summary.count_reject(reject.reason);
        }
        self.next_line[file_index] += block.n_lines;
        summary.rows_read += block.n_records;
        summary.add_rows(
            block,
            classes,
            &mut self.cost_by_deck,
            &mut self.trunk_cost_by_deck,
        );
        Ok(())
    }
}

fn write_batches(mut writer: RatedWriter, batches: Receiver<RatedRows>) -> anyhow::Result<()> {
    for rows in batches {
        writer.write(rows)?;
    }
    writer.finish()
}
