//! Names, places, postal and country codes, gender and dates of birth.

use super::{Scratch, countries};
use crate::audience::RowContext;

/// What a character counts as once case is set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// A letter of any script, or a combining mark that belongs to one.
    Letter,
    Digit,
    Space,
    /// Punctuation, symbols, controls, emoji: never part of a name.
    Other,
}

fn class(c: char) -> Class {
    if c.is_ascii() {
        return match c {
            'a'..='z' | 'A'..='Z' => Class::Letter,
            '0'..='9' => Class::Digit,
            c if c.is_ascii_whitespace() => Class::Space,
            _ => Class::Other,
        };
    }
    if c.is_alphabetic() {
        Class::Letter
    } else if c.is_whitespace() {
        Class::Space
    } else if c.is_numeric() {
        Class::Digit
    } else if c.is_control() || is_punctuation_or_symbol(c) {
        Class::Other
    } else {
        // Combining marks (accents written apart, Indic viramas) and the rest of the letters'
        // neighbourhood: kept with the letters they modify.
        Class::Letter
    }
}

/// Non-ASCII punctuation and symbols, by block: Latin-1's, general punctuation, currency,
/// arrows, mathematical and technical symbols, shapes and dingbats, CJK punctuation,
/// full-width ASCII punctuation, variation selectors, emoji.
fn is_punctuation_or_symbol(c: char) -> bool {
    matches!(c as u32,
        0x00A0..=0x00BF | 0x00D7 | 0x00F7
        | 0x2000..=0x2BFF | 0x2E00..=0x2E7F | 0x3000..=0x303F
        | 0xFE00..=0xFE0F | 0xFE10..=0xFE1F | 0xFE30..=0xFE6F
        | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65 | 0xFFE0..=0xFFEE
        | 0x1F000..=0x1FAFF)
}

fn push_lower(c: char, out: &mut Scratch) {
    if c.is_ascii() {
        out.push((c as u8).to_ascii_lowercase());
    } else {
        for lower in c.to_lowercase() {
            out.push_char(lower);
        }
    }
}

/// Meta's `FN`, `LN` and `CT`: lowercased letters only.
pub(super) fn letters_only(value: &str, out: &mut Scratch) -> Result<(), &'static str> {
    for c in value.chars() {
        if class(c) == Class::Letter {
            push_lower(c, out);
        }
    }
    if out.is_empty() {
        Err("expected letters; none are left once punctuation, digits and spaces are removed")
    } else {
        Ok(())
    }
}

/// Which name a Google name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NamePart {
    Given,
    Family,
}

/// Titles dropped from the front of a first name.
const TITLES: &[&str] = &["dr", "miss", "mr", "mrs", "ms", "mx", "prof", "rev", "sir"];
/// Suffixes dropped from the end of a last name.
const SUFFIXES: &[&str] = &["esq", "ii", "iii", "iv", "jr", "md", "phd", "sr"];

/// Whether `word` (with any `.` or `,` around it) is one of `list`, ignoring case.
fn is_one_of(word: &str, list: &[&str]) -> bool {
    let word = word.trim_matches(|c| c == '.' || c == ',');
    list.iter().any(|entry| entry.eq_ignore_ascii_case(word))
}

/// Google's `given_name` / `family_name` (`hashed_first_name` / `hashed_last_name`):
/// lowercased, no punctuation, inner whitespace as one space, a leading title or trailing
/// suffixes dropped.
pub(super) fn google_name(value: &str, part: NamePart, out: &mut Scratch) -> Result<(), &'static str> {
    let mut name = value;
    match part {
        NamePart::Given => {
            if let Some((first, rest)) = name.split_once(char::is_whitespace)
                && is_one_of(first, TITLES)
                && rest.chars().any(|c| class(c) == Class::Letter)
            {
                name = rest;
            }
        }
        NamePart::Family => {
            while let Some((rest, last)) = name.trim_end().rsplit_once(char::is_whitespace) {
                if !is_one_of(last, SUFFIXES) || !rest.chars().any(|c| class(c) == Class::Letter) {
                    break;
                }
                name = rest;
            }
        }
    }
    let mut space = false;
    for c in name.chars() {
        match class(c) {
            Class::Letter | Class::Digit => {
                if space && !out.is_empty() {
                    out.push(b' ');
                }
                space = false;
                push_lower(c, out);
            }
            Class::Space => space = true,
            Class::Other => {}
        }
    }
    if out.is_empty() { Err("expected a name with letters in it") } else { Ok(()) }
}

