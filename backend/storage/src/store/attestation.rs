//! The attestation path: challenges, appraisal records and connection records.

use super::devices::write_verifier;
use super::*;

/// The states in which a device is issued challenges: those whose attestation access is not
/// denied (checked against the lifecycle rules by a test).
const CHALLENGE_STATES: [DeviceState; 2] = [DeviceState::Pending, DeviceState::Trusted];

impl Store {
    /// Store a challenge nonce issued to `handle`, valid until `now + ttl`, if the device
    /// is enrolled and in a state that may attest; only a keyed hash of the nonce is
    /// stored. The state check and the insert are one statement.
    pub async fn issue_challenge(
        &self,
        handle: &DeviceHandle,
        nonce: &[u8],
        now: SystemTime,
        ttl: Duration,
    ) -> Result<ChallengeIssue> {
        let expires = ms(now)?
            .checked_add(dur_ms(ttl)?)
            .ok_or(StoreError::TimeOutOfRange)?;
        let nh = nonce_hash(&self.keys.lookup, nonce)?;
        let [first, second] = CHALLENGE_STATES;
        let insert = sqlx::query(
            "INSERT INTO challenges (nonce_hash, device_handle, expires_at, used) \
             SELECT $1, handle, $3, 0 FROM devices WHERE handle = $2 AND state IN ($4, $5)",
        )
        .bind(nh)
        .bind(handle.as_str().to_owned())
        .bind(expires)
        .bind(first.as_str())
        .bind(second.as_str());
        let done = self
            .execute_write(
                Durability::Relaxed,
                insert,
                StoreError::db("issuing a challenge"),
            )
            .await?;
        if done.rows_affected() == 1 {
            return Ok(ChallengeIssue::Issued);
        }
        Ok(match self.get_device(handle).await? {
            None => ChallengeIssue::NotEnrolled,
            Some(device) => ChallengeIssue::Refused(device.state),
        })
    }

    /// Use a challenge: succeeds once, and only while `now` is not past its expiry. The
    /// check and the marking are one atomic UPDATE, so two nodes cannot both consume it.
    pub async fn consume_challenge(
        &self,
        nonce: &[u8],
        now: SystemTime,
    ) -> Result<ChallengeOutcome> {
        let nh = nonce_hash(&self.keys.lookup, nonce)?;
        let now = ms(now)?;
        self.write(Durability::Relaxed, move |conn| {
            Box::pin(async move { consume(conn, &nh, now, None).await })
        })
        .await
    }

    /// What the challenge with this nonce is, without using it up: still pending (with the
    /// device it was issued to and that device's revocation epoch, in one read), used,
    /// expired or unknown. The attestation path reads this before appraising, then
    /// consumes the challenge in [`Store::record_attestation`].
    pub async fn peek_challenge(&self, nonce: &[u8], now: SystemTime) -> Result<ChallengePeek> {
        let nh = nonce_hash(&self.keys.lookup, nonce)?;
        let row = sqlx::query(
            "SELECT c.used AS used, c.expires_at AS expires_at, d.handle AS handle, \
             d.account_id AS account_id, d.state AS state, d.sealed_verifier AS sealed_verifier, \
             d.created_at AS created_at, d.state_changed_at AS state_changed_at, \
             COALESCE(r.epoch, 0) AS epoch \
             FROM challenges c JOIN devices d ON d.handle = c.device_handle \
             LEFT JOIN revocation_epochs r ON r.scope = d.handle WHERE c.nonce_hash = $1",
        )
        .bind(&nh)
        .fetch_optional(&mut *self.reader().await?)
        .await
        .map_err(StoreError::db("reading a challenge"))?;
        let Some(row) = row else {
            return Ok(ChallengePeek::Unknown);
        };
        if col::<i64>(&row, "used")? != 0 {
            return Ok(ChallengePeek::AlreadyUsed);
        }
        if col::<i64>(&row, "expires_at")? < ms(now)? {
            return Ok(ChallengePeek::Expired);
        }
        Ok(ChallengePeek::Pending {
            device: self.device_from_row(&row)?,
            epoch: col(&row, "epoch")?,
        })
    }

