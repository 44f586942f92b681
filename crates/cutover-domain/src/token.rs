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
        TokenDigest::of_secret(self).to_hash()
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

/// The sha256 of a token, as 32 bytes: what [`TokenHash`] writes in hex, without the hex.
///
/// The request path authenticates by it: [`TokenDigest::of_presented`] checks a presented
/// token's shape and hashes it without allocating, and the server's token cache is keyed by it.
/// `Debug` does not print it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    fn of_secret(secret: &TokenSecret) -> Self {
        Self(Sha256::digest(secret.0.as_bytes()).into())
    }

    /// The digest of what a client presents, if it has the shape of a token (exactly what
    /// [`TokenSecret::parse`] accepts); says nothing about validity.
    pub fn of_presented(presented: &str) -> Option<Self> {
        let body = presented.strip_prefix(TokenSecret::PREFIX)?;
        // Large enough for every body that could decode to 32 bytes; a longer one does not fit
        // and is refused, as `parse` refuses it for decoding to more than 32.
        let mut decoded = [0u8; 48];
        let len = URL_SAFE_NO_PAD.decode_slice(body, &mut decoded).ok()?;
        (len == TokenSecret::RANDOM_BYTES).then(|| Self(Sha256::digest(presented.as_bytes()).into()))
    }

    /// The digest a stored hash (hex) writes; `None` if it is not 64 hex digits.
    pub fn from_hash(hash: &TokenHash) -> Option<Self> {
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hash.as_str(), &mut digest).ok()?;
        Some(Self(digest))
    }

    /// The hash the store keeps and looks tokens up by.
    pub fn to_hash(&self) -> TokenHash {
        TokenHash(hex::encode(self.0))
    }

    /// Compares in constant time.
    pub fn matches(&self, other: &TokenDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest([redacted])")
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
            assert_eq!(TokenDigest::of_presented(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_presented_tokens_digest_is_its_hash_and_accepts_what_parse_accepts() {
        let token = TokenSecret::generate();
        let digest = TokenDigest::of_presented(token.expose()).unwrap();
        assert_eq!(digest.to_hash(), token.hash());
        assert_eq!(TokenDigest::from_hash(&token.hash()), Some(digest));
        assert!(digest.matches(&digest));
        assert!(!digest.matches(&TokenDigest::of_presented(TokenSecret::generate().expose()).unwrap()));
        assert_eq!(token.hash().as_str(), hex::encode(Sha256::digest(token.expose().as_bytes())));
        assert_eq!(TokenDigest::from_hash(&TokenHash::from_stored("not hex".into())), None);
        // Bodies decoding to 31, 33 and 48 bytes, a padded one, and one with trailing bits set.
        let body = URL_SAFE_NO_PAD.encode([7u8; 48]);
        let padded = format!("{}=", &token.expose()[8..]);
        let mut trailing = token.expose().to_owned();
        trailing.replace_range(trailing.len() - 1.., "B");
        for shape in [
            format!("cutover_{}", URL_SAFE_NO_PAD.encode([7u8; 31])),
            format!("cutover_{}", URL_SAFE_NO_PAD.encode([7u8; 33])),
            format!("cutover_{body}"),
            format!("cutover_{body}{body}"),
            format!("cutover_{padded}"),
            trailing,
        ] {
            assert_eq!(TokenDigest::of_presented(&shape).is_some(), TokenSecret::parse(&shape).is_some(), "{shape}");
        }
        assert_eq!(format!("{digest:?}"), "TokenDigest([redacted])");
    }

    #[test]
    fn debug_output_never_contains_the_secret() {
        let token = TokenSecret::generate();
        let printed = format!("{token:?}");
        assert!(!printed.contains(&token.expose()[8..]), "{printed}");
    }
}