/// Whether the row is in the US; `None` when it has no country.
fn us_or_unknown(row: &RowContext<'_>) -> Option<bool> {
    row.country.map(str::trim).filter(|c| !c.is_empty()).map(|country| country.eq_ignore_ascii_case("us"))
}

/// US states, the District of Columbia and the inhabited territories, by their name in
/// lowercase letters only, with their 2-letter ANSI (USPS) codes; sorted by name.
const US_STATES: &[(&str, &str)] = &[
    ("alabama", "al"),
    ("alaska", "ak"),
    ("americansamoa", "as"),
    ("arizona", "az"),
    ("arkansas", "ar"),
    ("california", "ca"),
    ("colorado", "co"),
    ("connecticut", "ct"),
    ("delaware", "de"),
    ("districtofcolumbia", "dc"),
    ("florida", "fl"),
    ("georgia", "ga"),
    ("guam", "gu"),
    ("hawaii", "hi"),
    ("idaho", "id"),
    ("illinois", "il"),
    ("indiana", "in"),
    ("iowa", "ia"),
    ("kansas", "ks"),
    ("kentucky", "ky"),
    ("louisiana", "la"),
    ("maine", "me"),
    ("maryland", "md"),
    ("massachusetts", "ma"),
    ("michigan", "mi"),
    ("minnesota", "mn"),
    ("mississippi", "ms"),
    ("missouri", "mo"),
    ("montana", "mt"),
    ("nebraska", "ne"),
    ("nevada", "nv"),
    ("newhampshire", "nh"),
    ("newjersey", "nj"),
    ("newmexico", "nm"),
    ("newyork", "ny"),
    ("northcarolina", "nc"),
    ("northdakota", "nd"),
    ("northernmarianaislands", "mp"),
    ("ohio", "oh"),
    ("oklahoma", "ok"),
    ("oregon", "or"),
    ("pennsylvania", "pa"),
    ("puertorico", "pr"),
    ("rhodeisland", "ri"),
    ("southcarolina", "sc"),
    ("southdakota", "sd"),
    ("tennessee", "tn"),
    ("texas", "tx"),
    ("usvirginislands", "vi"),
    ("utah", "ut"),
    ("vermont", "vt"),
    ("virginia", "va"),
    ("washington", "wa"),
    ("washingtondc", "dc"),
    ("westvirginia", "wv"),
    ("wisconsin", "wi"),
    ("wyoming", "wy"),
];