    /// The write half of one attestation, in one transaction: consume the challenge (only
    /// if it is still pending and was issued to this device), store the verifier's new
    /// data if any, and record the appraisal. When the challenge was used or expired in
    /// the meantime nothing is written and the reason is returned.
    pub async fn record_attestation(&self, att: &AttestationRecord<'_>) -> Result<Recorded> {
        let nh = nonce_hash(&self.keys.lookup, att.nonce)?;
        let at = ms(att.at)?;
        let device = att.device.clone();
        // Sealed here, on the caller's thread, so the writer thread only runs statements.
        let verifier = att
            .verifier
            .map(|v| self.seal_verifier(&device, v))
            .transpose()?;
        let appraisal = self.seal_appraisal(att.tier, att.claims)?;
        let engine = self.engine;
        self.write(Durability::Relaxed, move |conn| {
            Box::pin(async move {
                let mut tx = begin(conn, engine, "recording an attestation").await?;
                match consume(&mut tx, &nh, at, Some(&device)).await? {
                    ChallengeOutcome::Consumed(_) => {}
                    refused => return Ok(Recorded::ChallengeRefused(refused)),
                }
                if let Some(sealed) = verifier {
                    write_verifier(&mut tx, &device, sealed).await?;
                }
                let id = insert_appraisal(&mut tx, &device, at, appraisal).await?;
                tx.commit()
                    .await
                    .map_err(StoreError::db("committing an attestation"))?;
                Ok(Recorded::Appraisal(id))
            })
        })
        .await
    }

    // ----- appraisals and connection records ------------------------------------------

    /// Record an appraisal of `handle` with its tier and (sealed) claims; returns its id.
    pub async fn record_appraisal(
        &self,
        handle: &DeviceHandle,
        at: SystemTime,
        tier: &str,
        claims: &serde_json::Value,
    ) -> Result<String> {
        let appraisal = self.seal_appraisal(tier, claims)?;
        let (handle, at) = (handle.clone(), ms(at)?);
        self.write(Durability::Relaxed, move |conn| {
            Box::pin(async move { insert_appraisal(conn, &handle, at, appraisal).await })
        })
        .await
    }

    /// A new appraisal row's id, tier and sealed claims.
    fn seal_appraisal(&self, tier: &str, claims: &serde_json::Value) -> Result<SealedAppraisal> {
        let id = random_id()?;
        let sealed_claims = self.seal_json(Aad::new("appraisals", "sealed_claims", &id), claims)?;
        Ok(SealedAppraisal {
            id,
            tier: tier.to_owned(),
            sealed_claims,
        })
    }

    /// The appraisals of a device, oldest first.
    pub async fn list_appraisals(&self, handle: &DeviceHandle) -> Result<Vec<Appraisal>> {
        let rows = sqlx::query(
            "SELECT id, at, tier, sealed_claims FROM appraisals WHERE device_handle = $1 \
             ORDER BY at, id",
        )
        .bind(handle.as_str())
        .fetch_all(&mut *self.reader().await?)
        .await
        .map_err(StoreError::db("listing appraisals"))?;
        rows.iter()
            .map(|r| {
                let id: String = col(r, "id")?;
                let claims = self.open_json(
                    Aad::new("appraisals", "sealed_claims", &id),
                    &col::<Vec<u8>>(r, "sealed_claims")?,
                    "appraisal claims",
                )?;
                Ok(Appraisal {
                    device: handle.clone(),
                    at: time(col(r, "at")?),
                    tier: col(r, "tier")?,
                    claims,
                    id,
                })
            })
            .collect()
    }

    /// Record a connection from `remote_addr` (sealed); returns its id.
    pub async fn record_connection(&self, at: SystemTime, remote_addr: &str) -> Result<String> {
        let id = random_id()?;
        let sealed = self.sealer().seal(
            Aad::new("connection_records", "sealed_remote_addr", &id),
            remote_addr.as_bytes(),
        )?;
        let insert = sqlx::query(
            "INSERT INTO connection_records (id, at, sealed_remote_addr) VALUES ($1, $2, $3)",
        )
        .bind(id.clone())
        .bind(ms(at)?)
        .bind(sealed);
        self.execute_write(
            Durability::Relaxed,
            insert,
            StoreError::db("recording a connection"),
        )
        .await?;
        Ok(id)
    }

