//! The relay's key directory: each device's published message keys and mailbox address (an
//! opaque serialized bundle the server checked) with the TPM quote that binds them.
//!
//! An entry is sealed at rest (it holds a send capability). A newer entry replaces an older
//! one and an older one is refused, so a replayed publication cannot roll keys back. Lookups
//! list only the trusted devices of an account; a device suspended, revoked or retired loses
//! its entry in the same transaction as the change.

use serde::{Deserialize, Serialize};

use super::*;

/// A device's directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// The device.
    pub handle: String,
    /// Its account.
    pub account: String,
    /// When the device made it.
    pub issued_at: SystemTime,
    /// The serialized bundle, as published.
    pub bundle: Vec<u8>,
    /// The binding quote's TPMS_ATTEST.
    pub quote_attest: Vec<u8>,
    /// The binding quote's TPMT_SIGNATURE.
    pub quote_signature: Vec<u8>,
}

/// The sealed part of an entry (hex).
#[derive(Serialize, Deserialize)]
struct Sealed {
    bundle: String,
    quote_attest: String,
    quote_signature: String,
}

impl Sealed {
    fn of(entry: &DirectoryEntry) -> Self {
        Self {
            bundle: hex::encode(&entry.bundle),
            quote_attest: hex::encode(&entry.quote_attest),
            quote_signature: hex::encode(&entry.quote_signature),
        }
    }
}

fn unhex(what: &'static str, text: &str) -> Result<Vec<u8>> {
    hex::decode(text).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

/// Why a publication was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryRefusal {
    /// The device's published entry is as new or newer.
    #[error("a bundle issued at the same time or later is already published")]
    Stale,
    /// The device is not trusted (any more).
    #[error("only a trusted device publishes keys")]
    NotTrusted,
}

const AAD_TABLE: &str = "key_directory";
const AAD_COLUMN: &str = "sealed_entry";

impl Store {
    /// Publishes `entry` for its device, if the device is trusted and the entry is newer than
    /// the published one.
    pub async fn publish_keys(
        &self,
        entry: &DirectoryEntry,
    ) -> Result<std::result::Result<(), DirectoryRefusal>> {
        let sealed = self.seal_json(
            Aad::new(AAD_TABLE, AAD_COLUMN, &entry.handle),
            &Sealed::of(entry),
        )?;
        let (handle, account, issued) = (
            entry.handle.clone(),
            entry.account.clone(),
            ms(entry.issued_at)?,
        );
        let engine = self.engine;
        self.write(Durability::Synced, move |conn| {
            Box::pin(async move {
                let mut tx = begin(conn, engine, "publishing keys").await?;
                let trusted = sqlx::query(
                    "SELECT handle FROM devices WHERE handle = $1 AND account_id = $2 \
                     AND state = 'trusted'",
                )
                .bind(handle.clone())
                .bind(account.clone())
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::db("checking the publishing device"))?;
                if trusted.is_none() {
                    return Ok(Err(DirectoryRefusal::NotTrusted));
                }
                let done = sqlx::query(
                    "INSERT INTO key_directory (handle, account_id, issued_at, sealed_entry) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (handle) DO UPDATE \
                     SET issued_at = excluded.issued_at, sealed_entry = excluded.sealed_entry \
                     WHERE key_directory.issued_at < excluded.issued_at",
                )
                .bind(handle)
                .bind(account)
                .bind(issued)
                .bind(sealed)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("publishing keys"))?;
                if done.rows_affected() == 0 {
                    return Ok(Err(DirectoryRefusal::Stale));
                }
                tx.commit()
                    .await
                    .map_err(StoreError::db("committing published keys"))?;
                Ok(Ok(()))
            })
        })
        .await
    }

    /// The entries of `account`'s trusted devices, by handle.
    pub async fn lookup_keys(&self, account: &AccountId) -> Result<Vec<DirectoryEntry>> {
        let rows = sqlx::query(
            "SELECT k.handle AS handle, k.issued_at AS issued_at, k.sealed_entry AS sealed \
             FROM key_directory k JOIN devices d ON d.handle = k.handle \
             WHERE k.account_id = $1 AND d.account_id = $1 AND d.state = 'trusted' \
             ORDER BY k.handle",
        )
        .bind(account.0.clone())
        .fetch_all(&mut *self.reader().await?)
        .await
        .map_err(StoreError::db("looking up keys"))?;
        rows.iter()
            .map(|row| {
                let handle: String = col(row, "handle")?;
                let sealed: Vec<u8> = col(row, "sealed")?;
                let opened: Sealed = self.open_json(
                    Aad::new(AAD_TABLE, AAD_COLUMN, &handle),
                    &sealed,
                    "key directory entry",
                )?;
                Ok(DirectoryEntry {
                    account: account.0.clone(),
                    issued_at: time(col(row, "issued_at")?),
                    bundle: unhex("key directory bundle", &opened.bundle)?,
                    quote_attest: unhex("key directory quote", &opened.quote_attest)?,
                    quote_signature: unhex("key directory signature", &opened.quote_signature)?,
                    handle,
                })
            })
            .collect()
    }
}

/// Deletes `handle`'s directory entry inside the caller's transaction.
pub(super) async fn withdraw_in(tx: &mut AnyConnection, handle: &str) -> Result<()> {
    sqlx::query("DELETE FROM key_directory WHERE handle = $1")
        .bind(handle)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("withdrawing published keys"))?;
    Ok(())
}
