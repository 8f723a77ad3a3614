-- Sign-in through the market: a state and its PKCE verifier live until the callback uses them.
CREATE TABLE sso_states (
    state      TEXT PRIMARY KEY NOT NULL,
    verifier   TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
