//! Splitting CSV text into records exactly as the `csv` crate's reader does (no headers,
//! flexible field counts), with a fast path for records without quotes.
//!
//! The fast path scans a line once for the delimiter and the line end and copies it whole;
//! the `csv` reader copies each byte through its state machine, which costs the reading
//! thread about twice as much. At the first quote, the rest of the input is handed to a
//! `csv` reader, which then reads to the end. The line numbers records carry are the ones
//! the `csv` reader gives, quirks included: a record is numbered by the line after the
//! previous record's end, so blank lines before it do not count and the line feed of a
//! CR LF line end counts towards the record after it.

use std::io::{self, Read};

/// Bytes read from the input at a time (the buffer grows for longer records).
const BUFFER: usize = 256 * 1024;

/// The UTF-8 byte order mark, skipped at the start of the input as the `csv` reader does.
const BOM: &[u8] = b"\xef\xbb\xbf";

/// What a byte means to the fast path.
const PLAIN: u8 = 0;
const DELIMITER: u8 = 1;
const TERMINATOR: u8 = 2;
const QUOTE: u8 = 3;

/// A record cut by the fast path: its bytes, delimiters included, and where each field ends
/// in them.
#[derive(Debug, Default)]
struct Line {
    /// The record's bytes, from its first byte to the one before its line end.
    text: Vec<u8>,
    /// Where each field ends in the text: at a delimiter, the next field starting after it.
    ends: Vec<usize>,
    /// The line number the `csv` reader would give the record.
    line: u64,
}

/// The high bit of each byte of `word` that is zero, no other bit.
#[inline(always)]
fn zero_bytes(word: u64) -> u64 {
    const LOW_BITS: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    // A byte's low seven bits plus 0x7F reach its high bit unless they are all zero, and
    // never carry into the next byte.
    !(((word & LOW_BITS) + LOW_BITS) | word | LOW_BITS)
}

/// The high bit of each byte of `word` that equals `byte`, no other bit.
#[inline(always)]
fn bytes_equal(word: u64, byte: u8) -> u64 {
    zero_bytes(word ^ (0x0101_0101_0101_0101 * u64::from(byte)))
}

/// The high bit of each byte of `word` below 0x20 (line ends among them), no other bit.
#[inline(always)]
fn control_bytes(word: u64) -> u64 {
    zero_bytes(word & 0xe0e0_e0e0_e0e0_e0e0)
}

/// A record just read: its fields are ranges of one run of bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'a> {
    record: Record<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Record<'a> {
    /// Cut by the fast path.
    Line(&'a Line),
    /// Read by the `csv` reader, its position's line number set as the reader would have
    /// numbered it reading from the start.
    Csv(&'a csv::ByteRecord),
}

impl<'a> Fields<'a> {
    /// The bytes the fields are ranges of.
    pub(crate) fn bytes(&self) -> &'a [u8] {
        match self.record {
            Record::Line(line) => &line.text,
            Record::Csv(record) => record.as_slice(),
        }
    }

    /// How many fields the record has.
    pub(crate) fn len(&self) -> usize {
        match self.record {
            Record::Line(line) => line.ends.len(),
            Record::Csv(record) => record.len(),
        }
    }

    /// Where field `i` is in [`bytes`](Self::bytes), if the record has one.
    pub(crate) fn range(&self, i: usize) -> Option<std::ops::Range<usize>> {
        match self.record {
            Record::Line(line) => {
                let end = *line.ends.get(i)?;
                let start = match i.checked_sub(1) {
                    Some(before) => line.ends.get(before).map_or(0, |&e| e + 1),
                    None => 0,
                };
                Some(start..end)
            }
            Record::Csv(record) => record.range(i),
        }
    }

    /// The line number the `csv` reader gives the record.
    pub(crate) fn line(&self) -> u64 {
        match self.record {
            Record::Line(line) => line.line,
            Record::Csv(record) => record.position().map_or(0, csv::Position::line),
        }
    }
}

/// The `csv` reader that reads the input from the first record with a quote on.
struct Fallback<R> {
    reader: csv::Reader<io::Chain<io::Cursor<Vec<u8>>, R>>,
    /// The line number of the first record it reads.
    first: Option<u64>,
    /// The line count where it took over; it counts from 2 there (see [`Splitter::hand_over`]).
    base: u64,
}

