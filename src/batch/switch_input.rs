//! Switch CDR files in the batch job (`--input-format asterisk|asterisk-custom|freeswitch|kazoo|
//! cgrates`): opening one (its layout decided before anything is written) and reading a KAZOO
//! file into batches of whole documents. CSV switch files are cut into blocks like canonical ones.

use crate::ingest::switch_cdrs::cgrates::is_header_row;
use crate::ingest::switch_cdrs::json_documents::{JsonDocumentBatch, JsonDocumentReader};
use crate::ingest::switch_cdrs::{ColumnNames, SwitchCsvDecoder, SwitchFormat};
use anyhow::{Context, anyhow};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

pub(super) enum SwitchInput {
    /// A header-less CSV; a CGRateS export whose first row names its fields skips that row.
    Csv {
        decoder: SwitchCsvDecoder,
        header_bytes: usize,
        header_lines: u64,
    },
    /// KAZOO JSON documents.
    Kazoo,
}

impl SwitchInput {
    /// The line of the file the first record can be on.
    pub(super) fn first_line(&self) -> u64 {
        match self {
            SwitchInput::Csv { header_lines, .. } => header_lines + 1,
            SwitchInput::Kazoo => 1,
        }
    }
}

/// How the user said to read switch files: `--input-columns` and `--inbound-context`.
#[derive(Debug, Default)]
pub(super) struct SwitchOptions {
    pub named_columns: Option<ColumnNames>,
    pub inbound_contexts: Vec<String>,
}

impl SwitchOptions {
    pub(super) fn is_empty(&self) -> bool {
        self.named_columns.is_none() && self.inbound_contexts.is_empty()
    }
}

pub(super) fn open_switch_input(
    path: &Path,
    format: SwitchFormat,
    options: &SwitchOptions,
) -> anyhow::Result<SwitchInput> {
    let name = path.display();
    let named_columns = options.named_columns.as_ref();
    if format == SwitchFormat::Kazoo {
        if !options.is_empty() {
            anyhow::bail!(
                "--input-columns and --inbound-context are for CSV switch formats; KAZOO CDRs are JSON"
            );
        }
        return Ok(SwitchInput::Kazoo);
    }
    let with_contexts = |decoder: SwitchCsvDecoder| {
        decoder
            .with_inbound_contexts(&options.inbound_contexts)
            .map_err(|problem| anyhow!(problem))
    };
    let mut decoder = with_contexts(
        SwitchCsvDecoder::new(format, named_columns).map_err(|problem| anyhow!(problem))?,
    )?;
    let (mut header_bytes, mut header_lines) = (0, 0);
    if format == SwitchFormat::Cgrates {
        let mut head = Vec::new();
        File::open(path)
            .with_context(|| format!("cannot open input {name}"))?
            .take(1 << 20)
            .read_to_end(&mut head)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(head.as_slice());
        let mut first = csv::StringRecord::new();
        if reader.read_record(&mut first).unwrap_or(false) {
            let fields: Vec<&str> = first.iter().collect();
            if is_header_row(&fields) {
                header_bytes = reader.position().byte() as usize;
                header_lines = reader.position().line() - 1;
                if named_columns.is_none() {
                    decoder = with_contexts(
                        SwitchCsvDecoder::new(format, Some(&ColumnNames::of(&fields)))
                            .map_err(|problem| anyhow!("{name}: its header row: {problem}"))?,
                    )?;
                }
            }
        }
    }
    Ok(SwitchInput::Csv {
        decoder,
        header_bytes,
        header_lines,
    })
}

/// Reads a KAZOO file batch by batch into `send`, which says whether to go on.
pub(super) fn read_kazoo_input(
    path: &Path,
    mut send: impl FnMut(JsonDocumentBatch) -> bool,
) -> Result<(), String> {
    let file =
        File::open(path).map_err(|error| format!("cannot open {}: {error}", path.display()))?;
    let mut documents = JsonDocumentReader::new(BufReader::with_capacity(1 << 16, file));
    while let Some(batch) = documents
        .next_batch()
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?
    {
        if !send(batch) {
            break;
        }
    }
    Ok(())
}
