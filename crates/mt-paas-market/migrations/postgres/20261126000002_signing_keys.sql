-- The RSA keys the market signs its RS256 tokens with (published as a JWK set).
-- pkcs8 is the private key, PKCS #8 DER in base64; retired keys are no longer published.

CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY NOT NULL,
    pkcs8      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    retired_at TIMESTAMPTZ
);
