//! Finding the commas and line ends of an unquoted CSV block in one pass, 64 bytes at a time.
//!
//! A CDR line is about 120 bytes with ten commas. Searching each line for its commas with a
//! general-purpose `memchr` iterator spends more on setting up each search than on the bytes; a
//! per-64-byte bit mask of separators (which the compiler turns into vector compares) costs a few
//! instructions per chunk and one per separator.

/// Calls `on_separator(position, is_line_end)` for every `,` and `\n` in `bytes`, in order.
pub fn for_each_separator(bytes: &[u8], mut on_separator: impl FnMut(usize, bool)) {
    let mut chunks = bytes.chunks_exact(64);
    let mut chunk_start = 0;
    for chunk in &mut chunks {
        let chunk: &[u8; 64] = chunk.try_into().expect("chunks_exact gives 64 bytes");
        let (commas, line_ends) = separator_masks(chunk);
        visit_mask(
            chunk_start,
            commas | line_ends,
            line_ends,
            &mut on_separator,
        );
        chunk_start += 64;
    }
    let mut tail = [0u8; 64];
    let remainder = chunks.remainder();
    tail[..remainder.len()].copy_from_slice(remainder);
    let (commas, line_ends) = separator_masks(&tail);
    visit_mask(
        chunk_start,
        commas | line_ends,
        line_ends,
        &mut on_separator,
    );
}

/// Bit `i` of the first mask is set when `chunk[i]` is a comma, of the second when it is `\n`.
#[cfg(target_arch = "x86_64")]
fn separator_masks(chunk: &[u8; 64]) -> (u64, u64) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    let mut commas = 0u64;
    let mut line_ends = 0u64;
    // SAFETY: SSE2 is part of every x86_64 CPU; each unaligned 16-byte load reads inside `chunk`.
    unsafe {
        let comma = _mm_set1_epi8(b',' as i8);
        let line_end = _mm_set1_epi8(b'\n' as i8);
        for lane in 0..4 {
            let bytes = _mm_loadu_si128(chunk.as_ptr().add(lane * 16).cast::<__m128i>());
            let comma_bits = _mm_movemask_epi8(_mm_cmpeq_epi8(bytes, comma)) as u16;
            let line_end_bits = _mm_movemask_epi8(_mm_cmpeq_epi8(bytes, line_end)) as u16;
            commas |= u64::from(comma_bits) << (lane * 16);
            line_ends |= u64::from(line_end_bits) << (lane * 16);
        }
    }
    (commas, line_ends)
}

#[cfg(not(target_arch = "x86_64"))]
fn separator_masks(chunk: &[u8; 64]) -> (u64, u64) {
    separator_masks_portable(chunk)
}

/// The same masks, one byte at a time (other architectures, and the reference in tests).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn separator_masks_portable(chunk: &[u8; 64]) -> (u64, u64) {
    let mut commas = 0u64;
    let mut line_ends = 0u64;
    for (index, byte) in chunk.iter().enumerate() {
        commas |= u64::from(*byte == b',') << index;
        line_ends |= u64::from(*byte == b'\n') << index;
    }
    (commas, line_ends)
}

fn visit_mask(
    chunk_start: usize,
    mut separators: u64,
    line_ends: u64,
    on_separator: &mut impl FnMut(usize, bool),
) {
    while separators != 0 {
        let index = separators.trailing_zeros();
        on_separator(chunk_start + index as usize, line_ends & (1 << index) != 0);
        separators &= separators - 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn separators(bytes: &[u8]) -> Vec<(usize, bool)> {
        let mut found = Vec::new();
        for_each_separator(bytes, |position, is_line_end| {
            found.push((position, is_line_end))
        });
        found
    }

    #[test]
    fn finds_every_separator_like_a_plain_scan() {
        let mut long_line = b"g7-1,acct-1,outbound,1555,4420,".repeat(7);
        long_line.extend_from_slice(b"\r\nlast,line");
        let cases: [&[u8]; 8] = [
            b"",
            b",",
            b"\n",
            b"a,b\nc,d\n",
            b"no separators at all",
            &[b','; 64],
            &[b'\n'; 130],
            &long_line,
        ];
        for bytes in cases {
            let expected: Vec<(usize, bool)> = bytes
                .iter()
                .enumerate()
                .filter(|(_, byte)| matches!(byte, b',' | b'\n'))
                .map(|(position, byte)| (position, *byte == b'\n'))
                .collect();
            assert_eq!(
                separators(bytes),
                expected,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn vector_masks_match_the_portable_masks() {
        let mut chunk = [0u8; 64];
        let mut state = 0x9e37_79b9_u32;
        for _ in 0..1000 {
            for byte in &mut chunk {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *byte = [b',', b'\n', b'a', b'\r', 0xff, b'"'][(state >> 24) as usize % 6];
            }
            assert_eq!(separator_masks(&chunk), separator_masks_portable(&chunk));
        }
    }
}
