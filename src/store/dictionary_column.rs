//! Low-cardinality text columns of the rated file (deck, prefix, destination, status, …) kept as
//! dictionary codes from rating to Parquet: each block numbers the texts it uses, and a row
//! group's column chunk is written straight from those numbers (a dictionary page and
//! RLE/bit-packed index pages), so no row's text is copied, hashed or compared on the way.

use arrow::array::{StringArray, StringBuilder};
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The entry of a null row.
const NULL_ENTRY: u32 = u32::MAX;

/// The Zstandard level of every compressed column of the rated file.
pub const RATED_ZSTD_LEVEL: i32 = 1;

/// One block's rows of a text column: each row is an entry of the block's own dictionary, or
/// null. Entries carry the caller's key for their text, so that blocks merge by key, not text.
#[derive(Debug, Default)]
pub struct DictionaryColumn {
    rows: Vec<u32>,
    entry_keys: Vec<u64>,
    entry_text: Vec<u8>,
    entry_ends: Vec<usize>,
}

impl DictionaryColumn {
    pub fn n_rows(&self) -> usize {
        self.rows.len()
    }

    fn entry_text(&self, entry: u32) -> &str {
        let entry = entry as usize;
        let start = if entry == 0 {
            0
        } else {
            self.entry_ends[entry - 1]
        };
        std::str::from_utf8(&self.entry_text[start..self.entry_ends[entry]])
            .expect("entries are pushed as text")
    }

    /// The column as an Arrow array (the CSV file and the daemon's batches want text).
    pub fn to_string_array(&self) -> StringArray {
        let mut builder = StringBuilder::with_capacity(self.rows.len(), self.entry_text.len());
        for &entry in &self.rows {
            match entry {
                NULL_ENTRY => builder.append_null(),
                _ => builder.append_value(self.entry_text(entry)),
            }
        }
        builder.finish()
    }
}

/// Builds a [`DictionaryColumn`] row by row. A key must name one text for the whole run: the
/// text is asked for only the first time a block meets its key.
pub struct DictionaryColumnBuilder {
    column: DictionaryColumn,
    entry_of_key: HashMap<u64, u32, BuildHasherDefault<KeyHasher>>,
    last: Option<(u64, u32)>,
}

impl DictionaryColumnBuilder {
    pub fn with_capacity(n_rows: usize) -> DictionaryColumnBuilder {
        DictionaryColumnBuilder {
            column: DictionaryColumn {
                rows: Vec::with_capacity(n_rows),
                ..DictionaryColumn::default()
            },
            entry_of_key: HashMap::default(),
            last: None,
        }
    }

    pub fn push<T: AsRef<str>>(&mut self, key: u64, text: impl FnOnce() -> T) {
        let entry = match self.last {
            Some((last_key, entry)) if last_key == key => entry,
            _ => {
                let column = &mut self.column;
                let entry = *self.entry_of_key.entry(key).or_insert_with(|| {
                    column.entry_keys.push(key);
                    column
                        .entry_text
                        .extend_from_slice(text().as_ref().as_bytes());
                    column.entry_ends.push(column.entry_text.len());
                    (column.entry_keys.len() - 1) as u32
                });
                self.last = Some((key, entry));
                entry
            }
        };
        self.column.rows.push(entry);
    }

    pub fn push_option<T: AsRef<str>>(&mut self, key: u64, text: Option<T>) {
        match text {
            Some(text) => self.push(key, || text),
            None => self.push_null(),
        }
    }

    pub fn push_null(&mut self) {
        self.column.rows.push(NULL_ENTRY);
    }

    pub fn finish(self) -> DictionaryColumn {
        self.column
    }
}

/// Spreads a key's bits over the whole hash (a folded multiply): keys differ in any bits.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _bytes: &[u8]) {
        unreachable!("only u64 keys are hashed, through write_u64");
    }
    fn write_u64(&mut self, value: u64) {
        let product = u128::from(value) * 0x9E37_79B9_7F4A_7C15;
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }
}

