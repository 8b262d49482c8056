//! Cutting a stream of JSON documents — one per line, or the elements of one large array — into
//! batches of whole documents without reading the whole file: a byte scanner tracks strings and
//! nesting, so memory stays at one batch whatever the file size.
//!
//! Anything between documents that is not whitespace, a comma or an array bracket is passed on
//! as a document of its own (up to the next line end or separator), so the decoder rejects it
//! with a reason instead of the scanner stopping the run.

use crate::limits::{BLOCK_BYTES, RECORD_BYTES_MAX};
use std::io::{self, BufRead};
use std::ops::Range;

/// Whole documents of one file: their bytes one after another, and where each starts.
#[derive(Debug, Default)]
pub struct JsonDocumentBatch {
    pub bytes: Vec<u8>,
    pub documents: Vec<JsonDocument>,
    /// Bytes of the file read once this batch is done, for progress.
    pub file_offset_end: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonDocument {
    /// Line of the file the document starts on (1-based).
    pub line: u64,
    /// Where the document lies in the batch's bytes.
    pub range: Range<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    /// Between documents.
    Between,
    /// Inside an object: its nesting depth, and whether the scanner is in a string (and just
    /// after a backslash).
    Object {
        depth: u32,
        in_string: bool,
        escaped: bool,
    },
    /// Inside something that is not an object.
    Stray,
}

/// What a byte does to the document being cut.
enum Step {
    Skip,
    Begin,
    Continue,
    /// The byte ends the document and belongs to it.
    EndWith,
    /// The document ended just before the byte, which must be scanned again.
    EndBefore,
}

fn step(scan: &mut Scan, byte: u8) -> Step {
    match scan {
        Scan::Between => match byte {
            b' ' | b'\t' | b'\r' | b'\n' | b',' | b'[' | b']' => Step::Skip,
            b'{' => {
                *scan = Scan::Object {
                    depth: 1,
                    in_string: false,
                    escaped: false,
                };
                Step::Begin
            }
            _ => {
                *scan = Scan::Stray;
                Step::Begin
            }
        },
        Scan::Stray => match byte {
            b'\n' | b',' | b'[' | b']' | b'{' => {
                *scan = Scan::Between;
                Step::EndBefore
            }
            _ => Step::Continue,
        },
        Scan::Object {
            depth,
            in_string,
            escaped,
        } => {
            if *in_string {
                if *escaped {
                    *escaped = false;
                } else if byte == b'\\' {
                    *escaped = true;
                } else if byte == b'"' {
                    *in_string = false;
                }
                return Step::Continue;
            }
            match byte {
                b'"' => *in_string = true,
                b'{' | b'[' => *depth += 1,
                b'}' | b']' => {
                    *depth -= 1;
                    if *depth == 0 {
                        *scan = Scan::Between;
                        return Step::EndWith;
                    }
                }
                _ => {}
            }
            Step::Continue
        }
    }
}

/// Reads JSON documents from `reader` in batches of about [`BLOCK_BYTES`].
pub struct JsonDocumentReader<R> {
    reader: R,
    scan: Scan,
    line: u64,
    file_offset: u64,
}

impl<R: BufRead> JsonDocumentReader<R> {
    pub fn new(reader: R) -> Self {
        JsonDocumentReader {
            reader,
            scan: Scan::Between,
            line: 1,
            file_offset: 0,
        }
    }

