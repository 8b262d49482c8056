//! Longest-prefix lookup over digit strings.
//!
//! Prefixes of up to four digits live in a small direct-indexed array; longer ones in an
//! open-addressing hash table keyed by (length, digits). For each four-digit stem a bit mask says
//! which longer lengths exist under it, so a lookup probes the big table only for lengths that can
//! match — usually once. A trie of the same deck is several times larger and costs a dependent
//! cache miss per digit; at millions of lookups a second, cache misses are the cost.

use crate::cdr::NUMBER_DIGITS_MAX;

/// Prefixes longer than this are refused by the deck loader: 18 digits keep every key in a u64.
pub const PREFIX_DIGITS_MAX: usize = 18;

const EMPTY_KEY: u64 = u64::MAX;

/// Prefixes this short are stored in the direct array.
const STEM_DIGITS: usize = 4;
/// Keys of all digit strings of at most `STEM_DIGITS` digits: 1 + 10 + 100 + 1000 + 10000.
const SHORT_KEYS: usize = 11_111;
const STEMS: usize = 10_000;
const NO_VALUE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Slot {
    key: u64,
    value: u32,
}

const EMPTY_SLOT: Slot = Slot {
    key: EMPTY_KEY,
    value: 0,
};

/// Maps digit prefixes to a `u32` value (for a deck: the index of the prefix's rate group).
#[derive(Clone)]
pub struct PrefixIndex {
    /// Values of prefixes of at most `STEM_DIGITS` digits, by key.
    short_values: Vec<u32>,
    /// For each four-digit stem, bit `n` is set when a prefix of `n` > 4 digits starts with it.
    stem_lengths: Vec<u32>,
    slots: Vec<Slot>,
    mask: usize,
    n_prefixes: usize,
    /// Bit `n` is set when some prefix has `n` digits.
    lengths_present: u32,
}

impl Default for PrefixIndex {
    fn default() -> Self {
        PrefixIndex {
            short_values: vec![NO_VALUE; SHORT_KEYS],
            stem_lengths: vec![0; STEMS],
            slots: vec![EMPTY_SLOT; 16],
            mask: 15,
            n_prefixes: 0,
            lengths_present: 0,
        }
    }
}

/// A unique u64 for a digit string of up to 18 digits: strings of length n take the range after
/// all shorter ones, so "1" and "01" differ.
pub fn prefix_key(digits: u64, length: usize) -> u64 {
    const OFFSETS: [u64; PREFIX_DIGITS_MAX + 1] = {
        let mut offsets = [0u64; PREFIX_DIGITS_MAX + 1];
        let mut power = 1u64;
        let mut length = 1;
        while length <= PREFIX_DIGITS_MAX {
            offsets[length] = offsets[length - 1] + power;
            power *= 10;
            length += 1;
        }
        offsets
    };
    OFFSETS[length] + digits
}

fn hash_of(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) as usize
}

fn digits_value(prefix: &str) -> Option<u64> {
    if prefix.len() > PREFIX_DIGITS_MAX {
        return None;
    }
    prefix.bytes().try_fold(0u64, |value, byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + u64::from(byte - b'0'))
    })
}

/// Hints the processor to bring `value`'s cache line in; does nothing where there is no such hint.
#[inline(always)]
pub fn prefetch_read<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and reads nothing the program sees; `value` is a live
    // reference anyway.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