    /// Every connection record, oldest first.
    pub async fn list_connection_records(&self) -> Result<Vec<ConnectionRecord>> {
        let rows = sqlx::query(
            "SELECT id, at, sealed_remote_addr FROM connection_records ORDER BY at, id",
        )
        .fetch_all(&mut *self.reader().await?)
        .await
        .map_err(StoreError::db("listing connection records"))?;
        rows.iter()
            .map(|r| {
                let id: String = col(r, "id")?;
                let remote_addr = self.open_text(
                    Aad::new("connection_records", "sealed_remote_addr", &id),
                    &col::<Vec<u8>>(r, "sealed_remote_addr")?,
                    "remote address",
                )?;
                Ok(ConnectionRecord {
                    at: time(col(r, "at")?),
                    remote_addr,
                    id,
                })
            })
            .collect()
    }
}

/// An appraisal row, sealed, ready to insert.
struct SealedAppraisal {
    id: String,
    tier: String,
    sealed_claims: Vec<u8>,
}

/// Insert an appraisal of `handle` at `at` (ms) on `conn`; returns its id.
async fn insert_appraisal(
    conn: &mut AnyConnection,
    handle: &DeviceHandle,
    at: i64,
    appraisal: SealedAppraisal,
) -> Result<String> {
    sqlx::query(
        "INSERT INTO appraisals (id, device_handle, at, tier, sealed_claims) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&appraisal.id)
    .bind(handle.as_str())
    .bind(at)
    .bind(&appraisal.tier)
    .bind(appraisal.sealed_claims)
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        if is_fk_violation(&e) {
            not_found_device(handle)
        } else {
            StoreError::Db {
                op: "recording an appraisal",
                source: e,
            }
        }
    })?;
    Ok(appraisal.id)
}

/// Consume the challenge with nonce hash `nh` on `conn` if it is pending at `now` (and, when
/// `device` is given, was issued to that device); otherwise say why not.
async fn consume(
    conn: &mut AnyConnection,
    nh: &str,
    now: i64,
    device: Option<&DeviceHandle>,
) -> Result<ChallengeOutcome> {
    let mut update = sqlx::query(match device {
        None => {
            "UPDATE challenges SET used = 1 \
             WHERE nonce_hash = $1 AND used = 0 AND expires_at >= $2 RETURNING device_handle"
        }
        Some(_) => {
            "UPDATE challenges SET used = 1 WHERE nonce_hash = $1 AND used = 0 \
             AND expires_at >= $2 AND device_handle = $3 RETURNING device_handle"
        }
    })
    .bind(nh)
    .bind(now);
    if let Some(device) = device {
        update = update.bind(device.as_str());
    }
    let row = update
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::db("consuming a challenge"))?;
    if let Some(row) = row {
        let handle = DeviceHandle::parse(&col::<String>(&row, "device_handle")?)?;
        return Ok(ChallengeOutcome::Consumed(handle));
    }
    let row = sqlx::query("SELECT used, expires_at FROM challenges WHERE nonce_hash = $1")
        .bind(nh)
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::db("reading a challenge"))?;
    Ok(match row {
        None => ChallengeOutcome::Unknown,
        Some(r) if col::<i64>(&r, "used")? != 0 => ChallengeOutcome::AlreadyUsed,
        Some(r) if col::<i64>(&r, "expires_at")? < now => ChallengeOutcome::Expired,
        // Pending, but issued to another device than the one recording it.
        Some(_) => ChallengeOutcome::Unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use enigm_backend_lifecycle::AttestationAccess;

    #[test]
    fn challenge_states_follow_the_lifecycle_rules() {
        for state in DeviceState::ALL {
            let may_attest = state.attestation_access() != AttestationAccess::Denied;
            assert_eq!(CHALLENGE_STATES.contains(&state), may_attest, "{state}");
        }
    }
}
