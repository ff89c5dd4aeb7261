//! What can go wrong talking to the eWeLink cloud, named by what the user (or the supervisor) can do about
//! it. Messages never contain secrets. Knows nothing of HTTP clients or MQTT.

/// A failure of an HTTP call or of the WebSocket handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    #[error("wrong e-mail/phone or password (the cloud answered {code}); check email/phone and password")]
    WrongPassword { code: i64 },
    #[error("the cloud knows no account with this e-mail/phone (error {code}); check email/phone and region")]
    NoSuchAccount { code: i64 },
    #[error("the account's e-mail address is not activated (402): open the activation mail from eWeLink first")]
    EmailNotActivated,
    #[error(
        "the cloud refused app_id (error {code}{}): check app_id and app_secret (your own, from dev.ewelink.cc)",
        if msg.is_empty() { String::new() } else { format!(": {msg}") }
    )]
    AppIdRefused { code: i64, msg: String },
    #[error(
        "this app_id may not log in with a password (407): personal developer app ids are often limited to \
         OAuth; log in once elsewhere and configure access_token, refresh_token and api_key instead"
    )]
    AppIdNotAllowed,
    #[error("the app_id's API quota is used up (412): wait, or use an app_id with a larger quota")]
    Quota,
    #[error(
        "logged in elsewhere (406): another client logged in to this account with the same app_id and the \
         cloud dropped this session; give hub2mqtt its own eWeLink account (share your devices with it) \
         or its own app_id"
    )]
    LoggedInElsewhere,
    #[error("the access token has expired (402)")]
    TokenExpired,
    #[error("the access token is no longer valid (401)")]
    TokenInvalid,
    #[error("the cloud refused the refresh token (error {code})")]
    RefreshRefused { code: i64 },
    #[error("the account lives in region {region}")]
    Redirect { region: String },
    #[error("the account lives in region {region}, but the cloud still redirects after following it once")]
    RedirectLoop { region: String },
    #[error("a login is needed but no email/phone and password are configured (the session was refused)")]
    NoCredentials,
    #[error("not logging in again so soon after the last attempt (that failed: {last})")]
    LoginThrottled { last: String },
    #[error("device answered error {code}{}", if msg.is_empty() { String::new() } else { format!(": {msg}") })]
    Device { code: i64, msg: String },
    #[error("the cloud answered error {code}{}", if msg.is_empty() { String::new() } else { format!(": {msg}") })]
    Rejected { code: i64, msg: String },
    #[error("HTTP status {status}")]
    Http { status: u16 },
    #[error("cannot reach the cloud: {0}")]
    Network(String),
    #[error("unexpected answer from the cloud: {0}")]
    Protocol(String),
}

impl CloudError {
    /// The access token must be renewed (refresh, or log in again) before retrying.
    pub fn needs_new_token(&self) -> bool {
        matches!(self, CloudError::TokenExpired | CloudError::TokenInvalid)
    }

    /// The user must change something (credentials, app id); retrying soon will not help.
    pub fn needs_user(&self) -> bool {
        matches!(
            self,
            CloudError::WrongPassword { .. }
                | CloudError::NoSuchAccount { .. }
                | CloudError::EmailNotActivated
                | CloudError::AppIdRefused { .. }
                | CloudError::AppIdNotAllowed
                | CloudError::NoCredentials
                | CloudError::RedirectLoop { .. }
        )
    }
}
