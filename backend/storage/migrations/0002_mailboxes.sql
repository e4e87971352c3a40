-- Relay mailboxes: random queue ids, each owned by the receiving device (its keyed-hash handle,
-- so a revoked device's queues can be deleted), reached with separate send and receive
-- capabilities of which only SHA-256 digests are kept. Envelopes are opaque ciphertext.
CREATE TABLE mailboxes (
    queue_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL REFERENCES devices (handle) ON DELETE CASCADE,
    send_digest TEXT NOT NULL,
    receive_digest TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX mailboxes_owner ON mailboxes (owner);

CREATE TABLE mailbox_messages (
    queue_id TEXT NOT NULL REFERENCES mailboxes (queue_id) ON DELETE CASCADE,
    message_id TEXT NOT NULL,
    envelope BYTEA NOT NULL,
    stored_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (queue_id, message_id)
);
CREATE INDEX mailbox_messages_expiry ON mailbox_messages (expires_at);
