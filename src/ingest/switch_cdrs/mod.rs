//! Switch CDR formats (Asterisk, FreeSWITCH, KAZOO, CGRateS): each maps one of its records onto
//! the canonical CDR fields, so every format is a small mapping and the canonical decoder and the
//! rating path do the rest. A record the mapping cannot use is a reject with a reason.
//!
//! The formats and their mappings are documented in `docs/cdr-formats.md`.

pub mod asterisk;
pub mod cgrates;
pub mod freeswitch;
pub mod json_documents;
pub mod kazoo;

use crate::cdr::RejectReason;
use crate::ingest::canonical_csv::CanonicalColumns;
use std::borrow::Cow;

/// A switch's CDR file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchFormat {
    /// Asterisk cdr_csv `Master.csv`.
    Asterisk,
    /// Asterisk cdr_custom, stock `Master.csv` mapping.
    AsteriskCustom,
    /// FreeSWITCH mod_cdr_csv, `example` template.
    Freeswitch,
    /// KAZOO CDR JSON documents, one per line or in an array.
    Kazoo,
    /// CGRateS CDR CSV export (cdre), default fields.
    Cgrates,
}

impl SwitchFormat {
    pub fn name(self) -> &'static str {
        match self {
            SwitchFormat::Asterisk => "asterisk",
            SwitchFormat::AsteriskCustom => "asterisk-custom",
            SwitchFormat::Freeswitch => "freeswitch",
            SwitchFormat::Kazoo => "kazoo",
            SwitchFormat::Cgrates => "cgrates",
        }
    }
}

/// One mapped record: the canonical fields in [`crate::ingest::canonical_csv::CANONICAL_COLUMNS`]
/// order, borrowed from the source record where they are copied unchanged.
pub type CanonicalFields<'a> = [Cow<'a, str>; 10];

/// Where mapped fields sit for the canonical decoder: in canonical order, without a `source`
/// column (a switch file's feed is `--source`).
pub const MAPPED_COLUMNS: CanonicalColumns = CanonicalColumns {
    n_columns: 10,
    positions: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    source: None,
};

/// The name of each column of a header-less switch CSV, lower case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnNames(pub Vec<String>);

impl ColumnNames {
    pub fn of(names: &[&str]) -> ColumnNames {
        ColumnNames(names.iter().map(|name| name.to_ascii_lowercase()).collect())
    }

    pub fn position(&self, name: &str) -> Option<usize> {
        self.0.iter().position(|candidate| candidate == name)
    }
}

/// Reads `--input-columns`: column names separated by commas. A name may be written as in the
/// switch's own template, so a template line can be pasted as it is: `caller_id_number`,
/// `"${caller_id_number}"` (FreeSWITCH) and `${CSV_QUOTE(${CDR(src)})}` (Asterisk) all name the
/// column by its innermost name.
pub fn parse_column_names(text: &str) -> Result<ColumnNames, String> {
    let mut names = Vec::new();
    for (index, item) in text.split(',').enumerate() {
        let innermost = match item.rfind(['(', '{']) {
            Some(opening) => &item[opening + 1..],
            None => item,
        };
        let name = innermost
            .split([')', '}'])
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches('"')
            .trim();
        if name.is_empty() {
            return Err(format!(
                "--input-columns: column {} has no name (in {text:?})",
                index + 1
            ));
        }
        names.push(name.to_ascii_lowercase());
    }
    Ok(ColumnNames(names))
}

/// Where a format's fields of interest sit in one column layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub n_columns: usize,
    /// Position of each of the format's wanted fields (see each format's `FIELDS`).
    positions: Vec<Option<usize>>,
}

impl Layout {
    pub fn new(names: &ColumnNames, wanted: &[&str]) -> Layout {
        Layout {
            n_columns: names.0.len(),
            positions: wanted.iter().map(|name| names.position(name)).collect(),
        }
    }

