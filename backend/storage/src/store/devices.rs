//! Devices and their lifecycle: enrollment, state changes (compare-and-set, recorded with
//! who and why), replacement.

use super::epochs::bump_epoch;
use super::*;

pub(super) const DEVICE_COLUMNS: &str =
    "SELECT handle, account_id, state, sealed_verifier, created_at, state_changed_at FROM devices";

pub(super) fn transition_row_key(handle: &str, seq: i64) -> String {
    format!("{handle}/{seq}")
}

impl Store {
    /// Record a transition inside the caller's transaction (the caller holds the device row:
    /// it inserted or updated it in the same transaction, so the sequence number cannot
    /// race). Every change of an enrolled device's state changes its trust, so it also bumps
    /// the device's revocation epoch: results issued before stop being accepted.
    #[allow(clippy::too_many_arguments)]
    async fn record_transition(
        &self,
        tx: &mut AnyConnection,
        handle: &DeviceHandle,
        from: Option<DeviceState>,
        to: DeviceState,
        actor: &Actor,
        reason: &str,
        at: i64,
    ) -> Result<()> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM transitions WHERE device_handle = $1",
        )
        .bind(handle.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::db("numbering a transition"))?;
        let seq: i64 = col(&row, "next")?;
        let key = transition_row_key(handle.as_str(), seq);
        let sealed_actor = self.sealer().seal(
            Aad::new("transitions", "sealed_actor", &key),
            actor.encode().as_bytes(),
        )?;
        let sealed_reason = self.sealer().seal(
            Aad::new("transitions", "sealed_reason", &key),
            reason.as_bytes(),
        )?;
        sqlx::query(
            "INSERT INTO transitions (device_handle, seq, from_state, to_state, sealed_actor, \
             sealed_reason, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(handle.as_str())
        .bind(seq)
        .bind(from.map(DeviceState::as_str))
        .bind(to.as_str())
        .bind(sealed_actor)
        .bind(sealed_reason)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("recording a transition"))?;
        if from.is_some() {
            bump_epoch(tx, handle).await?;
        }
        // A device that is no longer trusted loses its relay mailboxes, what they hold and its
        // key directory entry, in the same transaction as the change.
        if matches!(
            to,
            DeviceState::Suspended | DeviceState::Revoked | DeviceState::Retired
        ) {
            super::mailboxes::delete_mailboxes_in(tx, handle.as_str()).await?;
            super::directory::withdraw_in(tx, handle.as_str()).await?;
        }
        Ok(())
    }

    /// Enroll a device in the state the caller decided, recording the enrollment as its
    /// first transition (from no state), in one transaction.
    pub async fn enroll_device(&self, new: &NewDevice<'_>) -> Result<()> {
        let at = ms(new.at)?;
        let sealed = self.seal_verifier(new.handle, new.verifier)?;
        let store = self.clone();
        let (handle, account, actor, reason, state) = (
            new.handle.clone(),
            new.account.clone(),
            new.actor.clone(),
            new.reason.to_owned(),
            new.state,
        );
        self.write(Durability::Synced, move |conn| {
            Box::pin(async move {
                let (handle, account, actor, reason, state) =
                    (&handle, &account, &actor, reason.as_str(), state);
                let mut tx = begin(conn, store.engine, "enrolling a device").await?;
                sqlx::query(
                    "INSERT INTO devices (handle, account_id, state, sealed_verifier, \
                     created_at, state_changed_at) VALUES ($1, $2, $3, $4, $5, $5)",
                )
                .bind(handle.as_str())
                .bind(&account.0)
                .bind(state.as_str())
                .bind(sealed)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::DeviceExists {
                            handle: handle.clone(),
                        }
                    } else if is_fk_violation(&e) {
                        StoreError::NotFound {
                            what: "account",
                            key: account.0.clone(),
                        }
                    } else {
                        StoreError::Db {
                            op: "enrolling a device",
                            source: e,
                        }
                    }
                })?;
                store
                    .record_transition(&mut tx, handle, None, state, actor, reason, at)
                    .await?;
                tx.commit()
                    .await
                    .map_err(StoreError::db("committing an enrollment"))?;
                Ok(())
            })
        })
        .await
    }

    pub(super) fn device_from_row(&self, row: &AnyRow) -> Result<Device> {
        let handle = DeviceHandle::parse(&col::<String>(row, "handle")?)?;
        let sealed: Vec<u8> = col(row, "sealed_verifier")?;
        let verifier: VerifierData = self.open_json(
            Aad::new("devices", "sealed_verifier", handle.as_str()),
            &sealed,
            "verifier data",
        )?;
        Ok(Device {
            account: AccountId(col(row, "account_id")?),
            state: state(&col::<String>(row, "state")?)?,
            verifier,
            created_at: time(col(row, "created_at")?),
            state_changed_at: time(col(row, "state_changed_at")?),
            handle,
        })
    }

    /// The device with this handle, if enrolled.
    pub async fn get_device(&self, handle: &DeviceHandle) -> Result<Option<Device>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DEVICE_COLUMNS} WHERE handle = $1"
        )))
        .bind(handle.as_str())
        .fetch_optional(&mut *self.reader().await?)
        .await
        .map_err(StoreError::db("reading a device"))?;
        row.map(|r| self.device_from_row(&r)).transpose()
    }

    /// The devices of an account, oldest first.
    pub async fn list_devices(&self, account: &AccountId) -> Result<Vec<Device>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DEVICE_COLUMNS} WHERE account_id = $1 ORDER BY created_at, handle"
        )))
        .bind(&account.0)
        .fetch_all(&mut *self.reader().await?)
        .await
        .map_err(StoreError::db("listing devices"))?;
        rows.iter().map(|r| self.device_from_row(r)).collect()
    }

    /// Replace the device's verifier data (after activation, or a new clock reading).
    pub async fn update_verifier_data(
        &self,
        handle: &DeviceHandle,
        verifier: &VerifierData,
    ) -> Result<()> {
        let sealed = self.seal_verifier(handle, verifier)?;
        let handle = handle.clone();
        self.write(Durability::Synced, move |conn| {
            Box::pin(async move { write_verifier(conn, &handle, sealed).await })
        })
        .await
    }

    /// The device's verifier data, sealed for its row.
    pub(super) fn seal_verifier(
        &self,
        handle: &DeviceHandle,
        verifier: &VerifierData,
    ) -> Result<Vec<u8>> {
        self.seal_json(
            Aad::new("devices", "sealed_verifier", handle.as_str()),
            verifier,
        )
    }

    /// The state and account of a device, read inside a transaction.
    async fn current_state(
        tx: &mut AnyConnection,
        handle: &DeviceHandle,
    ) -> Result<Option<(DeviceState, String)>> {
        let row = sqlx::query("SELECT state, account_id FROM devices WHERE handle = $1")
            .bind(handle.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::db("reading a device state"))?;
        row.map(|r| Ok((state(&col::<String>(&r, "state")?)?, col(&r, "account_id")?)))
            .transpose()
    }

    /// Move a device from `from` to `to` if it is in `from` (compare-and-set), recording the
    /// transition and bumping the device's revocation epoch in the same transaction.
    pub async fn transition(
        &self,
        handle: &DeviceHandle,
        from: DeviceState,
        to: DeviceState,
        actor: &Actor,
        reason: &str,
        at: SystemTime,
    ) -> Result<()> {
        let at = ms(at)?;
        let store = self.clone();
        let (handle, actor, reason) = (handle.clone(), actor.clone(), reason.to_owned());
        self.write(Durability::Synced, move |conn| {
            Box::pin(async move {
                let (handle, actor, reason) = (&handle, &actor, reason.as_str());
                let mut tx = begin(conn, store.engine, "changing a device state").await?;
                let changed = set_state_if(&mut tx, handle, from, to, at).await?;
                if !changed {
                    let actual = Self::current_state(&mut tx, handle).await?.map(|(s, _)| s);
                    // Dropping the transaction rolls it back; nothing changed.
                    return Err(match actual {
                        None => not_found_device(handle),
                        Some(actual) => StoreError::StateConflict {
                            handle: handle.clone(),
                            expected: from,
                            actual,
                        },
                    });
                }
                store
                    .record_transition(&mut tx, handle, Some(from), to, actor, reason, at)
                    .await?;
                tx.commit()
                    .await
                    .map_err(StoreError::db("committing a transition"))?;
                tracing::info!(device = %handle, %from, %to, "device state changed");
                Ok(())
            })
        })
        .await
    }

    /// Replace `old` by `new` in one transaction: `old` (trusted or suspended) is revoked and
    /// `new` (same account, pending or already trusted) takes over as trusted; every state
    /// change is recorded and bumps its device's revocation epoch. Either all of it happens
    /// or none of it.
    pub async fn replace(
        &self,
        old: &DeviceHandle,
        new: &DeviceHandle,
        actor: &Actor,
        reason: &str,
        at: SystemTime,
    ) -> Result<()> {
        let at = ms(at)?;
        if old == new {
            return Err(StoreError::ReplaceRefused {
                old: old.clone(),
                new: new.clone(),
                reason: "a device cannot replace itself".into(),
            });
        }
        let store = self.clone();
        let (old, new, actor, reason) =
            (old.clone(), new.clone(), actor.clone(), reason.to_owned());
        self.write(Durability::Synced, move |conn| {
            Box::pin(async move {
                let (old, new, actor, reason) = (&old, &new, &actor, reason.as_str());
                let refused = |reason: String| StoreError::ReplaceRefused {
                    old: old.clone(),
                    new: new.clone(),
                    reason,
                };
                let mut tx = begin(conn, store.engine, "replacing a device").await?;
                let (old_from, old_account) = match Self::current_state(&mut tx, old).await? {
                    None => return Err(refused(format!("{old} is not enrolled"))),
                    Some((s @ (DeviceState::Trusted | DeviceState::Suspended), account)) => {
                        (s, account)
                    }
                    Some((s, _)) => {
                        return Err(refused(format!("{old} is {s}, not trusted or suspended")));
                    }
                };
                let new_from = match Self::current_state(&mut tx, new).await? {
                    None => return Err(refused(format!("{new} is not enrolled"))),
                    Some((_, account)) if account != old_account => {
                        return Err(refused(format!(
                            "{new} belongs to another account than {old}"
                        )));
                    }
                    Some((s @ (DeviceState::Pending | DeviceState::Trusted), _)) => s,
                    Some((s, _)) => {
                        return Err(refused(format!("{new} is {s}, not pending or trusted")));
                    }
                };
                // Compare-and-set on the states just read; the transaction's write lock
                // (SQLite) or row locks (PostgreSQL) order concurrent changes.
                for (handle, from, to) in [
                    (old, old_from, DeviceState::Revoked),
                    (new, new_from, DeviceState::Trusted),
                ] {
                    if from == to {
                        continue;
                    }
                    if !set_state_if(&mut tx, handle, from, to, at).await? {
                        return Err(refused(format!("{handle} changed state concurrently")));
                    }
                    store
                        .record_transition(&mut tx, handle, Some(from), to, actor, reason, at)
                        .await?;
                }
                tx.commit()
                    .await
                    .map_err(StoreError::db("committing a replacement"))?;
                tracing::info!(old = %old, new = %new, "device replaced");
                Ok(())
            })
        })
        .await
    }

    /// The recorded transitions of a device, oldest first.
    pub async fn list_transitions(&self, handle: &DeviceHandle) -> Result<Vec<Transition>> {
        let rows = sqlx::query(
            "SELECT seq, from_state, to_state, sealed_actor, sealed_reason, at \
             FROM transitions WHERE device_handle = $1 ORDER BY seq",
        )
        .bind(handle.as_str())
        .fetch_all(&mut *self.reader().await?)
        .await
        .map_err(StoreError::db("listing transitions"))?;
        rows.iter()
            .map(|r| {
                let seq: i64 = col(r, "seq")?;
                let key = transition_row_key(handle.as_str(), seq);
                let actor_text = self.open_text(
                    Aad::new("transitions", "sealed_actor", &key),
                    &col::<Vec<u8>>(r, "sealed_actor")?,
                    "transition actor",
                )?;
                let actor = Actor::decode(&actor_text).ok_or_else(|| StoreError::Corrupt {
                    what: "transition actor",
                    detail: "not a handle, admin:<name> or system".into(),
                })?;
                let from: Option<String> = col(r, "from_state")?;
                Ok(Transition {
                    device: handle.clone(),
                    seq,
                    from: from.as_deref().map(state).transpose()?,
                    to: state(&col::<String>(r, "to_state")?)?,
                    actor,
                    reason: self.open_text(
                        Aad::new("transitions", "sealed_reason", &key),
                        &col::<Vec<u8>>(r, "sealed_reason")?,
                        "transition reason",
                    )?,
                    at: time(col(r, "at")?),
                })
            })
            .collect()
    }
}

/// Store the device's sealed verifier data on `conn`.
pub(super) async fn write_verifier(
    conn: &mut AnyConnection,
    handle: &DeviceHandle,
    sealed: Vec<u8>,
) -> Result<()> {
    let done = sqlx::query("UPDATE devices SET sealed_verifier = $1 WHERE handle = $2")
        .bind(sealed)
        .bind(handle.as_str())
        .execute(&mut *conn)
        .await
        .map_err(StoreError::db("updating verifier data"))?;
    if done.rows_affected() == 0 {
        return Err(not_found_device(handle));
    }
    Ok(())
}

/// Compare-and-set a device's state on `conn`: `from` becomes `to` (changed at `at`, ms);
/// false when the device is not in `from` (or not enrolled).
async fn set_state_if(
    conn: &mut AnyConnection,
    handle: &DeviceHandle,
    from: DeviceState,
    to: DeviceState,
    at: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE devices SET state = $1, state_changed_at = $2 WHERE handle = $3 AND state = $4",
    )
    .bind(to.as_str())
    .bind(at)
    .bind(handle.as_str())
    .bind(from.as_str())
    .execute(&mut *conn)
    .await
    .map_err(StoreError::db("changing a device state"))?;
    Ok(done.rows_affected() == 1)
}
