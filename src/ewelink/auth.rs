//! The account's session over time: where tokens come from (the state file, a pre-obtained session in the
//! config, or a login), renewing them (refresh with `rt` when the cloud says 401/402 or the token is old;
//! log in again only when the refresh is refused, and never twice within `min_login_gap`), and keeping them
//! in the state file (mode 0600) so a restart neither logs in again nor logs the user's phone out.
//!
//! Knows the HTTP client's login/refresh calls; nothing of WebSockets, devices or MQTT.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::config::{EwelinkApi, Region};
use crate::secret::Secret;

use super::error::CloudError;
use super::http::{Credentials, Http, LoginId, Tokens};
use super::sign;

/// What the state file holds (plain strings: [`Secret`] would serialise as a mask).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct SavedSession {
    format: u32,
    /// Whose tokens these are: the app id and the login (or the configured session's fingerprint).
    account: String,
    /// Fingerprint of the configured `access_token` these tokens descend from ("" if none).
    seed: String,
    api: EwelinkApi,
    region: Region,
    at: String,
    rt: Option<String>,
    apikey: String,
    /// When `at` was obtained (Unix seconds).
    obtained_s: u64,
}

#[derive(Debug, Clone)]
struct Current {
    tokens: Tokens,
    obtained_s: u64,
}

#[derive(Debug, Default)]
struct RenewState {
    last_login: Option<(Instant, Option<CloudError>)>,
}

/// One account's tokens. Cheap to share (`Arc`); renewals are single-flight.
#[derive(Debug)]
pub struct Auth {
    http: Arc<Http>,
    creds: Option<Credentials>,
    configured: Option<Tokens>,
    state_file: PathBuf,
    account: String,
    seed: String,
    min_login_gap: Duration,
    current: RwLock<Option<Current>>,
    renew: tokio::sync::Mutex<RenewState>,
}

impl Auth {
    pub fn new(
        http: Arc<Http>,
        creds: Option<Credentials>,
        configured: Option<Tokens>,
        state_file: PathBuf,
        min_login_gap: Duration,
    ) -> Auth {
        let seed = configured.as_ref().map(|t| fingerprint(t.at.expose())).unwrap_or_default();
        let who = match creds.as_ref().map(|c| &c.login) {
            Some(LoginId::Email(e)) => format!("email:{}", e.to_lowercase()),
            Some(LoginId::Phone(p)) => format!("phone:{p}"),
            None => format!("session:{seed}"),
        };
        let account = format!("{}|{who}", http.app_id());
        Auth {
            http,
            creds,
            configured,
            state_file,
            account,
            seed,
            min_login_gap,
            current: RwLock::new(None),
            renew: tokio::sync::Mutex::new(RenewState::default()),
        }
    }

    pub fn http(&self) -> &Arc<Http> {
        &self.http
    }

    /// The current tokens, obtaining them first if there are none (state file, configured session, login).
    pub async fn tokens(&self) -> Result<Tokens, CloudError> {
        if let Some(c) = self.read_current() {
            return Ok(c.tokens);
        }
        let mut renew = self.renew.lock().await;
        if let Some(c) = self.read_current() {
            return Ok(c.tokens);
        }
        if let Some(saved) = self.load() {
            tracing::info!(file = %self.state_file.display(), "using the saved eWeLink session");
            self.http.set_region(saved.tokens.region);
            let tokens = saved.tokens.clone();
            self.set_current(saved);
            return Ok(tokens);
        }
        if let Some(t) = &self.configured {
            tracing::info!("using the configured eWeLink session (no login)");
            let mut t = t.clone();
            t.region = self.http.region();
            self.store(Current { tokens: t.clone(), obtained_s: sign::now_s() });
            return Ok(t);
        }
        self.login(&mut renew).await
    }

    /// New tokens after the cloud refused `stale` (401/402): refresh, or log in if the refresh is refused.
    /// If another task already renewed `stale`, its result is returned without another call.
    pub async fn renew(&self, stale: &Tokens) -> Result<Tokens, CloudError> {
        let mut renew = self.renew.lock().await;
        if let Some(c) = self.read_current()
            && c.tokens.at != stale.at
        {
            return Ok(c.tokens);
        }
        if stale.rt.is_some() {
            match self.http.refresh(stale).await {
                Ok(tokens) => {
                    tracing::info!("refreshed the eWeLink access token");
                    self.store(Current { tokens: tokens.clone(), obtained_s: sign::now_s() });
                    return Ok(tokens);
                }
                Err(e @ CloudError::RefreshRefused { .. }) => {
                    tracing::warn!(error = %e, "the refresh token was refused; logging in again");
                }
                Err(e) => return Err(e),
            }
        }
        self.login(&mut renew).await
    }

