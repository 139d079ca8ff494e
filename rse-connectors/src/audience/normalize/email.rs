//! Email addresses.

use super::Scratch;

const ONE_AT: &str = "expected an address with exactly one @ and text on either side of it";

/// Writes the normal form of a trimmed address: whitespace removed, lowercased; with
/// `gmail_rule`, the dots and `+tag` of a `gmail.com` / `googlemail.com` local part
/// removed; with `trim_dots`, dots at either end dropped first (Meta's SDK does so).
pub(super) fn normalize(value: &str, gmail_rule: bool, trim_dots: bool, out: &mut Scratch) -> Result<(), &'static str> {
    let value = if trim_dots { value.trim_matches(|c: char| c == '.' || c.is_whitespace()) } else { value };
    let mut at = None;
    for c in value.chars() {
        if c.is_ascii() {
            match c as u8 {
                b'@' => {
                    if at.is_some() {
                        return Err(ONE_AT);
                    }
                    at = Some(out.len());
                    out.push(b'@');
                }
                b if b.is_ascii_whitespace() => {}
                b => out.push(b.to_ascii_lowercase()),
            }
        } else if !c.is_whitespace() {
            for lower in c.to_lowercase() {
                out.push_char(lower);
            }
        }
    }
    let Some(at) = at else {
        return Err(ONE_AT);
    };
    if at == 0 || at + 1 == out.len() {
        return Err(ONE_AT);
    }
    if gmail_rule {
        let bytes = out.as_mut_bytes();
        let domain = bytes.get(at + 1..).unwrap_or_default();
        if domain == b"gmail.com" || domain == b"googlemail.com" {
            // Compact the local part in place: drop dots, stop at `+`.
            let mut kept = 0;
            for read in 0..at {
                let byte = bytes.get(read).copied().unwrap_or(b'+');
                if byte == b'+' {
                    break;
                }
                if byte != b'.' {
                    if let Some(slot) = bytes.get_mut(kept) {
                        *slot = byte;
                    }
                    kept += 1;
                }
            }
            if kept == 0 {
                return Err("expected a Gmail address with a name before the @ (dots and a +tag do not count)");
            }
            let len = bytes.len();
            bytes.copy_within(at..len, kept);
            out.truncate(len - (at - kept));
        }
    }
    Ok(())
}
