//! Provider mode: the merchants' store reachable, and what it holds. Read only: the relay
//! applies the migrations at start, `check` never writes.

use super::{line, Line, Status};
use crate::provider::settings::ProviderConfig;
use crate::provider::store::{Store, StoreError};

/// `provider.store_url`: connected, merchants by status; a store never migrated is a note.
pub(super) async fn store(config: &ProviderConfig) -> Line {
    let what = "provider.store_url";
    // One plain connection first: its error says why (refused, unknown host, password), where
    // a pool only says it timed out.
    if let Err(error) = probe(config).await {
        return line(
            Status::Fail,
            what,
            format!("cannot connect to PostgreSQL: {error}"),
        );
    }
    let store = match Store::connect(&config.store_url, 1).await {
        Ok(store) => store,
        Err(error) => {
            return line(
                Status::Fail,
                what,
                format!("cannot connect to PostgreSQL: {error}"),
            )
        }
    };
    let counted = store.count_by_status().await;
    store.close().await;
    match counted {
        Ok(counts) => {
            let total: i64 = counts.iter().map(|(_, n)| n).sum();
            let by_status: Vec<String> = counts
                .iter()
                .map(|(status, n)| format!("{} {n}", status.as_str()))
                .collect();
            let detail = if by_status.is_empty() {
                "connected, no merchant yet (weibo-relay merchants link --ref REF)".to_owned()
            } else {
                format!("connected, {total} merchant(s): {}", by_status.join(", "))
            };
            line(Status::Ok, what, detail)
        }
        Err(StoreError::Database(sqlx::Error::Database(e)))
            if e.code().as_deref() == Some("42P01") =>
        {
            line(
                Status::Note,
                what,
                "connected; no tables yet: the relay applies its migrations at start",
            )
        }
        Err(error) => line(Status::Fail, what, error.to_string()),
    }
}

async fn probe(config: &ProviderConfig) -> Result<(), sqlx::Error> {
    use secrecy::ExposeSecret;
    use sqlx::{ConnectOptions, Connection};
    let options: sqlx::postgres::PgConnectOptions = config.store_url.expose_secret().parse()?;
    let connect = options.connect();
    match tokio::time::timeout(std::time::Duration::from_secs(10), connect).await {
        Ok(connection) => connection?.close().await,
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}
