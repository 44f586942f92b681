-- Web UI sessions: a browser signs in with an API token and gets a session cookie. Only the
-- cookie's sha256 is kept; the session acts as its token, so revoking the token ends it.
CREATE TABLE ui_sessions (
    hash       TEXT PRIMARY KEY,
    token_id   TEXT NOT NULL REFERENCES tokens (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX ui_sessions_by_token ON ui_sessions (token_id);
CREATE INDEX ui_sessions_by_expiry ON ui_sessions (expires_at);
