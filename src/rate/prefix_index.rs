//! Longest-prefix lookup over digit strings: a compact 10-way trie.
//!
//! Every node is one array slot; a lookup walks one node per digit of the number, so its cost is
//! bounded by the number's length, not by the deck's size. 300,000 prefixes take a few tens of
//! megabytes.

const NO_NODE: u32 = 0;
const NO_VALUE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct TrieNode {
    /// Index of the child for each digit, or `NO_NODE` (the root is node 0 and is nobody's child).
    children: [u32; 10],
    value: u32,
}

const EMPTY_NODE: TrieNode = TrieNode {
    children: [NO_NODE; 10],
    value: NO_VALUE,
};

/// Maps digit prefixes to a `u32` value (for a deck: the index of the prefix's rate group).
#[derive(Clone)]
pub struct PrefixIndex {
    nodes: Vec<TrieNode>,
    n_prefixes: usize,
}

impl Default for PrefixIndex {
    fn default() -> Self {
        PrefixIndex {
            nodes: vec![EMPTY_NODE],
            n_prefixes: 0,
        }
    }
}

impl PrefixIndex {
    /// Inserts `prefix` (ASCII digits only) and returns the value it had before, if any.
    pub fn insert(&mut self, prefix: &str, value: u32) -> Option<u32> {
        assert!(value != NO_VALUE, "u32::MAX is reserved");
        let mut node = 0usize;
        for byte in prefix.bytes() {
            let digit = digit_of(byte).expect("prefix index keys are digits");
            let child = self.nodes[node].children[digit];
            node = if child == NO_NODE {
                let new_node = u32::try_from(self.nodes.len()).expect("trie nodes fit in u32");
                self.nodes.push(EMPTY_NODE);
                self.nodes[node].children[digit] = new_node;
                new_node as usize
            } else {
                child as usize
            };
        }
        let previous = std::mem::replace(&mut self.nodes[node].value, value);
        if previous == NO_VALUE {
            self.n_prefixes += 1;
            None
        } else {
            Some(previous)
        }
    }

    pub fn get(&self, prefix: &str) -> Option<u32> {
        let mut node = 0usize;
        for byte in prefix.bytes() {
            let child = self.nodes[node].children[digit_of(byte)?];
            if child == NO_NODE {
                return None;
            }
            node = child as usize;
        }
        let value = self.nodes[node].value;
        (value != NO_VALUE).then_some(value)
    }

    /// Calls `visit(prefix_length, value)` for every stored prefix of `number`, longest first,
    /// until `visit` returns `Some`. This lets a caller skip a longer prefix that has no rate in
    /// force and fall back to a shorter one.
    pub fn find_longest<T>(
        &self,
        number: &str,
        mut visit: impl FnMut(usize, u32) -> Option<T>,
    ) -> Option<T> {
        let mut matches = [(0usize, 0u32); crate::cdr::NUMBER_DIGITS_MAX + 1];
        let mut n_matches = 0;
        let mut node = 0usize;
        for (position, byte) in number.bytes().enumerate() {
            let Some(digit) = digit_of(byte) else { break };
            let child = self.nodes[node].children[digit];
            if child == NO_NODE {
                break;
            }
            node = child as usize;
            let value = self.nodes[node].value;
            if value != NO_VALUE && n_matches < matches.len() {
                matches[n_matches] = (position + 1, value);
                n_matches += 1;
            }
        }
        matches[..n_matches]
            .iter()
            .rev()
            .find_map(|&(length, value)| visit(length, value))
    }

    pub fn n_prefixes(&self) -> usize {
        self.n_prefixes
    }
}

fn digit_of(byte: u8) -> Option<usize> {
    byte.is_ascii_digit().then(|| usize::from(byte - b'0'))
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
        let found = index.find_longest(number, |length, _| Some(&number[..length]));
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
        check(&[], "1", None);
    }

    #[test]
    fn falls_back_when_visitor_declines() {
        let index = index(&["4", "44", "447"]);
        let found = index.find_longest("447911", |length, _| (length < 3).then_some(length));
        assert_eq!(found, Some(2));
    }

    #[test]
    fn insert_reports_previous_value() {
        let mut index = PrefixIndex::default();
        assert_eq!(index.insert("44", 1), None);
        assert_eq!(index.insert("44", 2), Some(1));
        assert_eq!(index.get("44"), Some(2));
        assert_eq!(index.get("4"), None);
        assert_eq!(index.n_prefixes(), 1);
    }
}