/// Splits CSV text into records: see the module documentation.
pub(crate) struct Splitter<R> {
    input: Option<R>,
    buf: Vec<u8>,
    /// The unread bytes are `buf[at..filled]`.
    at: usize,
    filled: usize,
    started: bool,
    /// The `csv` reader's line count: 1 + the line feeds consumed.
    lines: u64,
    /// The line count when the last record ended: the next record's line number.
    record_line: u64,
    delimiter: u8,
    quote: u8,
    class: [u8; 256],
    fallback: Option<Fallback<R>>,
    /// What the last record was read into, by the fast path and by the `csv` reader.
    line: Line,
    record: csv::ByteRecord,
}

impl<R: Read> Splitter<R> {
    /// Splits `input` at `delimiter`, with `quote` quoting fields.
    pub(crate) fn new(input: R, delimiter: u8, quote: u8) -> Self {
        Self::with_buffer(input, delimiter, quote, BUFFER)
    }

    fn with_buffer(input: R, delimiter: u8, quote: u8, capacity: usize) -> Self {
        let mut class = [PLAIN; 256];
        class[usize::from(b'\n')] = TERMINATOR;
        class[usize::from(b'\r')] = TERMINATOR;
        class[usize::from(quote)] = QUOTE;
        class[usize::from(delimiter)] = DELIMITER;
        let mut splitter = Self {
            input: Some(input),
            buf: vec![0; capacity.max(1)],
            at: 0,
            filled: 0,
            started: false,
            lines: 1,
            record_line: 1,
            delimiter,
            quote,
            class,
            fallback: None,
            line: Line::default(),
            record: csv::ByteRecord::new(),
        };
        // A delimiter or quote that is also a line end (or the same byte as the other) is left
        // to the `csv` reader altogether.
        if matches!(delimiter, b'\n' | b'\r') || matches!(quote, b'\n' | b'\r') || delimiter == quote {
            splitter.hand_over(1);
        }
        splitter
    }

