//! SIGINT and SIGTERM: the first cancels the run gracefully (the writes in flight finish,
//! what they acknowledged is committed, the lease is released); a second exits at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::exit::Exit;

/// The cancellation the signals trigger, and which signal came first.
#[derive(Clone)]
pub struct Interrupt {
    /// Cancelled by the first signal.
    pub cancel: CancellationToken,
    code: Arc<AtomicU8>,
}

impl Interrupt {
    /// The exit code of the first signal received, if one was.
    pub fn exit(&self) -> Option<Exit> {
        match self.code.load(Ordering::SeqCst) {
            0 => None,
            code => Some(Exit(code)),
        }
    }
}

/// Listens for SIGINT and SIGTERM from now on.
pub fn listen() -> std::io::Result<Interrupt> {
    let interrupt = Interrupt { cancel: CancellationToken::new(), code: Arc::new(AtomicU8::new(0)) };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let handle = interrupt.clone();
        tokio::spawn(async move {
            loop {
                let code = tokio::select! {
                    Some(()) = int.recv() => Exit::SIGINT,
                    Some(()) = term.recv() => Exit::SIGTERM,
                    else => return,
                };
                handle.received(code);
            }
        });
    }
    #[cfg(not(unix))]
    {
        let handle = interrupt.clone();
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                handle.received(Exit::SIGINT);
            }
        });
    }
    Ok(interrupt)
}

impl Interrupt {
    fn received(&self, code: Exit) {
        if self.code.compare_exchange(0, code.0, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            warn!(
                signal = if code == Exit::SIGINT { "SIGINT" } else { "SIGTERM" },
                "Stopping: the writes in flight finish and are committed; signal again to exit at once."
            );
            self.cancel.cancel();
        } else {
            // A second signal: stop now, as a crash would. What was sent and not committed is
            // sent again by the next run under the same idempotency keys; the lease lapses.
            super::logging::set_bar(None);
            eprintln!("rse: stopped at once by a second signal; the next run resends what was not committed");
            std::process::exit(i32::from(self.code.load(Ordering::SeqCst)));
        }
    }
}
