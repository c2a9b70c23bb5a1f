//! Snowflake key-pair authentication: an RS256 JWT whose issuer names the public key by its
//! SHA-256 fingerprint.
//!
//! `iss = ACCOUNT.USER.SHA256:<base64 of the SHA-256 of the DER public key>`, `sub = ACCOUNT.USER`,
//! upper case, `exp` at most an hour after `iat`.

use anyhow::{Context, bail};
use base64::Engine;
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::redact::Secret;

/// A loaded private key and its public key's fingerprint.
pub struct KeyPair {
    encoding: jsonwebtoken::EncodingKey,
    /// `SHA256:<base64>`
    pub fingerprint: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// `SHA256:` and the base64 SHA-256 of the public key's DER (SubjectPublicKeyInfo) form,
/// as `openssl rsa -pubout -outform DER | openssl dgst -sha256 -binary | base64` prints it.
pub fn fingerprint(key: &RsaPrivateKey) -> anyhow::Result<String> {
    let der = key
        .to_public_key()
        .to_public_key_der()
        .context("cannot encode the public key")?;
    Ok(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(der.as_bytes()))
    ))
}

impl KeyPair {
    /// Reads a PEM private key: PKCS#8 (`PRIVATE KEY`), encrypted PKCS#8 (`ENCRYPTED PRIVATE
    /// KEY`, with `passphrase`), or PKCS#1 (`RSA PRIVATE KEY`).
    pub fn from_pem(name: &str, pem: &str, passphrase: Option<&Secret>) -> anyhow::Result<KeyPair> {
        let key = if pem.contains("BEGIN ENCRYPTED PRIVATE KEY") {
            let Some(pass) = passphrase.filter(|p| !p.expose().is_empty()) else {
                bail!("{name} is encrypted: set private_key_passphrase");
            };
            RsaPrivateKey::from_pkcs8_encrypted_pem(pem, pass.expose().as_bytes()).map_err(
                |_| anyhow::anyhow!("{name}: cannot decrypt the private key (wrong passphrase?)"),
            )?
        } else if pem.contains("BEGIN RSA PRIVATE KEY") {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            RsaPrivateKey::from_pkcs1_pem(pem)
                .map_err(|e| anyhow::anyhow!("{name}: not an RSA private key: {e}"))?
        } else if pem.contains("BEGIN PRIVATE KEY") {
            RsaPrivateKey::from_pkcs8_pem(pem)
                .map_err(|e| anyhow::anyhow!("{name}: not an RSA private key: {e}"))?
        } else {
            bail!("{name}: no PEM private key found");
        };
        let der = key
            .to_pkcs1_der()
            .context("cannot encode the private key")?;
        Ok(KeyPair {
            encoding: jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes()),
            fingerprint: fingerprint(&key)?,
        })
    }

    pub fn from_file(path: &str, passphrase: Option<&Secret>) -> anyhow::Result<KeyPair> {
        let expanded = match path.strip_prefix("~/") {
            Some(rest) => std::env::var("HOME")
                .map(|h| format!("{h}/{rest}"))
                .unwrap_or_else(|_| path.to_string()),
            None => path.to_string(),
        };
        let pem = std::fs::read_to_string(&expanded)
            .with_context(|| format!("cannot read private_key_path {path}"))?;
        KeyPair::from_pem(path, &pem, passphrase)
    }

    /// A JWT for `account` and `user`, valid from `now` (epoch seconds) for `lifetime_secs`
    /// (at most 3600).
    pub fn token(
        &self,
        account: &str,
        user: &str,
        now: i64,
        lifetime_secs: i64,
    ) -> anyhow::Result<String> {
        let qualified = format!("{}.{}", account_for_jwt(account), user.to_ascii_uppercase());
        let claims = Claims {
            iss: format!("{qualified}.{}", self.fingerprint),
            sub: qualified,
            iat: now,
            exp: now + lifetime_secs.clamp(1, 3600),
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &self.encoding,
        )
        .context("cannot sign the JWT")
    }
}

#[derive(Debug, Serialize)]
struct Claims {
    iss: String,
    sub: String,
    iat: i64,
    exp: i64,
}

/// The account as Snowflake wants it in a JWT: upper case, without region or cloud
/// (`xy12345.eu-west-1` becomes `XY12345`; `myorg-acct` stays `MYORG-ACCT`).
pub fn account_for_jwt(account: &str) -> String {
    let account = account
        .split(".snowflakecomputing")
        .next()
        .unwrap_or(account);
    account
        .split('.')
        .next()
        .unwrap_or(account)
        .to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_lose_their_region_and_go_upper_case() {
        assert_eq!(account_for_jwt("xy12345.eu-west-1"), "XY12345");
        assert_eq!(account_for_jwt("myorg-account1"), "MYORG-ACCOUNT1");
        assert_eq!(account_for_jwt("xy12345.us-east-2.aws"), "XY12345");
    }
}
