//! Randomness for ids, nonces and jitter, from the system's CSPRNG (aws-lc-rs).
//!
//! An id or nonce the RNG could not make is an error for the caller to handle: never a
//! zero, clock-based or repeated value, which an attacker could predict or replay.

/// The system's random number generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system's random number generator failed")]
pub(crate) struct NoRandomness;

/// `N` random bytes.
pub(crate) fn bytes<const N: usize>() -> Result<[u8; N], NoRandomness> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| NoRandomness)?;
    Ok(bytes)
}

/// A new random UUID (v4), the form xAPI statement ids and alert event ids take.
pub(crate) fn uuid() -> Result<uuid::Uuid, NoRandomness> {
    Ok(uuid::Builder::from_random_bytes(bytes()?).into_uuid())
}

/// `base` scaled by a random factor in [0.75, 1.25]: retries of many replicas spread out.
/// Jitter is no secret: without randomness it is the midpoint, `base` itself.
pub(crate) fn jitter(base: std::time::Duration) -> std::time::Duration {
    let spread = bytes::<1>().map_or(0.25, |[b]| f64::from(b) / 510.0);
    base.mul_f64(0.75 + spread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_random_version_4() {
        let id = uuid().unwrap();
        assert_eq!(id.get_version(), Some(uuid::Version::Random));
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4");
        assert_ne!(id, uuid().unwrap());
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        let base = std::time::Duration::from_secs(4);
        for _ in 0..200 {
            let d = jitter(base);
            let quarter = std::time::Duration::from_secs(3)..=std::time::Duration::from_secs(5);
            assert!(quarter.contains(&d), "{d:?}");
        }
    }
}