    /// Refreshes ahead of time when the access token is older than `max_age` (it lives 30 days).
    pub async fn refresh_if_older_than(&self, max_age: Duration) -> Result<(), CloudError> {
        let Some(c) = self.read_current() else { return Ok(()) };
        if sign::now_s().saturating_sub(c.obtained_s) < max_age.as_secs() || c.tokens.rt.is_none() {
            return Ok(());
        }
        self.renew(&c.tokens).await.map(|_| ())
    }

    /// Runs `call` with the current tokens; on 401/402 renews them once and runs it again.
    pub async fn with_tokens<T, F, Fut>(&self, call: F) -> Result<T, CloudError>
    where
        F: Fn(Tokens) -> Fut,
        Fut: std::future::Future<Output = Result<T, CloudError>>,
    {
        let tokens = self.tokens().await?;
        match call(tokens.clone()).await {
            Err(e) if e.needs_new_token() => {
                tracing::info!(error = %e, "the eWeLink session needs new tokens");
                let renewed = self.renew(&tokens).await?;
                call(renewed).await
            }
            other => other,
        }
    }

    async fn login(&self, renew: &mut RenewState) -> Result<Tokens, CloudError> {
        let Some(creds) = &self.creds else { return Err(CloudError::NoCredentials) };
        if let Some((at, last_error)) = &renew.last_login
            && at.elapsed() < self.min_login_gap
        {
            if let Some(e) = last_error {
                return Err(CloudError::LoginThrottled { last: e.to_string() });
            }
            if let Some(c) = self.read_current() {
                return Ok(c.tokens);
            }
        }
        tracing::info!(region = self.http.region().as_str(), "logging in to eWeLink");
        let result = self.http.login(creds).await;
        renew.last_login = Some((Instant::now(), result.as_ref().err().cloned()));
        let tokens = result?;
        self.store(Current { tokens: tokens.clone(), obtained_s: sign::now_s() });
        Ok(tokens)
    }

    fn read_current(&self) -> Option<Current> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_current(&self, c: Current) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(c);
    }

    /// Makes `c` current and saves it; a save failure is logged, the session goes on.
    fn store(&self, c: Current) {
        let saved = SavedSession {
            format: 1,
            account: self.account.clone(),
            seed: self.seed.clone(),
            api: self.http.api(),
            region: c.tokens.region,
            at: c.tokens.at.expose().to_owned(),
            rt: c.tokens.rt.as_ref().map(|s| s.expose().to_owned()),
            apikey: c.tokens.apikey.clone(),
            obtained_s: c.obtained_s,
        };
        self.set_current(c);
        if let Err(e) = write_private(&self.state_file, &saved) {
            tracing::warn!(file = %self.state_file.display(), error = %e, "cannot save the eWeLink session; a restart will need a new login");
        }
    }

    /// The saved session, if it belongs to this account, API and configured session.
    fn load(&self) -> Option<Current> {
        let text = match std::fs::read_to_string(&self.state_file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(file = %self.state_file.display(), error = %e, "cannot read the saved eWeLink session");
                return None;
            }
        };
        let saved: SavedSession = match serde_json::from_str(&text) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(file = %self.state_file.display(), error = %e, "ignoring an unreadable saved eWeLink session");
                return None;
            }
        };
        if saved.format != 1 || saved.account != self.account || saved.seed != self.seed || saved.api != self.http.api()
        {
            tracing::info!(file = %self.state_file.display(), "the saved eWeLink session belongs to another account or setup; ignoring it");
            return None;
        }
        Some(Current {
            tokens: Tokens {
                at: Secret::new(saved.at),
                rt: saved.rt.map(Secret::new),
                apikey: saved.apikey,
                region: saved.region,
            },
            obtained_s: saved.obtained_s,
        })
    }
}

/// A short, non-reversible tag of a token (to notice that the configured session changed).
fn fingerprint(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Writes JSON to `path` atomically, readable and writable by the owner only (0600).
fn write_private<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    #[cfg(unix)]
    {
        // A pre-existing temp file keeps its old mode on open: force it.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(&text)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("ewelink_home.json");
        let saved = SavedSession {
            format: 1,
            account: "app|email:a@b.c".into(),
            seed: String::new(),
            api: EwelinkApi::V2,
            region: Region::Eu,
            at: "at-1234567".into(),
            rt: Some("rt-1234567".into()),
            apikey: "key".into(),
            obtained_s: 5,
        };
        write_private(&path, &saved).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let back: SavedSession = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, saved);
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn fingerprints_differ_and_hide_the_token() {
        let a = fingerprint("074e8af6f5f10183647a6a4f5b51fdc6788f617a");
        assert_eq!(a.len(), 16);
        assert_ne!(a, fingerprint("174e8af6f5f10183647a6a4f5b51fdc6788f6172"));
        assert!(!"074e8af6f5f10183647a6a4f5b51fdc6788f617a".contains(&a));
    }
}
