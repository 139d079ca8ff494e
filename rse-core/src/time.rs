//! Dates and timestamps as ISO 8601 / RFC 3339 text: what casts, sources and destinations
//! that speak text share.

/// Microseconds in a day.
pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (`month` 1–12, `day` 1–31).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Howard Hinnant's `days_from_civil`: years start in March so the leap day comes last.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian `(year, month, day)` of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A byte cursor over the text being parsed.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// Exactly `n` ASCII digits as a number.
    fn digits(&mut self, n: usize) -> Option<i64> {
        let mut value = 0i64;
        for _ in 0..n {
            let b = self.peek().filter(u8::is_ascii_digit)?;
            value = value * 10 + i64::from(b - b'0');
            self.at += 1;
        }
        Some(value)
    }

    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }
}

/// `YYYY-MM-DD` at the cursor, as days since 1970-01-01.
fn date_at(c: &mut Cursor<'_>) -> Option<i64> {
    let year = c.digits(4)?;
    if !c.eat(b'-') {
        return None;
    }
    let month = c.digits(2)?;
    if !c.eat(b'-') {
        return None;
    }
    let day = c.digits(2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// Parses `YYYY-MM-DD` (surrounding whitespace allowed) as days since 1970-01-01.
pub fn parse_date(text: &str) -> Option<i32> {
    let mut c = Cursor { bytes: text.trim().as_bytes(), at: 0 };
    let days = date_at(&mut c)?;
    if !c.done() {
        return None;
    }
    i32::try_from(days).ok()
}

/// Parses an RFC 3339 / ISO 8601 timestamp as microseconds since the epoch.
///
/// Accepts `YYYY-MM-DD`, then optionally `T` or a space, `HH:MM`, optional `:SS`, an
/// optional fraction (digits past the sixth are truncated) and an optional offset `Z`,
/// `±HH`, `±HHMM` or `±HH:MM`. Without an offset the time is taken as UTC; a bare date is
/// midnight UTC.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let mut c = Cursor { bytes: text.trim().as_bytes(), at: 0 };
    let days = date_at(&mut c)?;
    let mut micros = days.checked_mul(MICROS_PER_DAY)?;
    if c.done() {
        return Some(micros);
    }
    if !(c.eat(b'T') || c.eat(b't') || c.eat(b' ')) {
        return None;
    }
    let hour = c.digits(2)?;
    if !c.eat(b':') {
        return None;
    }
    let minute = c.digits(2)?;
    let second = if c.eat(b':') { c.digits(2)? } else { 0 };
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut fraction = 0i64;
    if c.eat(b'.') || c.eat(b',') {
        let mut n = 0;
        while let Some(b) = c.peek().filter(u8::is_ascii_digit) {
            if n < 6 {
                fraction = fraction * 10 + i64::from(b - b'0');
            }
            n += 1;
            c.at += 1;
        }
        if n == 0 || n > 9 {
            return None;
        }
        for _ in n..6 {
            fraction *= 10;
        }
    }
    micros = micros.checked_add(((hour * 60 + minute) * 60 + second) * 1_000_000 + fraction)?;
    c.eat(b' ');
    let offset_secs = match c.peek() {
        None => 0,
        Some(b'Z' | b'z') => {
            c.at += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            c.at += 1;
            let hours = c.digits(2)?;
            let minutes = if c.done() {
                0
            } else {
                c.eat(b':');
                c.digits(2)?
            };
            if hours > 23 || minutes > 59 {
                return None;
            }
            let secs = (hours * 60 + minutes) * 60;
            if sign == b'-' { -secs } else { secs }
        }
        Some(_) => return None,
    };
    if !c.done() {
        return None;
    }
    micros.checked_sub(offset_secs * 1_000_000)
}

fn push_year(out: &mut String, year: i64) {
    if (0..=9999).contains(&year) {
        out.push_str(&format!("{year:04}"));
    } else {
        // ISO 8601 expanded years carry a sign.
        out.push_str(&format!("{year:+05}"));
    }
}

fn push_date(out: &mut String, days: i64) {
    let (year, month, day) = civil_from_days(days);
    push_year(out, year);
    out.push_str(&format!("-{month:02}-{day:02}"));
}

/// `YYYY-MM-DD` for days since 1970-01-01.
pub fn format_date(days: i32) -> String {
    let mut out = String::with_capacity(10);
    push_date(&mut out, i64::from(days));
    out
}

/// RFC 3339 in UTC, `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`, for microseconds since the epoch;
/// the fraction appears only when it is not zero.
pub fn format_timestamp(micros: i64) -> String {
    write_timestamp(micros, false)
}

/// RFC 3339 in UTC with exactly six fractional digits, `YYYY-MM-DDTHH:MM:SS.ffffffZ`: one
/// width for every timestamp, so that the text sorts as the instants do (what a database
/// column of text timestamps needs).
pub fn format_timestamp_micros(micros: i64) -> String {
    write_timestamp(micros, true)
}

fn write_timestamp(micros: i64, fixed_fraction: bool) -> String {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let in_day = micros.rem_euclid(MICROS_PER_DAY);
    let secs = in_day / 1_000_000;
    let fraction = in_day % 1_000_000;
    let mut out = String::with_capacity(27);
    push_date(&mut out, days);
    out.push_str(&format!("T{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60));
    if fraction != 0 || fixed_fraction {
        out.push_str(&format!(".{fraction:06}"));
    }
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_date("0000-03-01"), Some(-719_468));
        for days in [-719_528, -1, 0, 1, 11_016, 19_782, 2_932_896] {
            assert_eq!(parse_date(&format_date(days)), Some(days), "{days}");
        }
        for bad in ["2023-02-29", "2024-13-01", "2024-00-10", "2024-1-1", "24-01-01", "2024-01-01x", ""] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        assert_eq!(format_date(i32::MAX), "+5881580-07-11");
        assert_eq!(format_date(i32::MIN), "-5877641-06-23");
    }

    #[test]
    fn timestamps_parse_rfc3339_and_common_variants() {
        let t = 1_709_217_000_000_000; // 2024-02-29T14:30:00Z
        for text in [
            "2024-02-29T14:30:00Z",
            "2024-02-29t14:30:00z",
            "2024-02-29 14:30:00",
            "2024-02-29T14:30",
            "2024-02-29T16:30:00+02:00",
            "2024-02-29T09:30:00-0500",
            "2024-02-29 15:30:00 +01",
            "2024-02-29T14:30:00.000Z",
        ] {
            assert_eq!(parse_timestamp(text), Some(t), "{text}");
        }
        assert_eq!(parse_timestamp("2024-02-29T14:30:00.1234567Z"), Some(t + 123_456));
        assert_eq!(parse_timestamp("1970-01-01"), Some(0));
        for bad in ["2024-02-29T24:00:00Z", "2024-02-29T14:30:00+2", "2024-02-29T14:30:00.Z", "2024-02-29T1430", "now"]
        {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps_format_as_rfc3339_utc() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_timestamp(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(format_timestamp(1_709_217_000_123_456), "2024-02-29T14:30:00.123456Z");
        for micros in [i64::MIN, -1, 0, 1, 1_709_217_000_123_456, i64::MAX] {
            let text = format_timestamp(micros);
            let year_fits = !text.starts_with('+') && !text.starts_with('-');
            if year_fits {
                assert_eq!(parse_timestamp(&text), Some(micros), "{text}");
            }
        }
    }
}
