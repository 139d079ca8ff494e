//! Finds the rustls error behind a driver's error, so a failed handshake can say what to
//! change.

use std::error::Error;
use std::sync::Arc;

/// The rustls error in `e` or its causes, if a TLS handshake is what failed.
pub(crate) fn rustls_error<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(r) = unwrap(c) {
            return Some(r);
        }
        cause = c.source();
    }
    None
}

/// `e` itself as a rustls error, seen through the wrappers drivers put around it: an
/// `io::Error` (whose `source` skips what it wraps) and an `Arc` (redis).
fn unwrap<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
        return unwrap(inner);
    }
    if let Some(inner) = e.downcast_ref::<Arc<dyn Error + Send + Sync>>() {
        return unwrap(inner.as_ref());
    }
    None
}