/// Writes one row group's chunk of a dictionary column: the blocks' dictionaries merged by key
/// into one dictionary page (PLAIN), then data pages of at most `rows_per_page` rows, each the
/// definition levels (nullable columns) and the RLE/bit-packed dictionary indices, every page
/// compressed with Zstandard. A chunk with no text at all is written as nulls without a
/// dictionary. Returns the chunk's bytes and what the row group writer needs to splice them.
pub fn encode_dictionary_chunk(
    descriptor: ColumnDescPtr,
    blocks: &[&DictionaryColumn],
    rows_per_page: usize,
) -> parquet::errors::Result<(Bytes, ColumnCloseResult)> {
    let nullable = descriptor.max_def_level() > 0;
    let n_rows: usize = blocks.iter().map(|block| block.n_rows()).sum();
    let mut chunk_entry_of_key: HashMap<u64, u32, BuildHasherDefault<KeyHasher>> =
        HashMap::default();
    let mut dictionary_page = Vec::new();
    let mut n_entries: u32 = 0;
    let mut indices: Vec<u32> = Vec::with_capacity(n_rows);
    for block in blocks {
        let chunk_entry_of_block_entry: Vec<u32> = (0..block.entry_keys.len() as u32)
            .map(|entry| {
                *chunk_entry_of_key
                    .entry(block.entry_keys[entry as usize])
                    .or_insert_with(|| {
                        let text = block.entry_text(entry).as_bytes();
                        dictionary_page.extend_from_slice(&(text.len() as u32).to_le_bytes());
                        dictionary_page.extend_from_slice(text);
                        n_entries += 1;
                        n_entries - 1
                    })
            })
            .collect();
        indices.extend(block.rows.iter().map(|&entry| match entry {
            NULL_ENTRY => NULL_ENTRY,
            _ => chunk_entry_of_block_entry[entry as usize],
        }));
    }
    if !nullable && indices.contains(&NULL_ENTRY) {
        return Err(parquet::errors::ParquetError::General(format!(
            "column {} is required but has a null row",
            descriptor.name()
        )));
    }

    let compression = Compression::ZSTD(ZstdLevel::try_new(RATED_ZSTD_LEVEL)?);
    let mut sink = TrackedWrite::new(Vec::new());
    let mut total_uncompressed = 0usize;
    let mut dictionary_offset = None;
    let mut data_offset = None;
    {
        let mut pages = SerializedPageWriter::new(&mut sink);
        let has_dictionary = n_entries > 0;
        if has_dictionary {
            let spec =
                pages.write_page(compressed(dictionary_page, |buf| Page::DictionaryPage {
                    buf,
                    num_values: n_entries,
                    encoding: Encoding::PLAIN,
                    is_sorted: false,
                })?)?;
            dictionary_offset = Some(spec.offset as i64);
            total_uncompressed += spec.uncompressed_size;
        }
        let bit_width = bits_for(n_entries.saturating_sub(1)).max(1);
        let mut levels = Vec::with_capacity(rows_per_page);
        let mut present = Vec::with_capacity(rows_per_page);
        for page_rows in indices.chunks(rows_per_page.max(1)) {
            let mut page = Vec::new();
            if nullable {
                levels.clear();
                levels.extend(
                    page_rows
                        .iter()
                        .map(|&index| u32::from(index != NULL_ENTRY)),
                );
                let mut encoded_levels = Vec::new();
                append_rle_hybrid(&levels, 1, &mut encoded_levels);
                page.extend_from_slice(&(encoded_levels.len() as u32).to_le_bytes());
                page.extend_from_slice(&encoded_levels);
            }
            if has_dictionary {
                present.clear();
                present.extend(
                    page_rows
                        .iter()
                        .copied()
                        .filter(|&index| index != NULL_ENTRY),
                );
                page.push(bit_width);
                append_rle_hybrid(&present, bit_width, &mut page);
            }
            let spec = pages.write_page(compressed(page, |buf| Page::DataPage {
                buf,
                num_values: page_rows.len() as u32,
                encoding: if has_dictionary {
                    Encoding::RLE_DICTIONARY
                } else {
                    Encoding::PLAIN
                },
                def_level_encoding: Encoding::RLE,
                rep_level_encoding: Encoding::RLE,
                statistics: None,
            })?)?;
            data_offset.get_or_insert(spec.offset as i64);
            total_uncompressed += spec.uncompressed_size;
        }
    }
    let bytes = Bytes::from(sink.into_inner()?);
    let mut encodings = vec![Encoding::PLAIN, Encoding::RLE];
    if dictionary_offset.is_some() {
        encodings.push(Encoding::RLE_DICTIONARY);
    }
    let metadata = ColumnChunkMetaData::builder(descriptor)
        .set_compression(compression)
        .set_encodings(encodings)
        .set_num_values(n_rows as i64)
        .set_total_compressed_size(bytes.len() as i64)
        .set_total_uncompressed_size(total_uncompressed as i64)
        .set_dictionary_page_offset(dictionary_offset)
        .set_data_page_offset(data_offset.unwrap_or(0))
        .build()?;
    let close = ColumnCloseResult {
        bytes_written: bytes.len() as u64,
        rows_written: n_rows as u64,
        metadata,
        bloom_filter: None,
        column_index: None,
        offset_index: None,
    };
    Ok((bytes, close))
}

