//! Request signing for the eWeLink cloud: `Authorization: Sign <base64(HMAC-SHA256(app secret, message))>`,
//! where the message is the exact body bytes of a POST or the sorted, unencoded `k=v&k=v` query of a GET;
//! plus the common nonce (8 random alphanumerics) and timestamps (seconds; milliseconds for WebSocket
//! sequences).
//!
//! Used by both the client and the simulator. Knows nothing of HTTP clients, endpoints or tokens.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// `base64(HMAC-SHA256(key = secret, message))`: the value after `Sign ` in the `Authorization` header.
pub fn sign(secret: &str, message: &[u8]) -> String {
    BASE64.encode(mac(secret, message).finalize().into_bytes())
}

/// Whether `signature` (the base64 value after `Sign `) is the signature of `message` (constant time).
pub fn verify(secret: &str, message: &[u8], signature: &str) -> bool {
    match BASE64.decode(signature.trim()) {
        Ok(bytes) => mac(secret, message).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

fn mac(secret: &str, message: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(message);
    mac
}

/// The message signed for a GET: parameters sorted by name, joined `k=v&k=v`, not URL-encoded.
pub fn query_message<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// 8 random alphanumeric characters, as every request's `nonce` must be.
pub fn nonce() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..8).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect()
}

/// Whether `s` is a well-formed nonce (8 ASCII alphanumerics).
pub fn is_nonce(s: &str) -> bool {
    s.len() == 8 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Seconds since the Unix epoch (the `ts` of every request).
pub fn now_s() -> u64 {
    now_ms() / 1000
}

/// Milliseconds since the Unix epoch (WebSocket `sequence`s).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The published vectors (field notes, section 2).
    const SECRET: &str = "OdPuCZ4PkPPi0rVKRVcGmll2NM6vVk0c";

    #[test]
    fn login_body_vector() {
        let body = r#"{"appid":"McFJj4Noke1mGDZCR1QarGW7P9Ycp0Vr","nonce":"asbsedwq","password":"12345678","phoneNumber":"+8613123456789","ts":1560306258,"version":8}"#;
        assert_eq!(sign(SECRET, body.as_bytes()), "XuOzGxtG50CiF4H3odUfZsvKVl5+qSPzhfLEuUd4eJw=");
    }

    #[test]
    fn email_body_vector() {
        let body = r#"{"email":"1234@gmail.com","password":"12345678","countryCode":"+1"}"#;
        assert_eq!(sign(SECRET, body.as_bytes()), "ttZ/gluzqrafvGonjMD20p4//arW6KoZKbo1SOMEzCA=");
    }

    #[test]
    fn second_secret_vector() {
        let body = r#"{"data":"string"}"#;
        assert_eq!(
            sign("4G91qSoboqYO4Y0XJ0LPPKIsq8reHdfa", body.as_bytes()),
            "7Aaa/8EuRScACNrZTATW2WKIY7lcRnjgWHTiBl8G0TQ="
        );
    }

    #[test]
    fn any_byte_change_breaks_the_signature() {
        let body = br#"{"data":"string"}"#;
        let sig = sign(SECRET, body);
        assert!(verify(SECRET, body, &sig));
        assert!(!verify(SECRET, br#"{"data": "string"}"#, &sig));
        assert!(!verify("another-secret", body, &sig));
        assert!(!verify(SECRET, body, "not base64!"));
    }

    #[test]
    fn get_message_is_sorted_and_unencoded() {
        let params = [
            ("ts", "1558004249"),
            ("appid", "McFJj4Noke1mGDZCR1QarGW7P9Ycp0Vr"),
            ("rt", "24670a9e"),
            ("grantType", "refresh"),
            ("nonce", "asbsedwq"),
            ("version", "8"),
            ("params", "switch|timers"),
        ];
        assert_eq!(
            query_message(&params),
            "appid=McFJj4Noke1mGDZCR1QarGW7P9Ycp0Vr&grantType=refresh&nonce=asbsedwq&params=switch|timers&rt=24670a9e&ts=1558004249&version=8"
        );
    }

    #[test]
    fn nonces_are_eight_alphanumerics_and_vary() {
        let a = nonce();
        assert!(is_nonce(&a), "{a}");
        assert!((0..20).map(|_| nonce()).any(|b| b != a));
        assert!(!is_nonce("abc"));
        assert!(!is_nonce("abcd-fgh"));
    }

    #[test]
    fn timestamps_are_seconds_and_milliseconds() {
        let (s, ms) = (now_s(), now_ms());
        assert!(s > 1_600_000_000 && s < 10_000_000_000, "{s}");
        assert!(ms / 1000 >= s && ms / 1000 - s <= 1);
    }
}
