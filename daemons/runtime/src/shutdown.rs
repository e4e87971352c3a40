//! Clean shutdown: resolves when SIGTERM or SIGINT arrives.

use tokio::signal::unix::{SignalKind, signal};

/// The signal that asked the daemon to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM (the service manager).
    Terminate,
    /// SIGINT (a terminal).
    Interrupt,
}

/// Installs the handlers now (so a signal that arrives early is not lost) and returns a future
/// that resolves on the first of SIGTERM or SIGINT.
pub fn stop_signal() -> std::io::Result<impl Future<Output = StopSignal>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => StopSignal::Terminate,
            _ = int.recv() => StopSignal::Interrupt,
        }
    })
}
