//! The spool folder: files renamed into it are rated block by block (in parallel) and handed to the
//! poster in file order; a finished file moves to `done/` with its rejects beside it, an unreadable
//! one to `failed/` with the reason beside it. A file is known by its content digest, so after a
//! crash it resumes from the byte offset its last committed batch recorded, and the same content
//! under another name is recognised.

use super::DaemonShared;
use super::poster::{PosterWork, SpoolBlock};
use crate::batch::rated_block::{RatingContext, rate_csv_block};
use crate::credit::posting::{Origin, OriginKind};
use crate::ingest::canonical_csv::{CanonicalColumns, read_canonical_header};
use crate::ingest::record_blocks::RecordBlockReader;
use crate::limits::{BLOCKS_PER_GROUP, SPOOL_PAUSE_AFTER_STORE_FAILURE_MILLISECONDS};
use crate::store::ledger_store::{LedgerStore, open_store};
use crate::store::rejects_file::RejectsFile;
use anyhow::Context;
use rayon::prelude::*;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A spool file being posted.
pub struct SpoolFile {
    pub path: PathBuf,
    pub name: String,
    pub origin: Origin,
    /// The context its blocks were rated with (batches are built with the same one).
    pub context: Arc<RatingContext>,
    /// Set by the poster when it gave up on the file after store errors.
    pub abandoned: AtomicBool,
    /// Set by the poster when the store refused a batch of the file while answering otherwise:
    /// the file went to `failed/`.
    pub failed: AtomicBool,
    /// The poster says here when it is through with the file (finished or abandoned), so the
    /// scanner never offers a file twice at once.
    settled_sender: crossbeam_channel::Sender<()>,
}

impl SpoolFile {
    pub fn mark_settled(&self) {
        let _ = self.settled_sender.try_send(());
    }
}

pub fn run_spool_scanner(shared: Arc<DaemonShared>) {
    let spool = shared.config.spool_dir.clone();
    let mut store: Option<Box<dyn LedgerStore>> = None;
    let poll = Duration::from_millis(shared.config.spool_poll_milliseconds);
    let store_failure_pause = Duration::from_millis(SPOOL_PAUSE_AFTER_STORE_FAILURE_MILLISECONDS);
    while !shared.stopping.load(Ordering::SeqCst) {
        let mut pause = poll;
        // Accounts imported meanwhile take effect here, for spool files and HTTP requests alike.
        let opened = match store.as_mut() {
            Some(opened) => Ok(opened),
            None => open_store(&shared.location).map(|opened| store.insert(opened)),
        }
        .and_then(|opened| shared.rating.refresh(opened.as_mut()).map(|()| opened));
        let opened = match opened {
            Ok(opened) => opened,
            Err(error) => {
                store = None;
                tracing::warn!("the spool waits for the store: {error:#}");
                sleep_unless_stopping(&shared, store_failure_pause);
                continue;
            }
        };
        match next_spool_files(&spool) {
            Ok(paths) => {
                for path in paths {
                    if shared.stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    match take_spool_file(&shared, opened.as_mut(), &path) {
                        Ok(true) => {}
                        Ok(false) => {
                            pause = store_failure_pause;
                            break;
                        }
                        Err(error) => {
                            store = None;
                            tracing::warn!(file = %path.display(), "spool file postponed: {error:#}");
                            pause = store_failure_pause;
                            break;
                        }
                    }
                }
            }
            Err(error) => {
                tracing::error!("cannot list the spool folder {}: {error}", spool.display())
            }
        }
        sleep_unless_stopping(&shared, pause);
    }
}

fn sleep_unless_stopping(shared: &DaemonShared, pause: Duration) {
    let step = Duration::from_millis(50);
    let mut slept = Duration::ZERO;
    while slept < pause && !shared.stopping.load(Ordering::SeqCst) {
        std::thread::sleep(step);
        slept += step;
    }
}

/// Regular files of the spool folder in name order, without hidden or partial files (a writer
/// still filling a file there should use a dot name or `.partial`, then rename).
pub fn next_spool_files(spool: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(spool)?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned());
            name.is_some_and(|name| {
                !name.starts_with('.') && !name.ends_with(".partial") && !name.ends_with(".tmp")
            })
        })
        .collect();
    paths.sort();
    Ok(paths)
}

