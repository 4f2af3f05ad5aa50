//! What the sandbox's OAuth2 side remembers: codes, grants (an access and a refresh token
//! each, rotated together), and a count of everything presented to it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};

use weibo_relay::clock::Later;

/// invalid_grant.
pub const INVALID_GRANT: i64 = 21325;
/// expired_token.
pub const EXPIRED_TOKEN: i64 = 21327;
/// invalid_access_token.
pub const INVALID_ACCESS_TOKEN: i64 = 21332;

/// Counts of what clients presented, for tests to assert "presented once".
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OAuth2Counters {
    /// Authorization codes presented (each try).
    pub codes_presented: u64,
    /// Codes presented again after their first exchange.
    pub codes_reused: u64,
    /// Codes issued by the consent page.
    pub codes_issued: u64,
    /// Consents denied.
    pub denied: u64,
    /// Refresh tokens presented (each try).
    pub refresh_presented: u64,
    /// Presentations of a refresh token that had been presented before.
    pub refresh_presented_again: u64,
    /// Refreshes answered with new tokens.
    pub refreshed: u64,
    /// Refreshes refused with invalid_grant.
    pub refresh_refused: u64,
    /// Refreshes failed by an injected fault.
    pub refresh_faulted: u64,
    /// `get_token_info` calls.
    pub token_info_calls: u64,
    /// `revokeoauth2` calls.
    pub revoke_calls: u64,
    /// Cancel callbacks sent.
    pub cancel_calls: u64,
    /// Refreshes per uid.
    pub refreshed_by_uid: BTreeMap<String, u64>,
    /// Order interface calls accepted with a merchant's OAuth2 token, per uid (a provider's
    /// calls).
    pub calls_by_uid: BTreeMap<String, u64>,
}

/// A fault for the token endpoint's refresh grant, set through the admin API.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Faults {
    /// `"unavailable"` (HTTP 503, code 21331) or `"invalid_grant"` for refreshes.
    #[serde(default)]
    pub refresh: Option<String>,
    /// Only these uids (all when absent).
    #[serde(default)]
    pub uids: Option<Vec<String>>,
    /// Held before each refresh is answered (to make calls overlap).
    #[serde(default)]
    pub delay_ms: u64,
}

struct Code {
    client_id: String,
    redirect_uri: String,
    uid: String,
    expires_at: Instant,
    /// The grant its first exchange issued (killed if the code comes again).
    exchanged: Option<u64>,
}

/// One authorization: its current tokens.
pub struct Grant {
    /// Whose.
    pub uid: String,
    /// For which app.
    pub client_id: String,
    access: String,
    refresh: String,
    access_expires_at: Instant,
    refresh_expires_at: Instant,
    created_unix: u64,
    alive: bool,
}

/// Tokens as the token endpoint answers them.
#[derive(Debug, Clone, Serialize)]
pub struct Issued {
    access_token: String,
    expires_in: u64,
    refresh_token: String,
    refresh_token_expires_in: u64,
    uid: u64,
}

fn issued(grant: &Grant, access_ttl: Duration, refresh_ttl: Duration) -> Issued {
    Issued {
        access_token: grant.access.clone(),
        expires_in: access_ttl.as_secs(),
        refresh_token: grant.refresh.clone(),
        refresh_token_expires_in: refresh_ttl.as_secs(),
        uid: grant.uid.parse().unwrap_or(0),
    }
}

/// The OAuth2 side's memory.
pub struct Book {
    access_ttl: Duration,
    refresh_ttl: Duration,
    codes: HashMap<String, Code>,
    grants: HashMap<u64, Grant>,
    next_grant: u64,
    presented: HashMap<String, u32>,
    /// What was presented.
    pub counters: OAuth2Counters,
    /// Injected faults.
    pub faults: OAuth2Faults,
    /// When each refresh arrived, ms since the sandbox started.
    pub refresh_timeline: Vec<u64>,
    started: Instant,
}

fn token() -> String {
    format!("2.00{}", Alphanumeric.sample_string(&mut rand::rng(), 32))
}

impl Book {
    /// A book issuing tokens that live `access_ttl` and `refresh_ttl`.
    pub fn new(access_ttl: Duration, refresh_ttl: Duration) -> Self {
        Self {
            access_ttl,
            refresh_ttl,
            codes: HashMap::new(),
            grants: HashMap::new(),
            next_grant: 0,
            presented: HashMap::new(),
            counters: OAuth2Counters::default(),
            faults: OAuth2Faults::default(),
            refresh_timeline: Vec::new(),
            started: Instant::now(),
        }
    }

    /// A code for `uid`'s consent, valid 10 minutes, for this app and redirect_uri only.
    pub fn issue_code(
        &mut self,
        client_id: &str,
        redirect_uri: &str,
        uid: &str,
        now: Instant,
    ) -> String {
        let code = Alphanumeric.sample_string(&mut rand::rng(), 32);
        self.codes.insert(
            code.clone(),
            Code {
                client_id: client_id.to_owned(),
                redirect_uri: redirect_uri.to_owned(),
                uid: uid.to_owned(),
                expires_at: now.later(Duration::from_secs(600)),
                exchanged: None,
            },
        );
        self.counters.codes_issued += 1;
        code
    }

