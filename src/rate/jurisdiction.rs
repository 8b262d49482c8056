//! US call jurisdiction: interstate, intrastate or indeterminate, decided by the states of the
//! caller's and the callee's NPA-NXX in a table the user supplies (`npanxx,state[,lata]`).
//!
//! Pure: the table's text in, the table or every problem out; no files. See
//! `docs/us-jurisdictional-decks.md` for the rule and its edge cases.

use super::deck_problems::{DeckProblem, deck_csv_reader, readable_row};
use std::fmt;

/// Which US jurisdiction a call falls in, and so which of a US jurisdictional deck's three rates
/// prices it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Jurisdiction {
    /// Caller and callee in two different US states (or territories).
    Interstate,
    /// Caller and callee in the same US state (or territory).
    Intrastate,
    /// Anything else: no usable caller, or either end unknown or outside the US.
    Indeterminate,
}

impl Jurisdiction {
    pub const ALL: [Jurisdiction; 3] = [
        Jurisdiction::Interstate,
        Jurisdiction::Intrastate,
        Jurisdiction::Indeterminate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Jurisdiction::Interstate => "interstate",
            Jurisdiction::Intrastate => "intrastate",
            Jurisdiction::Indeterminate => "indeterminate",
        }
    }

    /// The packed form kept on a rate: 1, 2 or 3 (0 is "every jurisdiction", see
    /// [`Jurisdiction::from_code`]).
    pub fn code(self) -> u8 {
        match self {
            Jurisdiction::Interstate => 1,
            Jurisdiction::Intrastate => 2,
            Jurisdiction::Indeterminate => 3,
        }
    }

    /// `None` for 0 (a rate for every jurisdiction) and for anything that is not a code.
    pub fn from_code(code: u8) -> Option<Jurisdiction> {
        match code {
            1 => Some(Jurisdiction::Interstate),
            2 => Some(Jurisdiction::Intrastate),
            3 => Some(Jurisdiction::Indeterminate),
            _ => None,
        }
    }
}

impl fmt::Display for Jurisdiction {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// US states, the District of Columbia and the US territories in the NANP (each its own
/// jurisdiction: a call between Puerto Rico and New York is interstate).
const US_STATES: [&str; 56] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY", "DC", "PR", "VI", "GU", "AS", "MP",
];

/// NANP regions outside the US: Canadian provinces and territories, and the Caribbean and
/// Atlantic countries by ISO code. Cayman Islands (KY) and Montserrat (MS) are missing on purpose:
/// their codes are Kentucky's and Mississippi's. Leave them out of the file; an unknown NPA-NXX is
/// indeterminate, which is what a non-US one is.
const NON_US_NANP_REGIONS: [&str; 29] = [
    "AB", "BC", "MB", "NB", "NL", "NS", "NT", "NU", "ON", "PE", "QC", "SK", "YT", "AG", "AI", "BB",
    "BM", "BS", "DM", "DO", "GD", "JM", "KN", "LC", "SX", "TC", "TT", "VC", "VG",
];

/// Number of NPA-NXX codes: NPA and NXX are three digits each.
const NPANXX_SLOTS: usize = 1_000_000;

/// The NPA-NXX → state table. A dense array (1 MB) so a lookup is one memory access.
#[derive(Clone)]
pub struct NpaNxxStates {
    /// Per NPA-NXX (NPA × 1000 + NXX): 0 when unknown, else 1 + an index into [`Self::regions`].
    region_of: Box<[u8]>,
    /// Every region code the table knows, in the order of `US_STATES` then `NON_US_NANP_REGIONS`.
    regions: Vec<&'static str>,
    n_codes: usize,
}

impl fmt::Debug for NpaNxxStates {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("NpaNxxStates")
            .field("n_codes", &self.n_codes)
            .finish()
    }
}

/// Where an NPA-NXX's state was found: a US state, or a NANP region outside the US.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    Us(&'static str),
    NonUs(&'static str),
}

impl NpaNxxStates {
    /// How many NPA-NXX codes the table has.
    pub fn len(&self) -> usize {
        self.n_codes
    }

    pub fn is_empty(&self) -> bool {
        self.n_codes == 0
    }

