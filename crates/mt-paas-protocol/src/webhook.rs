//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): the market signs each
//! command with `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
//!
//! The secret is written `whsec_<base64 key>`. Several signatures may be sent at once and
//! several secrets accepted at once, so a secret can be rotated without downtime.
//!
//! Verification runs before any authentication, so its cost is bounded whatever a caller
//! sends: the headers and the body have size limits, at most [`MAX_SIGNATURES`] signatures
//! are considered, and each accepted secret's MAC is computed once per message (not once per
//! signature offered). A refusal costs one HMAC per secret over at most [`MAX_BODY`] bytes.

use std::{fmt, str::FromStr};

use aws_lc_rs::hmac;
use base64::{Engine as _, engine::general_purpose::STANDARD};

/// `webhook-id`: the message's unique id (also the replay-protection key).
pub const HEADER_ID: &str = "webhook-id";
/// `webhook-timestamp`: Unix seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// `webhook-signature`: space-separated `v1,<base64>` signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// How far a timestamp may be from the receiver's clock, in seconds.
pub const TOLERANCE_SECONDS: i64 = 300;
/// Longest accepted `webhook-id`.
pub const MAX_ID_LEN: usize = 256;
/// Most signatures one `webhook-signature` header may carry (a sender sends one per secret
/// it signs with; two during a rotation).
pub const MAX_SIGNATURES: usize = 4;
/// Longest accepted `webhook-signature` header: [`MAX_SIGNATURES`] signatures and spaces.
pub const MAX_SIGNATURE_HEADER: usize = 256;
/// Largest signed body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// Length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// A signing secret (`whsec_...`). Its `Debug` never shows the key.
#[derive(Clone)]
pub struct WebhookSecret {
    key: hmac::Key,
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

/// Why a secret could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a webhook secret is `whsec_` followed by base64 of at least 24 bytes")]
pub struct InvalidSecret;

impl FromStr for WebhookSecret {
    type Err = InvalidSecret;

    /// `whsec_<base64>`; the base64 part is the HMAC key (Standard Webhooks).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let encoded = s.trim().strip_prefix("whsec_").ok_or(InvalidSecret)?;
        let key = STANDARD.decode(encoded).map_err(|_| InvalidSecret)?;
        if key.len() < 24 {
            return Err(InvalidSecret);
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
        })
    }
}

/// The three headers of a signed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: String,
    /// `webhook-signature`.
    pub signature: String,
}