/// The content digest that names a spool file's origin.
fn origin_of(path: &Path, name: &str) -> anyhow::Result<Origin> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n_read = file.read(&mut buffer)?;
        if n_read == 0 {
            break;
        }
        hasher.update(&buffer[..n_read]);
        size += n_read as u64;
    }
    Ok(Origin {
        key: format!("spool:{:032x}:{size}", hasher.digest128()),
        label: name.to_string(),
        kind: OriginKind::SpoolFile,
    })
}

/// Rates one file and hands its blocks to the poster. `Ok(false)` when the poster gave up on it
/// because the store failed: the file stays for a later scan. An `Err` is a store problem too;
/// a problem with the file itself sends it to `failed/` and the scan goes on.
fn take_spool_file(
    shared: &Arc<DaemonShared>,
    store: &mut dyn LedgerStore,
    path: &Path,
) -> anyhow::Result<bool> {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let origin = match origin_of(path, &name) {
        Ok(origin) => origin,
        Err(error) => {
            fail_spool_file(
                shared,
                path,
                &name,
                &format!("cannot read the file: {error:#}"),
            )?;
            return Ok(true);
        }
    };
    let progress = store.ingest_progress(&origin.key)?;
    let (settled_sender, settled) = crossbeam_channel::bounded(1);
    let file = Arc::new(SpoolFile {
        path: path.to_path_buf(),
        name: name.clone(),
        origin,
        context: shared.rating.context(),
        abandoned: AtomicBool::new(false),
        failed: AtomicBool::new(false),
        settled_sender,
    });
    if progress.as_ref().is_some_and(|progress| progress.complete) {
        tracing::info!(file = %name, "already posted (same content seen before): moving to done");
        finish_spool_file(shared, store, &file)?;
        return Ok(true);
    }
    let resume_offset = progress.map_or(0, |progress| progress.byte_offset);
    match send_blocks(shared, &file, resume_offset) {
        Ok(()) => {
            // Wait for the poster to finish with the file (it is not a busy loop: each turn
            // blocks up to 100 ms), unless the daemon is stopping.
            while !shared.stopping.load(Ordering::SeqCst) {
                if settled.recv_timeout(Duration::from_millis(100)).is_ok() {
                    break;
                }
            }
            Ok(file.failed.load(Ordering::SeqCst) || !file.abandoned.load(Ordering::SeqCst))
        }
        Err(problem) => {
            fail_spool_file(shared, &file.path, &file.name, &problem)?;
            Ok(true)
        }
    }
}

/// Reads, rates and sends the file's blocks from `resume_offset` on. An `Err` is a problem with
/// the file itself (it goes to `failed/`).
fn send_blocks(
    shared: &DaemonShared,
    file: &Arc<SpoolFile>,
    resume_offset: u64,
) -> Result<(), String> {
    let mut reader = std::fs::File::open(&file.path).map_err(|error| error.to_string())?;
    let mut head = Vec::new();
    (&mut reader)
        .take(1 << 20)
        .read_to_end(&mut head)
        .map_err(|error| error.to_string())?;
    let Some(header) = read_canonical_header(&head)? else {
        return send_last_empty_block(shared, file, 0, 1);
    };
    let columns: CanonicalColumns = header.columns;
    let start = resume_offset.max(header.header_bytes as u64);
    // Physical lines before `start`, so rejects carry the file's line numbers after a resume.
    let lines_before = count_lines_before(&file.path, start).map_err(|error| error.to_string())?;
    reader
        .seek(SeekFrom::Start(start))
        .map_err(|error| error.to_string())?;
    let mut blocks = RecordBlockReader::starting_at(std::io::BufReader::new(reader), start);
    let mut next_line = lines_before + 1;
    let mut end_offset = start;
    loop {
        if shared.stopping.load(Ordering::SeqCst) || file.abandoned.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut group = Vec::with_capacity(BLOCKS_PER_GROUP);
        while group.len() < BLOCKS_PER_GROUP {
            match blocks.next_block() {
                Ok(Some(block)) => group.push(block),
                Ok(None) => break,
                Err(error) => {
                    return Err(format!("stopped at byte {end_offset}: {error}"));
                }
            }
        }
        if group.is_empty() {
            return send_last_empty_block(shared, file, end_offset, next_line);
        }
        let context = &file.context;
        let rated: Vec<_> = group
            .par_iter()
            .map(|block| rate_csv_block(context, &columns, &block.bytes))
            .collect();
        for (block, rated) in group.iter().zip(rated) {
            let first_line = next_line;
            next_line += rated.n_lines;
            end_offset = block.file_offset + block.bytes.len() as u64;
            let work = PosterWork::SpoolBlock(Box::new(SpoolBlock {
                file: Arc::clone(file),
                first_line,
                start_offset: block.file_offset,
                end_offset,
                block: rated,
                is_last: false,
            }));
            if shared.poster_spool.send(work).is_err() {
                return Ok(());
            }
        }
    }
}

