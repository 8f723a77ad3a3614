//! The market's RS256 tokens: RSA-2048 signing keys kept in the market's database, published
//! as a JSON Web Key Set (RFC 7517) at `GET /api/v1/.well-known/jwks.json`, and tokens signed
//! with the newest key still in use. A service with `auth.jwt.algorithm: RS256` accepts them
//! when their `aud` names it.
//!
//! The first key is made when first needed; `rotate` adds a newer one (the older keys stay
//! published, so tokens already out keep verifying) and `retire` withdraws a key from the
//! set, after which the services stop accepting its tokens at their next fetch.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use aws_lc_rs::{
    encoding::AsDer,
    rand::SystemRandom,
    rsa::{KeyPair, KeySize},
    signature::{KeyPair as _, RSA_PKCS1_SHA256},
};
use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use mt_paas_protocol::{Jwk, JwkSet};
use serde::Serialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::{ActionError, Market, crypto, store::StoreError};

/// A key of the set, as the operator API lists it (never the private part).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SigningKeyInfo {
    /// The key id: its RFC 7638 thumbprint.
    pub kid: String,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was withdrawn from the set.
    #[serde(with = "time::serde::rfc3339::option")]
    pub retired_at: Option<OffsetDateTime>,
    /// Whether new tokens are signed with it.
    pub current: bool,
}

/// Parsed private keys by kid, so that a token costs one RSA signature and no parse.
#[derive(Default)]
pub(crate) struct KeyCache {
    parsed: Mutex<HashMap<String, Arc<KeyPair>>>,
    /// Held while the first key is made, so that concurrent first uses make one.
    first: tokio::sync::Mutex<()>,
}

type KeyRow = (String, String, OffsetDateTime, Option<OffsetDateTime>);

impl KeyCache {
    fn get(&self, kid: &str, pkcs8_b64: &str) -> Result<Arc<KeyPair>, StoreError> {
        let mut parsed = self.parsed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pair) = parsed.get(kid) {
            return Ok(pair.clone());
        }
        let corrupt = |detail: String| StoreError::Corrupt {
            what: "signing key",
            detail,
        };
        let der = STANDARD
            .decode(pkcs8_b64)
            .map_err(|e| corrupt(e.to_string()))?;
        let pair = Arc::new(KeyPair::from_pkcs8(&der).map_err(|e| corrupt(e.to_string()))?);
        parsed.insert(kid.to_owned(), pair.clone());
        Ok(pair)
    }
}

/// The public JWK of `pair`.
fn jwk(kid: &str, pair: &KeyPair) -> Jwk {
    let public = pair.public_key();
    Jwk {
        kty: "RSA".to_owned(),
        kid: kid.to_owned(),
        usage: "sig".to_owned(),
        alg: "RS256".to_owned(),
        n: URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
        e: URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
    }
}

/// The RFC 7638 thumbprint of an RSA key: SHA-256 over its required members in order.
fn thumbprint(pair: &KeyPair) -> String {
    let public = pair.public_key();
    let canonical = format!(
        r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
    );
    crypto::sha256_b64url(canonical.as_bytes())
}

fn key_failure(what: &str) -> ActionError {
    ActionError::Conflict(format!("the signing key could not be {what}"))
}

impl Market {
    /// Makes a new RSA-2048 signing key, stores it and returns its kid; tokens are signed
    /// with it from now on.
    pub async fn rotate_signing_key(&self) -> Result<String, ActionError> {
        // Key generation takes tens of milliseconds of CPU: off the async threads.
        let pair = tokio::task::spawn_blocking(|| KeyPair::generate(KeySize::Rsa2048))
            .await
            .map_err(|_| key_failure("generated"))?
            .map_err(|_| key_failure("generated"))?;
        let der = pair.as_der().map_err(|_| key_failure("encoded"))?;
        let kid = thumbprint(&pair);
        self.store()
            .add_signing_key(&kid, &STANDARD.encode(der.as_ref()))
            .await?;
        tracing::info!(%kid, "new signing key");
        Ok(kid)
    }

    /// Withdraws `kid` from the published set.
    pub async fn retire_signing_key(&self, kid: &str) -> Result<(), ActionError> {
        if self.store().retire_signing_key(kid).await? {
            tracing::info!(%kid, "signing key retired");
            Ok(())
        } else {
            Err(ActionError::NotFound {
                what: "signing key",
                id: kid.to_owned(),
            })
        }
    }

    /// Every signing key, oldest first.
    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyInfo>, ActionError> {
        let rows = self.store().signing_keys().await?;
        let current = rows
            .iter()
            .rev()
            .find(|(_, _, _, retired)| retired.is_none())
            .map(|(kid, ..)| kid.clone());
        Ok(rows
            .into_iter()
            .map(|(kid, _, created_at, retired_at)| SigningKeyInfo {
                current: current.as_deref() == Some(kid.as_str()),
                kid,
                created_at,
                retired_at,
            })
            .collect())
    }

    /// Every key row, after making the first key if none is in use.
    async fn key_rows(&self) -> Result<Vec<KeyRow>, ActionError> {
        let in_use = |rows: &[KeyRow]| rows.iter().any(|(.., retired)| retired.is_none());
        let rows = self.store().signing_keys().await?;
        if in_use(&rows) {
            return Ok(rows);
        }
        let _first = self.inner.signing.first.lock().await;
        let rows = self.store().signing_keys().await?;
        if in_use(&rows) {
            return Ok(rows);
        }
        self.rotate_signing_key().await?;
        Ok(self.store().signing_keys().await?)
    }

    /// The published key set: every key not retired (made first if there is none).
    pub async fn jwks(&self) -> Result<JwkSet, ActionError> {
        let mut keys = Vec::new();
        for (kid, pkcs8, _, retired) in &self.key_rows().await? {
            if retired.is_none() {
                let pair = self.inner.signing.get(kid, pkcs8)?;
                keys.push(jwk(kid, &pair));
            }
        }
        Ok(JwkSet { keys })
    }

    /// Signs `claims` with the current key (made first if there is none), adding `iss`,
    /// `iat` and `exp` (now + `sso.token_ttl_seconds`) where absent.
    pub async fn sign_token(&self, mut claims: Map<String, Value>) -> Result<String, ActionError> {
        let (kid, pkcs8) = self
            .key_rows()
            .await?
            .into_iter()
            .rev()
            .find(|(.., retired)| retired.is_none())
            .map(|(kid, pkcs8, ..)| (kid, pkcs8))
            .ok_or_else(|| key_failure("stored"))?;
        let pair = self.inner.signing.get(&kid, &pkcs8)?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let ttl = i64::try_from(self.config().sso.token_ttl_seconds).unwrap_or(3600);
        // The issuer is the market's API base: what its services know as
        // `marketplace.api_url` and check `iss` against.
        claims.entry("iss").or_insert_with(|| {
            format!("{}/api/v1", self.config().public_url.trim_end_matches('/')).into()
        });
        claims.entry("iat").or_insert_with(|| now.into());
        claims.entry("exp").or_insert_with(|| (now + ttl).into());
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
        let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(Value::Object(claims).to_string(), &mut token);
        let mut signature = vec![0u8; pair.public_modulus_len()];
        pair.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            token.as_bytes(),
            &mut signature,
        )
        .map_err(|_| key_failure("used"))?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }
}