fn content(id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// Signs `body` as message `id` at `timestamp` (Unix seconds) with every secret given (one
/// `v1,` signature each).
pub fn sign_with(
    secrets: &[WebhookSecret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> SignedHeaders {
    let timestamp = timestamp.to_string();
    let content = content(id, &timestamp, body);
    let signature = secrets
        .iter()
        .map(|s| {
            format!(
                "v1,{}",
                STANDARD.encode(hmac::sign(&s.key, &content).as_ref())
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    SignedHeaders {
        id: id.to_owned(),
        timestamp,
        signature,
    }
}

/// Signs `body` with one secret.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> SignedHeaders {
    sign_with(std::slice::from_ref(secret), id, timestamp, body)
}

/// Why a signed message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// A header is missing or empty.
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    /// `webhook-id` is too long or holds unprintable characters.
    #[error("the webhook-id header is invalid")]
    InvalidId,
    /// `webhook-timestamp` is not an integer.
    #[error("the webhook-timestamp header is not a Unix timestamp")]
    InvalidTimestamp,
    /// `webhook-signature` is longer than [`MAX_SIGNATURE_HEADER`] or carries more than
    /// [`MAX_SIGNATURES`] signatures.
    #[error("the webhook-signature header carries more than 4 signatures or 256 bytes")]
    TooManySignatures,
    /// The body is larger than [`MAX_BODY`].
    #[error("the signed body is larger than 64 KiB")]
    BodyTooLarge,
    /// The timestamp is more than five minutes from the receiver's clock.
    #[error("the message's timestamp is {skew} s from this server's clock (at most 300 s)")]
    OutsideTolerance {
        /// The difference, in seconds.
        skew: i64,
    },
    /// No `v1,` signature matches any accepted secret.
    #[error("no signature matches")]
    NoMatchingSignature,
}

/// Verifies signed messages against one or more secrets.
#[derive(Debug, Clone)]
pub struct Verifier {
    secrets: Vec<WebhookSecret>,
}

impl Verifier {
    /// A verifier accepting a signature by any of `secrets`.
    pub fn new(secrets: Vec<WebhookSecret>) -> Self {
        Self { secrets }
    }

    /// Checks the headers and body of a message received at `now` (Unix seconds). The
    /// comparison is constant-time; the timestamp must lie within ±300 s of `now`.
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        signature: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), WebhookError> {
        if id.is_empty() {
            return Err(WebhookError::MissingHeader(HEADER_ID));
        }
        if id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(WebhookError::InvalidId);
        }
        if timestamp.is_empty() {
            return Err(WebhookError::MissingHeader(HEADER_TIMESTAMP));
        }
        if signature.trim().is_empty() {
            return Err(WebhookError::MissingHeader(HEADER_SIGNATURE));
        }
        if signature.len() > MAX_SIGNATURE_HEADER {
            return Err(WebhookError::TooManySignatures);
        }
        if body.len() > MAX_BODY {
            return Err(WebhookError::BodyTooLarge);
        }
        let sent: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| WebhookError::InvalidTimestamp)?;
        let skew = now.saturating_sub(sent);
        if skew.abs() > TOLERANCE_SECONDS {
            return Err(WebhookError::OutsideTolerance { skew });
        }
        let mut offered = [[0u8; TAG_LEN]; MAX_SIGNATURES];
        let (mut entries, mut count) = (0, 0);
        for candidate in signature.split_ascii_whitespace() {
            let Some(encoded) = candidate.strip_prefix("v1,") else {
                continue;
            };
            entries += 1;
            if entries > MAX_SIGNATURES {
                return Err(WebhookError::TooManySignatures);
            }
            // A tag of another length can match nothing: it is not kept.
            if let Ok(tag) = STANDARD.decode(encoded)
                && let Ok(tag) = <[u8; TAG_LEN]>::try_from(tag.as_slice())
            {
                offered[count] = tag;
                count += 1;
            }
        }
        if count == 0 {
            return Err(WebhookError::NoMatchingSignature);
        }
        let content = content(id, timestamp.trim(), body);
        for secret in &self.secrets {
            let expected = hmac::sign(&secret.key, &content);
            if offered[..count].iter().any(|tag| {
                aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_ref(), tag).is_ok()
            }) {
                return Ok(());
            }
        }
        Err(WebhookError::NoMatchingSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = "whsec_bXQtcGFhcy1kZXYtd2ViaG9vay1zZWNyZXQtMzJieQ==";

    fn secret(s: &str) -> WebhookSecret {
        s.parse().unwrap()
    }

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // From the Standard Webhooks specification's test vectors.
        let secret = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        let headers = sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
        assert_eq!(
            headers.signature,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn verifies_and_refuses() {
        let s = secret(DEV);
        let v = Verifier::new(vec![s.clone()]);
        let h = sign(&s, "msg_1", 1000, b"{}");
        assert_eq!(
            v.verify("msg_1", &h.timestamp, &h.signature, b"{}", 1000),
            Ok(())
        );
        assert_eq!(
            v.verify("msg_1", &h.timestamp, &h.signature, b"{}", 1300),
            Ok(())
        );
        assert_eq!(
            v.verify("msg_1", &h.timestamp, &h.signature, b"{} ", 1000),
            Err(WebhookError::NoMatchingSignature),
            "tampered body"
        );
        assert_eq!(
            v.verify("msg_2", &h.timestamp, &h.signature, b"{}", 1000),
            Err(WebhookError::NoMatchingSignature),
            "another id"
        );
        assert_eq!(
            v.verify("msg_1", &h.timestamp, &h.signature, b"{}", 1000 + 600),
            Err(WebhookError::OutsideTolerance { skew: 600 })
        );
        assert_eq!(
            v.verify("msg_1", &h.timestamp, &h.signature, b"{}", 1000 - 301),
            Err(WebhookError::OutsideTolerance { skew: -301 })
        );
        let other = Verifier::new(vec![secret(
            "whsec_b3RoZXItc2VjcmV0LW9mLWVub3VnaC1sZW5ndGg=",
        )]);
        assert_eq!(
            other.verify("msg_1", &h.timestamp, &h.signature, b"{}", 1000),
            Err(WebhookError::NoMatchingSignature),
            "wrong secret"
        );
        assert_eq!(
            v.verify("", "1000", "v1,x", b"", 1000),
            Err(WebhookError::MissingHeader(HEADER_ID))
        );
        assert_eq!(
            v.verify("m", "soon", "v1,x", b"", 1000),
            Err(WebhookError::InvalidTimestamp)
        );
        assert_eq!(
            v.verify("m", "1000", " ", b"", 1000),
            Err(WebhookError::MissingHeader(HEADER_SIGNATURE))
        );
        assert_eq!(
            v.verify("m\n", "1000", "v1,x", b"", 1000),
            Err(WebhookError::InvalidId)
        );
        assert_eq!(
            v.verify("m", "1000", "v2,abc garbage", b"", 1000),
            Err(WebhookError::NoMatchingSignature)
        );
    }

    #[test]
    fn verification_is_bounded_whatever_the_headers_say() {
        let s = secret(DEV);
        let v = Verifier::new(vec![s.clone()]);
        let body = vec![b'x'; MAX_BODY];
        let good = sign(&s, "m", 5, &body);
        assert_eq!(v.verify("m", "5", &good.signature, &body, 5), Ok(()));
        // The flood of the issue: "v1, " 95,000 times.
        let flood = "v1, ".repeat(95_000);
        assert_eq!(
            v.verify("m", "5", &flood, &body, 5),
            Err(WebhookError::TooManySignatures)
        );
        // Five well-formed signatures, the good one last: more than a sender ever sends.
        let five = format!("{0} {0} {0} {0} {1}", "v1,AAAA", good.signature);
        assert!(five.len() <= MAX_SIGNATURE_HEADER);
        assert_eq!(
            v.verify("m", "5", &five, &body, 5),
            Err(WebhookError::TooManySignatures)
        );
        let four = format!("v1,AAAA v1,AAAA v1,AAAA {}", good.signature);
        assert_eq!(v.verify("m", "5", &four, &body, 5), Ok(()));
        let larger = vec![b'x'; MAX_BODY + 1];
        let signed = sign(&s, "m", 5, &larger);
        assert_eq!(
            v.verify("m", "5", &signed.signature, &larger, 5),
            Err(WebhookError::BodyTooLarge)
        );
        // Refusals that need no MAC at all.
        assert_eq!(
            v.verify("m", "5", "v1,not-base64!", &body, 5),
            Err(WebhookError::NoMatchingSignature)
        );
    }

    #[test]
    fn rotation_with_several_signatures_and_secrets() {
        let old = secret(DEV);
        let new = secret("whsec_bmV3LXJvdGF0ZWQtc2VjcmV0LW9mLWVub3VnaA==");
        let both = sign_with(&[old.clone(), new.clone()], "m", 5, b"x");
        assert_eq!(both.signature.split(' ').count(), 2);
        assert!(
            Verifier::new(vec![new.clone()])
                .verify("m", "5", &both.signature, b"x", 5)
                .is_ok()
        );
        assert!(
            Verifier::new(vec![old.clone()])
                .verify("m", "5", &both.signature, b"x", 5)
                .is_ok()
        );
        let by_new = sign(&new, "m", 5, b"x");
        assert!(
            Verifier::new(vec![old, new])
                .verify("m", "5", &by_new.signature, b"x", 5)
                .is_ok()
        );
    }

    #[test]
    fn secrets_are_checked_and_never_printed() {
        assert!("whsec_".parse::<WebhookSecret>().is_err());
        assert!(
            "bXQtcGFhcw==".parse::<WebhookSecret>().is_err(),
            "no prefix"
        );
        assert!(
            "whsec_c2hvcnQ=".parse::<WebhookSecret>().is_err(),
            "too short"
        );
        assert!("whsec_!!!".parse::<WebhookSecret>().is_err());
        assert_eq!(format!("{:?}", secret(DEV)), "WebhookSecret([redacted])");
    }
}
