//! Retention and key rotation: the purge of records past their period, and resealing.

use super::devices::transition_row_key;
use super::*;

/// One sealed column, with the queries a reseal walks it with. `select` returns the row key
/// as `k` (and for transitions the sequence number as `s`) and the blob as `v`; `update`
/// takes the new blob, the key, the old blob (and the sequence number).
struct SealedColumn {
    table: &'static str,
    column: &'static str,
    select: &'static str,
    update: &'static str,
    has_seq: bool,
}

const SEALED_COLUMNS: &[SealedColumn] = &[
    SealedColumn {
        table: "key_directory",
        column: "sealed_entry",
        select: "SELECT handle AS k, sealed_entry AS v FROM key_directory",
        update: "UPDATE key_directory SET sealed_entry = $1 WHERE handle = $2 AND sealed_entry = $3",
        has_seq: false,
    },
    SealedColumn {
        table: "accounts",
        column: "sealed_metadata",
        select: "SELECT id AS k, sealed_metadata AS v FROM accounts",
        update: "UPDATE accounts SET sealed_metadata = $1 WHERE id = $2 AND sealed_metadata = $3",
        has_seq: false,
    },
    SealedColumn {
        table: "devices",
        column: "sealed_verifier",
        select: "SELECT handle AS k, sealed_verifier AS v FROM devices",
        update: "UPDATE devices SET sealed_verifier = $1 WHERE handle = $2 AND sealed_verifier = $3",
        has_seq: false,
    },
    SealedColumn {
        table: "transitions",
        column: "sealed_actor",
        select: "SELECT device_handle AS k, seq AS s, sealed_actor AS v FROM transitions",
        update: "UPDATE transitions SET sealed_actor = $1 \
                 WHERE device_handle = $2 AND sealed_actor = $3 AND seq = $4",
        has_seq: true,
    },
    SealedColumn {
        table: "transitions",
        column: "sealed_reason",
        select: "SELECT device_handle AS k, seq AS s, sealed_reason AS v FROM transitions",
        update: "UPDATE transitions SET sealed_reason = $1 \
                 WHERE device_handle = $2 AND sealed_reason = $3 AND seq = $4",
        has_seq: true,
    },
    SealedColumn {
        table: "appraisals",
        column: "sealed_claims",
        select: "SELECT id AS k, sealed_claims AS v FROM appraisals",
        update: "UPDATE appraisals SET sealed_claims = $1 WHERE id = $2 AND sealed_claims = $3",
        has_seq: false,
    },
    SealedColumn {
        table: "connection_records",
        column: "sealed_remote_addr",
        select: "SELECT id AS k, sealed_remote_addr AS v FROM connection_records",
        update: "UPDATE connection_records SET sealed_remote_addr = $1 \
                 WHERE id = $2 AND sealed_remote_addr = $3",
        has_seq: false,
    },
];

/// The purge's statements, per record class in [`PurgeCounts`] order; each deletes rows
/// older than its cutoff (challenges by expiry, the others by when they happened).
const PURGES: [&str; 4] = [
    "DELETE FROM challenges WHERE expires_at < $1",
    "DELETE FROM appraisals WHERE at < $1",
    "DELETE FROM transitions WHERE at < $1",
    "DELETE FROM connection_records WHERE at < $1",
];

impl Store {
    // ----- retention and key rotation -------------------------------------------------

    /// Delete every record past its retention period at `now`, per class, in one
    /// transaction. Challenges count from their expiry, the others from when they happened;
    /// a challenge that has not expired is never purged.
    pub async fn purge(&self, now: SystemTime, retention: &Retention) -> Result<PurgeCounts> {
        let now = ms(now)?;
        let cutoff = |d: Duration| -> Result<i64> { Ok(now.saturating_sub(dur_ms(d)?)) };
        let cutoffs = [
            cutoff(retention.challenges)?,
            cutoff(retention.appraisals)?,
            cutoff(retention.transitions)?,
            cutoff(retention.connection_records)?,
        ];
        let engine = self.engine;
        let deleted = self
            .write(Durability::Synced, move |conn| {
                Box::pin(async move {
                    let mut tx = begin(conn, engine, "purging").await?;
                    let mut deleted = [0u64; 4];
                    for ((sql, cut), out) in PURGES.iter().zip(cutoffs).zip(&mut deleted) {
                        *out = sqlx::query(*sql)
                            .bind(cut)
                            .execute(&mut *tx)
                            .await
                            .map_err(StoreError::db("purging expired records"))?
                            .rows_affected();
                    }
                    tx.commit()
                        .await
                        .map_err(StoreError::db("committing a purge"))?;
                    Ok(deleted)
                })
            })
            .await?;
        let counts = PurgeCounts {
            challenges: deleted[0],
            appraisals: deleted[1],
            transitions: deleted[2],
            connection_records: deleted[3],
        };
        tracing::info!(
            challenges = counts.challenges,
            appraisals = counts.appraisals,
            transitions = counts.transitions,
            connection_records = counts.connection_records,
            "purged records past retention"
        );
        Ok(counts)
    }

    /// Re-encrypt every sealed value not under the current key. Afterwards, keys other than
    /// the current one can be removed from the key file. Each update is a compare-and-set on
    /// the old blob, so a value rewritten concurrently is left as its writer sealed it.
    pub async fn reseal(&self) -> Result<ResealCounts> {
        let mut counts = ResealCounts::default();
        for sc in SEALED_COLUMNS {
            let rows = sqlx::query(sc.select)
                .fetch_all(&mut *self.reader().await?)
                .await
                .map_err(StoreError::db("reading sealed values to reseal"))?;
            let mut updates = Vec::new();
            for r in &rows {
                let key: String = col(r, "k")?;
                let seq: Option<i64> = if sc.has_seq { Some(col(r, "s")?) } else { None };
                let row_key = match seq {
                    Some(seq) => transition_row_key(&key, seq),
                    None => key.clone(),
                };
                let blob: Vec<u8> = col(r, "v")?;
                let aad = Aad::new(sc.table, sc.column, &row_key);
                if self.sealer().is_current(aad, &blob)? {
                    continue;
                }
                let plain = self.sealer().open(aad, &blob)?;
                let fresh = self.sealer().seal(aad, &plain)?;
                let mut q = sqlx::query(sc.update).bind(fresh).bind(key).bind(blob);
                if let Some(seq) = seq {
                    q = q.bind(seq);
                }
                updates.push(q);
            }
            let engine = self.engine;
            let n = self
                .write(Durability::Synced, move |conn| {
                    Box::pin(async move {
                        let mut tx = begin(conn, engine, "resealing").await?;
                        let mut n = 0u64;
                        for q in updates {
                            n += q
                                .execute(&mut *tx)
                                .await
                                .map_err(StoreError::db("writing a resealed value"))?
                                .rows_affected();
                        }
                        tx.commit()
                            .await
                            .map_err(StoreError::db("committing resealed values"))?;
                        Ok(n)
                    })
                })
                .await?;
            *match sc.table {
                "accounts" => &mut counts.accounts,
                "devices" => &mut counts.devices,
                "transitions" => &mut counts.transitions,
                "appraisals" => &mut counts.appraisals,
                "key_directory" => &mut counts.key_directory,
                _ => &mut counts.connection_records,
            } += n;
        }
        tracing::info!(
            total = counts.total(),
            key = self.sealer().current_key_id(),
            "resealed"
        );
        Ok(counts)
    }
}