impl PrefixIndex {
    /// Inserts `prefix` (ASCII digits, at most [`PREFIX_DIGITS_MAX`]) and returns the value it
    /// had before, if any.
    pub fn insert(&mut self, prefix: &str, value: u32) -> Option<u32> {
        assert!(value != NO_VALUE, "u32::MAX is reserved");
        let digits = digits_value(prefix).expect("prefix index keys are at most 18 digits");
        let length = prefix.len();
        if length <= STEM_DIGITS {
            let slot = &mut self.short_values[prefix_key(digits, length) as usize];
            let previous = std::mem::replace(slot, value);
            if previous != NO_VALUE {
                return Some(previous);
            }
            self.n_prefixes += 1;
            self.lengths_present |= 1 << length;
            return None;
        }
        let stem = digits / 10u64.pow((length - STEM_DIGITS) as u32);
        self.stem_lengths[stem as usize] |= 1 << length;
        if (self.n_prefixes + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let key = prefix_key(digits, prefix.len());
        let mut position = hash_of(key) & self.mask;
        loop {
            let slot = &mut self.slots[position];
            if slot.key == key {
                return Some(std::mem::replace(&mut slot.value, value));
            }
            if slot.key == EMPTY_KEY {
                *slot = Slot { key, value };
                self.n_prefixes += 1;
                self.lengths_present |= 1 << prefix.len();
                return None;
            }
            position = (position + 1) & self.mask;
        }
    }

    fn grow(&mut self) {
        let doubled = vec![EMPTY_SLOT; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        self.mask = self.slots.len() - 1;
        for slot in old.into_iter().filter(|slot| slot.key != EMPTY_KEY) {
            let mut position = hash_of(slot.key) & self.mask;
            while self.slots[position].key != EMPTY_KEY {
                position = (position + 1) & self.mask;
            }
            self.slots[position] = slot;
        }
    }

    fn get_key(&self, key: u64) -> Option<u32> {
        let mut position = hash_of(key) & self.mask;
        loop {
            let slot = self.slots[position];
            if slot.key == key {
                return Some(slot.value);
            }
            if slot.key == EMPTY_KEY {
                return None;
            }
            position = (position + 1) & self.mask;
        }
    }

    fn get_digits(&self, digits: u64, length: usize) -> Option<u32> {
        if length <= STEM_DIGITS {
            let value = self.short_values[prefix_key(digits, length) as usize];
            (value != NO_VALUE).then_some(value)
        } else {
            self.get_key(prefix_key(digits, length))
        }
    }

    pub fn get(&self, prefix: &str) -> Option<u32> {
        self.get_digits(digits_value(prefix)?, prefix.len())
    }

    /// Starts loading the hash slots a lookup of `number` will probe, without waiting for them:
    /// a caller that does this some lookups ahead finds them in cache. Only a hint; it changes
    /// nothing.
    pub fn prefetch(&self, number: &[u8]) {
        let mut digits = 0u64;
        // Lengths above the stem that some prefix under this number's stem has.
        let mut longer_lengths = 0u32;
        for (index, &byte) in number.iter().take(PREFIX_DIGITS_MAX).enumerate() {
            if !byte.is_ascii_digit() {
                break;
            }
            digits = digits * 10 + u64::from(byte - b'0');
            let length = index + 1;
            if length == STEM_DIGITS {
                longer_lengths = self.stem_lengths[digits as usize];
            } else if longer_lengths & (1 << length) != 0 {
                prefetch_read(&self.slots[hash_of(prefix_key(digits, length)) & self.mask]);
            }
            if length >= STEM_DIGITS && longer_lengths >> (length + 1) == 0 {
                break;
            }
        }
    }

    /// Calls `visit(prefix_length, value)` for every stored prefix of `number`, longest first,
    /// until `visit` returns `Some`. This lets a caller skip a longer prefix that has no rate in
    /// force and fall back to a shorter one.
    pub fn find_longest<T>(
        &self,
        number: &[u8],
        mut visit: impl FnMut(usize, u32) -> Option<T>,
    ) -> Option<T> {
        let usable = number.len().min(PREFIX_DIGITS_MAX).min(NUMBER_DIGITS_MAX);
        let mut values = [0u64; PREFIX_DIGITS_MAX + 1];
        let mut n_digits = 0;
        for &byte in &number[..usable] {
            if !byte.is_ascii_digit() {
                break;
            }
            values[n_digits + 1] = values[n_digits] * 10 + u64::from(byte - b'0');
            n_digits += 1;
        }
        let short_lengths = (1u32 << (STEM_DIGITS + 1)) - 2;
        let long_lengths = if n_digits > STEM_DIGITS {
            self.stem_lengths[values[STEM_DIGITS] as usize]
        } else {
            0
        };
        let mut lengths =
            (long_lengths | (self.lengths_present & short_lengths)) & ((2u32 << n_digits) - 1);
        while lengths != 0 {
            let length = 31 - lengths.leading_zeros() as usize;
            lengths &= !(1 << length);
            if let Some(value) = self.get_digits(values[length], length)
                && let Some(found) = visit(length, value)
            {
                return Some(found);
            }
        }
        None
    }

    pub fn n_prefixes(&self) -> usize {
        self.n_prefixes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(prefixes: &[&str]) -> PrefixIndex {
        let mut index = PrefixIndex::default();
        for (value, prefix) in prefixes.iter().enumerate() {
            index.insert(prefix, value as u32);
        }
        index
    }

    fn check(prefixes: &[&str], number: &str, expected: Option<&str>) {
        let index = index(prefixes);
        // A hint only: it must take any number without panicking or changing the answer.
        index.prefetch(number.as_bytes());
        let found = index.find_longest(number.as_bytes(), |length, _| Some(&number[..length]));
        assert_eq!(found, expected, "{number} in {prefixes:?}");
    }

    #[test]
    fn longest_prefix() {
        check(&["1", "1212", "44", "4420"], "12125550100", Some("1212"));
        check(&["1", "1212", "44", "4420"], "13105550100", Some("1"));
        check(&["1", "1212", "44", "4420"], "442071234567", Some("4420"));
        check(&["1", "1212", "44", "4420"], "33123", None);
        check(&["1", "1212"], "121", Some("1"));
        check(&["1212"], "1212", Some("1212"));
        check(&["0", "00"], "001", Some("00"));
        check(&["1"], "01", None);
        check(
            &["123456789012345678"],
            "1234567890123456789012",
            Some("123456789012345678"),
        );
        check(&[], "1", None);
        check(&["12345", "1"], "1234x6", Some("1"));
        check(&["12345", "123456"], "12345", Some("12345"));
    }

    #[test]
    fn falls_back_when_visitor_declines() {
        let index = index(&["4", "44", "447"]);
        let found = index.find_longest(b"447911", |length, _| (length < 3).then_some(length));
        assert_eq!(found, Some(2));
    }

    #[test]
    fn insert_reports_previous_value_and_grows() {
        let mut index = PrefixIndex::default();
        assert_eq!(index.insert("44", 1), None);
        assert_eq!(index.insert("44", 2), Some(1));
        assert_eq!(index.get("44"), Some(2));
        assert_eq!(index.get("4"), None);
        for prefix in 0..100_000u32 {
            index.insert(&format!("9{prefix}"), prefix);
        }
        assert_eq!(index.n_prefixes(), 100_001);
        assert_eq!(index.get("912345"), Some(12345));
        assert_eq!(index.get("44"), Some(2));
    }
}
