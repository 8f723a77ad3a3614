//! Tokens: [`JwtKeys`] verifies and issues the service's own HS256 tokens; [`TokenVerifier`]
//! verifies what `auth.jwt` accepts — the service's HS256 tokens when a secret is configured,
//! and with `algorithm: RS256` the market's RS256 tokens against the keys it publishes
//! (JWKS), addressed to this service (`aud`) and issued by its market (`iss`). Each algorithm
//! has its own kind of key, so a token can never pick how it is checked: an HS256 token is
//! never checked with an RSA public key as its HMAC secret (the classic algorithm-confusion
//! forgery), and `none` or any other algorithm is refused; so is a header naming critical
//! extensions (`crit`, RFC 7515 §4.1.11), none of which we understand.
//!
//! Signatures and registered claims are checked by `jsonwebtoken` (with the aws-lc backend,
//! the one crypto backend of the build). What a token verified to is remembered by the
//! verifier ([`TokenVerifier::verified`]), so identification and authentication of one
//! request — and the next requests with the same token — verify it once.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard},
    time::{SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use http::{HeaderValue, header};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Validation, errors::ErrorKind as JwtErrorKind,
};
use serde_json::{Map, Value};

use super::jwks::MarketKeys;
use crate::{
    config::{Config, JwtAlgorithm, JwtConfig, Secret},
    core::models::TenantId,
    http::{ApiError, ProblemCode},
};

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
    /// A required claim (`exp`; `aud` and `iss` for market tokens) is missing or has the
    /// wrong type.
    #[error("the token lacks a required claim (exp; aud and iss for market tokens)")]
    MissingClaim,
    /// A market token not addressed to this service (`aud`).
    #[error("the token is meant for another service")]
    Audience,
    /// A market token not issued by this service's market (`iss`).
    #[error("the token is issued by another market")]
    Issuer,
    /// A market token signed with a key the market does not publish (any more).
    #[error("the token is signed with an unknown key")]
    UnknownKey,
    /// The market's keys could not be fetched to check a market token (503, not 401).
    #[error("the market's signing keys cannot be fetched")]
    KeysUnavailable,
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
                "필수 클레임(exp, 마켓 토큰은 aud와 iss)이 없습니다.",
                "it lacks a required claim (exp; aud and iss for market tokens).",
            ),
            Self::Audience => (
                "이 서비스를 위한 토큰이 아닙니다(aud).",
                "it is meant for another service (aud).",
            ),
            Self::Issuer => (
                "이 서비스의 마켓이 발급한 토큰이 아닙니다(iss).",
                "it is issued by another market (iss).",
            ),
            Self::UnknownKey => (
                "마켓이 공개하지 않은 키로 서명되었습니다.",
                "it is signed with a key the market does not publish.",
            ),
            Self::KeysUnavailable => (
                "마켓의 서명 키를 가져올 수 없습니다.",
                "the market's signing keys cannot be fetched.",
            ),
        }
    }

    fn of(error: &jsonwebtoken::errors::Error) -> Self {
        match error.kind() {
            JwtErrorKind::InvalidSignature => Self::Signature,
            JwtErrorKind::ExpiredSignature => Self::Expired,
            JwtErrorKind::ImmatureSignature => Self::NotYetValid,
            JwtErrorKind::InvalidAudience => Self::Audience,
            JwtErrorKind::InvalidIssuer => Self::Issuer,
            JwtErrorKind::InvalidAlgorithm | JwtErrorKind::InvalidAlgorithmName => Self::Algorithm,
            JwtErrorKind::MissingRequiredClaim(_) => Self::MissingClaim,
            JwtErrorKind::InvalidClaimFormat(claim) if claim == "exp" => Self::MissingClaim,
            _ => Self::Malformed,
        }
    }
}

/// When a token is valid: its `exp` (required) and `nbf` claims.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    exp: f64,
    nbf: Option<f64>,
}

impl Window {
    /// The window of `claims`; `exp` must be a NumericDate, `nbf` one if present.
    pub(crate) fn of(claims: &Claims) -> Result<Self, TokenError> {
        let exp = claims
            .get("exp")
            .and_then(numeric_date)
            .ok_or(TokenError::MissingClaim)?;
        let nbf = match claims.get("nbf") {
            None => None,
            Some(nbf) => Some(numeric_date(nbf).ok_or(TokenError::Malformed)?),
        };
        Ok(Self { exp, nbf })
    }
}