/// A page of `data`, compressed with the rated file's Zstandard level.
fn compressed(
    data: Vec<u8>,
    page: impl FnOnce(Bytes) -> Page,
) -> parquet::errors::Result<CompressedPage> {
    let compressed = zstd::bulk::compress(&data, RATED_ZSTD_LEVEL)
        .map_err(|error| parquet::errors::ParquetError::External(Box::new(error)))?;
    Ok(CompressedPage::new(
        page(Bytes::from(compressed)),
        data.len(),
    ))
}

/// Bits needed to write `value`.
fn bits_for(value: u32) -> u8 {
    (u32::BITS - value.leading_zeros()) as u8
}

/// Appends `values` in Parquet's RLE/bit-packing hybrid encoding: eight equal values in a row
/// start a run (as long as the value repeats), anything else goes out in bit-packed groups of
/// eight. Only the last group can be short; it is padded with zeros, which readers skip
/// because they know how many values there are.
fn append_rle_hybrid(values: &[u32], bit_width: u8, out: &mut Vec<u8>) {
    let mut literal_start: Option<usize> = None;
    let mut position = 0;
    while position < values.len() {
        let group = &values[position..(position + 8).min(values.len())];
        if group.iter().all(|&value| value == group[0]) {
            if let Some(start) = literal_start.take() {
                append_bit_packed(&values[start..position], bit_width, out);
            }
            let mut end = position + group.len();
            while end < values.len() && values[end] == group[0] {
                end += 1;
            }
            append_varint(((end - position) as u64) << 1, out);
            let value_bytes = usize::from(bit_width).div_ceil(8);
            out.extend_from_slice(&group[0].to_le_bytes()[..value_bytes]);
            position = end;
        } else {
            literal_start.get_or_insert(position);
            position += group.len();
        }
    }
    if let Some(start) = literal_start {
        append_bit_packed(&values[start..], bit_width, out);
    }
}

/// One bit-packed run: its header, then the values least significant bit first, padded with
/// zeros to a whole group of eight.
fn append_bit_packed(values: &[u32], bit_width: u8, out: &mut Vec<u8>) {
    let n_groups = values.len().div_ceil(8);
    append_varint(((n_groups as u64) << 1) | 1, out);
    let mut bits: u64 = 0;
    let mut n_bits = 0u32;
    let padding = std::iter::repeat_n(0, n_groups * 8 - values.len());
    for value in values.iter().copied().chain(padding) {
        bits |= u64::from(value) << n_bits;
        n_bits += u32::from(bit_width);
        while n_bits >= 8 {
            out.push(bits as u8);
            bits >>= 8;
            n_bits -= 8;
        }
    }
}

