//! The rated-calls file: its schema, turning a rated block into an Arrow batch, and writing it as
//! Parquet (columns encoded in parallel) or CSV.

use crate::batch::rated_block::{NO_DECK, NO_RATE, RatedBlock, RatingContext, RowStatus};
use crate::batch::trunk_pass::BillingClasses;
use crate::limits::PARQUET_ROW_GROUP_ROWS;
use crate::money::pow10;
use arrow::array::{ArrayRef, Decimal128Builder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowSchemaConverter;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;

/// Decimal precision of money columns: 18 digits is an INT64 in Parquet, the cheapest exact form.
const MONEY_PRECISION: u8 = 18;

/// The scales of the money columns, wide enough for every deck of the run.
#[derive(Clone, Copy, Debug)]
pub struct MoneyScales {
    pub rate: i8,
    pub cost: i8,
}

impl MoneyScales {
    pub fn for_context(context: &RatingContext) -> MoneyScales {
        let rate = context
            .decks
            .iter()
            .map(|deck| deck.price_decimals)
            .max()
            .unwrap_or(0);
        let cost = context
            .decks
            .iter()
            .map(|deck| deck.rounding.decimals)
            .max()
            .unwrap_or(4);
        MoneyScales {
            rate: rate as i8,
            cost: cost as i8,
        }
    }
}

pub fn rated_schema(scales: MoneyScales) -> SchemaRef {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let time = |name: &str, nullable: bool| {
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            nullable,
        )
    };
    Arc::new(Schema::new(vec![
        text("source", false),
        text("cdr_id", false),
        text("account", false),
        text("direction", false),
        text("caller", false),
        text("callee", false),
        time("start_time", false),
        time("answer_time", true),
        time("end_time", true),
        Field::new("billsec", DataType::Int64, false),
        text("disposition", false),
        text("deck", true),
        text("rate_prefix", true),
        text("destination", true),
        text("jurisdiction", true),
        Field::new(
            "rate",
            DataType::Decimal128(MONEY_PRECISION, scales.rate),
            true,
        ),
        Field::new("billable_seconds", DataType::Int64, true),
        Field::new(
            "cost",
            DataType::Decimal128(MONEY_PRECISION, scales.cost),
            true,
        ),
        text("currency", true),
        text("status", false),
        text("reason", true),
        text("billing_class", true),
    ]))
}

/// Builds the Arrow batch of a block whose statuses are final (duplicates marked).
pub fn rated_record_batch(
    block: &RatedBlock,
    context: &RatingContext,
    scales: MoneyScales,
    schema: &SchemaRef,
    classes: &BillingClasses,
) -> RecordBatch {
    let n_rows = block.n_rows();
    let mut billing_class = StringBuilder::with_capacity(n_rows, n_rows * 10);
    let deck_labels: Vec<String> = context.decks.iter().map(|deck| deck.label()).collect();
    let mut deck = StringBuilder::with_capacity(n_rows, n_rows * 24);
    let mut prefix = StringBuilder::with_capacity(n_rows, n_rows * 6);
    let mut destination = StringBuilder::with_capacity(n_rows, n_rows * 16);
    let mut jurisdiction = StringBuilder::with_capacity(n_rows, n_rows * 4);
    let mut rate = Decimal128Builder::with_capacity(n_rows);
    let mut billable = Int64Builder::with_capacity(n_rows);
    let mut cost = Decimal128Builder::with_capacity(n_rows);
    let mut currency = StringBuilder::with_capacity(n_rows, n_rows * 3);
    let mut status = StringBuilder::with_capacity(n_rows, n_rows * 5);
    let mut reason = StringBuilder::with_capacity(n_rows, n_rows);
    let mut prefix_buffer = [0u8; 20];
    for row in 0..n_rows {
        let row_status = block.status[row];
        status.append_value(row_status.status_text());
        reason.append_option(row_status.reason_text());
        billing_class.append_option(
            (row_status == RowStatus::Rated).then(|| classes.of(block.key_digest[row]).as_str()),
        );
        let deck_index = block.deck[row];
        if deck_index == NO_DECK || matches!(row_status, RowStatus::Duplicate { .. }) {
            for builder in [&mut deck, &mut prefix, &mut destination, &mut currency] {
                builder.append_null();
            }
            jurisdiction.append_null();
            rate.append_null();
            billable.append_null();
            cost.append_null();
            continue;
        }
        let row_deck = &context.decks[usize::from(deck_index)];
        deck.append_value(&deck_labels[usize::from(deck_index)]);
        currency.append_value(&row_deck.currency);
        match block.rate[row] {
            NO_RATE => {
                prefix.append_null();
                destination.append_null();
                jurisdiction.append_null();
                rate.append_null();
            }
            _ => {
                let shown = block.shown_rate[row];
                prefix.append_value(prefix_text(
                    shown.prefix_digits,
                    shown.prefix_length,
                    &mut prefix_buffer,
                ));
                destination.append_value(&row_deck.destinations[shown.destination as usize]);
                jurisdiction.append_option(
                    crate::rate::jurisdiction::Jurisdiction::from_code(shown.jurisdiction)
                        .map(|jurisdiction| jurisdiction.as_str()),
                );
                let rescale = pow10(scales.rate as u32 - row_deck.price_decimals);
                rate.append_value(i128::from(shown.rate_per_minute_mantissa) * rescale);
            }
        }
        if matches!(row_status, RowStatus::Rejected(_)) {
            billable.append_null();
            cost.append_null();
        } else {
            billable.append_value(i64::from(block.billable_seconds[row]));
            let rescale = pow10(scales.cost as u32 - row_deck.rounding.decimals);
            cost.append_value(i128::from(block.cost_mantissa[row]) * rescale);
        }
    }
    let money = |builder: &mut Decimal128Builder, scale: i8| -> ArrayRef {
        Arc::new(
            builder
                .finish()
                .with_precision_and_scale(MONEY_PRECISION, scale)
                .expect("money precision and scale are valid"),
        )
    };
    let mut columns = block.input_columns.clone();
    columns.extend([
        Arc::new(deck.finish()) as ArrayRef,
        Arc::new(prefix.finish()),
        Arc::new(destination.finish()),
        Arc::new(jurisdiction.finish()),
        money(&mut rate, scales.rate),
        Arc::new(billable.finish()),
        money(&mut cost, scales.cost),
        Arc::new(currency.finish()),
        Arc::new(status.finish()),
        Arc::new(reason.finish()),
        Arc::new(billing_class.finish()),
    ]);
    RecordBatch::try_new(Arc::clone(schema), columns).expect("rated batch matches its schema")
}

