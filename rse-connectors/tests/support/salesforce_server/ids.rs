//! Salesforce-style record ids: 15 case-sensitive characters plus the 3-character suffix that
//! makes the 18-character form case-insensitive.

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SUFFIX: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The 18-character id of a 15-character one: for each 5-character chunk, a bit per upper-case
/// letter, read as an index into `A–Z0–5`.
pub fn with_checksum(id15: &str) -> String {
    assert_eq!(id15.len(), 15, "a 15-character id");
    let mut id = id15.to_owned();
    for chunk in id15.as_bytes().chunks(5) {
        let bits =
            chunk.iter().enumerate().fold(0usize, |acc, (i, b)| acc | (usize::from(b.is_ascii_uppercase()) << i));
        id.push(char::from(SUFFIX[bits]));
    }
    id
}

/// The `n`-th id of an object with this key prefix (e.g. `003` for `Contact`).
pub fn nth(prefix: &str, n: u64) -> String {
    // Spread the counter so that consecutive ids differ in case as well as in digits.
    let mut v = n.wrapping_mul(2_654_435_761).wrapping_add(0x5EED) % 62u64.pow(8);
    let mut tail = [b'0'; 8];
    for slot in tail.iter_mut().rev() {
        *slot = BASE62[(v % 62) as usize];
        v /= 62;
    }
    let id15 = format!("{prefix}5g00{}", std::str::from_utf8(&tail).unwrap());
    with_checksum(&id15)
}

/// Whether `id` has the shape of a record id (15 or 18 letters and digits, a valid suffix).
pub fn well_formed(id: &str) -> bool {
    if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    match id.len() {
        15 => true,
        18 => with_checksum(&id[..15]) == id,
        _ => false,
    }
}