    /// The trimmed text of wanted field `field`, empty when the layout lacks it.
    pub fn text<'a>(&self, fields: &[&'a str], field: usize) -> &'a str {
        self.positions[field]
            .and_then(|position| fields.get(position))
            .map_or("", |text| text.trim())
    }

    pub fn has(&self, field: usize) -> bool {
        self.positions[field].is_some()
    }
}

/// Maps the records of a header-less switch CSV (every format but KAZOO).
#[derive(Clone, Debug)]
pub struct SwitchCsvDecoder {
    format: SwitchFormat,
    /// The layouts a record may have, told apart by their column count (Asterisk's optional
    /// columns, CGRateS' older `Direction` column); one when the columns were named.
    layouts: Vec<Layout>,
    /// Dialplan contexts (Asterisk `dcontext`, FreeSWITCH `context`) whose calls are the
    /// account's inbound calls; every other call is outbound.
    inbound_contexts: Vec<String>,
}

impl SwitchCsvDecoder {
    /// The decoder of `format`'s stock layout, or of the columns named by `--input-columns`
    /// (refused when they lack what the format needs).
    pub fn new(
        format: SwitchFormat,
        named_columns: Option<&ColumnNames>,
    ) -> Result<SwitchCsvDecoder, String> {
        let (wanted, required, stock): (&[&str], &[&[&str]], Vec<ColumnNames>) = match format {
            SwitchFormat::Asterisk => (
                &asterisk::FIELDS,
                &asterisk::REQUIRED,
                asterisk::cdr_csv_layouts(),
            ),
            SwitchFormat::AsteriskCustom => (
                &asterisk::FIELDS,
                &asterisk::REQUIRED,
                vec![ColumnNames::of(&asterisk::CDR_CUSTOM_STOCK)],
            ),
            SwitchFormat::Freeswitch => (
                &freeswitch::FIELDS,
                &freeswitch::REQUIRED,
                vec![ColumnNames::of(&freeswitch::EXAMPLE_TEMPLATE)],
            ),
            SwitchFormat::Cgrates => (
                &cgrates::FIELDS,
                &cgrates::REQUIRED,
                cgrates::cdre_layouts(),
            ),
            SwitchFormat::Kazoo => return Err("KAZOO CDRs are JSON, not CSV".to_string()),
        };
        let names = match named_columns {
            None => stock,
            Some(names) => {
                let names = if format == SwitchFormat::Cgrates {
                    cgrates::canonical_field_names(names)
                } else {
                    names.clone()
                };
                let missing: Vec<String> = required
                    .iter()
                    .filter(|any_of| any_of.iter().all(|name| names.position(name).is_none()))
                    .map(|any_of| any_of.join(" or "))
                    .collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "--input-columns lacks what {} records need: {}",
                        format.name(),
                        missing.join(", ")
                    ));
                }
                vec![names]
            }
        };
        Ok(SwitchCsvDecoder {
            format,
            layouts: names
                .iter()
                .map(|names| Layout::new(names, wanted))
                .collect(),
            inbound_contexts: Vec::new(),
        })
    }

    /// The same decoder, reading calls in `contexts` as inbound (`--inbound-context`); only
    /// Asterisk and FreeSWITCH records name a dialplan context.
    pub fn with_inbound_contexts(
        mut self,
        contexts: &[String],
    ) -> Result<SwitchCsvDecoder, String> {
        let has_contexts = matches!(
            self.format,
            SwitchFormat::Asterisk | SwitchFormat::AsteriskCustom | SwitchFormat::Freeswitch
        );
        if !contexts.is_empty() && !has_contexts {
            return Err(format!(
                "--inbound-context: {} records name no dialplan context",
                self.format.name()
            ));
        }
        self.inbound_contexts = contexts.to_vec();
        Ok(self)
    }

    /// The direction of a call whose dialplan context is `context`.
    fn direction_of(&self, context: &str) -> &'static str {
        if self
            .inbound_contexts
            .iter()
            .any(|inbound| inbound == context)
        {
            "inbound"
        } else {
            "outbound"
        }
    }

    /// True when the mapping reads column `column` of a record of `n_columns` columns: text a
    /// switch wrote in another encoding (a caller name in a legacy code page) only matters there.
    pub fn reads_column(&self, n_columns: usize, column: usize) -> bool {
        self.layouts
            .iter()
            .find(|layout| layout.n_columns == n_columns)
            .is_some_and(|layout| layout.positions.contains(&Some(column)))
    }

    /// Maps one record's fields onto the canonical fields.
    pub fn map<'a>(&self, fields: &[&'a str]) -> Result<CanonicalFields<'a>, RejectReason> {
        let layout = self
            .layouts
            .iter()
            .find(|layout| layout.n_columns == fields.len())
            .ok_or(RejectReason::WrongColumnCount)?;
        match self.format {
            SwitchFormat::Asterisk | SwitchFormat::AsteriskCustom => {
                asterisk::map(layout, fields, |context| self.direction_of(context))
            }
            SwitchFormat::Freeswitch => {
                freeswitch::map(layout, fields, |context| self.direction_of(context))
            }
            SwitchFormat::Cgrates => cgrates::map(layout, fields),
            SwitchFormat::Kazoo => unreachable!("a KAZOO decoder is never built"),
        }
    }
}

