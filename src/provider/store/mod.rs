//! The provider's PostgreSQL store: merchants with their sealed tokens, onboarding links and
//! their states, and the outbox of merchant events. Several relay processes share one
//! database; every rule that must hold across them (one uid per merchant_ref, a state used
//! once, one refresh per merchant at a time) is the database's, not a process's.
//!
//! Functions taking `&mut PgConnection` run inside the caller's transaction
//! ([`Store::begin`]), so a change of state and its outbox event commit together.

pub mod links;
pub mod merchants;
pub mod outbox;
mod rekey;

use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use time::OffsetDateTime;

pub use links::{LinkRefusal, LinkRow, StateRefusal};
pub use merchants::{MerchantRow, MerchantView, NewTokens};
pub use outbox::OutboxRow;
pub use rekey::RekeyReport;

/// The migrations in `src/provider/migrations`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/provider/migrations");

/// Why the store failed. Never carries the store URL (it may hold a password) or a token.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or refused a statement.
    #[error("provider store: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("provider store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row holds what the schema's checks should have kept out (edited by hand?).
    #[error("provider store: unreadable row: {0}")]
    Corrupt(String),
}

/// A transaction on the store.
pub type Tx = Transaction<'static, Postgres>;

/// A pool of connections to the provider's database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects with at most `max_connections` (a refresh holds one for the platform's
    /// answer: size it above the refresher's concurrency).
    pub async fn connect(url: &SecretString, max_connections: u32) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.expose_secret().parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.application_name("weibo-relay"))
            .await?;
        Ok(Self { pool })
    }

    /// Applies the migrations not yet applied. Safe from several processes at once (the
    /// migrator takes an advisory lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// The pool, for statements outside a transaction.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection (waits for those in use).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `at` as PostgreSQL's `timestamptz`; times beyond what it holds are clamped (a platform
/// answering an absurd `expires_in` gets a far expiry, never a panic).
pub(crate) fn to_db(at: SystemTime) -> OffsetDateTime {
    let secs = crate::clock::secs_of(at).min(253_402_300_799);
    OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(0))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A `timestamptz` as a `SystemTime` (whole seconds; before 1970 is the epoch).
pub(crate) fn from_db(at: OffsetDateTime) -> SystemTime {
    u64::try_from(at.unix_timestamp())
        .ok()
        .and_then(crate::clock::from_unix_secs)
        .unwrap_or(std::time::UNIX_EPOCH)
}
