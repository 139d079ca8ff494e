//! A byte buffer on the stack that moves to the heap only for long values.

/// Bytes kept inline: every common identifier fits.
const INLINE: usize = 96;

/// The normalised text being built. Only whole UTF-8 sequences are pushed, so it stays
/// valid UTF-8.
pub(super) struct Scratch {
    inline: [u8; INLINE],
    len: usize,
    /// Used instead of `inline` once a value outgrows it.
    heap: Option<Vec<u8>>,
}

impl Scratch {
    pub(super) fn new() -> Scratch {
        Scratch { inline: [0; INLINE], len: 0, heap: None }
    }

    pub(super) fn push(&mut self, byte: u8) {
        if let Some(heap) = &mut self.heap {
            heap.push(byte);
        } else if let Some(slot) = self.inline.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        } else {
            self.spill().push(byte);
        }
    }

    pub(super) fn extend(&mut self, bytes: &[u8]) {
        if let Some(heap) = &mut self.heap {
            heap.extend_from_slice(bytes);
        } else if let Some(slots) = self.inline.get_mut(self.len..self.len + bytes.len()) {
            slots.copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            self.spill().extend_from_slice(bytes);
        }
    }

    pub(super) fn push_char(&mut self, c: char) {
        if c.is_ascii() {
            self.push(c as u8);
        } else {
            let mut utf8 = [0u8; 4];
            self.extend(c.encode_utf8(&mut utf8).as_bytes());
        }
    }

    /// Moves the bytes to the heap and returns the heap buffer.
    fn spill(&mut self) -> &mut Vec<u8> {
        let mut heap = Vec::with_capacity(INLINE * 2);
        heap.extend_from_slice(self.inline.get(..self.len).unwrap_or_default());
        self.heap.insert(heap)
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        match &self.heap {
            Some(heap) => heap,
            None => self.inline.get(..self.len).unwrap_or_default(),
        }
    }

    pub(super) fn as_mut_bytes(&mut self) -> &mut [u8] {
        match &mut self.heap {
            Some(heap) => heap,
            None => self.inline.get_mut(..self.len).unwrap_or_default(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the first `len` bytes (a char boundary).
    pub(super) fn truncate(&mut self, len: usize) {
        match &mut self.heap {
            Some(heap) => heap.truncate(len),
            None => self.len = self.len.min(len),
        }
    }
}