/// An unsigned LEB128 number, as Parquet's run headers are written.
fn append_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes the hybrid encoding back (the reader's side), to check the writer against.
    fn decode_rle_hybrid(mut data: &[u8], bit_width: u8, n_values: usize) -> Vec<u32> {
        let mut values = Vec::new();
        let read_varint = |data: &mut &[u8]| {
            let mut value = 0u64;
            let mut shift = 0;
            loop {
                let byte = data[0];
                *data = &data[1..];
                value |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    return value;
                }
                shift += 7;
            }
        };
        while values.len() < n_values {
            let header = read_varint(&mut data);
            if header & 1 == 0 {
                let value_bytes = usize::from(bit_width).div_ceil(8);
                let mut value = [0u8; 4];
                value[..value_bytes].copy_from_slice(&data[..value_bytes]);
                data = &data[value_bytes..];
                values.extend(std::iter::repeat_n(
                    u32::from_le_bytes(value),
                    (header >> 1) as usize,
                ));
            } else {
                let n = (header >> 1) as usize * 8;
                let (mut bits, mut n_bits) = (0u64, 0u32);
                for _ in 0..n {
                    while n_bits < u32::from(bit_width) {
                        bits |= u64::from(data[0]) << n_bits;
                        data = &data[1..];
                        n_bits += 8;
                    }
                    values.push((bits & ((1u64 << bit_width) - 1)) as u32);
                    bits >>= bit_width;
                    n_bits -= u32::from(bit_width);
                }
            }
        }
        assert!(data.is_empty(), "bytes left over: {data:?}");
        values.truncate(n_values);
        values
    }

    #[test]
    fn hybrid_encoding_round_trips() {
        let cases: Vec<(&str, Vec<u32>, u8)> = vec![
            ("empty", vec![], 1),
            ("one value", vec![1], 1),
            ("a long run", vec![3; 100], 2),
            (
                "a short final run",
                vec![5, 6, 7, 8, 9, 10, 11, 12, 4, 4, 4],
                4,
            ),
            ("literals then a run", (0..16).chain([9; 20]).collect(), 5),
            (
                "run, literals, run",
                [vec![1; 9], (0..13).collect(), vec![2; 8]].concat(),
                4,
            ),
            ("a partial literal group", vec![1, 2, 3], 2),
            (
                "wide values",
                vec![70_000, 1, 131_071, 70_000, 5, 6, 7, 8, 9],
                17,
            ),
            ("32-bit values", vec![u32::MAX - 1, 0, 7, u32::MAX - 1], 32),
        ];
        for (name, values, bit_width) in cases {
            let mut encoded = Vec::new();
            append_rle_hybrid(&values, bit_width, &mut encoded);
            assert_eq!(
                decode_rle_hybrid(&encoded, bit_width, values.len()),
                values,
                "{name}"
            );
        }
    }

    #[test]
    fn a_runs_header_counts_its_values() {
        let mut encoded = Vec::new();
        append_rle_hybrid(&[7; 300], 3, &mut encoded);
        // 300 << 1 = 600 as LEB128, then the value in one byte.
        assert_eq!(encoded, [0xd8, 0x04, 7]);
    }

    #[test]
    fn blocks_share_entries_by_key_and_keep_nulls() {
        let mut first = DictionaryColumnBuilder::with_capacity(3);
        first.push(10, || "ten");
        first.push_null();
        first.push(10, || -> &str {
            unreachable!("a known key asks for no text")
        });
        let first = first.finish();
        let mut second = DictionaryColumnBuilder::with_capacity(2);
        second.push(20, || "twenty");
        second.push(10, || "ten");
        let second = second.finish();
        let (first, second) = (first.to_string_array(), second.to_string_array());
        let texts: Vec<Option<&str>> = first.iter().chain(second.iter()).collect();
        assert_eq!(
            texts,
            [Some("ten"), None, Some("ten"), Some("twenty"), Some("ten")]
        );
    }

    /// Blocks of (key, text) rows, `None` for null.
    type Rows = Vec<Vec<Option<(u64, String)>>>;

    fn dictionary_blocks(rows: &Rows) -> Vec<DictionaryColumn> {
        rows.iter()
            .map(|block| {
                let mut builder = DictionaryColumnBuilder::with_capacity(block.len());
                for row in block {
                    match row {
                        Some((key, text)) => builder.push(*key, || text.as_str()),
                        None => builder.push_null(),
                    }
                }
                builder.finish()
            })
            .collect()
    }

    /// Writes the blocks as one row group of a one-column file and reads the column back.
    fn round_trip(nullable: bool, rows: &Rows, rows_per_page: usize) -> Vec<Option<String>> {
        use arrow::datatypes::{DataType, Field, Schema};
        use parquet::arrow::ArrowSchemaConverter;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        use std::sync::Arc;

        let schema = Schema::new(vec![Field::new("text", DataType::Utf8, nullable)]);
        let parquet_schema = ArrowSchemaConverter::new().convert(&schema).unwrap();
        let mut file = Vec::new();
        let mut writer = SerializedFileWriter::new(
            &mut file,
            parquet_schema.root_schema_ptr(),
            Arc::new(WriterProperties::builder().build()),
        )
        .unwrap();
        let blocks = dictionary_blocks(rows);
        let block_refs: Vec<&DictionaryColumn> = blocks.iter().collect();
        let descriptor = writer.schema_descr().column(0);
        let (bytes, close) =
            encode_dictionary_chunk(descriptor, &block_refs, rows_per_page).unwrap();
        let mut row_group = writer.next_row_group().unwrap();
        row_group.append_column(&bytes, close).unwrap();
        row_group.close().unwrap();
        writer.close().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(file))
            .unwrap()
            .build()
            .unwrap();
        let mut texts = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let column = batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            texts.extend(column.iter().map(|text| text.map(str::to_string)));
        }
        texts
    }

    #[test]
    fn chunks_read_back_as_written() {
        let text = |key: u64| Some((key, format!("text-{key}")));
        let many: Vec<Option<(u64, String)>> = (0..1000).map(|row| text(row * 7 % 300)).collect();
        let cases: Vec<(&str, bool, Rows, usize)> = vec![
            ("one block, one text", false, vec![vec![text(1); 5]], 100),
            (
                "nulls between texts",
                true,
                vec![vec![text(1), None, text(2), None, None, text(1)]],
                4,
            ),
            (
                "every row null",
                true,
                vec![vec![None; 9], vec![None; 3]],
                5,
            ),
            (
                "blocks sharing keys",
                true,
                vec![
                    vec![text(3), text(4)],
                    vec![text(4), None, text(3), text(5)],
                ],
                2,
            ),
            (
                "an empty block",
                false,
                vec![vec![], vec![text(9), text(8)]],
                1,
            ),
            (
                "300 texts: 9-bit indices over many pages",
                true,
                vec![many.clone(), many],
                333,
            ),
        ];
        for (name, nullable, rows, rows_per_page) in cases {
            let expected: Vec<Option<String>> = rows
                .iter()
                .flatten()
                .map(|row| row.as_ref().map(|(_, text)| text.clone()))
                .collect();
            assert_eq!(
                round_trip(nullable, &rows, rows_per_page),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn a_required_column_refuses_a_null() {
        let blocks = dictionary_blocks(&vec![vec![Some((1, "one".to_string())), None]]);
        let schema = parquet::schema::parser::parse_message_type(
            "message rated { required binary text (STRING); }",
        )
        .unwrap();
        let descriptor = parquet::schema::types::SchemaDescriptor::new(std::sync::Arc::new(schema));
        let error = encode_dictionary_chunk(descriptor.column(0), &[&blocks[0]], 10).unwrap_err();
        assert!(error.to_string().contains("required"), "{error}");
    }
}