/// Verifies and issues the service's HS256 tokens.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    leeway: u64,
    expiry_hours: u64,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKeys")
            .field("algorithm", &"HS256")
            .field("leeway_seconds", &self.leeway)
            .field("expiry_hours", &self.expiry_hours)
            .finish_non_exhaustive()
    }
}

fn check(window: Window, leeway: u64) -> Result<(), TokenError> {
    let now = now() as f64;
    let leeway = leeway as f64;
    if window.exp < now - leeway {
        return Err(TokenError::Expired);
    }
    if window.nbf.is_some_and(|nbf| nbf > now + leeway) {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A NumericDate claim (RFC 7519 §2): a JSON number of seconds, possibly fractional.
fn numeric_date(value: &Value) -> Option<f64> {
    value.as_f64().filter(|v| v.is_finite())
}

/// What `jsonwebtoken` checks of every token of `algorithm`: `exp` (required) and `nbf`.
fn validation(algorithm: Algorithm, leeway: u64) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = leeway;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    validation
}

/// The header of `token`, refused when it names critical extensions; a header naming an
/// algorithm `jsonwebtoken` does not know (`none`) is [`TokenError::Algorithm`].
fn header(token: &str) -> Result<jsonwebtoken::Header, TokenError> {
    match jsonwebtoken::decode_header(token) {
        Ok(header) if header.crit.is_some() => Err(TokenError::Malformed),
        Ok(header) => Ok(header),
        Err(_) => {
            let named = (token.split('.').count() == 3)
                .then(|| token.split('.').next())
                .flatten()
                .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
                .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
                .is_some_and(|h| h.get("alg").is_some_and(Value::is_string));
            Err(if named {
                TokenError::Algorithm
            } else {
                TokenError::Malformed
            })
        }
    }
}

fn decode(token: &str, key: &DecodingKey, validation: &Validation) -> Result<Claims, TokenError> {
    jsonwebtoken::decode::<Claims>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|e| TokenError::of(&e))
}

impl JwtKeys {
    /// Keys for `secret` with `config`'s leeway and expiry.
    pub fn hs256(secret: &Secret, config: &JwtConfig) -> Self {
        let secret = secret.expose().as_bytes();
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation: validation(Algorithm::HS256, config.leeway_seconds),
            leeway: config.leeway_seconds,
            expiry_hours: config.expiry_hours,
        }
    }

    /// Keys from `auth.jwt`, when a secret is configured.
    pub fn from_config(config: &JwtConfig) -> Option<Self> {
        config.secret.as_ref().map(|s| Self::hs256(s, config))
    }

    /// Verifies the algorithm (HS256 only), the signature, `exp` (required) and `nbf`, and
    /// returns the claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if header(token)?.alg != Algorithm::HS256 {
            return Err(TokenError::Algorithm);
        }
        self.decode(token)
    }

    fn decode(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = decode(token, &self.decoding, &self.validation)?;
        self.check(Window::of(&claims)?)?;
        Ok(claims)
    }

    /// Whether a token valid in `window` is valid now (`exp` and `nbf`, with the leeway).
    pub(crate) fn check(&self, window: Window) -> Result<(), TokenError> {
        check(window, self.leeway)
    }

    /// Issues a token with `claims`, adding `iat` and `exp` (now + `auth.jwt.expiry_hours`)
    /// where they are absent.
    pub fn issue(&self, mut claims: Claims) -> Result<String, jsonwebtoken::errors::Error> {
        let now = now();
        claims.entry("iat").or_insert_with(|| now.into());
        claims.entry("exp").or_insert_with(|| {
            now.saturating_add(self.expiry_hours.saturating_mul(3600))
                .into()
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )
    }
}

/// What a verified token says.
#[derive(Debug)]
pub(crate) struct Verified {
    /// `sub`, when the token names a user.
    pub(crate) sub: Option<String>,
    /// The tenant claim (`tenant_identification`'s `jwt_claim`, else `tenant_id`);
    /// `Err` when it is not a string holding a tenant id.
    pub(crate) tenant_id: Result<Option<TenantId>, TenantClaimError>,
    pub(crate) claims: Claims,
    pub(crate) window: Window,
}

