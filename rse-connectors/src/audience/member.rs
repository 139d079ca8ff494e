//! A member's identifiers as sent, and their form in the key's memo.

use rse_core::Memo;

use super::{IdentifierKind, Normalized};

/// The first byte of an encoded [`MemberIds`].
const VERSION: u8 = 1;
/// Set on a kind byte when the identifier that follows is plain text.
const PLAIN: u8 = 0x80;

/// A member's identifiers in the form the platform received them: sorted by kind, then
/// value, without duplicates. Kept as the key's memo, so the identifiers a member was last
/// sent with can be removed when they change or the member leaves the segment, without
/// deriving them again from data that may have changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MemberIds {
    ids: Vec<(IdentifierKind, Normalized)>,
}

impl MemberIds {
    /// The identifiers of `ids`, sorted and de-duplicated.
    pub fn new(ids: impl IntoIterator<Item = (IdentifierKind, Normalized)>) -> Self {
        let mut ids: Vec<_> = ids.into_iter().collect();
        ids.sort();
        ids.dedup();
        Self { ids }
    }

    /// Every identifier, in order.
    pub fn iter(&self) -> impl Iterator<Item = (IdentifierKind, &Normalized)> + '_ {
        self.ids.iter().map(|(kind, id)| (*kind, id))
    }

    /// The identifiers of `kind`.
    pub fn of(&self, kind: IdentifierKind) -> impl Iterator<Item = &Normalized> + '_ {
        self.ids.iter().filter(move |(k, _)| *k == kind).map(|(_, id)| id)
    }

    /// The first identifier of `kind`.
    pub fn get(&self, kind: IdentifierKind) -> Option<&Normalized> {
        self.of(kind).next()
    }

    /// How many identifiers there are.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether every identifier of `self` is also in `other`.
    pub fn is_subset(&self, other: &MemberIds) -> bool {
        self.ids.iter().all(|id| other.ids.binary_search(id).is_ok())
    }

    /// The identifiers of `self` that `other` lacks.
    pub fn minus(&self, other: &MemberIds) -> MemberIds {
        MemberIds { ids: self.ids.iter().filter(|id| other.ids.binary_search(id).is_err()).cloned().collect() }
    }

    /// The identifiers of both.
    pub fn union(&self, other: &MemberIds) -> MemberIds {
        MemberIds::new(self.ids.iter().chain(&other.ids).cloned())
    }

    /// The identifiers' encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        1 + self
            .ids
            .iter()
            .map(|(_, id)| match id {
                Normalized::Hashed(_) => 33,
                Normalized::Plain(text) => 2 + text.len().min(255),
            })
            .sum::<usize>()
    }

    /// The identifiers as a memo: a version byte, then per identifier a kind byte and either
    /// the 32 bytes of a digest or a length byte and the text (plain identifiers are at most
    /// 255 bytes; the normalisers refuse longer ones).
    ///
    /// # Errors
    /// A `Fatal` [`rse_core::DestinationError`] when the encoding exceeds
    /// [`Memo::MAX_LEN`] (more than about a hundred identifiers).
    pub fn to_memo(&self) -> Result<Memo, rse_core::DestinationError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(VERSION);
        for (kind, id) in &self.ids {
            let code = kind_code(*kind);
            match id {
                Normalized::Hashed(digest) => {
                    out.push(code);
                    out.extend_from_slice(digest);
                }
                Normalized::Plain(text) => {
                    let bytes = truncated(text.as_bytes(), 255);
                    out.push(code | PLAIN);
                    out.push(bytes.len() as u8);
                    out.extend_from_slice(bytes);
                }
            }
        }
        Memo::new(out)
    }

    /// The identifiers a memo holds, or `None` when it is not one [`to_memo`](Self::to_memo)
    /// wrote (a memo of another destination, or damaged).
    pub fn from_memo(memo: &Memo) -> Option<MemberIds> {
        let bytes = memo.as_bytes();
        let (&version, mut rest) = bytes.split_first()?;
        if version != VERSION {
            return None;
        }
        let mut ids = Vec::new();
        while let Some((&code, tail)) = rest.split_first() {
            let kind = kind_of(code & !PLAIN)?;
            if code & PLAIN == 0 {
                let digest: [u8; 32] = tail.get(..32)?.try_into().ok()?;
                ids.push((kind, Normalized::Hashed(digest)));
                rest = &tail[32..];
            } else {
                let (&len, tail) = tail.split_first()?;
                let text = tail.get(..usize::from(len))?;
                ids.push((kind, Normalized::Plain(std::str::from_utf8(text).ok()?.to_owned())));
                rest = &tail[usize::from(len)..];
            }
        }
        Some(MemberIds::new(ids))
    }
}

/// At most `max` bytes of `bytes`, cut at a character boundary of UTF-8 text.
fn truncated(bytes: &[u8], max: usize) -> &[u8] {
    if bytes.len() <= max {
        return bytes;
    }
    let mut end = max;
    while end > 0 && (bytes[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    &bytes[..end]
}

fn kind_code(kind: IdentifierKind) -> u8 {
    IdentifierKind::ALL.iter().position(|k| *k == kind).map_or(0x7F, |i| i as u8)
}

fn kind_of(code: u8) -> Option<IdentifierKind> {
    IdentifierKind::ALL.get(usize::from(code)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> MemberIds {
        MemberIds::new([
            (IdentifierKind::Phone, Normalized::Hashed([7; 32])),
            (IdentifierKind::Email, Normalized::Hashed([1; 32])),
            (IdentifierKind::Country, Normalized::Plain("US".into())),
            (IdentifierKind::Email, Normalized::Hashed([1; 32])),
            (IdentifierKind::ExternalId, Normalized::Plain("é".repeat(200))),
        ])
    }

    #[test]
    fn identifiers_round_trip_through_a_memo_sorted_and_deduplicated() {
        let ids = ids();
        assert_eq!(ids.len(), 4);
        assert_eq!(ids.iter().next().map(|(k, _)| k), Some(IdentifierKind::Email));
        let memo = ids.to_memo().unwrap();
        let back = MemberIds::from_memo(&memo).unwrap();
        // The long plain id is cut to 255 bytes at a character boundary.
        assert_eq!(back.get(IdentifierKind::ExternalId), Some(&Normalized::Plain("é".repeat(127))));
        assert_eq!(back.minus(&ids).len(), 1);
        assert_eq!(back.get(IdentifierKind::Phone), Some(&Normalized::Hashed([7; 32])));
    }

    #[test]
    fn sets_subtract_and_join() {
        let a = ids();
        let b = MemberIds::new([(IdentifierKind::Email, Normalized::Hashed([2; 32]))]);
        assert_eq!(a.union(&b).len(), 5);
        assert_eq!(a.union(&b).minus(&a), b);
        assert!(b.is_subset(&a.union(&b)));
        assert!(!a.is_subset(&b));
    }

    #[test]
    fn memos_of_something_else_are_not_identifiers() {
        for bytes in [vec![], vec![2, 0], vec![1, 0, 1, 2], vec![1, 0x7E], vec![1, 0x80, 5, b'a']] {
            assert_eq!(MemberIds::from_memo(&Memo::new(bytes.clone()).unwrap()), None, "{bytes:?}");
        }
        assert_eq!(MemberIds::from_memo(&Memo::new(vec![1]).unwrap()), Some(MemberIds::default()));
    }
}
