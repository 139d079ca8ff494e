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

/// `text` without surrounding whitespace, as [`str::trim`] gives it; text that starts and
/// ends with a printable ASCII character (the common case) is returned as it is, unscanned.
fn trimmed(text: &str) -> &str {
    match (text.as_bytes().first(), text.as_bytes().last()) {
        (Some(first), Some(last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => text,
        _ => text.trim(),
    }
}

/// The number two ASCII digits write, or `None` when one is not a digit.
fn two_digits(tens: u8, ones: u8) -> Option<i64> {
    (tens.is_ascii_digit() && ones.is_ascii_digit()).then(|| i64::from(tens - b'0') * 10 + i64::from(ones - b'0'))
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

    /// One or more ASCII digits as a number and how many digits there were; `None` when
    /// there is no digit or the number does not fit.
    fn digit_run(&mut self) -> Option<(i64, usize)> {
        let start = self.at;
        let mut value = 0i64;
        while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
            value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
            self.at += 1;
        }
        (self.at > start).then_some((value, self.at - start))
    }

    /// [`digit_run`](Self::digit_run)'s number alone.
    fn number(&mut self) -> Option<i64> {
        self.digit_run().map(|(value, _)| value)
    }

    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }
}

/// The `YYYY-MM-DD` the first ten bytes of `b` write, as days since 1970-01-01.
fn date_prefix(b: &[u8]) -> Option<i64> {
    let &[y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1, ..] = b else {
        return None;
    };
    // All eight are digits, checked at once: each byte is 0x3_ and stays so when 6 is added.
    let word = u64::from_le_bytes([y0, y1, y2, y3, m0, m1, d0, d1]);
    const HIGH: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    const THREES: u64 = 0x3030_3030_3030_3030;
    if word & HIGH != THREES || word.wrapping_add(0x0606_0606_0606_0606) & HIGH != THREES {
        return None;
    }
    let digit = |b: u8| i64::from(b & 0x0f);
    let year = digit(y0) * 1000 + digit(y1) * 100 + digit(y2) * 10 + digit(y3);
    let (month, day) = (digit(m0) * 10 + digit(m1), digit(d0) * 10 + digit(d1));
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// Parses `YYYY-MM-DD` (surrounding whitespace allowed) as days since 1970-01-01.
pub fn parse_date(text: &str) -> Option<i32> {
    let b = trimmed(text).as_bytes();
    if b.len() != 10 {
        return None;
    }
    i32::try_from(date_prefix(b)?).ok()
}

/// Hours, minutes and seconds at the cursor: `H:M` or `H:M:S`, each one or more digits
/// (usually two).
fn clock(c: &mut Cursor<'_>) -> Option<(i64, i64, i64)> {
    // Fast path for the common `HH:MM:SS` layout.
    if let Some(&[h0, h1, b':', m0, m1, b':', s0, s1, ref after @ ..]) = c.bytes.get(c.at..)
        && !after.first().is_some_and(u8::is_ascii_digit)
        && let (Some(hour), Some(minute), Some(second)) = (two_digits(h0, h1), two_digits(m0, m1), two_digits(s0, s1))
    {
        c.at += 8;
        return Some((hour, minute, second));
    }
    let hour = c.number()?;
    if !c.eat(b':') {
        return None;
    }
    let minute = c.number()?;
    let second = if c.eat(b':') { c.number()? } else { 0 };
    Some((hour, minute, second))
}

/// Parses an RFC 3339 / ISO 8601 / SQL timestamp as microseconds since the epoch.
///
/// Accepts, with surrounding whitespace:
///
/// - `YYYY-MM-DD` alone: midnight UTC;
/// - else the date, `T`, `t` or a space, then the time `HH:MM` or `HH:MM:SS` (each part
///   one or more digits, so `9:05` too; hours 0–23, minutes 0–59, seconds 0–60, a leap
///   second counting into the next minute);
/// - an optional fraction after `.` or `,`: one or more digits, those past the sixth
///   (microseconds) truncated;
/// - an optional offset, after at most one space: `Z` or `z`, or a sign and hours, with
///   minutes after a colon (`+05:30`), as the last two of four digits (`+0530`) or none
///   (`+05`, `-5`); hours 0–23, minutes 0–59.
///
/// Without an offset the time is taken as UTC.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let b = trimmed(text).as_bytes();
    let day = date_prefix(b)?.checked_mul(MICROS_PER_DAY)?;
    let (separator, rest) = match b.get(10..) {
        Some([separator, rest @ ..]) => (*separator, rest),
        _ => return Some(day),
    };
    if !matches!(separator, b'T' | b't' | b' ') {
        return None;
    }
    let mut c = Cursor { bytes: rest, at: 0 };
    let (hour, minute, second) = clock(&mut c)?;
    if hour > 23 || minute > 59 || second > 60 {
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
        if n == 0 {
            return None;
        }
        for _ in n..6 {
            fraction *= 10;
        }
    }
    c.eat(b' ');
    let offset_secs = match c.peek() {
        None => 0,
        Some(b'Z' | b'z') => {
            c.at += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            c.at += 1;
            let (hours, digits) = c.digit_run()?;
            let (hours, minutes) = if c.eat(b':') {
                (hours, c.number()?)
            } else if digits == 4 {
                (hours / 100, hours % 100)
            } else {
                (hours, 0)
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
    let secs = (hour * 60 + minute) * 60 + second - offset_secs;
    day.checked_add(secs * 1_000_000 + fraction)
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
        assert_eq!(parse_date(" 2024-02-29\t"), Some(19_782));
        for bad in ["2023-02-29", "2024-13-01", "2024-00-10", "2024-1-1", "24-01-01", "2024-01-01x", "2024/01/01", ""] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        assert_eq!(format_date(i32::MAX), "+5881580-07-11");
        assert_eq!(format_date(i32::MIN), "-5877641-06-23");
    }

    #[test]
    fn dates_take_ascii_digits_only() {
        for b in 0..=255u8 {
            for at in [0, 1, 2, 3, 5, 6, 8, 9] {
                let mut date = *b"2024-10-15";
                date[at] = b;
                let digits = date.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
                let number = |at: std::ops::Range<usize>| date[at].iter().fold(0, |n, d| n * 10 + i64::from(d - b'0'));
                let valid = digits && {
                    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
                    (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month)
                };
                assert_eq!(date_prefix(&date).is_some(), valid, "{:?}", String::from_utf8_lossy(&date));
            }
        }
    }

    #[test]
    fn timestamps_parse_rfc3339_and_common_variants() {
        let t = 1_709_217_000_000_000; // 2024-02-29T14:30:00Z
        for text in [
            "2024-02-29T14:30:00Z",
            "2024-02-29t14:30:00z",
            "2024-02-29 14:30:00",
            " 2024-02-29T14:30:00Z\n",
            "2024-02-29T14:30",
            "2024-02-29T14:30:00+00:00",
            "2024-02-29T16:30:00+02:00",
            "2024-02-29T09:30:00-0500",
            "2024-02-29T09:30:00-05",
            "2024-02-29T16:30:00+2",
            "2024-02-29T16:30+02:00",
            "2024-02-29 15:30:00 +01",
            "2024-02-29 14:30:00 Z",
            "2024-02-29T14:30:00.000Z",
            "2024-02-29T14:30:00,000Z",
        ] {
            assert_eq!(parse_timestamp(text), Some(t), "{text}");
        }
        assert_eq!(parse_timestamp("1970-01-01"), Some(0));
        assert_eq!(parse_timestamp("2024-02-29"), Some(t - 52_200_000_000));
        for bad in [
            "2024-02-29T24:00:00Z",
            "2024-02-29T14:60:00Z",
            "2024-02-29T14:30:61Z",
            "2024-02-29T14:30:00+24",
            "2024-02-29T14:30:00+01:60",
            "2024-02-29T14:30:00+123",
            "2024-02-29T14:30:00+",
            "2024-02-29T14:30:00.Z",
            "2024-02-29T14:30:00,",
            "2024-02-29T14:30:00  Z",
            "2024-02-29T14:30:00Zx",
            "2024-02-29T14:30:00+01:00:00",
            "2024-02-29T1430",
            "2024-02-29T14",
            "2024-02-29T",
            "2024-02-29X14:30:00",
            "2024-02-30T14:30:00",
            "2024-2-29T14:30:00",
            "now",
            "",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamp_times_take_digit_runs_and_a_leap_second() {
        let day = 1_709_164_800_000_000; // 2024-02-29T00:00:00Z
        let hms = |h: i64, m: i64, s: i64| day + ((h * 60 + m) * 60 + s) * 1_000_000;
        assert_eq!(parse_timestamp("2024-02-29 9:05:00"), Some(hms(9, 5, 0)));
        assert_eq!(parse_timestamp("2024-02-29T9:5"), Some(hms(9, 5, 0)));
        assert_eq!(parse_timestamp("2024-02-29T09:05:7"), Some(hms(9, 5, 7)));
        assert_eq!(parse_timestamp("2024-02-29T09:05:007"), Some(hms(9, 5, 7)));
        assert_eq!(parse_timestamp("2024-02-29T23:59:60Z"), Some(hms(24, 0, 0)));
        assert_eq!(parse_timestamp("2024-02-29T01:00:00+1:5"), Some(hms(0, -5, 0)));
        assert_eq!(parse_timestamp("2024-02-29T01:00:00+001"), Some(hms(0, 0, 0)));
        assert_eq!(parse_timestamp("2024-02-29T9:05:00.5-01"), Some(hms(10, 5, 0) + 500_000));
    }

    #[test]
    fn timestamp_fractions_truncate_to_microseconds() {
        let t = 1_709_217_000_000_000; // 2024-02-29T14:30:00Z
        for (text, micros) in [
            ("2024-02-29T14:30:00.5", 500_000),
            ("2024-02-29T14:30:00,5Z", 500_000),
            ("2024-02-29T14:30:00.000001Z", 1),
            ("2024-02-29T14:30:00.1234567Z", 123_456),
            ("2024-02-29T14:30:00.123456789123+00:00", 123_456),
            ("2024-02-29T14:30.25Z", 250_000),
            ("2024-02-29 14:30:00.75 +00", 750_000),
        ] {
            assert_eq!(parse_timestamp(text), Some(t + micros), "{text}");
        }
        assert_eq!(parse_timestamp("1969-12-31T23:59:59.999999-00:00"), Some(-1));
        assert_eq!(parse_timestamp("2024-06-01T12:30:00.123456789+0530"), Some(1_717_225_200_123_456));
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
