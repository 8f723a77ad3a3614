//! HS256 tokens: [`JwtKeys`] verifies (exp, nbf, a small leeway, exactly one algorithm) and
//! issues them.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde_json::{Map, Value};

use crate::config::{JwtConfig, Secret};

/// The claims of a verified token.
pub type Claims = Map<String, Value>;

/// Why a token was refused; worded for the caller in Korean and English.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    #[error("the token is malformed")]
    Malformed,
    /// The header names another algorithm (`none` included).
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    /// The signature does not match.
    #[error("the token's signature is invalid")]
    Signature,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` lies ahead.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// A required claim (`exp`) is missing or has the wrong type.
    #[error("the token lacks a required claim (exp)")]
    MissingClaim,
}

impl TokenError {
    /// The reason in Korean and in English.
    pub fn localized(self) -> (&'static str, &'static str) {
        match self {
            Self::Malformed => ("토큰 형식이 올바르지 않습니다.", "it is malformed."),
            Self::Algorithm => (
                "허용되지 않는 서명 알고리즘입니다.",
                "its algorithm is not accepted.",
            ),
            Self::Signature => ("서명이 올바르지 않습니다.", "its signature is invalid."),
            Self::Expired => ("토큰이 만료되었습니다.", "it has expired."),
            Self::NotYetValid => ("아직 사용할 수 없는 토큰입니다.", "it is not valid yet."),
            Self::MissingClaim => (
                "필수 클레임(exp)이 없습니다.",
                "it lacks a required claim (exp).",
            ),
        }
    }
}

/// Verifies and issues the service's HS256 tokens.
#[derive(Clone)]
pub struct JwtKeys {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    expiry_hours: u64,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKeys")
            .field("algorithm", &"HS256")
            .field("expiry_hours", &self.expiry_hours)
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    /// Keys for `secret` with `config`'s leeway and expiry.
    pub fn hs256(secret: &Secret, config: &JwtConfig) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = config.leeway_seconds;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        Self {
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            expiry_hours: config.expiry_hours,
        }
    }

    /// Keys from `auth.jwt`, when a secret is configured.
    pub fn from_config(config: &JwtConfig) -> Option<Self> {
        config.secret.as_ref().map(|s| Self::hs256(s, config))
    }

    /// Verifies the signature, the algorithm, `exp` and `nbf`, and returns the claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenError::Algorithm,
            // `alg: none` (or any name the library does not know) fails to parse as a header;
            // say so rather than "malformed".
            _ if header_names_an_algorithm(token) => TokenError::Algorithm,
            _ => TokenError::Malformed,
        })?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Algorithm);
        }
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => TokenError::Signature,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::MissingRequiredClaim(_) => TokenError::MissingClaim,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    TokenError::Algorithm
                }
                _ => TokenError::Malformed,
            })
    }

    /// Issues a token with `claims`, adding `iat` and `exp` (now + `auth.jwt.expiry_hours`)
    /// where they are absent.
    pub fn issue(&self, mut claims: Claims) -> Result<String, jsonwebtoken::errors::Error> {
        let now = jsonwebtoken::get_current_timestamp();
        claims.entry("iat").or_insert_with(|| now.into());
        claims
            .entry("exp")
            .or_insert_with(|| (now + self.expiry_hours * 3600).into());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }
}

/// Whether the token's header is JSON with a string `alg` (used to explain a refusal).
fn header_names_an_algorithm(token: &str) -> bool {
    use base64::Engine as _;
    let Some(header) = token.split('.').next() else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .is_some_and(|h| h.get("alg").is_some_and(Value::is_string))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn keys(secret: &str) -> JwtKeys {
        let config: JwtConfig = serde_json::from_value(json!({
            "secret": secret, "algorithm": "HS256", "expiry_hours": 1, "leeway_seconds": 0
        }))
        .unwrap();
        JwtKeys::from_config(&config).unwrap()
    }

    fn claims(v: Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn issued_tokens_verify() {
        let k = keys("s1");
        let token = k.issue(claims(json!({"tenant_id": "hallym"}))).unwrap();
        assert_eq!(k.verify(&token).unwrap()["tenant_id"], "hallym");
    }

    #[test]
    fn refuses_forged_expired_none_and_other_algorithms() {
        let k = keys("s1");
        let other = keys("s2").issue(claims(json!({"tenant_id": "x"}))).unwrap();
        assert_eq!(k.verify(&other), Err(TokenError::Signature));

        let expired = k.issue(claims(json!({"exp": 1_000_000}))).unwrap();
        assert_eq!(k.verify(&expired), Err(TokenError::Expired));

        let future = jsonwebtoken::get_current_timestamp() + 3600;
        let early = k.issue(claims(json!({"nbf": future}))).unwrap();
        assert_eq!(k.verify(&early), Err(TokenError::NotYetValid));

        // {"alg":"none","typ":"JWT"}.{"tenant_id":"x","exp":9999999999}.
        let none =
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJ0ZW5hbnRfaWQiOiJ4IiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert_eq!(k.verify(none), Err(TokenError::Algorithm));

        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &json!({"exp": future}),
            &EncodingKey::from_secret(b"s1"),
        )
        .unwrap();
        assert_eq!(k.verify(&hs512), Err(TokenError::Algorithm));

        assert_eq!(k.verify("garbage"), Err(TokenError::Malformed));
        assert_eq!(k.verify(""), Err(TokenError::Malformed));
    }

    #[test]
    fn exp_is_required() {
        let k = keys("s1");
        let no_exp = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"tenant_id": "x"}),
            &EncodingKey::from_secret(b"s1"),
        )
        .unwrap();
        assert_eq!(k.verify(&no_exp), Err(TokenError::MissingClaim));
    }
}
