//! Splitting a CSV file into blocks that end on record boundaries, so blocks can be decoded in
//! parallel. Quote-aware: a newline inside a quoted field does not end a record.

use crate::limits::{BLOCK_BYTES, RECORD_BYTES_MAX};
use std::io::{self, Read};

/// A run of whole CSV records from one file.
pub struct RecordBlock {
    pub bytes: Vec<u8>,
    /// Bytes of the file before this block, for progress.
    pub file_offset: u64,
}

/// Reads `reader` in blocks of about [`BLOCK_BYTES`], each ending just after a record's line
/// terminator (the last block ends wherever the file does).
pub struct RecordBlockReader<R> {
    reader: R,
    carry: Vec<u8>,
    file_offset: u64,
    finished: bool,
}

impl<R: Read> RecordBlockReader<R> {
    pub fn new(reader: R) -> Self {
        Self::starting_at(reader, 0)
    }

    /// A reader whose first byte sits at `file_offset` of its file (a resumed file, or the first
    /// record after the header), so block offsets stay file offsets.
    pub fn starting_at(reader: R, file_offset: u64) -> Self {
        RecordBlockReader {
            reader,
            carry: Vec::new(),
            file_offset,
            finished: false,
        }
    }

    /// The next block, or `None` at the end of the file.
    pub fn next_block(&mut self) -> io::Result<Option<RecordBlock>> {
        if self.finished {
            return Ok(None);
        }
        let mut buffer = std::mem::take(&mut self.carry);
        let mut scanned_without_boundary = 0;
        loop {
            let wanted = buffer.len().max(scanned_without_boundary) + BLOCK_BYTES;
            let at_end = fill(&mut self.reader, &mut buffer, wanted)?;
            if at_end {
                self.finished = true;
                if buffer.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(self.take_block(buffer, None)));
            }
            if let Some(boundary) = last_record_boundary(&buffer) {
                return Ok(Some(self.take_block(buffer, Some(boundary))));
            }
            scanned_without_boundary = buffer.len();
            if buffer.len() > RECORD_BYTES_MAX {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a record at byte {} is longer than {RECORD_BYTES_MAX} bytes (an unclosed quote?)",
                        self.file_offset
                    ),
                ));
            }
        }
    }

    fn take_block(&mut self, mut buffer: Vec<u8>, boundary: Option<usize>) -> RecordBlock {
        if let Some(boundary) = boundary {
            self.carry = buffer.split_off(boundary);
        }
        let block = RecordBlock {
            file_offset: self.file_offset,
            bytes: buffer,
        };
        self.file_offset += block.bytes.len() as u64;
        block
    }
}

/// Reads until `buffer` holds `wanted` bytes; true when the reader is exhausted first.
fn fill(reader: &mut impl Read, buffer: &mut Vec<u8>, wanted: usize) -> io::Result<bool> {
    buffer.reserve(wanted.saturating_sub(buffer.len()));
    while buffer.len() < wanted {
        let n_read = reader
            .by_ref()
            .take((wanted - buffer.len()) as u64)
            .read_to_end(buffer)?;
        if n_read == 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The position just after the last newline that ends a record in `bytes` (which starts at a
/// record boundary, outside quotes).
pub fn last_record_boundary(bytes: &[u8]) -> Option<usize> {
    if memchr::memchr(b'"', bytes).is_none() {
        return memchr::memrchr(b'\n', bytes).map(|position| position + 1);
    }
    let mut in_quotes = false;
    let mut boundary = None;
    for position in memchr::memchr2_iter(b'"', b'\n', bytes) {
        if bytes[position] == b'"' {
            // A doubled quote inside a quoted field toggles twice: the parity stays right.
            in_quotes = !in_quotes;
        } else if !in_quotes {
            boundary = Some(position + 1);
        }
    }
    boundary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_respect_quotes() {
        assert_eq!(last_record_boundary(b"a,b\nc,d\ne"), Some(8));
        assert_eq!(last_record_boundary(b"a,\"b\nc\",d"), None);
        assert_eq!(last_record_boundary(b"a,\"b\nc\",d\ne"), Some(10));
        assert_eq!(
            last_record_boundary(b"a,\"say \"\"hi\"\"\n\",d\nx"),
            Some(18)
        );
        assert_eq!(last_record_boundary(b"no newline"), None);
    }

    #[test]
    fn blocks_reassemble_the_file() {
        let mut text = String::new();
        for row in 0..200_000 {
            text.push_str(&format!("{row},\"quoted\nfield {row}\",x\n"));
        }
        text.push_str("last,row,without newline");
        let mut reader = RecordBlockReader::new(text.as_bytes());
        let mut joined = Vec::new();
        let mut n_blocks = 0;
        while let Some(block) = reader.next_block().unwrap() {
            assert_eq!(block.file_offset as usize, joined.len());
            if n_blocks == 0 {
                assert!(block.bytes.ends_with(b"\n"));
            }
            joined.extend_from_slice(&block.bytes);
            n_blocks += 1;
        }
        assert!(n_blocks > 1);
        assert_eq!(joined, text.as_bytes());
    }

    #[test]
    fn an_unclosed_quote_is_an_error_not_a_hang() {
        let text = format!("a,\"{}", "x".repeat(RECORD_BYTES_MAX + BLOCK_BYTES));
        let mut reader = RecordBlockReader::new(text.as_bytes());
        assert!(reader.next_block().is_err());
    }
}