/// Why a token's tenant claim is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TenantClaimError {
    /// A string that is no tenant id.
    Malformed,
    /// Not a string.
    NotAString,
}

/// How many verified tokens are remembered.
const VERIFIED_TOKENS: usize = 1024;

/// Tokens verified lately, so that the next sight of a token — in identification, then
/// authentication, then the client's next requests — skips the signature check and the
/// claims parse. Keyed by the whole token: only the very same bytes, signed by the same keys,
/// hit. Every hit checks `exp` and `nbf` again, so an entry never outlives its token, and the
/// whole cache is dropped when the market's key set changes (a withdrawn key's tokens must
/// stop working). Refused tokens are not remembered.
#[derive(Default)]
struct VerifiedTokens {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    /// The key-set generation the entries were verified under.
    generation: u64,
    tokens: HashMap<Box<str>, Arc<Verified>>,
}

impl VerifiedTokens {
    /// The entries, emptied first if the key set changed since they were verified.
    fn lock(&self, generation: u64) -> MutexGuard<'_, Entries> {
        // Every mutation is one map operation: a poisoned map is still consistent.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.generation != generation {
            entries.tokens.clear();
            entries.generation = generation;
        }
        entries
    }
}

/// Verifies the tokens `auth.jwt` accepts: the service's own HS256 tokens (with a secret) and,
/// with `algorithm: RS256`, the market's RS256 tokens addressed to this service (`aud`) and
/// issued by its market (`iss`).
///
/// [`verify`](Self::verify) never waits: a market token whose key is not known yet fails with
/// [`TokenError::UnknownKey`]; [`verify_fetching`](Self::verify_fetching) then fetches the
/// market's keys (at most once every few seconds) and tries again. Clones share the market's
/// keys and the verified tokens.
#[derive(Clone)]
pub struct TokenVerifier {
    own: Option<JwtKeys>,
    market: Option<MarketKeys>,
    market_validation: Validation,
    audience: Box<str>,
    tenant_claim: Box<str>,
    leeway: u64,
    verified: Arc<VerifiedTokens>,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("hs256", &self.own.is_some())
            .field("rs256", &self.market)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// The verifier of `config.auth.jwt`; `None` when it accepts no token at all (HS256
    /// without a secret).
    pub fn from_config(config: &Config) -> Option<Self> {
        let jwt = &config.auth.jwt;
        let own = JwtKeys::from_config(jwt);
        let api_url = config.marketplace.api_url.trim_end_matches('/');
        let market = (jwt.algorithm == JwtAlgorithm::RS256).then(|| {
            let url = jwt
                .jwks_url
                .clone()
                .unwrap_or_else(|| format!("{api_url}/.well-known/jwks.json"));
            MarketKeys::new(
                url,
                std::time::Duration::from_millis(config.marketplace.request_timeout_ms),
            )
        });
        if own.is_none() && market.is_none() {
            return None;
        }
        let issuer = jwt.issuer.as_deref().unwrap_or(api_url);
        let mut market_validation = validation(Algorithm::RS256, jwt.leeway_seconds);
        market_validation.validate_aud = true;
        market_validation.set_audience(&[config.service.id.as_str()]);
        market_validation.set_issuer(&[issuer]);
        market_validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        Some(Self {
            own,
            market,
            market_validation,
            audience: config.service.id.as_str().into(),
            tenant_claim: config.tenant_claim().into(),
            leeway: jwt.leeway_seconds,
            verified: Arc::default(),
        })
    }

    /// The market's keys, when market tokens are accepted.
    pub(crate) fn market_keys(&self) -> Option<&MarketKeys> {
        self.market.as_ref()
    }

    /// Changes whenever the market's key set does: what was verified before may not verify now.
    pub(crate) fn generation(&self) -> u64 {
        self.market.as_ref().map_or(0, MarketKeys::generation)
    }

