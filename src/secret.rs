//! Secrets: a value type that never prints itself, and a process-wide list of secret strings that
//! [`redact`] removes from any text leaving the process (log lines, `bridge/event` payloads).
//!
//! Every [`Secret`] registers its value when created; values learned at run time (session cookies,
//! access tokens, password hashes sent on the wire) are registered with [`register`]. The redaction list
//! is the second line of defence: code should not format secrets in the first place, but third-party crates
//! (HTTP clients printing URLs with tokens in them, protocol crates dumping packets at trace level) do.
//!
//! Knows nothing of configuration, MQTT or hubs.

use std::fmt;
use std::sync::RwLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a secret looks like wherever it is shown.
pub const MASK: &str = "********";

/// Values shorter than this are not registered for redaction: replacing every `1` or `on` in the logs
/// would make them unreadable and protect nothing.
const MIN_REDACTED_LEN: usize = 4;

static REDACTED: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds a value to the redaction list (idempotent; short values are ignored).
pub fn register(value: &str) {
    if value.len() < MIN_REDACTED_LEN {
        return;
    }
    let mut list = REDACTED.write().unwrap_or_else(|e| e.into_inner());
    if !list.iter().any(|v| v == value) {
        list.push(value.to_owned());
        // Longest first, so a secret that contains another is masked whole.
        list.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
}

/// The text with every registered secret replaced by [`MASK`].
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    let list = REDACTED.read().unwrap_or_else(|e| e.into_inner());
    if !list.iter().any(|s| text.contains(s.as_str())) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = text.to_owned();
    for secret in list.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A string that is a secret: `Debug`, `Display` and `Serialize` show [`MASK`]; only [`Secret::expose`]
/// gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        register(&value);
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s} {s:?}"), format!("{MASK} {MASK}"));
        assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{MASK}\""));
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn redact_masks_registered_values_longest_first() {
        register("abcd1234");
        register("abcd1234efgh");
        assert_eq!(redact("token=abcd1234efgh; other=abcd1234"), format!("token={MASK}; other={MASK}"));
        assert_eq!(redact("nothing here"), "nothing here");
        register("ab"); // too short to register
        assert_eq!(redact("ab"), "ab");
    }
}
