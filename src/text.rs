//! Small text helpers shared by the file parsers.

/// A CSV header's names as tollgate compares them: trimmed, without a byte-order mark, lower case.
pub fn normalized_header_names<'h>(header: impl IntoIterator<Item = &'h [u8]>) -> Vec<String> {
    header
        .into_iter()
        .map(|name| {
            String::from_utf8_lossy(name)
                .trim()
                .trim_start_matches('\u{feff}')
                .to_ascii_lowercase()
        })
        .collect()
}