    /// Verifies `token` with the keys at hand and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = header(token)?;
        match (header.alg, &self.own, &self.market) {
            (Algorithm::HS256, Some(own), _) => own.decode(token),
            (Algorithm::RS256, _, Some(market)) => {
                let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
                let key = market.key(kid).ok_or(TokenError::UnknownKey)?;
                let claims = decode(token, &key, &self.market_validation)?;
                self.check(Window::of(&claims)?)?;
                Ok(claims)
            }
            _ => Err(TokenError::Algorithm),
        }
    }

    /// Verifies `token`, fetching the market's keys first when it is signed with a key not
    /// known yet.
    pub async fn verify_fetching(&self, token: &str) -> Result<Claims, TokenError> {
        match (self.verify(token), &self.market) {
            (Err(TokenError::UnknownKey), Some(market)) => {
                if market.refresh().await.is_err() {
                    return Err(TokenError::KeysUnavailable);
                }
                self.verify(token)
            }
            (result, _) => result,
        }
    }

    /// What `token` verified to, from the cache when it was verified before (and is still
    /// within its window); verified and remembered otherwise. Never waits: a market token
    /// with a key not known yet is [`TokenError::UnknownKey`].
    pub(crate) fn verified(&self, token: &str) -> Result<Arc<Verified>, TokenError> {
        let generation = self.generation();
        if let Some(hit) = self.verified.lock(generation).tokens.get(token).cloned() {
            self.check(hit.window)?;
            return Ok(hit);
        }
        let claims = self.verify(token);
        self.remember(generation, token, claims)
    }

    /// [`verified`](Self::verified), fetching the market's keys when needed.
    pub(crate) async fn verified_fetching(&self, token: &str) -> Result<Arc<Verified>, TokenError> {
        match self.verified(token) {
            Err(TokenError::UnknownKey) if self.market.is_some() => {
                let generation = self.generation();
                let claims = self.verify_fetching(token).await;
                self.remember(generation, token, claims)
            }
            result => result,
        }
    }

    fn remember(
        &self,
        generation: u64,
        token: &str,
        claims: Result<Claims, TokenError>,
    ) -> Result<Arc<Verified>, TokenError> {
        let claims = claims?;
        let window = Window::of(&claims)?;
        let tenant_id = match claims.get(&*self.tenant_claim) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => TenantId::parse_lenient(s)
                .map(Some)
                .map_err(|_| TenantClaimError::Malformed),
            Some(_) => Err(TenantClaimError::NotAString),
        };
        // A token without a subject names a tenant, not a user.
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let verified = Arc::new(Verified {
            sub,
            tenant_id,
            claims,
            window,
        });
        let mut entries = self.verified.lock(self.generation());
        // Verified under keys that changed meanwhile: answer it, but do not remember it.
        if entries.generation == generation {
            let tokens = &mut entries.tokens;
            if tokens.len() >= VERIFIED_TOKENS {
                tokens.retain(|_, v| check(v.window, self.leeway).is_ok());
                if tokens.len() >= VERIFIED_TOKENS {
                    tokens.clear();
                }
            }
            tokens.insert(token.into(), verified.clone());
        }
        Ok(verified)
    }

    /// Whether a token valid in `window` is valid now (`exp` and `nbf`, with the leeway).
    pub(crate) fn check(&self, window: Window) -> Result<(), TokenError> {
        check(window, self.leeway)
    }
}