/// A switch time as the canonical decoder reads it. Switch times are passed on unchanged, except
/// a time a spreadsheet re-saved (`2020/2/10 22:41`, year first, seconds possibly dropped), which
/// is rewritten as `2020-02-10 22:41:00`. Anything else is left for the canonical decoder to
/// refuse.
pub fn switch_time(text: &str) -> Cow<'_, str> {
    spreadsheet_time(text).map_or(Cow::Borrowed(text), Cow::Owned)
}

fn spreadsheet_time(text: &str) -> Option<String> {
    let (date, time) = text.trim().split_once(' ')?;
    let mut date_parts = date.split('/');
    let year = date_parts.next()?;
    let month = date_parts.next()?;
    let day = date_parts.next()?;
    let mut time_parts = time.trim().split(':');
    let hour = time_parts.next()?;
    let minute = time_parts.next()?;
    let second = time_parts.next().unwrap_or("0");
    let is_number = |part: &str, max_digits: usize| {
        !part.is_empty() && part.len() <= max_digits && part.bytes().all(|b| b.is_ascii_digit())
    };
    let well_formed = date_parts.next().is_none()
        && time_parts.next().is_none()
        && year.len() == 4
        && is_number(year, 4)
        && [month, day, hour, minute, second]
            .iter()
            .all(|part| is_number(part, 2));
    if !well_formed {
        return None;
    }
    Some(format!(
        "{year}-{month:0>2}-{day:0>2} {hour:0>2}:{minute:0>2}:{second:0>2}"
    ))
}

