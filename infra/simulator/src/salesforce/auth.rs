//! MIAW access tokens: HS256 JWTs signed with a per-process key (spec §6.1),
//! and the RS256 `customerIdentityToken` check of user verification.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Claims {
    pub sub: String,
    #[serde(rename = "orgId")]
    pub org_id: String,
    #[serde(rename = "esDeveloperName")]
    pub es_developer_name: String,
    /// The simulator integration (tenant) the deployment belongs to.
    pub integration: String,
    #[serde(rename = "clientId")]
    pub client_id: String,
    pub iat: i64,
    /// Issue time in ms: `expire_tokens_now` refuses tokens issued before it.
    #[serde(rename = "iatMs")]
    pub iat_ms: i64,
    pub exp: i64,
}

fn sign(key: &[u8], input: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

pub(super) fn issue(key: &[u8], claims: &Claims) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "JWT"}).to_string());
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_string(claims).unwrap_or_default());
    let input = format!("{header}.{body}");
    let sig = URL_SAFE_NO_PAD.encode(sign(key, &input));
    format!("{input}.{sig}")
}

/// Verifies signature and shape; expiry and revocation are the caller's.
pub(super) fn verify(key: &[u8], token: &str) -> Option<Claims> {
    let (input, sig) = token.rsplit_once('.')?;
    let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(input.as_bytes());
    mac.verify_slice(&sig).ok()?;
    let body = input.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()
}

/// One RSA key of the deployment's keyset (JWK).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Jwk {
    pub kid: Option<String>,
    pub n: String,
    pub e: String,
}

/// The `sub` of a valid customerIdentityToken, or why it is refused.
pub(super) fn verify_identity(
    keys: &[Jwk],
    issuer: Option<&str>,
    token: &str,
    now_secs: i64,
) -> Result<String, &'static str> {
    let mut parts = token.split('.');
    let (Some(h), Some(b), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("customerIdentityToken is not a JWT");
    };
    let header: Value = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|v| serde_json::from_slice(&v).ok())
        .ok_or("bad JWT header")?;
    if header["alg"] != "RS256" {
        return Err("customerIdentityToken must be RS256");
    }
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| "bad JWT signature")?;
    let input = format!("{h}.{b}");
    let kid = header["kid"].as_str();
    let valid = keys
        .iter()
        .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
        .any(|k| {
            let (Ok(n), Ok(e)) = (URL_SAFE_NO_PAD.decode(&k.n), URL_SAFE_NO_PAD.decode(&k.e))
            else {
                return false;
            };
            ring::signature::RsaPublicKeyComponents { n, e }
                .verify(
                    &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                    input.as_bytes(),
                    &sig,
                )
                .is_ok()
        });
    if !valid {
        return Err("customerIdentityToken signature does not match the keyset");
    }
    let claims: Value = URL_SAFE_NO_PAD
        .decode(b)
        .ok()
        .and_then(|v| serde_json::from_slice(&v).ok())
        .ok_or("bad JWT payload")?;
    if let Some(iss) = issuer {
        if claims["iss"] != iss {
            return Err("customerIdentityToken issuer mismatch");
        }
    }
    if claims["exp"].as_i64().is_none_or(|exp| exp <= now_secs) {
        return Err("customerIdentityToken expired");
    }
    claims["sub"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or("customerIdentityToken has no sub")
}