/// The problem for a refused token: 401 `invalid_token` with the reason, or 503 when the
/// market's keys could not be fetched to decide.
pub(crate) fn token_problem(e: TokenError) -> ApiError {
    if e == TokenError::KeysUnavailable {
        return ApiError::new(ProblemCode::MarketUnavailable)
            .header(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    let (ko, en) = e.localized();
    ApiError::new(ProblemCode::InvalidToken)
        .localized_param("reason", ko, en)
        .header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        )
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

    /// Identification and authentication hold clones of one verifier: a token's signature
    /// is checked once, and the second sight is the same verified result.
    #[test]
    fn a_token_is_verified_once_and_clones_share_the_result() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "auth:\n  jwt:\n    secret: s1\ndatabase:\n  tenant:\n    migrations: null\n",
        )
        .unwrap();
        let config = crate::config::ConfigLoader::new(&path)
            .vars(|_| None)
            .load()
            .unwrap();
        let authentication = TokenVerifier::from_config(&config).unwrap();
        let identification = authentication.clone();
        let token = keys("s1")
            .issue(claims(json!({"sub": "u1", "tenant_id": "hallym"})))
            .unwrap();
        let first = identification.verified(&token).unwrap();
        let second = authentication.verified(&token).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "verified once, shared");
        assert_eq!(second.tenant_id, Ok(Some("hallym".parse().unwrap())));
        let forged = format!("{}x", &token[..token.len() - 1]);
        assert!(authentication.verified(&forged).is_err());
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
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
            &json!({"exp": future}),
            &jsonwebtoken::EncodingKey::from_secret(b"s1"),
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
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"tenant_id": "x"}),
            &jsonwebtoken::EncodingKey::from_secret(b"s1"),
        )
        .unwrap();
        assert_eq!(k.verify(&no_exp), Err(TokenError::MissingClaim));
    }

    fn reference(claims: &Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            claims,
            &jsonwebtoken::EncodingKey::from_secret(b"s1"),
        )
        .unwrap()
    }

    #[test]
    fn agrees_with_an_independent_implementation() {
        let k = keys("s1");
        let exp = now() + 600;
        // Theirs verifies here …
        let theirs = reference(&json!({"sub": "u1", "tenant_id": "snu", "exp": exp}));
        assert_eq!(k.verify(&theirs).unwrap()["sub"], "u1");
        // … and ours verifies there.
        let ours = k.issue(claims(json!({"sub": "u2"}))).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        let data = jsonwebtoken::decode::<Claims>(
            &ours,
            &jsonwebtoken::DecodingKey::from_secret(b"s1"),
            &validation,
        )
        .unwrap();
        assert_eq!(data.claims["sub"], "u2");
    }

    #[test]
    fn refuses_tampering_and_odd_shapes() {
        let k = keys("s1");
        let exp = now() + 600;
        let token = reference(&json!({"tenant_id": "snu", "exp": exp}));
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let (header, _) = signed.split_once('.').unwrap();
        // Another payload under the same signature.
        let forged_payload =
            URL_SAFE_NO_PAD.encode(format!(r#"{{"tenant_id":"kaist","exp":{exp}}}"#));
        let forged = format!("{header}.{forged_payload}.{signature}");
        assert_eq!(k.verify(&forged), Err(TokenError::Signature));
        // Padding, extra parts, another signature.
        assert_eq!(k.verify(&format!("{token}=")), Err(TokenError::Malformed));
        assert_eq!(k.verify(&format!("{token}.x")), Err(TokenError::Malformed));
        let resigned = format!("{}AAAA", &token[..token.len() - 4]);
        assert_eq!(k.verify(&resigned), Err(TokenError::Signature));
        // A critical extension we do not understand.
        let crit = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#);
        let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{exp}}}"#));
        let input = format!("{crit}.{payload}");
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"s1"),
            input.as_bytes(),
        );
        let crit_token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
        assert_eq!(k.verify(&crit_token), Err(TokenError::Malformed));
        // exp of the wrong type; nbf of the wrong type.
        let text_exp = reference(&json!({"exp": "tomorrow"}));
        assert_eq!(k.verify(&text_exp), Err(TokenError::MissingClaim));
        let text_nbf = reference(&json!({"exp": exp, "nbf": "now"}));
        assert_eq!(k.verify(&text_nbf), Err(TokenError::Malformed));
    }

    #[test]
    fn leeway_applies_to_exp_and_nbf() {
        let config: JwtConfig = serde_json::from_value(json!({
            "secret": "s1", "algorithm": "HS256", "expiry_hours": 1, "leeway_seconds": 60
        }))
        .unwrap();
        let k = JwtKeys::from_config(&config).unwrap();
        let now = now();
        let just_expired = reference(&json!({"exp": now - 30}));
        assert!(k.verify(&just_expired).is_ok());
        let long_expired = reference(&json!({"exp": now - 120}));
        assert_eq!(k.verify(&long_expired), Err(TokenError::Expired));
        let soon = reference(&json!({"exp": now + 600, "nbf": now + 30}));
        assert!(k.verify(&soon).is_ok());
        let later = reference(&json!({"exp": now + 600, "nbf": now + 120}));
        assert_eq!(k.verify(&later), Err(TokenError::NotYetValid));
    }
}
