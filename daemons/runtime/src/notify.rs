//! `sd_notify`: tells the service manager the daemon is READY or STOPPING.
//!
//! Speaks the datagram protocol directly on `$NOTIFY_SOCKET` (a path or an abstract `@name`);
//! without the variable (not started by systemd) every call is a no-op.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// A notification that could not be sent.
#[derive(Debug, thiserror::Error)]
#[error("sd_notify to {socket}: {source}")]
pub struct NotifyError {
    socket: String,
    source: std::io::Error,
}

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(String, UnixDatagram)>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` (the daemons start no child processes that could inherit it).
    pub fn from_env() -> Result<Self, NotifyError> {
        let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(Self { target: None });
        };
        let socket = socket.to_string_lossy().into_owned();
        let datagram = UnixDatagram::unbound()
            .and_then(|datagram| datagram.connect_addr(&address(&socket)?).map(|()| datagram))
            .map_err(|source| NotifyError {
                socket: socket.clone(),
                source,
            })?;
        Ok(Self {
            target: Some((socket, datagram)),
        })
    }

    /// Sends `READY=1` with a status line.
    pub fn ready(&self, status: &str) -> Result<(), NotifyError> {
        self.send(&format!(
            "READY=1\nSTATUS={status}\nMAINPID={}\n",
            std::process::id()
        ))
    }

    /// Sends `STOPPING=1`.
    pub fn stopping(&self) -> Result<(), NotifyError> {
        self.send("STOPPING=1\n")
    }

    fn send(&self, message: &str) -> Result<(), NotifyError> {
        let Some((socket, datagram)) = &self.target else {
            return Ok(());
        };
        datagram
            .send(message.as_bytes())
            .map(|_| ())
            .map_err(|source| NotifyError {
                socket: socket.clone(),
                source,
            })
    }
}

fn address(socket: &str) -> std::io::Result<SocketAddr> {
    match socket.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(socket),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_ready_and_stopping_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let sender = UnixDatagram::unbound().unwrap();
        sender.connect(&path).unwrap();
        let notifier = Notifier {
            target: Some((path.display().to_string(), sender)),
        };
        notifier.ready("serving").unwrap();
        notifier.stopping().unwrap();
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        let first = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(first.starts_with("READY=1\nSTATUS=serving\n"), "{first}");
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");
    }

    #[test]
    fn abstract_names_are_recognised() {
        assert!(address("@enigm-test").unwrap().as_abstract_name().is_some());
        assert!(
            address("/run/systemd/notify")
                .unwrap()
                .as_pathname()
                .is_some()
        );
    }

    #[test]
    fn without_a_socket_notifications_are_no_ops() {
        let notifier = Notifier { target: None };
        notifier.ready("x").unwrap();
        notifier.stopping().unwrap();
    }
}
