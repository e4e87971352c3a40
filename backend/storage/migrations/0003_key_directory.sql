-- The relay's key directory: one entry per device, its published message keys and mailbox
-- address (a serialized KeyBundle) and the TPM quote binding them to its attestation key.
-- The entry holds a send capability, so it is sealed like other metadata. Lookups list only
-- trusted devices; an entry goes with its device's suspension, revocation or retirement.
CREATE TABLE key_directory (
    handle TEXT PRIMARY KEY REFERENCES devices (handle) ON DELETE CASCADE,
    account_id TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    sealed_entry BYTEA NOT NULL
);
CREATE INDEX key_directory_by_account ON key_directory (account_id);
