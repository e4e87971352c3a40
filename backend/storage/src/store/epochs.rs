//! Revocation epochs: per device and global, bumped with every change of trust.

use super::*;

/// Scope of the global revocation epoch in `revocation_epochs`.
const GLOBAL_SCOPE: &str = "*";

impl Store {
    // ----- revocation epochs ----------------------------------------------------------

    /// Bump the device's revocation epoch (and the global one): results issued before carry
    /// an older epoch and stop being accepted.
    pub async fn bump_revocation_epoch(&self, handle: &DeviceHandle) -> Result<Epochs> {
        let (handle, engine) = (handle.clone(), self.engine);
        self.write(Durability::Synced, move |conn| {
            Box::pin(async move {
                let mut tx = begin(conn, engine, "bumping a revocation epoch").await?;
                let epochs = bump_epoch(&mut tx, &handle).await?;
                tx.commit()
                    .await
                    .map_err(StoreError::db("committing a revocation epoch"))?;
                Ok(epochs)
            })
        })
        .await
    }

    /// The device's revocation epoch (0 when never bumped).
    pub async fn revocation_epoch(&self, handle: &DeviceHandle) -> Result<i64> {
        self.epoch_of(handle.as_str()).await
    }

    /// The global revocation epoch (0 when nothing was ever revoked).
    pub async fn global_revocation_epoch(&self) -> Result<i64> {
        self.epoch_of(GLOBAL_SCOPE).await
    }

    async fn epoch_of(&self, scope: &str) -> Result<i64> {
        let row = sqlx::query("SELECT epoch FROM revocation_epochs WHERE scope = $1")
            .bind(scope)
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(StoreError::db("reading a revocation epoch"))?;
        row.map(|r| col(&r, "epoch"))
            .transpose()
            .map(|e| e.unwrap_or(0))
    }

    /// Devices whose epoch was bumped after the global epoch was `global`, with their
    /// current epochs: what a relying party that last synced at `global` must refresh.
    pub async fn revocations_since(&self, global: i64) -> Result<Vec<(DeviceHandle, i64)>> {
        let rows = sqlx::query(
            "SELECT scope, epoch FROM revocation_epochs WHERE scope <> $1 AND global_epoch > $2 \
             ORDER BY global_epoch",
        )
        .bind(GLOBAL_SCOPE)
        .bind(global)
        .fetch_all(&mut *self.reader().await?)
        .await
        .map_err(StoreError::db("listing revocations"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    DeviceHandle::parse(&col::<String>(r, "scope")?)?,
                    col(r, "epoch")?,
                ))
            })
            .collect()
    }

    /// Every enrolled device with its current revocation epoch (0 when never bumped): the
    /// full snapshot a relying party's revocation list is built from.
    pub async fn device_epochs(&self) -> Result<Vec<(DeviceHandle, i64)>> {
        let rows = sqlx::query(
            "SELECT d.handle AS handle, COALESCE(r.epoch, 0) AS epoch FROM devices d \
             LEFT JOIN revocation_epochs r ON r.scope = d.handle ORDER BY d.handle",
        )
        .fetch_all(&mut *self.reader().await?)
        .await
        .map_err(StoreError::db("listing device epochs"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    DeviceHandle::parse(&col::<String>(r, "handle")?)?,
                    col(r, "epoch")?,
                ))
            })
            .collect()
    }
}

/// Bump the device's epoch and the global epoch inside `tx`.
pub(super) async fn bump_epoch(tx: &mut AnyConnection, handle: &DeviceHandle) -> Result<Epochs> {
    let row = sqlx::query(
        "INSERT INTO revocation_epochs (scope, epoch, global_epoch) VALUES ($1, 1, 0) \
         ON CONFLICT (scope) DO UPDATE SET epoch = revocation_epochs.epoch + 1 RETURNING epoch",
    )
    .bind(GLOBAL_SCOPE)
    .fetch_one(&mut *tx)
    .await
    .map_err(StoreError::db("bumping the global revocation epoch"))?;
    let global: i64 = col(&row, "epoch")?;
    let row = sqlx::query(
        "INSERT INTO revocation_epochs (scope, epoch, global_epoch) VALUES ($1, 1, $2) \
         ON CONFLICT (scope) DO UPDATE SET epoch = revocation_epochs.epoch + 1, \
         global_epoch = $2 RETURNING epoch",
    )
    .bind(handle.as_str())
    .bind(global)
    .fetch_one(&mut *tx)
    .await
    .map_err(StoreError::db("bumping a device revocation epoch"))?;
    let device: i64 = col(&row, "epoch")?;
    tracing::info!(device = %handle, epoch = device, global, "revocation epoch bumped");
    Ok(Epochs { device, global })
}