/// A FreeSWITCH hangup cause (FreeSWITCH and KAZOO) as a canonical disposition, for a call that
/// was not answered.
pub fn unanswered_disposition(hangup_cause: &str) -> &'static str {
    match hangup_cause.trim().to_ascii_uppercase().as_str() {
        "USER_BUSY" => "BUSY",
        "NO_ANSWER" | "NO_USER_RESPONSE" | "ALLOTTED_TIMEOUT" | "" => "NO ANSWER",
        "ORIGINATOR_CANCEL" | "LOSE_RACE" | "PICKED_OFF" => "CANCEL",
        "NORMAL_CIRCUIT_CONGESTION" | "SWITCH_CONGESTION" => "CONGESTION",
        _ => "FAILED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names_as_written_in_templates() {
        let check = |text: &str, expected: &[&str]| {
            assert_eq!(
                parse_column_names(text),
                Ok(ColumnNames::of(expected)),
                "{text}"
            );
        };
        check("uuid,billsec", &["uuid", "billsec"]);
        check(" UUID , Billsec ", &["uuid", "billsec"]);
        check(r#""${uuid}","${billsec}""#, &["uuid", "billsec"]);
        check(
            "${CSV_QUOTE(${CDR(clid)})},${CDR(sequence)}",
            &["clid", "sequence"],
        );
        assert!(parse_column_names("uuid,,billsec").is_err());
        assert!(parse_column_names(r#""${}""#).is_err());
    }

    #[test]
    fn inbound_contexts_only_for_formats_that_have_contexts() {
        let contexts = ["from-pstn".to_string()];
        let decoder = |format| SwitchCsvDecoder::new(format, None).unwrap();
        assert!(
            decoder(SwitchFormat::Asterisk)
                .with_inbound_contexts(&contexts)
                .is_ok()
        );
        let problem = decoder(SwitchFormat::Cgrates)
            .with_inbound_contexts(&contexts)
            .unwrap_err();
        assert!(
            problem.contains("cgrates records name no dialplan context"),
            "{problem}"
        );
        assert!(
            decoder(SwitchFormat::Cgrates)
                .with_inbound_contexts(&[])
                .is_ok()
        );
    }

    #[test]
    fn columns_the_mapping_reads() {
        let decoder = SwitchCsvDecoder::new(SwitchFormat::Freeswitch, None).unwrap();
        // caller_id_name (0) is not read; caller_id_number (1) and uuid (10) are.
        assert!(!decoder.reads_column(15, 0));
        assert!(decoder.reads_column(15, 1));
        assert!(decoder.reads_column(15, 10));
        assert!(decoder.reads_column(15, 3));
        assert!(!decoder.reads_column(15, 13));
        assert!(!decoder.reads_column(14, 1));
    }

    #[test]
    fn spreadsheet_times_are_rewritten_and_others_left_alone() {
        let check = |text: &str, expected: &str| assert_eq!(switch_time(text), expected, "{text}");
        check("2020/2/10 22:41", "2020-02-10 22:41:00");
        check("2020/12/1 8:05:09", "2020-12-01 08:05:09");
        check("2020-02-10 22:41:05", "2020-02-10 22:41:05");
        check("10/2/2020 22:41", "10/2/2020 22:41");
        check("2020/2/10", "2020/2/10");
        check("2020/2/10 22:41:05:01", "2020/2/10 22:41:05:01");
        check("2020/2/x 22:41", "2020/2/x 22:41");
        check("", "");
    }

    proptest::proptest! {
        /// Whatever the fields, a mapping gives canonical fields or a reason; it never panics.
        #[test]
        fn mappings_never_panic(
            fields in proptest::collection::vec("[0-9a-zA-Z/:. *@+-]{0,24}", 12..23),
        ) {
            let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
            for format in [
                SwitchFormat::Asterisk,
                SwitchFormat::AsteriskCustom,
                SwitchFormat::Freeswitch,
                SwitchFormat::Cgrates,
            ] {
                let decoder = SwitchCsvDecoder::new(format, None).unwrap();
                let _ = decoder.map(&fields);
            }
        }

        #[test]
        fn kazoo_documents_never_panic(text in "[{}\\[\\]\":,0-9a-z_ \n]{0,200}") {
            let _ = kazoo::map_document(text.as_bytes());
        }
    }

    #[test]
    fn hangup_causes() {
        assert_eq!(unanswered_disposition("USER_BUSY"), "BUSY");
        assert_eq!(unanswered_disposition("no_user_response"), "NO ANSWER");
        assert_eq!(unanswered_disposition("ORIGINATOR_CANCEL"), "CANCEL");
        assert_eq!(unanswered_disposition("NORMAL_CLEARING"), "FAILED");
        for cause in [
            "USER_BUSY",
            "NO_ANSWER",
            "ORIGINATOR_CANCEL",
            "SWITCH_CONGESTION",
            "X",
        ] {
            assert!(crate::cdr::is_unanswered_disposition(
                unanswered_disposition(cause)
            ));
        }
    }
}
