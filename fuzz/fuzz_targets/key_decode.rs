//! Key decoding on arbitrary bytes: never panics, and bytes it accepts are exactly the
//! encoding of the values it decodes them to.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rse_core::Key;

fuzz_target!(|data: &[u8]| {
    let Ok(key) = Key::from_encoded(data) else { return };
    assert_eq!(key.as_bytes(), data);
    let values = key.decode().expect("a key accepted by from_encoded decodes");
    assert_eq!(Key::from_values(&values).as_bytes(), data, "decode then encode must give the input back");
});