    /// The region of an NPA-NXX given as NPA × 1000 + NXX; `None` when the table does not have it.
    pub fn region(&self, npanxx: u32) -> Option<Region> {
        let slot = *self.region_of.get(npanxx as usize)?;
        let index = usize::from(slot.checked_sub(1)?);
        let code = self.regions[index];
        Some(if index < US_STATES.len() {
            Region::Us(code)
        } else {
            Region::NonUs(code)
        })
    }

    /// The jurisdiction of a call from `caller` to `callee` (both as decoded: E.164 digits when
    /// they were numbers). Intrastate when both are US NPA-NXX codes of one state, interstate when
    /// of two; indeterminate when either is not a NANP number (`1` + 10 digits), its NPA-NXX is
    /// not in the table, or it is outside the US. An empty caller is indeterminate too.
    pub fn jurisdiction_of_call(&self, caller: &str, callee: &str) -> Jurisdiction {
        let us_state = |number: &str| match self.region(nanp_npanxx(number)?) {
            Some(Region::Us(state)) => Some(state),
            _ => None,
        };
        match (us_state(caller), us_state(callee)) {
            (Some(from), Some(to)) if from == to => Jurisdiction::Intrastate,
            (Some(_), Some(_)) => Jurisdiction::Interstate,
            _ => Jurisdiction::Indeterminate,
        }
    }

    /// A digest of the table's content, so a deck priced with it says which table that was.
    pub fn digest(&self) -> u64 {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(&self.region_of);
        hasher.digest()
    }
}

/// The NPA-NXX (NPA × 1000 + NXX) of a NANP number written as `1` + 10 digits; `None` for
/// anything else (a national 10-digit number, another country, text).
pub fn nanp_npanxx(number: &str) -> Option<u32> {
    let bytes = number.as_bytes();
    if bytes.len() != 11 || bytes[0] != b'1' || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        bytes[1..7]
            .iter()
            .fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0')),
    )
}

/// Parses an NPA-NXX code as decks and states files write it: `1` + 6 digits (`1212555`) or the
/// 6 digits alone (`212555`). NPA and NXX both start with 2-9. Returns NPA × 1000 + NXX, or why
/// the text is not a code.
pub fn parse_npanxx(text: &str) -> Result<u32, String> {
    if text.is_empty() {
        return Err("is empty".to_string());
    }
    if !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not digits only (an NPA-NXX code is 1 + 6 digits, e.g. 1212555)"
        ));
    }
    let digits = match text.len() {
        6 => text,
        7 if text.starts_with('1') => &text[1..],
        7 => {
            return Err(format!(
                "{text:?} does not start with 1 (an NPA-NXX code is 1 + 6 digits, e.g. 1212555)"
            ));
        }
        length => {
            return Err(format!(
                "{text:?} has {length} digits (an NPA-NXX code is 1 + 6 digits, e.g. 1212555, \
                 or the 6 digits alone)"
            ));
        }
    };
    let (npa, nxx) = digits.split_at(3);
    for (name, part) in [("NPA", npa), ("NXX", nxx)] {
        if part.as_bytes()[0] <= b'1' {
            return Err(format!("{text:?}: {name} {part} starts with 0 or 1"));
        }
    }
    Ok(digits.parse().expect("six ASCII digits"))
}

/// Writes NPA × 1000 + NXX as `1` + 6 digits.
pub fn npanxx_text(npanxx: u32) -> String {
    format!("1{npanxx:06}")
}