    /// The next record, `None` at the end of the input.
    ///
    /// # Errors
    /// Reading the input failed (the `csv` reader raises no other error with flexible field
    /// counts and byte records).
    pub(crate) fn read(&mut self) -> Result<Option<Fields<'_>>, csv::Error> {
        if self.fallback.is_none() && !self.cut()? {
            return Ok(None);
        }
        let Some(fallback) = &mut self.fallback else {
            return Ok(Some(Fields { record: Record::Line(&self.line) }));
        };
        if !fallback.read(&mut self.record)? {
            return Ok(None);
        }
        Ok(Some(Fields { record: Record::Csv(&self.record) }))
    }

    /// Cuts the next record into [`line`](Self::line) on the fast path: `false` at the end of
    /// the input, or with the `csv` reader set up (at a quote) to read it instead.
    fn cut(&mut self) -> Result<bool, csv::Error> {
        let record_line = self.record_line;
        // Line ends before the record: blank lines and the line feed of a CR LF.
        loop {
            match self.buf[self.at..self.filled].first() {
                None => {
                    if !self.fill()? {
                        return Ok(false);
                    }
                }
                Some(b'\n') => {
                    self.lines += 1;
                    self.at += 1;
                }
                Some(b'\r') => self.at += 1,
                Some(_) => break,
            }
        }
        let mut ends = std::mem::take(&mut self.line.ends);
        let scanned = loop {
            match self.scan(&mut ends) {
                Scan::Partial => {
                    if !self.fill()? {
                        // The last record, without a line end.
                        break Scan::Record(self.filled - self.at);
                    }
                }
                scanned => break scanned,
            }
        };
        self.line.ends = ends;
        let Scan::Record(len) = scanned else {
            self.hand_over(record_line);
            return Ok(true);
        };
        let end = self.at + len;
        self.line.text.clear();
        self.line.text.extend_from_slice(&self.buf[self.at..end]);
        // The line end, if any, is consumed with the record.
        if self.buf[..self.filled].get(end) == Some(&b'\n') {
            self.lines += 1;
        }
        self.at = (end + 1).min(self.filled);
        self.record_line = self.lines;
        self.line.line = record_line;
        Ok(true)
    }

    /// What byte `b`, at `i` in the record, does to the scan: a delimiter ends a field, a
    /// line end ends the record, a quote ends the fast path; anything else goes on (`None`).
    #[inline]
    fn step(&self, b: u8, i: usize, ends: &mut Vec<usize>) -> Option<Scan> {
        match self.class[usize::from(b)] {
            PLAIN => None,
            DELIMITER => {
                ends.push(i);
                None
            }
            TERMINATOR => {
                ends.push(i);
                Some(Scan::Record(i))
            }
            _ => Some(Scan::Quote),
        }
    }

    /// Cuts the record at `buf[at..]`, putting where its fields end in `ends`: its length
    /// when its line end is in the buffer, else (`Partial`) the fields so far, ending with
    /// the buffer.
    fn scan(&self, ends: &mut Vec<usize>) -> Scan {
        ends.clear();
        let bytes = &self.buf[self.at..self.filled];
        let [delimiter, quote] = [self.delimiter, self.quote];
        // Eight bytes at a time: the delimiters, quotes and control bytes (line ends, tabs…)
        // among them.
        let mut words = bytes.chunks_exact(8);
        for (n, word) in words.by_ref().enumerate() {
            let Ok(word) = <[u8; 8]>::try_from(word) else {
                break;
            };
            let word = u64::from_le_bytes(word);
            let mut found = bytes_equal(word, delimiter) | bytes_equal(word, quote) | control_bytes(word);
            while found != 0 {
                let i = 8 * n + (found.trailing_zeros() / 8) as usize;
                found &= found - 1;
                if let Some(end) = self.step(bytes[i], i, ends) {
                    return end;
                }
            }
        }
        let tail = bytes.len() - words.remainder().len();
        for (i, &b) in bytes.iter().enumerate().skip(tail) {
            if let Some(end) = self.step(b, i, ends) {
                return end;
            }
        }
        ends.push(bytes.len());
        Scan::Partial
    }

    /// Reads more input after the unread bytes (moved to the front of the buffer, which grows
    /// when they fill it); `false` at the end of the input.
    fn fill(&mut self) -> Result<bool, csv::Error> {
        self.buf.copy_within(self.at..self.filled, 0);
        self.filled -= self.at;
        self.at = 0;
        if self.filled == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = match &mut self.input {
            Some(input) => input.read(&mut self.buf[self.filled..])?,
            None => 0,
        };
        if n == 0 {
            return Ok(false);
        }
        self.filled += n;
        // The `csv` reader skips a byte order mark at the start of its first read.
        if !self.started {
            self.started = true;
            if self.buf[..self.filled].starts_with(BOM) {
                self.at = BOM.len();
            }
        }
        Ok(true)
    }

    /// Hands the unread input to a `csv` reader, the next record's line number being
    /// `record_line`.
    ///
    /// The reader is given a line feed first: it skips it as a blank line, and having read
    /// it, does not take a byte order mark at the start of the rest for one. So it counts
    /// lines from 2 where this splitter's count is [`lines`](Self::lines).
    fn hand_over(&mut self, record_line: u64) {
        let mut head = Vec::with_capacity(1 + self.filled - self.at);
        // Before the first read a byte order mark is still to be skipped, and the reader does.
        if self.started {
            head.push(b'\n');
        }
        head.extend_from_slice(&self.buf[self.at..self.filled]);
        let Some(input) = self.input.take() else {
            return;
        };
        let reader = csv::ReaderBuilder::new()
            .delimiter(self.delimiter)
            .quote(self.quote)
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(BUFFER)
            .from_reader(io::Cursor::new(head).chain(input));
        let base = if self.started { self.lines } else { 2 };
        self.fallback = Some(Fallback { reader, first: Some(record_line), base });
        self.buf = Vec::new();
        (self.at, self.filled) = (0, 0);
    }
}

impl<R: Read> Fallback<R> {
    /// Reads the next record into `record`, numbering its line; `false` at the end.
    fn read(&mut self, record: &mut csv::ByteRecord) -> Result<bool, csv::Error> {
        if !self.reader.read_byte_record(record)? {
            return Ok(false);
        }
        let mut position = record.position().cloned().unwrap_or_else(csv::Position::new);
        let line = match self.first.take() {
            Some(line) => line,
            None => (position.line() + self.base).saturating_sub(2),
        };
        position.set_line(line);
        record.set_position(Some(position));
        Ok(true)
    }
}