/// Writes a prefix's digits (with its leading zeros) into `buffer` and returns them as text.
fn prefix_text(digits: u64, length: u8, buffer: &mut [u8; 20]) -> &str {
    let length = usize::from(length);
    let mut value = digits;
    for position in (0..length).rev() {
        buffer[position] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    std::str::from_utf8(&buffer[..length]).expect("digits are ASCII")
}

/// Where rated batches go.
pub enum RatedWriter {
    Parquet(Box<ParallelParquetWriter>),
    /// The CSV writer, and the same file again to start its writeback after each batch.
    Csv(Box<arrow::csv::Writer<BufWriter<File>>>, File),
}

impl RatedWriter {
    pub fn create(
        path: &Path,
        schema: SchemaRef,
        format: OutputFormat,
    ) -> anyhow::Result<RatedWriter> {
        let file = File::create(path)
            .map_err(|error| anyhow::anyhow!("cannot create {}: {error}", path.display()))?;
        Ok(match format {
            OutputFormat::Parquet => {
                RatedWriter::Parquet(Box::new(ParallelParquetWriter::new(file, schema)?))
            }
            OutputFormat::Csv => {
                let writeback = file.try_clone()?;
                RatedWriter::Csv(
                    Box::new(
                        arrow::csv::WriterBuilder::new()
                            .with_header(true)
                            .with_timestamp_tz_format("%Y-%m-%dT%H:%M:%S%.fZ".to_string())
                            .build(BufWriter::with_capacity(1 << 20, file)),
                    ),
                    writeback,
                )
            }
        })
    }

    pub fn write(&mut self, batch: RecordBatch) -> anyhow::Result<()> {
        match self {
            RatedWriter::Parquet(writer) => writer.write(batch),
            RatedWriter::Csv(writer, writeback) => {
                writer.write(&batch)?;
                start_writeback(writeback);
                Ok(())
            }
        }
    }

    pub fn finish(self) -> anyhow::Result<()> {
        match self {
            RatedWriter::Parquet(writer) => writer.finish(),
            RatedWriter::Csv(writer, _) => {
                use std::io::Write;
                let mut inner = writer.into_inner();
                inner.flush()?;
                inner.get_ref().sync_all()?;
                Ok(())
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Parquet,
    Csv,
}

/// The caller's and callee's numbers are written uncompressed; every other column with Zstandard
/// at its fastest level. Numbers are random digits: an LZ codec finds only short, chance matches
/// in them, so on a 5M-CDR run Snappy spent about a tenth of all CPU on these two columns to make
/// them a third smaller, and Zstandard costs as much. Zstandard on the rest takes the time Snappy
/// took and shrinks it far more, so the whole file is as large as it was with Snappy everywhere
/// (BENCHMARKS.md). Every current Parquet reader (DuckDB, Arrow, Spark, pandas) reads both.
const UNCOMPRESSED_COLUMNS: [&str; 2] = ["caller", "callee"];

/// A Parquet writer that buffers one row group of batches and encodes its columns in parallel
/// on the rayon pool (the single-threaded `ArrowWriter` would be the batch job's bottleneck).
pub struct ParallelParquetWriter {
    writer: SerializedFileWriter<BufWriter<File>>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    n_row_groups: usize,
}

impl ParallelParquetWriter {
    pub fn new(file: File, schema: SchemaRef) -> anyhow::Result<Self> {
        let mut builder = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(PARQUET_ROW_GROUP_ROWS))
            .set_statistics_enabled(EnabledStatistics::None);
        // Identifiers and numbers are nearly unique per row: a dictionary only costs time there.
        for column in ["cdr_id", "caller", "callee", "rate_prefix"] {
            builder = builder.set_column_dictionary_enabled(ColumnPath::from(column), false);
        }
        for column in UNCOMPRESSED_COLUMNS {
            builder =
                builder.set_column_compression(ColumnPath::from(column), Compression::UNCOMPRESSED);
        }
        // Row-group statistics where readers filter: call times and accounts.
        for column in ["start_time", "answer_time", "end_time", "account"] {
            builder = builder
                .set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::Chunk);
        }
        let mut properties = builder.build();
        // Readers (DuckDB, pandas) use the embedded Arrow schema for the time zone and decimals.
        parquet::arrow::add_encoded_arrow_schema_to_metadata(&schema, &mut properties);
        let properties = Arc::new(properties);
        let parquet_schema = ArrowSchemaConverter::new()
            .with_coerce_types(properties.coerce_types())
            .convert(&schema)?;
        let writer = SerializedFileWriter::new(
            BufWriter::with_capacity(1 << 20, file),
            parquet_schema.root_schema_ptr(),
            properties,
        )?;
        let factory = ArrowRowGroupWriterFactory::new(&writer, Arc::clone(&schema));
        Ok(ParallelParquetWriter {
            writer,
            factory,
            schema,
            pending: Vec::new(),
            pending_rows: 0,
            n_row_groups: 0,
        })
    }

    pub fn write(&mut self, batch: RecordBatch) -> anyhow::Result<()> {
        self.pending_rows += batch.num_rows();
        self.pending.push(batch);
        if self.pending_rows >= PARQUET_ROW_GROUP_ROWS {
            self.flush_row_group()?;
        }
        Ok(())
    }

    fn flush_row_group(&mut self) -> anyhow::Result<()> {
        if self.pending_rows == 0 {
            return Ok(());
        }
        let column_writers = self.factory.create_column_writers(self.n_row_groups)?;
        let batches = std::mem::take(&mut self.pending);
        let fields = self.schema.fields();
        let chunks: Vec<ArrowColumnChunk> = column_writers
            .into_par_iter()
            .enumerate()
            .map(
                |(column, mut column_writer)| -> anyhow::Result<ArrowColumnChunk> {
                    for batch in &batches {
                        for leaf in compute_leaves(&fields[column], batch.column(column))? {
                            column_writer.write(&leaf)?;
                        }
                    }
                    Ok(column_writer.close()?)
                },
            )
            .collect::<anyhow::Result<_>>()?;
        let mut row_group = self.writer.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        start_writeback(self.writer.inner().get_ref());
        self.pending_rows = 0;
        self.n_row_groups += 1;
        Ok(())
    }

    pub fn finish(mut self) -> anyhow::Result<()> {
        self.flush_row_group()?;
        let file = self.writer.into_inner()?;
        file.get_ref().sync_all()?;
        Ok(())
    }
}

/// Asks the kernel to start writing what the file holds so far to disk, without waiting for it.
/// The rated file is synced before it is renamed into place; begun this way, that final sync
/// waits for the last row group only instead of the whole file (about 0.1 s of a 5M-CDR run).
fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a system call on a descriptor this function borrows open; it touches no memory.
        // Its failure is harmless: the final sync then writes everything itself.
        let _ =
            unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}