    /// The next batch, or `None` at the end of the input. A document longer than
    /// [`RECORD_BYTES_MAX`] is an error: the file is refused rather than buffered without bound.
    pub fn next_batch(&mut self) -> io::Result<Option<JsonDocumentBatch>> {
        let mut batch = JsonDocumentBatch::default();
        let mut document_start = 0;
        let mut document_line = 0;
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                if self.scan != Scan::Between {
                    // A document cut off by the end of the file: the decoder names it.
                    self.scan = Scan::Between;
                    batch.documents.push(JsonDocument {
                        line: document_line,
                        range: document_start..batch.bytes.len(),
                    });
                }
                batch.file_offset_end = self.file_offset;
                return Ok((!batch.documents.is_empty()).then_some(batch));
            }
            let mut n_consumed = 0;
            let mut batch_full = false;
            for &byte in chunk {
                n_consumed += 1;
                let mut step_result = step(&mut self.scan, byte);
                if let Step::EndBefore = step_result {
                    batch.documents.push(JsonDocument {
                        line: document_line,
                        range: document_start..batch.bytes.len(),
                    });
                    step_result = step(&mut self.scan, byte);
                    // A file of stray (non-object) documents ends each one here, never with
                    // EndWith: the batch must still end once it is full, where no document has
                    // begun.
                    batch_full =
                        matches!(step_result, Step::Skip) && batch.bytes.len() >= BLOCK_BYTES;
                }
                match step_result {
                    Step::Skip | Step::EndBefore => {}
                    Step::Begin => {
                        document_start = batch.bytes.len();
                        document_line = self.line;
                        batch.bytes.push(byte);
                    }
                    Step::Continue => batch.bytes.push(byte),
                    Step::EndWith => {
                        batch.bytes.push(byte);
                        batch.documents.push(JsonDocument {
                            line: document_line,
                            range: document_start..batch.bytes.len(),
                        });
                        batch_full = batch.bytes.len() >= BLOCK_BYTES;
                    }
                }
                if byte == b'\n' {
                    self.line += 1;
                }
                if self.scan != Scan::Between
                    && batch.bytes.len() - document_start > RECORD_BYTES_MAX
                {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "the JSON document starting on line {document_line} is longer than {RECORD_BYTES_MAX} bytes (an unclosed brace or quote?)"
                        ),
                    ));
                }
                if batch_full {
                    break;
                }
            }
            self.reader.consume(n_consumed);
            self.file_offset += n_consumed as u64;
            if batch_full {
                batch.file_offset_end = self.file_offset;
                return Ok(Some(batch));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documents of `text` as (line, text) pairs, over every batch.
    fn documents(text: &str) -> Vec<(u64, String)> {
        let mut reader = JsonDocumentReader::new(io::BufReader::with_capacity(7, text.as_bytes()));
        let mut found = Vec::new();
        while let Some(batch) = reader.next_batch().unwrap() {
            for document in batch.documents {
                let text = String::from_utf8(batch.bytes[document.range].to_vec()).unwrap();
                found.push((document.line, text));
            }
        }
        found
    }

    fn check(text: &str, expected: &[(u64, &str)]) {
        let expected: Vec<(u64, String)> = expected
            .iter()
            .map(|(line, text)| (*line, text.to_string()))
            .collect();
        assert_eq!(documents(text), expected, "{text:?}");
    }

    #[test]
    fn documents_one_per_line_or_in_an_array() {
        check("", &[]);
        check("[]\n", &[]);
        check(
            "{\"a\":1}\n{\"b\":2}\n",
            &[(1, "{\"a\":1}"), (2, "{\"b\":2}")],
        );
        check(
            "[\n  {\"a\": {\"x\": [1, 2]}},\n  {\"b\": \"}\\\"{\"}\n]\n",
            &[(2, "{\"a\": {\"x\": [1, 2]}}"), (3, "{\"b\": \"}\\\"{\"}")],
        );
        check(
            "{\n  \"a\": 1\n}\n{\"b\":2}",
            &[(1, "{\n  \"a\": 1\n}"), (4, "{\"b\":2}")],
        );
        // Stray text and a cut-off document become documents the decoder rejects.
        check(
            "{\"a\":1}\noops\r\n{\"b\":2}\n{\"c\":",
            &[
                (1, "{\"a\":1}"),
                (2, "oops\r"),
                (3, "{\"b\":2}"),
                (4, "{\"c\":"),
            ],
        );
        check(
            "[{\"a\":1}, 5, {\"b\":2}]",
            &[(1, "{\"a\":1}"), (1, "5"), (1, "{\"b\":2}")],
        );
        check("nul{\"a\":1}", &[(1, "nul"), (1, "{\"a\":1}")]);
    }

    #[test]
    fn a_large_array_comes_in_several_batches() {
        let element = format!("{{\"call_id\":\"{}\"}}", "x".repeat(1000));
        let text = format!("[{}]", vec![element.as_str(); 10_000].join(",\n"));
        let mut reader = JsonDocumentReader::new(io::BufReader::new(text.as_bytes()));
        let mut n_batches = 0;
        let mut n_documents = 0;
        let mut last_offset = 0;
        while let Some(batch) = reader.next_batch().unwrap() {
            n_batches += 1;
            assert!(batch.bytes.len() < BLOCK_BYTES + element.len());
            assert!(batch.file_offset_end > last_offset);
            last_offset = batch.file_offset_end;
            for document in &batch.documents {
                assert_eq!(&batch.bytes[document.range.clone()], element.as_bytes());
                assert_eq!(document.line, n_documents + 1);
                n_documents += 1;
            }
        }
        assert!(n_batches > 1);
        assert_eq!(n_documents, 10_000);
        assert_eq!(last_offset, text.len() as u64);
    }

    proptest::proptest! {
        /// Whatever the bytes, documents lie inside their batch, in order, on lines that only
        /// grow, and together hold every byte that is not a separator.
        #[test]
        fn any_bytes_cut_into_ordered_documents(bytes in proptest::collection::vec(
            proptest::sample::select(b"{}[]\",:\\ \nab1".to_vec()), 0..300,
        )) {
            let mut reader = JsonDocumentReader::new(io::BufReader::with_capacity(5, bytes.as_slice()));
            let mut last_line = 1;
            let mut n_document_bytes = 0;
            while let Some(batch) = reader.next_batch().unwrap() {
                let mut last_end = 0;
                for document in &batch.documents {
                    proptest::prop_assert!(document.range.start >= last_end);
                    proptest::prop_assert!(document.range.end <= batch.bytes.len());
                    proptest::prop_assert!(document.line >= last_line);
                    last_end = document.range.end;
                    last_line = document.line;
                    n_document_bytes += document.range.len();
                }
                proptest::prop_assert_eq!(last_end, batch.bytes.len());
            }
            let n_separators = bytes.iter().filter(|b| b" \n,[]".contains(b)).count();
            proptest::prop_assert!(n_document_bytes + n_separators >= bytes.len());
        }
    }

    #[test]
    fn a_file_of_stray_lines_comes_in_bounded_batches() {
        // Not JSON objects at all (a CSV given as KAZOO): each line ends as a stray document.
        let line = format!("cdr,{},x\n", "y".repeat(100));
        let text = line.repeat(50_000);
        let mut reader = JsonDocumentReader::new(io::BufReader::new(text.as_bytes()));
        let mut n_batches = 0;
        let mut n_documents = 0;
        while let Some(batch) = reader.next_batch().unwrap() {
            n_batches += 1;
            n_documents += batch.documents.len();
            assert!(batch.bytes.len() < BLOCK_BYTES + line.len());
        }
        assert!(n_batches > 1);
        assert!(n_documents > 0);
    }

    #[test]
    fn an_unclosed_document_is_an_error_not_a_hang() {
        let text = format!("{{\"a\":\"{}", "x".repeat(RECORD_BYTES_MAX + 10));
        let mut reader = JsonDocumentReader::new(io::BufReader::new(text.as_bytes()));
        assert!(reader.next_batch().is_err());
    }
}