    /// Exchanges a code once. A code presented again is refused and the grant it issued dies
    /// (RFC 6749 4.1.2).
    pub fn exchange(
        &mut self,
        client_id: &str,
        code: &str,
        redirect_uri: &str,
        now: Instant,
    ) -> Result<Issued, (i64, &'static str)> {
        self.counters.codes_presented += 1;
        let Some(entry) = self.codes.get_mut(code) else {
            return Err((INVALID_GRANT, "unknown code"));
        };
        if let Some(issued) = entry.exchanged {
            self.counters.codes_reused += 1;
            if let Some(grant) = self.grants.get_mut(&issued) {
                grant.alive = false;
            }
            return Err((INVALID_GRANT, "code already used"));
        }
        if entry.client_id != client_id || entry.redirect_uri != redirect_uri {
            return Err((
                INVALID_GRANT,
                "code issued to another client or redirect_uri",
            ));
        }
        if now >= entry.expires_at {
            return Err((INVALID_GRANT, "code expired"));
        }
        let uid = entry.uid.clone();
        let id = self.next_grant;
        self.next_grant += 1;
        entry.exchanged = Some(id);
        let grant = Grant {
            uid,
            client_id: client_id.to_owned(),
            access: token(),
            refresh: token(),
            access_expires_at: now.later(self.access_ttl),
            refresh_expires_at: now.later(self.refresh_ttl),
            created_unix: weibo_relay::clock::unix_secs(),
            alive: true,
        };
        let issued = issued(&grant, self.access_ttl, self.refresh_ttl);
        self.grants.insert(id, grant);
        Ok(issued)
    }

    /// Notes a refresh token presented; returns whether it was presented before.
    pub fn note_presented(&mut self, refresh_token: &str) -> bool {
        self.counters.refresh_presented += 1;
        self.refresh_timeline
            .push(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX));
        let seen = self.presented.entry(refresh_token.to_owned()).or_default();
        *seen += 1;
        let again = *seen > 1;
        if again {
            self.counters.refresh_presented_again += 1;
        }
        again
    }

    /// The uid a refresh token belongs to (alive or not), for faults aimed at a uid.
    pub fn uid_of_refresh(&self, refresh_token: &str) -> Option<String> {
        self.grants
            .values()
            .find(|g| g.refresh == refresh_token)
            .map(|g| g.uid.clone())
    }

    /// Rotates: new access and refresh tokens, the old ones dead at once.
    pub fn refresh(
        &mut self,
        client_id: &str,
        refresh_token: &str,
        now: Instant,
    ) -> Result<Issued, (i64, &'static str)> {
        let (access_ttl, refresh_ttl) = (self.access_ttl, self.refresh_ttl);
        let found = self
            .grants
            .iter()
            .find(|(_, g)| g.alive && g.refresh == refresh_token && g.client_id == client_id)
            .map(|(id, _)| *id);
        let Some(grant) = found.and_then(|id| self.grants.get_mut(&id)) else {
            self.counters.refresh_refused += 1;
            return Err((INVALID_GRANT, "refresh_token invalid, used or revoked"));
        };
        if now >= grant.refresh_expires_at {
            grant.alive = false;
            self.counters.refresh_refused += 1;
            return Err((INVALID_GRANT, "refresh_token expired"));
        }
        grant.access = token();
        grant.refresh = token();
        grant.access_expires_at = now.later(access_ttl);
        grant.refresh_expires_at = now.later(refresh_ttl);
        let issued = issued(grant, access_ttl, refresh_ttl);
        self.counters.refreshed += 1;
        *self
            .counters
            .refreshed_by_uid
            .entry(grant.uid.clone())
            .or_default() += 1;
        Ok(issued)
    }

    /// The live grant holding `access_token`, or the code its use gets.
    pub fn by_access(&mut self, access_token: &str, now: Instant) -> Result<&mut Grant, i64> {
        let grant = self
            .grants
            .values_mut()
            .find(|g| g.alive && g.access == access_token)
            .ok_or(INVALID_ACCESS_TOKEN)?;
        if now >= grant.access_expires_at {
            return Err(EXPIRED_TOKEN);
        }
        Ok(grant)
    }

    /// `get_token_info`'s answer for a live token.
    pub fn info(&mut self, access_token: &str, now: Instant) -> Result<serde_json::Value, i64> {
        let grant = self.by_access(access_token, now)?;
        let left = grant
            .access_expires_at
            .saturating_duration_since(now)
            .as_secs();
        Ok(serde_json::json!({
            "uid": grant.uid.parse::<u64>().unwrap_or(0),
            "appkey": grant.client_id,
            "scope": "",
            "create_at": grant.created_unix,
            "expire_in": left,
        }))
    }

    /// Withdraws every live grant of `uid` (the user cancelled); returns how many.
    pub fn withdraw(&mut self, uid: &str) -> usize {
        let mut n = 0;
        for grant in self.grants.values_mut().filter(|g| g.alive && g.uid == uid) {
            grant.alive = false;
            n += 1;
        }
        n
    }

    /// Ends the access token of `uid`'s live grant now (its refresh token still works), as
    /// the platform does at the end of a token's life.
    pub fn expire_access(&mut self, uid: &str, now: Instant) -> usize {
        let mut n = 0;
        for grant in self.grants.values_mut().filter(|g| g.alive && g.uid == uid) {
            grant.access_expires_at = now;
            n += 1;
        }
        n
    }

    /// True when a fault is set for refreshes of `uid`.
    pub fn fault_for(&self, uid: Option<&str>) -> Option<String> {
        let fault = self.faults.refresh.clone()?;
        match (&self.faults.uids, uid) {
            (None, _) => Some(fault),
            (Some(uids), Some(uid)) if uids.iter().any(|u| u == uid) => Some(fault),
            _ => None,
        }
    }
}
