//! Accounts: creation, lookup by username hash, password and recovery hashes.

use super::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct AccountMetadata {
    username: String,
    metadata: serde_json::Value,
}

impl Store {
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
        let insert = sqlx::query(
            "INSERT INTO accounts (id, username_hash, password_hash, recovery_hash, created_at, \
             sealed_metadata) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.clone())
        .bind(uh)
        .bind(new.password_hash.to_owned())
        .bind(new.recovery_hash.to_owned())
        .bind(ms(new.at)?)
        .bind(sealed);
        self.execute_write(Durability::Synced, insert, |e| {
            if is_unique_violation(&e) {
                StoreError::AccountExists
            } else {
                StoreError::Db {
                    op: "creating an account",
                    source: e,
                }
            }
        })
        .await?;
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
        .fetch_optional(&mut *self.reader().await?)
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
        .fetch_optional(&mut *self.reader().await?)
        .await
        .map_err(StoreError::db("reading an account"))?;
        row.map(|r| self.account_from_row(&r)).transpose()
    }

    /// Replace the account's recovery hash (argon2id PHC string of a new recovery phrase).
    pub async fn set_recovery_hash(&self, id: &AccountId, recovery_hash: &str) -> Result<()> {
        let update = sqlx::query("UPDATE accounts SET recovery_hash = $1 WHERE id = $2");
        self.set_account_hash(id, update, recovery_hash, "setting a recovery hash")
            .await
    }

    /// Replace the account's password hash (argon2id PHC string).
    pub async fn set_password_hash(&self, id: &AccountId, password_hash: &str) -> Result<()> {
        let update = sqlx::query("UPDATE accounts SET password_hash = $1 WHERE id = $2");
        self.set_account_hash(id, update, password_hash, "setting a password hash")
            .await
    }

    /// Run `update` (`SET column = $1 WHERE id = $2`) with `hash` for account `id`.
    async fn set_account_hash(
        &self,
        id: &AccountId,
        update: WriteQuery,
        hash: &str,
        op: &'static str,
    ) -> Result<()> {
        let update = update.bind(hash.to_owned()).bind(id.0.clone());
        let done = self
            .execute_write(Durability::Synced, update, StoreError::db(op))
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "account",
                key: id.0.clone(),
            });
        }
        Ok(())
    }
}
