//! Ids, hashes and password checks of the market (aws-lc-rs, the one crypto backend).

use aws_lc_rs::{digest, pbkdf2, rand::SecureRandom};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

const PBKDF2_ROUNDS: u32 = 100_000;

/// The system's random number generator failed: no id, token or salt was made (never a
/// zero, clock-based or repeated one, which could be guessed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system's random number generator failed")]
pub struct NoRandomness;

/// `{prefix}_{32 hex}` from the system's random source.
pub(crate) fn new_id(prefix: &str) -> Result<String, NoRandomness> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| NoRandomness)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{prefix}_{hex}"))
}

/// A random URL-safe token of `bytes` bytes.
pub(crate) fn random_token(bytes: usize) -> Result<String, NoRandomness> {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| NoRandomness)?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// Hex SHA-256.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    digest::digest(&digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Base64url SHA-256 (PKCE's S256).
pub(crate) fn sha256_b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, data))
}

/// Constant-time equality.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// `pbkdf2-sha256$rounds$salt$hash`.
pub(crate) fn hash_password(password: &str) -> Result<String, NoRandomness> {
    let salt = random_token(16)?;
    let mut out = [0u8; 32];
    let rounds = std::num::NonZeroU32::new(PBKDF2_ROUNDS).expect("non-zero");
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt.as_bytes(),
        password.as_bytes(),
        &mut out,
    );
    Ok(format!(
        "pbkdf2-sha256${PBKDF2_ROUNDS}${salt}${}",
        URL_SAFE_NO_PAD.encode(out)
    ))
}

/// Whether `password` matches a [`hash_password`] hash.
pub(crate) fn verify_password(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("pbkdf2-sha256"), Some(rounds), Some(salt), Some(hash)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(rounds), Ok(expected)) = (rounds.parse::<u32>(), URL_SAFE_NO_PAD.decode(hash)) else {
        return false;
    };
    let Some(rounds) = std::num::NonZeroU32::new(rounds) else {
        return false;
    };
    pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt.as_bytes(),
        password.as_bytes(),
        &expected,
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_shaped() {
        let a = new_id("cmd").unwrap();
        assert!(a.starts_with("cmd_") && a.len() == 36);
        assert_ne!(a, new_id("cmd").unwrap());
    }

    #[test]
    fn passwords_verify() {
        let h = hash_password("dev-password").unwrap();
        assert!(verify_password("dev-password", &h));
        assert!(!verify_password("dev-passwore", &h));
        assert!(!verify_password("dev-password", "garbage"));
    }

    #[test]
    fn pkce_s256_matches_rfc7636() {
        // RFC 7636, appendix B.
        assert_eq!(
            sha256_b64url(b"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
