//! The TPM worker: one thread owns the [`Attester`] (a TPM runs one command at a time, and
//! ESAPI calls block), and the D-Bus side talks to it through a queue. The latest status is
//! published on a watch channel, so status reads never wait behind a quote.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, watch};

use crate::attester::{AttestError, Attester};
use crate::status::Status;
use crate::tpm::Tpm;

/// How many requests may wait for the TPM.
pub const QUEUE: usize = 16;

enum Request {
    Evidence {
        nonce: Vec<u8>,
        posture_digest: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, AttestError>>,
    },
    Activate {
        credential_blob: Vec<u8>,
        encrypted_secret: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, AttestError>>,
    },
    Refresh {
        reply: oneshot::Sender<Status>,
    },
}

/// The D-Bus side's handle on the worker.
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    requests: mpsc::Sender<Request>,
    status: watch::Receiver<Status>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Request::Evidence { .. } => "Evidence",
            Request::Activate { .. } => "Activate",
            Request::Refresh { .. } => "Refresh",
        })
    }
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn stopped() -> AttestError {
    AttestError::Failed("the TPM worker has stopped".into())
}

/// Starts the worker thread; it runs until every handle is dropped.
pub fn spawn<T: Tpm + Send + 'static>(attester: Attester<T>) -> std::io::Result<WorkerHandle> {
    let (requests, mut queue) = mpsc::channel::<Request>(QUEUE);
    let (publish, status) = watch::channel(attester.status().clone());
    std::thread::Builder::new()
        .name("tpm".into())
        .spawn(move || {
            let mut attester = attester;
            while let Some(request) = queue.blocking_recv() {
                tracing::debug!(?request, "TPM request");
                match request {
                    Request::Evidence {
                        nonce,
                        posture_digest,
                        reply,
                    } => {
                        let result = attester.evidence(&nonce, &posture_digest, now_unix());
                        publish.send_replace(attester.status().clone());
                        let _ = reply.send(result);
                    }
                    Request::Activate {
                        credential_blob,
                        encrypted_secret,
                        reply,
                    } => {
                        let result =
                            attester.activate_credential(&credential_blob, &encrypted_secret);
                        publish.send_replace(attester.status().clone());
                        let _ = reply.send(result);
                    }
                    Request::Refresh { reply } => {
                        let status = attester.refresh().clone();
                        publish.send_replace(status.clone());
                        let _ = reply.send(status);
                    }
                }
            }
        })?;
    Ok(WorkerHandle { requests, status })
}

impl WorkerHandle {
    /// Signed evidence for `nonce` and `posture_digest`.
    pub async fn evidence(
        &self,
        nonce: Vec<u8>,
        posture_digest: Vec<u8>,
    ) -> Result<Vec<u8>, AttestError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Evidence {
                nonce,
                posture_digest,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// The secret of a credential challenge.
    pub async fn activate_credential(
        &self,
        credential_blob: Vec<u8>,
        encrypted_secret: Vec<u8>,
    ) -> Result<Vec<u8>, AttestError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Activate {
                credential_blob,
                encrypted_secret,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Asks the TPM again (reconnecting if needed) and returns the fresh status.
    pub async fn refresh(&self) -> Result<Status, AttestError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Refresh { reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
    }

    /// The status as of the last TPM operation (never waits for the TPM).
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }
}
