//! HMAC-SHA256 signatures: verifying provider webhooks and signing client events.
//!
//! Every comparison is constant-time (`hmac`'s `verify_slice` / `subtle`), and
//! every verification runs over the raw body bytes, never a re-serialised body.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying our signature on client events pushed to the agent runtime.
pub const CLIENT_EVENT_SIGNATURE_HEADER: &str = "X-Handoff-Signature";
/// Header carrying the Unix timestamp (seconds) that is part of the signed text.
pub const CLIENT_EVENT_TIMESTAMP_HEADER: &str = "X-Handoff-Timestamp";

/// Raw HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Checks a `sha256=<digest>` header value (base64, or hex as a fallback) against
/// the HMAC of `body` under any of `secrets` (current first, then previous during
/// rotation). Returns false on anything malformed.
pub fn verify_sha256_header<'a>(
    header: &str,
    body: &[u8],
    secrets: impl IntoIterator<Item = &'a [u8]>,
) -> bool {
    let Some(digest) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Some(claimed) = decode_digest(digest) else {
        return false;
    };
    let mut ok = false;
    for secret in secrets {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(body);
        // Check every secret so the time taken does not reveal which one matched.
        ok |= mac.verify_slice(&claimed).is_ok();
    }
    ok
}

/// A 32-byte digest from base64 (standard, padded or not) or 64 hex characters.
fn decode_digest(text: &str) -> Option<Vec<u8>> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex::decode(text).ok();
    }
    let decoded = BASE64
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .ok()?;
    (decoded.len() == 32).then_some(decoded)
}

/// Constant-time equality of a shared secret presented in a header or token.
pub fn secret_matches<'a>(presented: &[u8], secrets: impl IntoIterator<Item = &'a [u8]>) -> bool {
    let mut ok = false;
    for secret in secrets {
        // Hash both sides so lengths do not leak through early exits.
        let a = hmac_sha256(b"compare", presented);
        let b = hmac_sha256(b"compare", secret);
        ok |= bool::from(a.ct_eq(&b));
    }
    ok
}

/// The `X-Handoff-Signature` value for a client event body:
/// `sha256=<base64 HMAC-SHA256(events_secret, timestamp + "." + body)>`.
pub fn sign_client_event(events_secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "sha256={}",
        BASE64.encode(hmac_sha256(
            events_secret,
            &client_event_signed_text(timestamp, body)
        ))
    )
}

/// Verifies a client event as the agent runtime should: signature over
/// `timestamp + "." + body`, and the timestamp within `tolerance_secs` of `now`.
pub fn verify_client_event(
    events_secret: &[u8],
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> bool {
    let Ok(timestamp) = timestamp_header.trim().parse::<i64>() else {
        return false;
    };
    // Checked: a timestamp near i64::MIN/MAX must be refused, not overflow.
    match now.checked_sub(timestamp).and_then(i64::checked_abs) {
        Some(skew) if skew <= tolerance_secs => {}
        _ => return false,
    }
    verify_sha256_header(
        signature_header,
        &client_event_signed_text(timestamp, body),
        [events_secret],
    )
}

fn client_event_signed_text(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut text = timestamp.to_string().into_bytes();
    text.push(b'.');
    text.extend_from_slice(body);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a-webhook-secret-of-some-length";
    const BODY: &[u8] = br#"{"id":"m1","type":"Text","text":"hi"}"#;

    fn b64(secret: &[u8], body: &[u8]) -> String {
        format!("sha256={}", BASE64.encode(hmac_sha256(secret, body)))
    }

    #[test]
    fn base64_signature_verifies() {
        assert!(verify_sha256_header(&b64(SECRET, BODY), BODY, [SECRET]));
    }

    #[test]
    fn hex_signature_is_accepted_as_fallback() {
        let header = format!("sha256={}", hex::encode(hmac_sha256(SECRET, BODY)));
        assert!(verify_sha256_header(&header, BODY, [SECRET]));
    }

    #[test]
    fn wrong_secret_is_rejected() {
        assert!(!verify_sha256_header(
            &b64(b"another-secret-entirely", BODY),
            BODY,
            [SECRET]
        ));
    }

    #[test]
    fn truncated_signature_is_rejected() {
        let mut header = b64(SECRET, BODY);
        header.truncate(header.len() - 4);
        assert!(!verify_sha256_header(&header, BODY, [SECRET]));
        let hex_header = format!("sha256={}", &hex::encode(hmac_sha256(SECRET, BODY))[..62]);
        assert!(!verify_sha256_header(&hex_header, BODY, [SECRET]));
    }

    #[test]
    fn missing_prefix_or_garbage_is_rejected() {
        let bare = BASE64.encode(hmac_sha256(SECRET, BODY));
        assert!(!verify_sha256_header(&bare, BODY, [SECRET]));
        assert!(!verify_sha256_header("sha256=!!!", BODY, [SECRET]));
        assert!(!verify_sha256_header("", BODY, [SECRET]));
    }

    #[test]
    fn previous_secret_verifies_during_rotation() {
        let previous: &[u8] = b"the-previous-secret-value";
        let header = b64(previous, BODY);
        assert!(verify_sha256_header(&header, BODY, [SECRET, previous]));
        assert!(!verify_sha256_header(&header, BODY, [SECRET]));
    }

    #[test]
    fn signature_over_reserialised_body_is_rejected() {
        let reserialised =
            serde_json::to_vec_pretty(&serde_json::from_slice::<serde_json::Value>(BODY).unwrap())
                .unwrap();
        assert!(!verify_sha256_header(
            &b64(SECRET, &reserialised),
            BODY,
            [SECRET]
        ));
    }

    #[test]
    fn shared_secret_comparison() {
        assert!(secret_matches(
            b"k-123",
            [b"x".as_slice(), b"k-123".as_slice()]
        ));
        assert!(!secret_matches(b"k-12", [b"k-123".as_slice()]));
        assert!(!secret_matches(b"", [b"k-123".as_slice()]));
    }

    #[test]
    fn client_event_signature_round_trips_and_binds_timestamp() {
        let sig = sign_client_event(b"ev-secret", 1_700_000_000, BODY);
        assert!(verify_client_event(
            b"ev-secret",
            "1700000000",
            &sig,
            BODY,
            1_700_000_010,
            300
        ));
        // Same signature with another timestamp fails: the timestamp is signed.
        assert!(!verify_client_event(
            b"ev-secret",
            "1700000001",
            &sig,
            BODY,
            1_700_000_010,
            300
        ));
        // Stale timestamp fails.
        assert!(!verify_client_event(
            b"ev-secret",
            "1700000000",
            &sig,
            BODY,
            1_700_009_999,
            300
        ));
        assert!(!verify_client_event(
            b"other",
            "1700000000",
            &sig,
            BODY,
            1_700_000_010,
            300
        ));
    }

    /// Regression for fuzz/corpus/signature/i64-min-timestamp: the skew
    /// overflowed (a panic in debug builds).
    #[test]
    fn extreme_timestamps_are_refused_without_overflow() {
        for ts in [i64::MIN, i64::MIN + 1, i64::MAX] {
            let sig = sign_client_event(b"ev-secret", ts, BODY);
            assert!(!verify_client_event(
                b"ev-secret",
                &ts.to_string(),
                &sig,
                BODY,
                1_700_000_010,
                300
            ));
            // At its own instant it is still a valid signature.
            assert!(verify_client_event(
                b"ev-secret",
                &ts.to_string(),
                &sig,
                BODY,
                ts,
                300
            ));
        }
    }
}