/// How far [`Splitter::scan`] got.
enum Scan {
    /// A whole record of this many bytes, its line end next.
    Record(usize),
    /// A record the buffer ends in the middle of.
    Partial,
    /// A record with a quote, left to the `csv` reader.
    Quote,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// Reads at most `step` bytes at a time (the first read at least 3, so that a byte
    /// order mark arrives whole, as it does from a file).
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
        first: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let step = if self.first { self.step.max(3) } else { self.step };
            self.first = false;
            let n = step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Each record's line number and fields, as the `csv` reader reads them.
    fn by_csv(data: &[u8], delimiter: u8, quote: u8) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .quote(quote)
            .has_headers(false)
            .flexible(true)
            .from_reader(data);
        let mut record = csv::ByteRecord::new();
        let mut out = Vec::new();
        while reader.read_byte_record(&mut record).unwrap() {
            out.push((record.position().unwrap().line(), record.iter().map(<[u8]>::to_vec).collect()));
        }
        out
    }

    /// The same, as the splitter reads them.
    fn by_splitter(input: impl Read, delimiter: u8, quote: u8, buffer: usize) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut splitter = Splitter::with_buffer(input, delimiter, quote, buffer);
        let mut out = Vec::new();
        while let Some(fields) = splitter.read().unwrap() {
            let bytes = fields.bytes();
            out.push((fields.line(), (0..fields.len()).map(|i| bytes[fields.range(i).unwrap()].to_vec()).collect()));
            assert!(fields.range(fields.len()).is_none());
        }
        out
    }

    fn check(data: &[u8], delimiter: u8, quote: u8) {
        let expected = by_csv(data, delimiter, quote);
        assert_eq!(by_splitter(data, delimiter, quote, BUFFER), expected, "{:?}", String::from_utf8_lossy(data));
        for (step, buffer) in [(1, 3), (2, 4), (5, 4), (7, 64)] {
            let trickle = Trickle { data, step, first: true };
            assert_eq!(
                by_splitter(trickle, delimiter, quote, buffer),
                expected,
                "{:?} read {step} bytes at a time into {buffer}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn records_split_as_the_csv_reader_splits_them() {
        for data in [
            &b""[..],
            b"a",
            b"a,b\nc,d\n",
            b"a,b\r\nc,d\r\ne\r\n",
            b"a\n\nb\n\n\nc",
            b"a\r\rb\rc\n",
            b"\xef\xbb\xbfa,b\nc\n",
            b"\xef\xbb\xbf",
            b"\xef\xbb",
            b"\xef\xbb\xbf\"a\",b\nc\n",
            b"\n\na\n",
            b"\r\n\r\n",
            b"a,\"b\nc\",d\ne\n",
            b"x\n\"a\"\n\xef\xbb\xbfb\n",
            b"ab\"c,d\n",
            b" \n,\n,,\n",
            b"id,name\n1,\xff\n2,Zo\xc3\xab\n",
        ] {
            check(data, b',', b'"');
        }
        check(b"a;b,c\n'x;y';z\n", b';', b'\'');
        check(b"a,b\nc,d\n", b'\n', b'"');
        check(b"a,b\nc,d\n", b',', b',');
    }

    #[test]
    fn random_records_split_as_the_csv_reader_splits_them() {
        let pieces: [&[u8]; 16] = [
            b"a",
            b"bc",
            b"\xc3\xab",
            b"\xff",
            b",",
            b",",
            b";",
            b"\"",
            b"\r",
            b"\n",
            b"\n",
            b"\r\n",
            b" ",
            b"\t",
            b"\x01",
            b"\xef\xbb\xbf",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for case in 0..4000 {
            let len = next() % 40;
            // Most cases quote nothing, so that the fast path reads them to the end.
            let quotes = case % 4 == 0;
            let mut data = Vec::new();
            for _ in 0..len {
                let piece = pieces[(next() % 16) as usize];
                if piece != b"\"" || quotes {
                    data.extend_from_slice(piece);
                }
            }
            if case % 5 == 0 {
                check(&data, b';', b'"');
            } else {
                check(&data, b',', b'"');
            }
        }
    }
}
