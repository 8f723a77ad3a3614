//! The market's signing keys (`auth.jwt.algorithm: RS256`): a JSON Web Key Set (RFC 7517)
//! fetched from `auth.jwt.jwks_url` (default `{marketplace.api_url}/.well-known/jwks.json`),
//! kept in memory by key id, and fetched again when a token names a key not seen yet (at
//! most one fetch per [`MIN_REFETCH`], whatever the tokens say) and every [`REFRESH_EVERY`],
//! so that a key the market retires stops verifying.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::DecodingKey;
use serde::Deserialize;

/// The shortest time between two fetches of the key set: tokens naming unknown keys cannot
/// make the service hammer the market.
pub(crate) const MIN_REFETCH: Duration = Duration::from_secs(1);

/// How often the key set is fetched again in the background.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(600);

/// Why the key set could not be fetched.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwksError {
    #[error("fetching {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("{url} holds no usable RS256 key")]
    Empty { url: String },
}

/// The market's RS256 public keys by key id. Cheap to clone; clones share the keys.
#[derive(Clone)]
pub(crate) struct MarketKeys {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    http: reqwest::Client,
    keys: RwLock<Arc<HashMap<String, Arc<DecodingKey>>>>,
    /// Bumped whenever the set of key ids changes, so that tokens verified with a key the
    /// market has since withdrawn are verified again.
    generation: AtomicU64,
    /// When the last fetch was tried and whether it worked; one fetch at a time.
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl fmt::Debug for MarketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MarketKeys")
            .field("url", &self.inner.url)
            .field("keys", &self.kids())
            .finish()
    }
}

/// One key of a JWKS, as far as RS256 needs it.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

impl MarketKeys {
    pub(crate) fn new(url: String, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        Self {
            inner: Arc::new(Inner {
                url,
                http,
                keys: RwLock::new(Arc::default()),
                generation: AtomicU64::new(0),
                last: tokio::sync::Mutex::new(None),
            }),
        }
    }

    fn read(&self) -> Arc<HashMap<String, Arc<DecodingKey>>> {
        // Only ever replaced whole: a poisoned lock still holds a consistent map.
        self.inner
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The key `kid`, if the market published it at the last fetch.
    pub(crate) fn key(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.read().get(kid).cloned()
    }

    /// Changes whenever the set of key ids does.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The ids of the keys at hand, sorted.
    pub(crate) fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.read().keys().cloned().collect();
        kids.sort();
        kids
    }

    /// Fetches the key set. At most one fetch runs at a time and one starts per
    /// [`MIN_REFETCH`]: a caller arriving sooner waits for the next one rather than fail (a
    /// key the market has just made is found within a second), and callers that waited
    /// while another fetch ran take its outcome.
    pub(crate) async fn refresh(&self) -> Result<(), JwksError> {
        let asked = Instant::now();
        let mut last = self.inner.last.lock().await;
        if let Some((at, ok)) = *last {
            if at > asked {
                // Fetched while this caller waited for the lock.
                return if ok {
                    Ok(())
                } else {
                    Err(self.failed_moments_ago())
                };
            }
            if let Some(wait) = MIN_REFETCH.checked_sub(at.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        let result = self.fetch().await;
        *last = Some((Instant::now(), result.is_ok()));
        match result {
            Ok(keys) => {
                let mut current = self.inner.keys.write().unwrap_or_else(|e| e.into_inner());
                let same =
                    current.len() == keys.len() && keys.keys().all(|k| current.contains_key(k));
                *current = Arc::new(keys);
                if !same {
                    self.inner.generation.fetch_add(1, Ordering::Release);
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "the market's signing keys could not be fetched");
                Err(e)
            }
        }
    }

    fn failed_moments_ago(&self) -> JwksError {
        JwksError::Fetch {
            url: self.inner.url.clone(),
            reason: "the last attempt failed moments ago".to_owned(),
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<DecodingKey>>, JwksError> {
        let url = &self.inner.url;
        let failed = |reason: String| JwksError::Fetch {
            url: url.clone(),
            reason,
        };
        let response = self
            .inner
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| failed(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("status {}", response.status())));
        }
        let set: JwkSet = response
            .json()
            .await
            .map_err(|e| failed(format!("not a JWK set: {}", e.without_url())))?;
        let keys = parse_keys(set);
        if keys.is_empty() {
            return Err(JwksError::Empty { url: url.clone() });
        }
        Ok(keys)
    }

    /// Keeps the keys fresh every [`REFRESH_EVERY`] until every clone is dropped.
    pub(crate) fn spawn_refresh(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let _ = (MarketKeys { inner }).refresh().await;
                tokio::time::sleep(REFRESH_EVERY).await;
            }
        });
    }
}

/// The usable keys of `set`: RSA signing keys for RS256 with a key id and valid components.
/// Other keys (EC, encryption keys, other algorithms) are skipped, not trusted.
fn parse_keys(set: JwkSet) -> HashMap<String, Arc<DecodingKey>> {
    set.keys
        .into_iter()
        .filter(|k| k.kty == "RSA")
        .filter(|k| k.alg.as_deref().is_none_or(|a| a == "RS256"))
        .filter(|k| k.usage.as_deref().is_none_or(|u| u == "sig"))
        .filter_map(|k| {
            let n = URL_SAFE_NO_PAD.decode(k.n?).ok()?;
            let e = URL_SAFE_NO_PAD.decode(k.e?).ok()?;
            // Only a key aws-lc accepts for RS256 (2048 to 8192 bits) is kept.
            RsaPublicKeyComponents { n: &n, e: &e }
                .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
                .ok()?;
            let key = DecodingKey::from_rsa_raw_components(&n, &e);
            Some((k.kid?, Arc::new(key)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(json: serde_json::Value) -> JwkSet {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn only_rsa_signing_keys_for_rs256_are_kept() {
        // A 2048-bit modulus (its value does not matter for parsing) and e = 65537.
        let n = URL_SAFE_NO_PAD.encode([0xC5u8; 256]);
        let keys = parse_keys(set(serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "good", "alg": "RS256", "use": "sig", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "no-alg", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "ps256", "alg": "PS256", "n": n, "e": "AQAB"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "bad-b64", "n": "***", "e": "AQAB"},
        ]})));
        let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["good", "no-alg"]);
    }
}