/// Meta's `ST`: letters only, lowercased; a US state's name as its code when the row is in
/// the US or in no known country.
pub(super) fn meta_region(value: &str, row: &RowContext<'_>, out: &mut Scratch) -> Result<(), &'static str> {
    letters_only(value, out)?;
    if us_or_unknown(row) != Some(false) {
        let name = out.as_bytes();
        if let Ok(i) = US_STATES.binary_search_by(|(state, _)| state.as_bytes().cmp(name))
            && let Some((_, code)) = US_STATES.get(i)
        {
            out.truncate(0);
            out.extend(code.as_bytes());
        }
    }
    Ok(())
}

/// The 5 digits a US ZIP code starts with, when `value` is one: `12345`, `12345-6789`,
/// `12345 6789` or `123456789`.
fn us_zip(value: &str) -> Option<(&str, Option<&str>)> {
    let five = value.get(..5).filter(|d| d.bytes().all(|b| b.is_ascii_digit()))?;
    let rest = value.get(5..)?;
    if rest.is_empty() {
        return Some((five, None));
    }
    let four = rest.strip_prefix(['-', ' ']).unwrap_or(rest);
    (four.len() == 4 && four.bytes().all(|b| b.is_ascii_digit())).then_some((five, Some(four)))
}

const US_ZIP: &str = "expected a US ZIP code: 5 digits, or ZIP+4 (5 digits, a hyphen and 4 digits)";

/// Google's `postal_code`: trimmed, inner whitespace as one space; a US ZIP code as 5
/// digits or ZIP+4 with its hyphen.
pub(super) fn google_postal_code(value: &str, row: &RowContext<'_>) -> Result<String, &'static str> {
    if us_or_unknown(row) == Some(true) {
        return match us_zip(value) {
            Some((five, None)) => Ok(five.to_owned()),
            Some((five, Some(four))) => Ok(format!("{five}-{four}")),
            None => Err(US_ZIP),
        };
    }
    let mut code = String::with_capacity(value.len());
    for word in value.split_whitespace() {
        if !code.is_empty() {
            code.push(' ');
        }
        code.push_str(word);
    }
    Ok(code)
}

/// Meta's `ZIP`: lowercase letters and digits, no spaces or hyphens; a US ZIP code's first
/// 5 digits.
pub(super) fn meta_zip(value: &str, row: &RowContext<'_>, out: &mut Scratch) -> Result<(), &'static str> {
    let zip = us_zip(value);
    match us_or_unknown(row) {
        Some(true) => {
            let (five, _) = zip.ok_or(US_ZIP)?;
            out.extend(five.as_bytes());
            return Ok(());
        }
        None if zip.is_some() => {
            if let Some((five, _)) = zip {
                out.extend(five.as_bytes());
            }
            return Ok(());
        }
        _ => {}
    }
    for b in value.bytes() {
        match b {
            b'0'..=b'9' | b'a'..=b'z' => out.push(b),
            b'A'..=b'Z' => out.push(b.to_ascii_lowercase()),
            b'-' | b'.' => {}
            b if b.is_ascii_whitespace() => {}
            _ => return Err("expected a postal code of letters and digits (spaces and hyphens are dropped)"),
        }
    }
    if out.is_empty() { Err("expected a postal code of letters and digits") } else { Ok(()) }
}

/// An ISO 3166-1 alpha-2 code, lowercased.
pub(super) fn country_code(value: &str) -> Result<[u8; 2], &'static str> {
    let &[a, b] = value.as_bytes() else {
        return Err(COUNTRY);
    };
    if !a.is_ascii_alphabetic() || !b.is_ascii_alphabetic() {
        return Err(COUNTRY);
    }
    if countries::position(value.as_bytes()).is_none() {
        return Err("expected an assigned ISO 3166-1 alpha-2 country code; this two-letter code is not one");
    }
    Ok([a.to_ascii_lowercase(), b.to_ascii_lowercase()])
}

const COUNTRY: &str = "expected a two-letter ISO 3166-1 alpha-2 country code, such as US or de";

/// Meta's `GEN`: `m` or `f`.
pub(super) fn gender(value: &str) -> Result<u8, &'static str> {
    const MALE: &[&str] = &["m", "male"];
    const FEMALE: &[&str] = &["f", "female"];
    if MALE.iter().any(|w| w.eq_ignore_ascii_case(value)) {
        Ok(b'm')
    } else if FEMALE.iter().any(|w| w.eq_ignore_ascii_case(value)) {
        Ok(b'f')
    } else {
        Err("expected m or f (or male or female), the only genders Meta matches")
    }
}

/// A date of birth as Meta's three keys' texts.
pub(super) struct BirthDate {
    pub(super) year: [u8; 4],
    pub(super) month: [u8; 2],
    pub(super) day: [u8; 2],
}

const DATE: &str =
    "expected a date of birth as YYYY-MM-DD (or YYYYMMDD, YYYY/MM/DD), year 1900 or later and not in the future";

/// Parses `YYYY-MM-DD`, `YYYY/MM/DD`, `YYYY.MM.DD` or `YYYYMMDD`, optionally followed by a
/// time (`T…` or ` …`).
pub(super) fn birth_date(value: &str) -> Result<BirthDate, &'static str> {
    let b = value.as_bytes();
    let (date, rest): ([u8; 8], &[u8]) = match b {
        [y0, y1, y2, y3, sep1, m0, m1, sep2, d0, d1, rest @ ..]
            if sep1 == sep2 && matches!(sep1, b'-' | b'/' | b'.') =>
        {
            ([*y0, *y1, *y2, *y3, *m0, *m1, *d0, *d1], rest)
        }
        [y0, y1, y2, y3, m0, m1, d0, d1, rest @ ..] => ([*y0, *y1, *y2, *y3, *m0, *m1, *d0, *d1], rest),
        _ => return Err(DATE),
    };
    if !date.iter().all(u8::is_ascii_digit) || !(rest.is_empty() || matches!(rest.first(), Some(b'T' | b' '))) {
        return Err(DATE);
    }
    let number = |digits: &[u8]| digits.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    let [y0, y1, y2, y3, m0, m1, d0, d1] = date;
    let (year, month, day) = (number(&[y0, y1, y2, y3]), number(&[m0, m1]), number(&[d0, d1]));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => 0,
    };
    if year < 1900 || year > current_year() || day < 1 || day > days {
        return Err(DATE);
    }
    Ok(BirthDate { year: [y0, y1, y2, y3], month: [m0, m1], day: [d0, d1] })
}

/// This year (UTC), from the system clock.
fn current_year() -> u32 {
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // Days to a civil year (Howard Hinnant's algorithm, years starting in March).
    let z = (seconds / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_based_month = (5 * day_of_year + 2) / 153;
    let year = year_of_era + era * 400 + i64::from(march_based_month >= 10);
    u32::try_from(year).unwrap_or(u32::MAX)
}
