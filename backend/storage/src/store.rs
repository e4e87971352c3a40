//! The store: one sqlx `Any` pool over SQLite or PostgreSQL, and the repository methods.
//!
//! Every query is written once, in SQL both engines accept (`$n` parameters, `RETURNING`,
//! `ON CONFLICT`), and the schema comes from one set of migrations (`migrations/`), run at
//! open. Multi-row changes that must be atomic (enrollment and its transition, a transition
//! and its record, a replacement) run in one transaction, and every state change is a
//! compare-and-set (`UPDATE ... WHERE state = expected`), so concurrent nodes sharing a
//! PostgreSQL database cannot both win.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyPool, Row, SqlSafeStr, Transaction};

use crate::error::{Engine, StoreError};
use crate::lookup::{DeviceHandle, ServerSecret, nonce_hash, username_hash};
use crate::model::{
    Account, AccountId, Actor, Appraisal, ChallengeOutcome, ConnectionRecord, Device, DeviceState,
    Epochs, NewAccount, NewDevice, PurgeCounts, ResealCounts, Retention, Transition, VerifierData,
};
use crate::seal::{Aad, Sealer, ServerKeys};

/// The migrations, embedded: (version, description, SQL).
const MIGRATIONS: &[(i64, &str, &str)] =
    &[(1, "initial", include_str!("../migrations/0001_initial.sql"))];

/// Scope of the global revocation epoch in `revocation_epochs`.
const GLOBAL_SCOPE: &str = "*";

type Result<T> = std::result::Result<T, StoreError>;

/// The backend's storage: accounts, devices, transitions, challenges, appraisals, connection
/// records and revocation epochs, with metadata sealed at rest.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
    keys: ServerKeys,
}

fn engine_of(url: &str) -> Result<Engine> {
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        "sqlite" => Ok(Engine::Sqlite),
        "postgres" | "postgresql" => Ok(Engine::Postgres),
        other => Err(StoreError::UnsupportedUrl {
            scheme: other.to_owned(),
        }),
    }
}

fn ms(t: SystemTime) -> Result<i64> {
    let d = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| StoreError::TimeOutOfRange)?;
    i64::try_from(d.as_millis()).map_err(|_| StoreError::TimeOutOfRange)
}

fn dur_ms(d: Duration) -> Result<i64> {
    i64::try_from(d.as_millis()).map_err(|_| StoreError::TimeOutOfRange)
}

fn time(v: i64) -> SystemTime {
    match u64::try_from(v) {
        Ok(v) => UNIX_EPOCH + Duration::from_millis(v),
        Err(_) => UNIX_EPOCH,
    }
}

fn random_id() -> Result<String> {
    let mut b = [0u8; 16];
    openssl::rand::rand_bytes(&mut b).map_err(|source| StoreError::Corrupt {
        what: "random id",
        detail: source.to_string(),
    })?;
    Ok(hex::encode(b))
}

fn col<T>(row: &AnyRow, name: &'static str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(name).map_err(StoreError::db(name))
}

fn state(text: &str) -> Result<DeviceState> {
    text.parse().map_err(
        |e: enigm_backend_lifecycle::LifecycleError| StoreError::Corrupt {
            what: "device state",
            detail: e.to_string(),
        },
    )
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

fn is_fk_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_foreign_key_violation())
}

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

fn transition_row_key(handle: &str, seq: i64) -> String {
    format!("{handle}/{seq}")
}

#[derive(serde::Serialize, serde::Deserialize)]
struct AccountMetadata {
    username: String,
    metadata: serde_json::Value,
}

const DEVICE_COLUMNS: &str =
    "SELECT handle, account_id, state, sealed_verifier, created_at, state_changed_at FROM devices";

