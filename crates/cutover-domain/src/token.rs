use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A token as the caller holds it: `cutover_` followed by 256 random bits, base64url.
///
/// It is shown once, when created. Only its [`TokenHash`] is stored. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret(String);

impl TokenSecret {
    pub const PREFIX: &'static str = "cutover_";
    const RANDOM_BYTES: usize = 32;

    pub fn generate() -> Self {
        let mut bytes = [0u8; Self::RANDOM_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("{}{}", Self::PREFIX, URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Accepts what a client presents if it has the shape of a token; says nothing about validity.
    pub fn parse(presented: &str) -> Option<Self> {
        let body = presented.strip_prefix(Self::PREFIX)?;
        let decoded = URL_SAFE_NO_PAD.decode(body).ok()?;
        (decoded.len() == Self::RANDOM_BYTES).then(|| Self(presented.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(\"cutover_[redacted]\")")
    }
}

/// The sha256 of a token, hex: what the store keeps and looks tokens up by.
///
/// A fast hash is right here: tokens carry 256 bits of entropy, so there is nothing to brute force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHash(String);

impl TokenHash {
    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Compares in constant time, so a lookup's result leaks nothing through timing.
    pub fn matches(&self, other: &TokenHash) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_prefixed_distinct_and_parse_back() {
        let a = TokenSecret::generate();
        let b = TokenSecret::generate();
        assert!(a.expose().starts_with("cutover_"));
        assert_eq!(a.expose().len(), "cutover_".len() + 43);
        assert_ne!(a, b);
        assert_eq!(TokenSecret::parse(a.expose()), Some(a.clone()));
        assert!(a.hash().matches(&a.hash()));
        assert!(!a.hash().matches(&b.hash()));
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        for bad in ["", "cutover_", "cutover_abc", "token", "cutover_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"] {
            assert_eq!(TokenSecret::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn debug_output_never_contains_the_secret() {
        let token = TokenSecret::generate();
        let printed = format!("{token:?}");
        assert!(!printed.contains(&token.expose()[8..]), "{printed}");
    }
}
