//! Fuzzes the CSV record-boundary splitter (`last_record_boundary`) and `RecordBlockReader`, checking that the blocks concatenate back to the input.
//!
//! Input layout: the first byte chooses how the file is read, the rest is the file.
//! - bits 0-3: each `read` call returns at most `(bits + 1)` bytes (or that many 4 KiB pages in
//!   repeat mode), so short reads are exercised;
//! - bits 6 and 7 both set: repeat mode: the file is the rest of the input repeated until it is
//!   just over one block (4 MiB), so the reader has to cut the file at a record boundary. Such a
//!   file is slow to check, so only one control byte in four picks it.
//!
//! Contract checked: never panics; the boundary is the one after the last newline outside
//! quotes (checked against a plain byte-by-byte definition), and the boundary of the text up to
//! it is itself; blocks concatenate back to the file, their offsets add up, and every block but
//! the last ends at a record boundary. The files here are far below the record limit, so the
//! reader must never refuse one.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::{self, Read};
use tollgate::ingest::record_blocks::{RecordBlockReader, last_record_boundary};
use tollgate::limits::BLOCK_BYTES;

/// A reader that hands out at most `chunk` bytes per call.
struct ChunkedReader<'a> {
    bytes: &'a [u8],
    chunk: usize,
}

impl Read for ChunkedReader<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let n = buffer.len().min(self.chunk).min(self.bytes.len());
        buffer[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

fn even_quotes(bytes: &[u8]) -> bool {
    memchr::memchr_iter(b'"', bytes).count() % 2 == 0
}

/// The last record boundary by the plain definition: just after the last newline outside quotes.
fn reference_boundary(bytes: &[u8]) -> Option<usize> {
    let mut in_quotes = false;
    let mut boundary = None;
    for (position, &byte) in bytes.iter().enumerate() {
        match byte {
            b'"' => in_quotes = !in_quotes,
            b'\n' if !in_quotes => boundary = Some(position + 1),
            _ => {}
        }
    }
    boundary
}

fn check_boundary(bytes: &[u8]) {
    let boundary = last_record_boundary(bytes);
    assert_eq!(boundary, reference_boundary(bytes), "wrong boundary");
    if let Some(boundary) = boundary {
        assert!(boundary >= 1 && boundary <= bytes.len(), "boundary {boundary} out of range");
        assert_eq!(bytes[boundary - 1], b'\n', "boundary not just after a newline");
        assert!(even_quotes(&bytes[..boundary]), "boundary inside quotes");
        assert_eq!(last_record_boundary(&bytes[..boundary]), Some(boundary));
    }
}

fn check_reader(file: &[u8], chunk: usize) {
    let mut reader = RecordBlockReader::new(ChunkedReader { bytes: file, chunk });
    let mut joined = Vec::with_capacity(file.len());
    let mut last_ended_at_boundary = true;
    // Whether the text so far holds an even number of quotes (is outside quotes).
    let mut outside_quotes = true;
    loop {
        match reader.next_block() {
            Ok(Some(block)) => {
                assert!(last_ended_at_boundary, "only the last block may end mid-record");
                assert_eq!(block.file_offset as usize, joined.len(), "file_offset is off");
                assert!(!block.bytes.is_empty(), "empty block");
                joined.extend_from_slice(&block.bytes);
                outside_quotes ^= !even_quotes(&block.bytes);
                last_ended_at_boundary = block.bytes.ends_with(b"\n") && outside_quotes;
            }
            Ok(None) => break,
            // Only a record over the record limit is refused; the input here is smaller.
            Err(error) => panic!("reader refused a {}-byte file: {error}", file.len()),
        }
    }
    assert_eq!(joined, file, "blocks do not concatenate back to the file");
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        check_reader(data, 1);
        return;
    };
    check_boundary(rest);
    let chunk = usize::from(control & 0x0f) + 1;
    if control & 0xc0 != 0xc0 || rest.is_empty() {
        check_reader(rest, chunk);
    } else {
        let mut file = Vec::with_capacity(BLOCK_BYTES + 2 * rest.len());
        while file.len() <= BLOCK_BYTES {
            file.extend_from_slice(rest);
        }
        check_reader(&file, chunk * 4096);
    }
});
