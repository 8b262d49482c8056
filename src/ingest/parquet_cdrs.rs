//! Canonical CDRs stored as Parquet (same column names as the CSV): each batch is turned into
//! canonical text fields and decoded by the same code as CSV, so both inputs follow one set of rules.

use crate::ingest::canonical_csv::{CANONICAL_COLUMNS, CanonicalColumns};
use crate::limits::PARQUET_READ_BATCH_ROWS;
use arrow::array::{Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use std::fs::File;
use std::path::Path;

pub struct ParquetCdrReader {
    reader: ParquetRecordBatchReader,
    /// Positions in the file's schema of the canonical columns, then `source` if present.
    positions: Vec<usize>,
    pub columns: CanonicalColumns,
    next_row: u64,
    pub n_rows: u64,
}

impl ParquetCdrReader {
    pub fn open(path: &Path) -> Result<ParquetCdrReader, String> {
        let file =
            File::open(path).map_err(|error| format!("cannot open {}: {error}", path.display()))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|error| {
            format!("{} is not a readable Parquet file: {error}", path.display())
        })?;
        let schema = builder.schema().clone();
        let find = |name: &str| {
            schema
                .fields()
                .iter()
                .position(|field| field.name().eq_ignore_ascii_case(name))
        };
        let missing: Vec<&str> = CANONICAL_COLUMNS
            .iter()
            .copied()
            .filter(|name| find(name).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "{} lacks the canonical column(s) {}",
                path.display(),
                missing.join(", ")
            ));
        }
        let mut positions: Vec<usize> = CANONICAL_COLUMNS
            .iter()
            .map(|name| find(name).expect("checked"))
            .collect();
        let source = find("source");
        positions.extend(source);
        let n_rows = builder.metadata().file_metadata().num_rows() as u64;
        let reader = builder
            .with_batch_size(PARQUET_READ_BATCH_ROWS)
            .build()
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        Ok(ParquetCdrReader {
            reader,
            columns: CanonicalColumns {
                n_columns: positions.len(),
                positions: std::array::from_fn(|index| index),
                source: source.map(|_| CANONICAL_COLUMNS.len()),
            },
            positions,
            next_row: 1,
            n_rows,
        })
    }

    /// The next batch as (row number, canonical text record) pairs.
    pub fn next_records(&mut self) -> Option<Result<Vec<(u64, csv::StringRecord)>, String>> {
        let batch = match self.reader.next()? {
            Ok(batch) => batch,
            Err(error) => return Some(Err(format!("cannot read a Parquet batch: {error}"))),
        };
        let mut text_columns = Vec::with_capacity(self.positions.len());
        for &position in &self.positions {
            match cast(batch.column(position), &DataType::Utf8) {
                Ok(array) => text_columns.push(array),
                Err(error) => {
                    return Some(Err(format!(
                        "column {position} cannot be read as text: {error}"
                    )));
                }
            }
        }
        let text_columns: Vec<&StringArray> = text_columns
            .iter()
            .map(|array| {
                array
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("cast to Utf8 gives strings")
            })
            .collect();
        let mut records = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let mut record = csv::StringRecord::new();
            for column in &text_columns {
                record.push_field(if column.is_null(row) {
                    ""
                } else {
                    column.value(row)
                });
            }
            records.push((self.next_row, record));
            self.next_row += 1;
        }
        Some(Ok(records))
    }
}