/// Parses a states file: `npanxx,state[,lata]`, one NPA-NXX a line. The header is optional: a
/// first row whose first field is not digits is a header, and then columns go by name
/// (`npanxx`/`npa_nxx`/`code`/`prefix`, or `npa` and `nxx` apart; `state`/`st`; `lata`), and
/// other columns (rate centre, OCN, ...) are ignored. Without a header a row has 2 or 3 fields.
/// Any problem refuses the file whole, every problem listed.
pub fn parse_npanxx_states(file: &str, text: &[u8]) -> Result<NpaNxxStates, Vec<DeckProblem>> {
    let mut problems = Vec::new();
    let mut region_of = vec![0u8; NPANXX_SLOTS].into_boxed_slice();
    let regions: Vec<&'static str> = US_STATES
        .iter()
        .chain(NON_US_NANP_REGIONS.iter())
        .copied()
        .collect();
    let mut line_of: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    let mut reader = deck_csv_reader(text);
    let mut columns: Option<StatesColumns> = None;
    let mut n_codes = 0;
    let mut first_row = true;
    for record in reader.byte_records() {
        let Some((line, record)) = readable_row(file, record, &mut problems) else {
            continue;
        };
        let fields: Vec<&str> = record
            .iter()
            .map(|field| {
                std::str::from_utf8(field)
                    .map(str::trim)
                    .unwrap_or("\u{fffd}")
            })
            .collect();
        if fields.iter().all(|field| field.is_empty()) {
            continue;
        }
        if std::mem::take(&mut first_row) {
            let first = fields[0].trim_start_matches('\u{feff}');
            if !first.bytes().all(|byte| byte.is_ascii_digit()) {
                columns = StatesColumns::from_header(file, &record, &mut problems);
                if columns.is_none() {
                    break;
                }
                continue;
            }
        }
        let columns = columns.get_or_insert(StatesColumns::POSITIONAL);
        let wrong_width = match columns.n_columns {
            Some(n_columns) => fields.len() != n_columns,
            None => !(2..=3).contains(&fields.len()),
        };
        if wrong_width {
            problems.push(DeckProblem::row(
                file,
                line,
                None,
                match columns.n_columns {
                    Some(n) => format!("has {} fields, the header has {n}", fields.len()),
                    None => format!(
                        "has {} fields; a row is npanxx,state or npanxx,state,lata",
                        fields.len()
                    ),
                },
            ));
            continue;
        }
        let code_text = match columns.code {
            CodeColumns::Joined(index) => fields[index].to_string(),
            CodeColumns::Apart { npa, nxx } => format!("{}{}", fields[npa], fields[nxx]),
        };
        let code = parse_npanxx(&code_text);
        if let Err(reason) = &code {
            problems.push(DeckProblem::row(
                file,
                line,
                Some(columns.code_name),
                reason.clone(),
            ));
        }
        let state_text = fields[columns.state].to_ascii_uppercase();
        let region = regions.iter().position(|region| *region == state_text);
        if region.is_none() {
            problems.push(DeckProblem::row(
                file,
                line,
                Some("state"),
                if state_text.is_empty() {
                    "is empty".to_string()
                } else {
                    format!(
                        "{:?} is not a US state or territory, Canadian province or NANP country \
                         code (two letters, e.g. NY, PR, ON, JM)",
                        fields[columns.state]
                    )
                },
            ));
        }
        if let Some(lata) = columns.lata.and_then(|index| fields.get(index))
            && !lata.is_empty()
            && !(lata.len() <= 5 && lata.bytes().all(|byte| byte.is_ascii_digit()))
        {
            problems.push(DeckProblem::row(
                file,
                line,
                Some("lata"),
                format!("{lata:?} is not a LATA number (up to 5 digits)"),
            ));
        }
        if let (Ok(code), Some(region)) = (code, region) {
            if let Some(first) = line_of.insert(code, line) {
                line_of.insert(code, first);
                problems.push(DeckProblem::row(
                    file,
                    line,
                    Some(columns.code_name),
                    format!(
                        "duplicate of line {first}: NPA-NXX {} is listed twice",
                        npanxx_text(code)
                    ),
                ));
            } else {
                region_of[code as usize] = (region + 1) as u8;
                n_codes += 1;
            }
        }
    }
    if problems.is_empty() && n_codes == 0 {
        problems.push(DeckProblem::file(file, "has no NPA-NXX codes".to_string()));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(NpaNxxStates {
        region_of,
        regions,
        n_codes,
    })
}

#[derive(Clone, Copy)]
enum CodeColumns {
    Joined(usize),
    Apart { npa: usize, nxx: usize },
}

/// Where the states file's columns are.
#[derive(Clone, Copy)]
struct StatesColumns {
    /// `None` without a header (2 or 3 fields a row).
    n_columns: Option<usize>,
    code: CodeColumns,
    code_name: &'static str,
    state: usize,
    lata: Option<usize>,
}

impl StatesColumns {
    const POSITIONAL: StatesColumns = StatesColumns {
        n_columns: None,
        code: CodeColumns::Joined(0),
        code_name: "npanxx",
        state: 1,
        lata: Some(2),
    };

    fn from_header(
        file: &str,
        header: &csv::ByteRecord,
        problems: &mut Vec<DeckProblem>,
    ) -> Option<StatesColumns> {
        let names = crate::text::normalized_header_names(header);
        let find = |aliases: &[&str]| -> Vec<usize> {
            names
                .iter()
                .enumerate()
                .filter(|(_, name)| aliases.contains(&name.as_str()))
                .map(|(index, _)| index)
                .collect()
        };
        let mut problem = |column: &str, reason: String| {
            problems.push(DeckProblem::row(file, 1, Some(column), reason));
        };
        let mut one_of = |role: &str, aliases: &[&str]| -> Option<Option<usize>> {
            match find(aliases)[..] {
                [] => Some(None),
                [index] => Some(Some(index)),
                _ => {
                    problem(
                        role,
                        format!(
                            "more than one column names it (any of {})",
                            aliases.join(", ")
                        ),
                    );
                    None
                }
            }
        };
        let joined = one_of(
            "npanxx",
            &["npanxx", "npa_nxx", "npa-nxx", "code", "prefix"],
        );
        let npa = one_of("npa", &["npa"]);
        let nxx = one_of("nxx", &["nxx"]);
        let state = one_of("state", &["state", "st"]);
        let lata = one_of("lata", &["lata"]);
        let (joined, npa, nxx, state, lata) = (joined?, npa?, nxx?, state?, lata?);
        let code = match (joined, npa, nxx) {
            (Some(index), None, None) => Some(CodeColumns::Joined(index)),
            (None, Some(npa), Some(nxx)) => Some(CodeColumns::Apart { npa, nxx }),
            (Some(_), _, _) => {
                problem(
                    "npanxx",
                    "give the code once: an npanxx column, or npa and nxx columns".to_string(),
                );
                None
            }
            (None, _, _) => {
                problem(
                    "npanxx",
                    "required column is missing (npanxx, or npa and nxx)".to_string(),
                );
                None
            }
        };
        if state.is_none() {
            problem("state", "required column is missing".to_string());
        }
        Some(StatesColumns {
            n_columns: Some(names.len()),
            code: code?,
            code_name: if joined.is_some() { "npanxx" } else { "npa" },
            state: state?,
            lata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(text: &str) -> NpaNxxStates {
        parse_npanxx_states("states.csv", text.as_bytes())
            .unwrap_or_else(|problems| panic!("{problems:?}"))
    }

    fn problems_of(text: &str) -> Vec<String> {
        parse_npanxx_states("states.csv", text.as_bytes())
            .expect_err("refused")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn npanxx_codes() {
        fn check(text: &str, expected: Result<u32, &str>) {
            match (parse_npanxx(text), expected) {
                (Ok(code), Ok(expected)) => assert_eq!(code, expected, "{text:?}"),
                (Err(reason), Err(expected)) => {
                    assert!(reason.contains(expected), "{text:?}: {reason}")
                }
                (got, expected) => panic!("{text:?}: got {got:?}, expected {expected:?}"),
            }
        }
        check("1212555", Ok(212_555));
        check("212555", Ok(212_555));
        check("1907522", Ok(907_522));
        check("", Err("is empty"));
        check("121255", Err("\"121255\": NPA 121 starts with 0 or 1"));
        check("12125550", Err("has 8 digits"));
        check("12125", Err("has 5 digits"));
        check("2212555", Err("does not start with 1"));
        check("1212-555", Err("not digits only"));
        check("+1212555", Err("not digits only"));
        check("1112555", Err("NPA 112 starts with 0 or 1"));
        check("1012555", Err("NPA 012 starts with 0 or 1"));
        check("1212155", Err("NXX 155 starts with 0 or 1"));
        check("212055", Err("NXX 055 starts with 0 or 1"));
    }

    #[test]
    fn nanp_numbers() {
        fn check(number: &str, expected: Option<u32>) {
            assert_eq!(nanp_npanxx(number), expected, "{number:?}");
        }
        check("12125550100", Some(212_555));
        check("14155550123", Some(415_555));
        check("2125550100", None);
        check("442071234567", None);
        check("121255501000", None);
        check("1212555010x", None);
        check("", None);
        check("anonymous", None);
    }

    const STATES: &str = "npanxx,state,lata\n\
        1212555,NY,132\n\
        1518555,NY,\n\
        1415555,CA,722\n\
        1787555,PR,\n\
        1416555,ON,\n\
        1876555,JM,\n";

    #[test]
    fn jurisdiction_of_calls() {
        let table = states(STATES);
        let check = |caller: &str, callee: &str, expected: Jurisdiction| {
            assert_eq!(
                table.jurisdiction_of_call(caller, callee),
                expected,
                "{caller:?} -> {callee:?}"
            );
        };
        use Jurisdiction::*;
        // Same state, two NPA-NXX codes.
        check("15185550100", "12125550199", Intrastate);
        check("12125550100", "12125550199", Intrastate);
        // Different states, both ways; a territory is its own jurisdiction.
        check("14155550100", "12125550199", Interstate);
        check("12125550199", "14155550100", Interstate);
        check("17875550100", "12125550199", Interstate);
        // Missing caller, text, national format, another country.
        check("", "12125550199", Indeterminate);
        check("anonymous", "12125550199", Indeterminate);
        check("2125550100", "12125550199", Indeterminate);
        check("442071234567", "12125550199", Indeterminate);
        // Caller's NPA-NXX not in the table.
        check("13105550100", "12125550199", Indeterminate);
        // Non-US NANP caller (Canada, Jamaica).
        check("14165550100", "12125550199", Indeterminate);
        check("18765550100", "12125550199", Indeterminate);
        // Callee unknown or outside the US.
        check("12125550100", "13105550199", Indeterminate);
        check("12125550100", "14165550199", Indeterminate);
    }

    #[test]
    fn states_file_forms() {
        // No header, 2 and 3 fields, 6-digit codes, lower-case states.
        let table = states("1212555,ny,132\n212556,NY\n");
        assert_eq!(table.len(), 2);
        assert_eq!(table.region(212_555), Some(Region::Us("NY")));
        assert_eq!(table.region(212_556), Some(Region::Us("NY")));
        assert_eq!(table.region(212_557), None);
        // A header with NPA and NXX apart and columns that are ignored.
        let table = states("NPA,NXX,Rate Center,ST\n416,555,Toronto,ON\n305,555,Miami,FL\n");
        assert_eq!(table.region(416_555), Some(Region::NonUs("ON")));
        assert_eq!(table.region(305_555), Some(Region::Us("FL")));
        // A byte-order mark before the header.
        assert_eq!(states("\u{feff}npanxx,state\n1212555,NY\n").len(), 1);
    }

    #[test]
    fn bad_states_files_list_every_problem() {
        let check = |text: &str, expected: &[&str]| {
            assert_eq!(problems_of(text), expected, "{text:?}");
        };
        check(
            "npanxx,state,lata\n\
             1212555,NY,132\n\
             12125,NY,\n\
             1212556,XX,\n\
             1212557,,\n\
             1212558,NY,abc\n\
             212555,NY,\n\
             1212559\n\
             1112555,CA,\n",
            &[
                "states.csv:3: column npanxx: \"12125\" has 5 digits (an NPA-NXX code is 1 + 6 \
                 digits, e.g. 1212555, or the 6 digits alone)",
                "states.csv:4: column state: \"XX\" is not a US state or territory, Canadian \
                 province or NANP country code (two letters, e.g. NY, PR, ON, JM)",
                "states.csv:5: column state: is empty",
                "states.csv:6: column lata: \"abc\" is not a LATA number (up to 5 digits)",
                "states.csv:7: column npanxx: duplicate of line 2: NPA-NXX 1212555 is listed twice",
                "states.csv:8: has 1 fields, the header has 3",
                "states.csv:9: column npanxx: \"1112555\": NPA 112 starts with 0 or 1",
            ],
        );
        check(
            "1212555,NY\n1212556\n1212557,NY,132,extra\n",
            &[
                "states.csv:2: has 1 fields; a row is npanxx,state or npanxx,state,lata",
                "states.csv:3: has 4 fields; a row is npanxx,state or npanxx,state,lata",
            ],
        );
        check(
            "code,region\n1212555,NY\n",
            &["states.csv:1: column state: required column is missing"],
        );
        check(
            "npa,state\n212,NY\n",
            &["states.csv:1: column npanxx: required column is missing (npanxx, or npa and nxx)"],
        );
        check("", &["states.csv: has no NPA-NXX codes"]);
        check("npanxx,state\n", &["states.csv: has no NPA-NXX codes"]);
    }

    #[test]
    fn codes_round_trip() {
        for code in Jurisdiction::ALL {
            assert_eq!(Jurisdiction::from_code(code.code()), Some(code));
        }
        assert_eq!(Jurisdiction::from_code(0), None);
        assert_eq!(npanxx_text(212_555), "1212555");
    }
}
