//! SHA-256, with the digests of low-cardinality values (two-letter codes, `m`/`f`, the
//! parts of a date) computed once per process and looked up after.

use std::sync::OnceLock;

use sha2::digest::generic_array::GenericArray;
use sha2::{Digest, Sha256};

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
const H0: [u32; 8] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// The SHA-256 digest of `bytes`. A message of up to 55 bytes (nearly every identifier) is
/// padded into its one block here and compressed directly, skipping the incremental
/// hasher's buffering; longer ones go through [`Sha256`].
pub(super) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    let Some(message) = block.get_mut(..bytes.len()).filter(|_| bytes.len() <= 55) else {
        return Sha256::digest(bytes).into();
    };
    message.copy_from_slice(bytes);
    if let Some(end) = block.get_mut(bytes.len()) {
        *end = 0x80;
    }
    let bits = (bytes.len() as u64) * 8;
    if let Some(length) = block.get_mut(56..) {
        length.copy_from_slice(&bits.to_be_bytes());
    }
    let mut state = H0;
    sha2::compress256(&mut state, &[GenericArray::from(block)]);
    let mut digest = [0u8; 32];
    for (out, word) in digest.chunks_exact_mut(4).zip(state) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    digest
}

/// The digest `value` spells when it is exactly 64 hex digits (any case).
pub(super) fn hex_digest(value: &str) -> Option<[u8; 32]> {
    let bytes = value.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(bytes.chunks_exact(2)) {
        let [high, low] = pair else {
            return None;
        };
        *byte = (hex_value(*high)? << 4) | hex_value(*low)?;
    }
    Some(digest)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The digest of a two-letter lowercase ASCII text (`us`, `ca`): Meta's countries and US
/// states. `None` for anything else.
pub(super) fn two_letters(text: &[u8]) -> Option<[u8; 32]> {
    static DIGESTS: OnceLock<Vec<[u8; 32]>> = OnceLock::new();
    let &[a, b] = text else {
        return None;
    };
    if !a.is_ascii_lowercase() || !b.is_ascii_lowercase() {
        return None;
    }
    let digests =
        DIGESTS.get_or_init(|| (b'a'..=b'z').flat_map(|a| (b'a'..=b'z').map(move |b| sha256(&[a, b]))).collect());
    digests.get(usize::from(a - b'a') * 26 + usize::from(b - b'a')).copied()
}

/// The digest of a one-letter lowercase ASCII text (Meta's `m` and `f`).
pub(super) fn one_letter(letter: u8) -> [u8; 32] {
    static DIGESTS: OnceLock<Vec<[u8; 32]>> = OnceLock::new();
    let digests = DIGESTS.get_or_init(|| (b'a'..=b'z').map(|a| sha256(&[a])).collect());
    letter.checked_sub(b'a').and_then(|i| digests.get(usize::from(i))).copied().unwrap_or_else(|| sha256(&[letter]))
}

/// Years whose `YYYY` digest is kept.
const FIRST_YEAR: u32 = 1900;
const YEARS: u32 = 300;

/// The digests of a date's `YYYY`, `MM` and `DD` texts (ASCII digits, already checked).
pub(super) fn date_parts(year: [u8; 4], month: [u8; 2], day: [u8; 2]) -> [[u8; 32]; 3] {
    struct Parts {
        years: Vec<[u8; 32]>,
        /// `00`..`99`: months and days alike.
        two_digits: Vec<[u8; 32]>,
    }
    static PARTS: OnceLock<Parts> = OnceLock::new();
    let parts = PARTS.get_or_init(|| Parts {
        years: (FIRST_YEAR..FIRST_YEAR + YEARS).map(|y| sha256(format!("{y:04}").as_bytes())).collect(),
        two_digits: (0..100).map(|n: u32| sha256(format!("{n:02}").as_bytes())).collect(),
    });
    let number = |digits: &[u8]| digits.iter().fold(0u32, |n, d| n * 10 + u32::from(d.wrapping_sub(b'0')));
    let year_digest = number(&year)
        .checked_sub(FIRST_YEAR)
        .and_then(|i| parts.years.get(i as usize))
        .copied()
        .unwrap_or_else(|| sha256(&year));
    let two =
        |digits: [u8; 2]| parts.two_digits.get(number(&digits) as usize).copied().unwrap_or_else(|| sha256(&digits));
    [year_digest, two(month), two(day)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_block_path_and_tables_agree_with_the_hasher() {
        let text: Vec<u8> = (0..130u8).map(|i| b'a' + i % 26).collect();
        for len in 0..text.len() {
            let expected: [u8; 32] = Sha256::digest(&text[..len]).into();
            assert_eq!(sha256(&text[..len]), expected, "{len} bytes");
        }
        let digest = |t: &str| -> [u8; 32] { Sha256::digest(t.as_bytes()).into() };
        assert_eq!(two_letters(b"us"), Some(digest("us")));
        assert_eq!(two_letters(b"zz"), Some(digest("zz")));
        assert_eq!(two_letters(b"US"), None);
        assert_eq!(one_letter(b'm'), digest("m"));
        assert_eq!(date_parts(*b"1997", *b"02", *b"16"), [digest("1997"), digest("02"), digest("16")]);
        assert_eq!(date_parts(*b"2231", *b"12", *b"31"), [digest("2231"), digest("12"), digest("31")]);
    }
}
