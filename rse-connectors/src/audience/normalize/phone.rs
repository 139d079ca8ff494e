//! Phone numbers: the international number's digits, written E.164 style for Google (`+`
//! first) and as bare digits for Meta.

use super::{Scratch, countries};

/// Digits an E.164 number holds at most; and the fewest this accepts (Niue's and Tokelau's
/// four-digit numbers with their three-digit calling codes).
const MAX_DIGITS: usize = 15;
const MIN_DIGITS: usize = 7;
/// Digits read before a number is refused as too long.
const READ_LIMIT: usize = 32;

const CHARACTERS: &str =
    "expected digits with an optional leading + and only spaces and ( ) - . / between them (no letters or extensions)";
const LENGTH: &str = "expected 7 to 15 digits with the country code (E.164)";

/// Writes the number's international form: `+` and the digits when `plus`, the digits
/// alone otherwise. `country` is the row's (alpha-2, any case); without it and without a
/// written country code, a number is refused when `plus` (Google) and taken as already
/// international otherwise (Meta).
pub(super) fn normalize(value: &str, country: Option<&str>, plus: bool, out: &mut Scratch) -> Result<(), &'static str> {
    let (international, written) = match value.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let mut digits = [0u8; READ_LIMIT];
    let mut len = 0;
    let mut chars = written.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '0'..='9' => {
                let slot = digits.get_mut(len).ok_or(LENGTH)?;
                *slot = c as u8;
                len += 1;
            }
            // `+44 (0)20 …`: the national trunk `0` shown beside a country code.
            '(' if international && len > 0 && chars.clone().take(2).eq(['0', ')']) => {
                chars.next();
                chars.next();
            }
            '-' | '.' | '(' | ')' | '/' => {}
            c if c.is_whitespace() => {}
            _ => return Err(CHARACTERS),
        }
    }
    let digits = digits.get(..len).unwrap_or_default();
    let (international, digits) = match digits.strip_prefix(b"00") {
        Some(rest) if !international => (true, rest),
        _ => (international, digits),
    };
    let mut number = [0u8; READ_LIMIT + 4];
    let number_len;
    if international {
        if digits.first() == Some(&b'0') {
            return Err("expected a country code after + or 00 (country codes never start with 0)");
        }
        number_len = copy(&mut number, &[digits]);
    } else if let Some(country) = country.map(str::trim).filter(|c| !c.is_empty()) {
        let (calling, trunks) = countries::lookup(country)
            .ok_or("the row's country is not an ISO 3166-1 alpha-2 code, so the number's country code is unknown")?;
        let trunk = trunks.iter().find(|t| digits.starts_with(t.as_bytes()));
        number_len = match trunk {
            Some(trunk) => copy(&mut number, &[calling.as_bytes(), digits.get(trunk.len()..).unwrap_or_default()]),
            None if !trunks.is_empty()
                && digits.starts_with(calling.as_bytes())
                && digits.len() >= calling.len() + 8 =>
            {
                copy(&mut number, &[digits])
            }
            None => copy(&mut number, &[calling.as_bytes(), digits]),
        };
    } else if plus {
        return Err("expected a number with + and its country code, or a country for the row");
    } else {
        let start = digits.iter().position(|&d| d != b'0').unwrap_or(digits.len());
        number_len = copy(&mut number, &[digits.get(start..).unwrap_or_default()]);
    }
    let number = number.get(..number_len).unwrap_or_default();
    if !(MIN_DIGITS..=MAX_DIGITS).contains(&number.len()) {
        return Err(LENGTH);
    }
    if plus {
        out.push(b'+');
    }
    out.extend(number);
    Ok(())
}

/// Concatenates `parts` into `into`, as far as it holds them; returns the bytes written
/// (more than `MAX_DIGITS` is refused by the caller either way).
fn copy(into: &mut [u8], parts: &[&[u8]]) -> usize {
    let mut len = 0;
    for part in parts {
        for &b in *part {
            if let Some(slot) = into.get_mut(len) {
                *slot = b;
                len += 1;
            }
        }
    }
    len
}
