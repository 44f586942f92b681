//! Stream tickets: the credential a bulk OFREP answer puts in the change stream's URL, because a
//! browser's `EventSource` cannot send headers (OFREP ADR 0008 lets the advertised URL carry its
//! own credential).
//!
//! A ticket is never the API token: it names the token by id, is bound to one workspace and one
//! environment, expires, and is signed with an HMAC-SHA256 under a key derived from the server's
//! `secret_key` (so every replica accepts the others' tickets). It is deterministic within a
//! [`WINDOW_SECONDS`] window, so the advertised URL stays the same between refetches and clients
//! keep their connection; the bulk ETag changes with the window, so a client polling with
//! `If-None-Match` learns the new URL before the old ticket expires. It is checked when a stream
//! opens: the token must still exist, unrevoked. The request log records only the path, never
//! the query, so tickets stay out of logs.

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Tickets are issued per window of this length and live for one to two windows.
pub const WINDOW_SECONDS: i64 = 300;

/// What a ticket grants: the change stream of `workspace_id`, as seen from `environment`, on
/// behalf of token `token_id`, until `expires` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTicket {
    pub workspace_id: String,
    pub token_id: String,
    pub environment: String,
    pub expires: i64,
}

/// Why a ticket was refused. The message never repeats the ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketError {
    Malformed,
    BadSignature,
    Expired,
}

impl std::fmt::Display for TicketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed stream ticket",
            Self::BadSignature => "invalid stream ticket",
            Self::Expired => "expired stream ticket: evaluate the flags again for a new stream URL",
        })
    }
}

/// The signing key of tickets.
pub struct TicketKey([u8; 32]);

const PREFIX: &str = "t1";

impl TicketKey {
    /// Derived from the server's secret key (`secret_key` / `CUTOVER_SECRET_KEY`, loaded at
    /// start-up); without one (an app built in a test), a random key of this process.
    pub fn from_secret(secret_key: Option<&str>) -> Self {
        use cutover_domain::secrets::SecretKey;
        static RANDOM: OnceLock<String> = OnceLock::new();
        let material = match secret_key.and_then(|k| SecretKey::parse(k).ok()) {
            // The canonical encoding, so that replicas writing one key differently agree.
            Some(key) => key.encode(),
            None => RANDOM.get_or_init(|| SecretKey::generate().encode()).clone(),
        };
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(material.as_bytes()).expect("HMAC takes any key length");
        mac.update(b"cutover stream tickets v1");
        Self(mac.finalize().into_bytes().into())
    }

    fn sign(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(payload.as_bytes());
        mac
    }

    /// The ticket for `token_id` in `environment` at `now` (Unix seconds): the same one for the
    /// whole window, valid until the end of the next.
    pub fn issue(&self, workspace_id: &str, token_id: &str, environment: &str, now: i64) -> String {
        let expires = (now.div_euclid(WINDOW_SECONDS) + 2) * WINDOW_SECONDS;
        let payload = format!("{PREFIX}.{workspace_id}.{token_id}.{environment}.{expires}");
        let signature = hex::encode(self.sign(&payload).finalize().into_bytes());
        format!("{payload}.{signature}")
    }

    /// Checks a ticket's signature and expiry at `now` (Unix seconds).
    pub fn verify(&self, ticket: &str, now: i64) -> Result<StreamTicket, TicketError> {
        let (payload, signature) = ticket.rsplit_once('.').ok_or(TicketError::Malformed)?;
        let signature = hex::decode(signature).map_err(|_| TicketError::Malformed)?;
        // Constant time: a forger learns nothing from how long a refusal takes.
        self.sign(payload).verify_slice(&signature).map_err(|_| TicketError::BadSignature)?;
        let parts: Vec<&str> = payload.split('.').collect();
        let [PREFIX, workspace_id, token_id, environment, expires] = parts[..] else {
            return Err(TicketError::Malformed);
        };
        let expires: i64 = expires.parse().map_err(|_| TicketError::Malformed)?;
        if now >= expires {
            return Err(TicketError::Expired);
        }
        Ok(StreamTicket {
            workspace_id: workspace_id.to_owned(),
            token_id: token_id.to_owned(),
            environment: environment.to_owned(),
            expires,
        })
    }
}

/// The window a time falls in: part of the bulk ETag, so the advertised URL is refetched when
/// its ticket is renewed.
pub fn window(now: i64) -> i64 {
    now.div_euclid(WINDOW_SECONDS)
}

pub fn now_seconds() -> i64 {
    cutover_domain::Timestamp::now().as_micros().div_euclid(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: &str = "0190a0b0-0000-7000-8000-000000000001";
    const TOKEN: &str = "0190a0b0-0000-7000-8000-000000000002";

    fn key() -> TicketKey {
        TicketKey::from_secret(Some(&"ab".repeat(32)))
    }

    #[test]
    fn a_ticket_grants_its_workspace_token_and_environment_until_it_expires() {
        let now = 1_700_000_123;
        let ticket = key().issue(WS, TOKEN, "production", now);
        let granted = key().verify(&ticket, now).unwrap();
        assert_eq!(
            granted,
            StreamTicket {
                workspace_id: WS.into(),
                token_id: TOKEN.into(),
                environment: "production".into(),
                expires: (now / WINDOW_SECONDS + 2) * WINDOW_SECONDS,
            }
        );
        assert!(granted.expires - now > WINDOW_SECONDS && granted.expires - now <= 2 * WINDOW_SECONDS);
        assert_eq!(key().verify(&ticket, granted.expires - 1).unwrap(), granted);
        assert_eq!(key().verify(&ticket, granted.expires), Err(TicketError::Expired));
    }

    #[test]
    fn a_ticket_is_the_same_within_a_window_and_changes_with_it() {
        let start = 1_700_000_100 / WINDOW_SECONDS * WINDOW_SECONDS;
        let first = key().issue(WS, TOKEN, "production", start);
        assert_eq!(key().issue(WS, TOKEN, "production", start + WINDOW_SECONDS - 1), first);
        assert_ne!(key().issue(WS, TOKEN, "production", start + WINDOW_SECONDS), first);
        assert_eq!(window(start), window(start + WINDOW_SECONDS - 1));
    }

    #[test]
    fn any_change_to_a_ticket_or_another_key_is_refused() {
        let now = 1_700_000_000;
        let ticket = key().issue(WS, TOKEN, "production", now);
        let moved = ticket.replace(".production.", ".staging.");
        assert_eq!(key().verify(&moved, now), Err(TicketError::BadSignature));
        let later = ticket.replace(&format!(".{}.", (now / WINDOW_SECONDS + 2) * WINDOW_SECONDS), ".99999999999.");
        assert_eq!(key().verify(&later, now), Err(TicketError::BadSignature));
        let other = TicketKey::from_secret(Some(&"cd".repeat(32)));
        assert_eq!(other.verify(&ticket, now), Err(TicketError::BadSignature));
        for bad in ["", "t1", "t1.a.b.c.1.zz", "not a ticket"] {
            assert_eq!(key().verify(bad, now), Err(TicketError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn one_key_written_two_ways_signs_alike() {
        let hex_key = "ab".repeat(32);
        let b64_key = cutover_domain::secrets::SecretKey::parse(&hex_key).unwrap().encode();
        assert_ne!(hex_key, b64_key);
        let ticket = TicketKey::from_secret(Some(&hex_key)).issue(WS, TOKEN, "production", 0);
        assert!(TicketKey::from_secret(Some(&b64_key)).verify(&ticket, 0).is_ok());
    }
}
