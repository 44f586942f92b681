//! Secrets the server must use later but never show again (a webhook's signing key), kept
//! encrypted at rest under a key from the server's configuration.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per secret: random nonces of that size never
//! collide in practice, so no counter has to be kept, and the tag makes any change to the stored
//! text (or the wrong key) an error rather than a different secret.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// The key secrets are encrypted with: 32 bytes, given as base64 or 64 hex digits.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// A new random key.
    pub fn generate() -> Self {
        let mut bytes = [0_u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Parses a key written as base64 (standard or URL-safe, padded or not) or hex.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let decoded = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD].iter().find_map(|engine| engine.decode(text).ok())
        };
        let bytes = decoded.ok_or("the secret key must be base64 or hex")?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|bytes: Vec<u8>| format!("the secret key must be 32 bytes, not {}", bytes.len()))?;
        Ok(Self(key))
    }

    /// The key as base64, to save it.
    pub fn encode(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Encrypts `secret`.
    pub fn seal(&self, secret: &str) -> SealedSecret {
        let mut nonce = [0_u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let sealed = cipher
            .encrypt(XNonce::from_slice(&nonce), secret.as_bytes())
            .expect("encryption cannot fail for inputs far below the cipher's limit");
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        SealedSecret(format!("{}{}", SealedSecret::PREFIX, URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Decrypts what [`SecretKey::seal`] made. A secret stored before encryption existed (no
    /// prefix) is returned as it is.
    pub fn open(&self, sealed: &SealedSecret) -> Result<String, String> {
        let Some(encoded) = sealed.0.strip_prefix(SealedSecret::PREFIX) else {
            return Ok(sealed.0.clone());
        };
        let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| "the stored secret is not valid base64".to_owned())?;
        if bytes.len() < 24 {
            return Err("the stored secret is truncated".into());
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let plain = cipher.decrypt(XNonce::from_slice(nonce), ciphertext).map_err(|_| {
            "the stored secret cannot be decrypted with this server's secret key \
             (replicas must share `secret_key` / CUTOVER_SECRET_KEY)"
                .to_owned()
        })?;
        String::from_utf8(plain).map_err(|_| "the stored secret is not UTF-8".to_owned())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

/// A secret as stored: `sealed:v1:` and the nonce and ciphertext in base64.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedSecret(String);

impl SealedSecret {
    const PREFIX: &'static str = "sealed:v1:";

    /// Whether this was encrypted (rather than stored in plain text by an older version).
    pub fn is_sealed(&self) -> bool {
        self.0.starts_with(Self::PREFIX)
    }
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedSecret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_with_its_key_only() {
        let key = SecretKey::generate();
        let sealed = key.seal("hunter2hunter2");
        assert!(sealed.is_sealed());
        assert!(!sealed.0.contains("hunter2"), "{}", sealed.0);
        assert_eq!(key.open(&sealed).unwrap(), "hunter2hunter2");
        assert!(SecretKey::generate().open(&sealed).unwrap_err().contains("secret_key"));
        assert_ne!(key.seal("hunter2hunter2"), sealed, "every sealing takes a new nonce");
    }

    #[test]
    fn a_changed_ciphertext_is_an_error_not_another_secret() {
        let key = SecretKey::generate();
        let mut text = key.seal("hunter2hunter2").0;
        let last = text.pop().unwrap();
        text.push(if last == 'A' { 'B' } else { 'A' });
        assert!(key.open(&SealedSecret(text)).is_err());
        assert!(key.open(&SealedSecret("sealed:v1:AAAA".into())).is_err());
    }

    #[test]
    fn keys_parse_from_base64_or_hex_and_must_be_32_bytes() {
        let key = SecretKey::generate();
        let again = SecretKey::parse(&key.encode()).unwrap();
        assert_eq!(again.open(&key.seal("x")).unwrap(), "x");
        assert!(SecretKey::parse(&"ab".repeat(32)).is_ok());
        assert!(SecretKey::parse(&STANDARD.encode([0_u8; 16])).unwrap_err().contains("32 bytes"));
        assert!(SecretKey::parse("not a key!").is_err());
        assert!(!format!("{key:?}").contains(&key.encode()));
    }

    #[test]
    fn a_secret_stored_before_encryption_is_read_as_it_is() {
        let legacy: SealedSecret = serde_json::from_str("\"old-plain-secret\"").unwrap();
        assert!(!legacy.is_sealed());
        assert_eq!(SecretKey::generate().open(&legacy).unwrap(), "old-plain-secret");
    }
}