impl Store {
    /// Open the database at `url` (`sqlite://PATH?mode=rwc` or `postgres://...`), switch an
    /// SQLite file to WAL mode, and run the migrations.
    pub async fn open(url: &str, keys: ServerKeys) -> Result<Store> {
        let engine = engine_of(url)?;
        sqlx::any::install_default_drivers();
        let max = match engine {
            Engine::Sqlite => 4,
            Engine::Postgres => 10,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .connect(url)
            .await
            .map_err(|source| StoreError::Connect { engine, source })?;
        if engine == Engine::Sqlite {
            // journal_mode=WAL is persistent in the file: once is enough for every connection.
            let row = sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_one(&pool)
                .await
                .map_err(StoreError::db("enabling WAL mode"))?;
            let mode: String = col(&row, "journal_mode")?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::NotWal { mode });
            }
        }
        let migrations = MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate { engine, source })?;
        tracing::info!(%engine, "storage opened and migrated");
        Ok(Store { pool, engine, keys })
    }

    /// Which engine this store runs on.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The lookup secret (for computing handles with [`crate::handle`]).
    pub fn lookup_secret(&self) -> &ServerSecret {
        &self.keys.lookup
    }

    /// Close every connection (SQLite checkpoints its WAL into the file).
    pub async fn close(self) {
        self.pool.close().await;
    }

    fn sealer(&self) -> &Sealer {
        &self.keys.sealer
    }

    fn seal_json<T: serde::Serialize>(&self, aad: Aad<'_>, value: &T) -> Result<Vec<u8>> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
            what: "value to seal",
            detail: e.to_string(),
        })?;
        Ok(self.sealer().seal(aad, &bytes)?)
    }

    fn open_json<T: serde::de::DeserializeOwned>(
        &self,
        aad: Aad<'_>,
        blob: &[u8],
        what: &'static str,
    ) -> Result<T> {
        let bytes = self.sealer().open(aad, blob)?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            what,
            detail: e.to_string(),
        })
    }

    fn open_text(&self, aad: Aad<'_>, blob: &[u8], what: &'static str) -> Result<String> {
        let bytes = self.sealer().open(aad, blob)?;
        String::from_utf8(bytes).map_err(|e| StoreError::Corrupt {
            what,
            detail: e.to_string(),
        })
    }

    // ----- accounts -------------------------------------------------------------------

    /// Create an account; fails with [`StoreError::AccountExists`] when the username (case
    /// insensitively) is taken.
    pub async fn create_account(&self, new: &NewAccount<'_>) -> Result<AccountId> {
        let id = random_id()?;
        let uh = username_hash(&self.keys.lookup, new.username)?;
        let meta = AccountMetadata {
            username: new.username.to_owned(),
            metadata: new.metadata.clone(),
        };
        let sealed = self.seal_json(Aad::new("accounts", "sealed_metadata", &id), &meta)?;
        sqlx::query(
            "INSERT INTO accounts (id, username_hash, password_hash, recovery_hash, created_at, \
             sealed_metadata) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(&uh)
        .bind(new.password_hash)
        .bind(new.recovery_hash)
        .bind(ms(new.at)?)
        .bind(sealed)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::AccountExists
            } else {
                StoreError::Db {
                    op: "creating an account",
                    source: e,
                }
            }
        })?;
        Ok(AccountId(id))
    }

    fn account_from_row(&self, row: &AnyRow) -> Result<Account> {
        let id: String = col(row, "id")?;
        let sealed: Vec<u8> = col(row, "sealed_metadata")?;
        let meta: AccountMetadata = self.open_json(
            Aad::new("accounts", "sealed_metadata", &id),
            &sealed,
            "account metadata",
        )?;
        Ok(Account {
            id: AccountId(id),
            username: meta.username,
            password_hash: col(row, "password_hash")?,
            recovery_hash: col(row, "recovery_hash")?,
            created_at: time(col(row, "created_at")?),
            metadata: meta.metadata,
        })
    }

    /// The account with this username (case insensitive), if any.
    pub async fn find_account_by_username(&self, username: &str) -> Result<Option<Account>> {
        let uh = username_hash(&self.keys.lookup, username)?;
        let row = sqlx::query(
            "SELECT id, password_hash, recovery_hash, created_at, sealed_metadata \
             FROM accounts WHERE username_hash = $1",
        )
        .bind(&uh)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::db("looking up an account by username"))?;
        row.map(|r| self.account_from_row(&r)).transpose()
    }

    /// The account with this id, if any.
    pub async fn get_account(&self, id: &AccountId) -> Result<Option<Account>> {
        let row = sqlx::query(
            "SELECT id, password_hash, recovery_hash, created_at, sealed_metadata \
             FROM accounts WHERE id = $1",
        )
        .bind(&id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::db("reading an account"))?;
        row.map(|r| self.account_from_row(&r)).transpose()
    }

    /// Replace the account's recovery hash (argon2id PHC string of a new recovery phrase).
    pub async fn set_recovery_hash(&self, id: &AccountId, recovery_hash: &str) -> Result<()> {
        let done = sqlx::query("UPDATE accounts SET recovery_hash = $1 WHERE id = $2")
            .bind(recovery_hash)
            .bind(&id.0)
            .execute(&self.pool)
            .await
            .map_err(StoreError::db("setting a recovery hash"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "account",
                key: id.0.clone(),
            });
        }
        Ok(())
    }

    /// Replace the account's password hash (argon2id PHC string).
    pub async fn set_password_hash(&self, id: &AccountId, password_hash: &str) -> Result<()> {
        let done = sqlx::query("UPDATE accounts SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(&id.0)
            .execute(&self.pool)
            .await
            .map_err(StoreError::db("setting a password hash"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "account",
                key: id.0.clone(),
            });
        }
        Ok(())
    }

    // ----- devices and transitions ----------------------------------------------------

    /// Begin a write transaction. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), so a transaction that reads before it writes cannot fail half-way on a
    /// stale snapshot; PostgreSQL's row locks do the same for the compare-and-set updates.
    async fn begin(&self, op: &'static str) -> Result<Transaction<'static, Any>> {
        match self.engine {
            Engine::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Engine::Postgres => self.pool.begin().await,
        }
        .map_err(StoreError::db(op))
    }

    /// Record a transition inside `tx` (the caller holds the device row: it inserted or
    /// updated it in the same transaction, so the sequence number cannot race).
    #[allow(clippy::too_many_arguments)]
    async fn record_transition(
        &self,
        tx: &mut Transaction<'static, Any>,
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
        .fetch_one(&mut **tx)
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
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("recording a transition"))?;
        if crate::model::invalidates_results(to) {
            bump_epoch(tx, handle).await?;
        }
        Ok(())
    }

    /// Enroll a device in the state the caller decided, recording the enrollment as its
    /// first transition (from no state), in one transaction.
    pub async fn enroll_device(&self, new: &NewDevice<'_>) -> Result<()> {
        let at = ms(new.at)?;
        let sealed = self.seal_json(
            Aad::new("devices", "sealed_verifier", new.handle.as_str()),
            new.verifier,
        )?;
        let mut tx = self.begin("enrolling a device").await?;
        sqlx::query(
            "INSERT INTO devices (handle, account_id, state, sealed_verifier, created_at, \
             state_changed_at) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(new.handle.as_str())
        .bind(&new.account.0)
        .bind(new.state.as_str())
        .bind(sealed)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::DeviceExists {
                    handle: new.handle.clone(),
                }
            } else if is_fk_violation(&e) {
                StoreError::NotFound {
                    what: "account",
                    key: new.account.0.clone(),
                }
            } else {
                StoreError::Db {
                    op: "enrolling a device",
                    source: e,
                }
            }
        })?;
        self.record_transition(
            &mut tx, new.handle, None, new.state, new.actor, new.reason, at,
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing an enrollment"))?;
        Ok(())
    }

    fn device_from_row(&self, row: &AnyRow) -> Result<Device> {
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
        .fetch_optional(&self.pool)
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
        .fetch_all(&self.pool)
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
        let sealed = self.seal_json(
            Aad::new("devices", "sealed_verifier", handle.as_str()),
            verifier,
        )?;
        let done = sqlx::query("UPDATE devices SET sealed_verifier = $1 WHERE handle = $2")
            .bind(sealed)
            .bind(handle.as_str())
            .execute(&self.pool)
            .await
            .map_err(StoreError::db("updating verifier data"))?;
        if done.rows_affected() == 0 {
            return Err(not_found_device(handle));
        }
        Ok(())
    }

    async fn current_state(
        tx: &mut Transaction<'static, Any>,
        handle: &DeviceHandle,
    ) -> Result<Option<DeviceState>> {
        let row = sqlx::query("SELECT state FROM devices WHERE handle = $1")
            .bind(handle.as_str())
            .fetch_optional(&mut **tx)
            .await
            .map_err(StoreError::db("reading a device state"))?;
        row.map(|r| state(&col::<String>(&r, "state")?)).transpose()
    }

    /// Move a device from `from` to `to` if it is in `from` (compare-and-set), recording the
    /// transition in the same transaction. Entering suspended, revoked or retired also bumps
    /// the device's revocation epoch, in the same transaction.
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
        let mut tx = self.begin("changing a device state").await?;
        let done = sqlx::query(
            "UPDATE devices SET state = $1, state_changed_at = $2 WHERE handle = $3 AND state = $4",
        )
        .bind(to.as_str())
        .bind(at)
        .bind(handle.as_str())
        .bind(from.as_str())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("changing a device state"))?;
        if done.rows_affected() != 1 {
            let actual = Self::current_state(&mut tx, handle).await?;
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
        self.record_transition(&mut tx, handle, Some(from), to, actor, reason, at)
            .await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a transition"))?;
        tracing::info!(device = %handle, %from, %to, "device state changed");
        Ok(())
    }

    /// Replace `old` by `new` in one transaction: `new` (pending, same account) becomes
    /// trusted and `old` (trusted or suspended) is revoked, both transitions recorded and
    /// `old`'s revocation epoch bumped. Either all of it happens or none of it.
    pub async fn replace(
        &self,
        old: &DeviceHandle,
        new: &DeviceHandle,
        actor: &Actor,
        reason: &str,
        at: SystemTime,
    ) -> Result<()> {
        let at = ms(at)?;
        let refused = |reason: String| StoreError::ReplaceRefused {
            old: old.clone(),
            new: new.clone(),
            reason,
        };
        if old == new {
            return Err(refused("a device cannot replace itself".into()));
        }
        let mut tx = self.begin("replacing a device").await?;
        let old_from = match Self::current_state(&mut tx, old).await? {
            None => return Err(refused(format!("{old} is not enrolled"))),
            Some(s @ (DeviceState::Trusted | DeviceState::Suspended)) => s,
            Some(s) => return Err(refused(format!("{old} is {s}, not trusted or suspended"))),
        };
        // Compare-and-set on the state just read; its row lock orders concurrent changes.
        let done = sqlx::query(
            "UPDATE devices SET state = 'revoked', state_changed_at = $1 \
             WHERE handle = $2 AND state = $3",
        )
        .bind(at)
        .bind(old.as_str())
        .bind(old_from.as_str())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("revoking the replaced device"))?;
        if done.rows_affected() != 1 {
            return Err(refused(format!("{old} changed state concurrently")));
        }
        let new_row = sqlx::query(
            "UPDATE devices SET state = 'trusted', state_changed_at = $1 \
             WHERE handle = $2 AND state = 'pending' \
             AND account_id = (SELECT account_id FROM devices WHERE handle = $3) \
             RETURNING state",
        )
        .bind(at)
        .bind(new.as_str())
        .bind(old.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db("trusting the replacement device"))?;
        if new_row.is_none() {
            let actual = Self::current_state(&mut tx, new).await?;
            return Err(refused(match actual {
                None => format!("{new} is not enrolled"),
                Some(DeviceState::Pending) => {
                    format!("{new} belongs to another account than {old}")
                }
                Some(s) => format!("{new} is {s}, not pending"),
            }));
        }
        self.record_transition(
            &mut tx,
            old,
            Some(old_from),
            DeviceState::Revoked,
            actor,
            reason,
            at,
        )
        .await?;
        self.record_transition(
            &mut tx,
            new,
            Some(DeviceState::Pending),
            DeviceState::Trusted,
            actor,
            reason,
            at,
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a replacement"))?;
        tracing::info!(old = %old, new = %new, "device replaced");
        Ok(())
    }

    /// The recorded transitions of a device, oldest first.
    pub async fn list_transitions(&self, handle: &DeviceHandle) -> Result<Vec<Transition>> {
        let rows = sqlx::query(
            "SELECT seq, from_state, to_state, sealed_actor, sealed_reason, at \
             FROM transitions WHERE device_handle = $1 ORDER BY seq",
        )
        .bind(handle.as_str())
        .fetch_all(&self.pool)
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

    // ----- challenges -----------------------------------------------------------------

    /// Store a challenge nonce issued to `handle`, valid until `now + ttl`. Only a keyed
    /// hash of the nonce is stored.
    pub async fn issue_challenge(
        &self,
        handle: &DeviceHandle,
        nonce: &[u8],
        now: SystemTime,
        ttl: Duration,
    ) -> Result<()> {
        let expires = ms(now)?
            .checked_add(dur_ms(ttl)?)
            .ok_or(StoreError::TimeOutOfRange)?;
        let nh = nonce_hash(&self.keys.lookup, nonce)?;
        sqlx::query(
            "INSERT INTO challenges (nonce_hash, device_handle, expires_at, used) \
             VALUES ($1, $2, $3, 0)",
        )
        .bind(&nh)
        .bind(handle.as_str())
        .bind(expires)
        .execute(&self.pool)
        .await
        .map_err(StoreError::db("issuing a challenge"))?;
        Ok(())
    }

    /// Use a challenge: succeeds once, and only while `now` is not past its expiry. The
    /// check and the marking are one atomic UPDATE, so two nodes cannot both consume it.
    pub async fn consume_challenge(
        &self,
        nonce: &[u8],
        now: SystemTime,
    ) -> Result<ChallengeOutcome> {
        let now = ms(now)?;
        let nh = nonce_hash(&self.keys.lookup, nonce)?;
        let row = sqlx::query(
            "UPDATE challenges SET used = 1 \
             WHERE nonce_hash = $1 AND used = 0 AND expires_at >= $2 RETURNING device_handle",
        )
        .bind(&nh)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::db("consuming a challenge"))?;
        if let Some(row) = row {
            let handle = DeviceHandle::parse(&col::<String>(&row, "device_handle")?)?;
            return Ok(ChallengeOutcome::Consumed(handle));
        }
        let row = sqlx::query("SELECT used, expires_at FROM challenges WHERE nonce_hash = $1")
            .bind(&nh)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::db("reading a challenge"))?;
        Ok(match row {
            None => ChallengeOutcome::Unknown,
            Some(r) if col::<i64>(&r, "used")? != 0 => ChallengeOutcome::AlreadyUsed,
            Some(_) => ChallengeOutcome::Expired,
        })
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
        let id = random_id()?;
        let sealed = self.seal_json(Aad::new("appraisals", "sealed_claims", &id), claims)?;
        sqlx::query(
            "INSERT INTO appraisals (id, device_handle, at, tier, sealed_claims) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(handle.as_str())
        .bind(ms(at)?)
        .bind(tier)
        .bind(sealed)
        .execute(&self.pool)
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
        Ok(id)
    }

    /// The appraisals of a device, oldest first.
    pub async fn list_appraisals(&self, handle: &DeviceHandle) -> Result<Vec<Appraisal>> {
        let rows = sqlx::query(
            "SELECT id, at, tier, sealed_claims FROM appraisals WHERE device_handle = $1 \
             ORDER BY at, id",
        )
        .bind(handle.as_str())
        .fetch_all(&self.pool)
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
        sqlx::query(
            "INSERT INTO connection_records (id, at, sealed_remote_addr) VALUES ($1, $2, $3)",
        )
        .bind(&id)
        .bind(ms(at)?)
        .bind(sealed)
        .execute(&self.pool)
        .await
        .map_err(StoreError::db("recording a connection"))?;
        Ok(id)
    }

    /// Every connection record, oldest first.
    pub async fn list_connection_records(&self) -> Result<Vec<ConnectionRecord>> {
        let rows = sqlx::query(
            "SELECT id, at, sealed_remote_addr FROM connection_records ORDER BY at, id",
        )
        .fetch_all(&self.pool)
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

    // ----- revocation epochs ----------------------------------------------------------

    /// Bump the device's revocation epoch (and the global one): results issued before carry
    /// an older epoch and stop being accepted.
    pub async fn bump_revocation_epoch(&self, handle: &DeviceHandle) -> Result<Epochs> {
        let mut tx = self.begin("bumping a revocation epoch").await?;
        let epochs = bump_epoch(&mut tx, handle).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a revocation epoch"))?;
        Ok(epochs)
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
            .fetch_optional(&self.pool)
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
        .fetch_all(&self.pool)
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
        .fetch_all(&self.pool)
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

    // ----- retention and key rotation -------------------------------------------------

    /// Delete every record past its retention period at `now`, per class, in one
    /// transaction. Challenges count from their expiry, the others from when they happened;
    /// a challenge that has not expired is never purged.
    pub async fn purge(&self, now: SystemTime, retention: &Retention) -> Result<PurgeCounts> {
        let now = ms(now)?;
        let cutoff = |d: Duration| -> Result<i64> { Ok(now.saturating_sub(dur_ms(d)?)) };
        let mut tx = self.begin("purging").await?;
        let mut counts = PurgeCounts::default();
        for (sql, cut, out) in [
            (
                "DELETE FROM challenges WHERE expires_at < $1",
                cutoff(retention.challenges)?,
                &mut counts.challenges,
            ),
            (
                "DELETE FROM appraisals WHERE at < $1",
                cutoff(retention.appraisals)?,
                &mut counts.appraisals,
            ),
            (
                "DELETE FROM transitions WHERE at < $1",
                cutoff(retention.transitions)?,
                &mut counts.transitions,
            ),
            (
                "DELETE FROM connection_records WHERE at < $1",
                cutoff(retention.connection_records)?,
                &mut counts.connection_records,
            ),
        ] {
            *out = sqlx::query(sql)
                .bind(cut)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("purging expired records"))?
                .rows_affected();
        }
        tx.commit()
            .await
            .map_err(StoreError::db("committing a purge"))?;
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
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::db("reading sealed values to reseal"))?;
            let mut n = 0u64;
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
                let mut q = sqlx::query(sc.update).bind(fresh).bind(&key).bind(blob);
                if let Some(seq) = seq {
                    q = q.bind(seq);
                }
                n += q
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::db("writing a resealed value"))?
                    .rows_affected();
            }
            *match sc.table {
                "accounts" => &mut counts.accounts,
                "devices" => &mut counts.devices,
                "transitions" => &mut counts.transitions,
                "appraisals" => &mut counts.appraisals,
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

fn not_found_device(handle: &DeviceHandle) -> StoreError {
    StoreError::NotFound {
        what: "device",
        key: handle.to_string(),
    }
}

/// Bump the device's epoch and the global epoch inside `tx`.
async fn bump_epoch(tx: &mut Transaction<'static, Any>, handle: &DeviceHandle) -> Result<Epochs> {
    let row = sqlx::query(
        "INSERT INTO revocation_epochs (scope, epoch, global_epoch) VALUES ($1, 1, 0) \
         ON CONFLICT (scope) DO UPDATE SET epoch = revocation_epochs.epoch + 1 RETURNING epoch",
    )
    .bind(GLOBAL_SCOPE)
    .fetch_one(&mut **tx)
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
    .fetch_one(&mut **tx)
    .await
    .map_err(StoreError::db("bumping a device revocation epoch"))?;
    let device: i64 = col(&row, "epoch")?;
    tracing::info!(device = %handle, epoch = device, global, "revocation epoch bumped");
    Ok(Epochs { device, global })
}