fn send_last_empty_block(
    shared: &DaemonShared,
    file: &Arc<SpoolFile>,
    offset: u64,
    line: u64,
) -> Result<(), String> {
    let columns = CanonicalColumns::from_header(
        crate::ingest::canonical_csv::CANONICAL_COLUMNS
            .iter()
            .map(|name| name.as_bytes()),
    )?;
    let empty = rate_csv_block(&file.context, &columns, b"");
    let _ = shared
        .poster_spool
        .send(PosterWork::SpoolBlock(Box::new(SpoolBlock {
            file: Arc::clone(file),
            first_line: line,
            start_offset: offset,
            end_offset: offset,
            block: empty,
            is_last: true,
        })));
    Ok(())
}

fn count_lines_before(path: &Path, offset: u64) -> std::io::Result<u64> {
    let mut reader = std::fs::File::open(path)?.take(offset);
    let mut buffer = vec![0u8; 1 << 20];
    let mut lines = 0u64;
    loop {
        let n_read = reader.read(&mut buffer)?;
        if n_read == 0 {
            return Ok(lines);
        }
        lines += memchr::memchr_iter(b'\n', &buffer[..n_read]).count() as u64;
    }
}

/// A path in `folder` for `name` that does not exist yet (a repeated name gets a numbered suffix).
fn free_path(folder: &Path, name: &str) -> PathBuf {
    let mut candidate = folder.join(name);
    let mut number = 1;
    while candidate.exists() || with_suffix(&candidate, ".rejects.csv").exists() {
        candidate = folder.join(format!("{name}.{number}"));
        number += 1;
    }
    candidate
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Once every batch of the file is committed: writes its rejects (from the store, so a resumed
/// file's list is whole) beside it and moves it to `done/`.
pub fn finish_spool_file(
    shared: &DaemonShared,
    store: &mut dyn LedgerStore,
    file: &SpoolFile,
) -> anyhow::Result<()> {
    let done = shared.config.spool_dir.join("done");
    std::fs::create_dir_all(&done)?;
    let target = free_path(&done, &file.name);
    let rejects = store.rejects_of(&file.origin.key)?;
    if !rejects.is_empty() {
        let rejects_path = with_suffix(&target, ".rejects.csv");
        let partial = with_suffix(&rejects_path, ".partial");
        let mut writer = RejectsFile::create(&partial)?;
        for reject in &rejects {
            writer.write(
                &file.name,
                reject.line,
                &reject.reason,
                reject.raw_record.as_bytes(),
            )?;
        }
        writer.finish()?;
        std::fs::rename(&partial, &rejects_path)?;
    }
    std::fs::rename(&file.path, &target)
        .with_context(|| format!("cannot move {} to {}", file.name, target.display()))?;
    shared
        .metrics
        .spool_files
        .with_label_values(&["done"])
        .inc();
    let outcome = store
        .ingest_progress(&file.origin.key)?
        .map(|progress| progress.outcome)
        .unwrap_or_default();
    tracing::info!(
        file = %file.name,
        rated = outcome.rated,
        rejected = outcome.rejected,
        duplicates = outcome.duplicates,
        conflicts = outcome.conflicts,
        "spool file done"
    );
    Ok(())
}

/// Moves a spool file that cannot be read as CDRs, or whose batch the store refuses, to `failed/`
/// with the reason in `NAME.reason.txt`.
pub fn fail_spool_file(
    shared: &DaemonShared,
    path: &Path,
    name: &str,
    problem: &str,
) -> anyhow::Result<()> {
    let failed = shared.config.spool_dir.join("failed");
    std::fs::create_dir_all(&failed)?;
    let target = free_path(&failed, name);
    std::fs::write(with_suffix(&target, ".reason.txt"), format!("{problem}\n"))?;
    std::fs::rename(path, &target)?;
    shared
        .metrics
        .spool_files
        .with_label_values(&["failed"])
        .inc();
    tracing::error!(file = %name, "spool file failed: {problem}");
    Ok(())
}
