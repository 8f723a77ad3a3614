//! Field encryption (`security.encryption`): AES-256-GCM with a key id inside every
//! ciphertext, so keys rotate without re-encrypting everything at once.
//!
//! ```
//! use mt_paas::FieldCipher;
//!
//! let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // base64 of 32 bytes
//! let cipher = FieldCipher::new(key, &[]).unwrap();
//! let sealed = cipher.seal("hallym/student.email", b"kim@hallym.ac.kr").unwrap();
//! assert!(sealed.starts_with("mtp1."));
//! assert_eq!(cipher.open("hallym/student.email", &sealed).unwrap(), b"kim@hallym.ac.kr");
//! // Bound to its context: the same ciphertext does not open for another tenant or field.
//! assert!(cipher.open("korea/student.email", &sealed).is_err());
//! ```
//!
//! A sealed value is `mtp1.` + base64url(key id ‖ nonce ‖ ciphertext ‖ tag). The key id is
//! the first four bytes of SHA-256 of the key. [`FieldCipher::open`] finds the key by its id
//! among `key` and `previous_keys`; [`FieldCipher::seal`] always uses `key`.

use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    digest,
};
use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};

const PREFIX: &str = "mtp1.";
const KID_LEN: usize = 4;

/// Why a value could not be sealed or opened. Never garbage: a wrong key is an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptionError {
    /// A key is not base64 of 32 bytes (the key itself is never shown).
    #[error("security.encryption.{0}: a key is base64 of exactly 32 bytes")]
    InvalidKey(&'static str),
    /// Field encryption is not enabled.
    #[error("field encryption is off: set security.encryption.enabled and key")]
    NotConfigured,
    /// The value is not something `seal` made.
    #[error("not a sealed value")]
    Malformed,
    /// The value was sealed with a key that is neither `key` nor one of `previous_keys`.
    #[error("sealed with an unknown key (id {0}); add it to security.encryption.previous_keys")]
    UnknownKey(String),
    /// The value was altered, or belongs to another context.
    #[error("the value does not open: it was altered or sealed for another context")]
    Tampered,
    /// The system's random number generator gave no nonce: nothing was sealed (a repeated
    /// nonce would expose both values).
    #[error("the system's random number generator failed: nothing was sealed")]
    NoRandomness,
}

struct Key {
    id: [u8; KID_LEN],
    aead: LessSafeKey,
}

/// Seals and opens field values.
pub struct FieldCipher {
    current: Key,
    previous: Vec<Key>,
}

impl std::fmt::Debug for FieldCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldCipher")
            .field("key_id", &hex(&self.current.id))
            .field("previous", &self.previous.len())
            .finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn key(encoded: &str, which: &'static str) -> Result<Key, EncryptionError> {
    let bytes = STANDARD
        .decode(encoded.trim())
        .map_err(|_| EncryptionError::InvalidKey(which))?;
    if bytes.len() != 32 {
        return Err(EncryptionError::InvalidKey(which));
    }
    let digest = digest::digest(&digest::SHA256, &bytes);
    let mut id = [0u8; KID_LEN];
    id.copy_from_slice(&digest.as_ref()[..KID_LEN]);
    let unbound =
        UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| EncryptionError::InvalidKey(which))?;
    Ok(Key {
        id,
        aead: LessSafeKey::new(unbound),
    })
}

impl FieldCipher {
    /// A cipher sealing with `key` and also opening with `previous` (base64 of 32 bytes each).
    pub fn new(key_b64: &str, previous: &[&str]) -> Result<Self, EncryptionError> {
        Ok(Self {
            current: key(key_b64, "key")?,
            previous: previous
                .iter()
                .map(|k| key(k, "previous_keys"))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Seals `plaintext` for `context` (e.g. `"{tenant}/{table}.{column}"`): the value opens
    /// only with the same context.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String, EncryptionError> {
        let nonce: [u8; NONCE_LEN] =
            crate::random::bytes().map_err(|_| EncryptionError::NoRandomness)?;
        let mut buffer = plaintext.to_vec();
        self.current
            .aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buffer,
            )
            .expect("AES-GCM seals any input shorter than 64 GiB");
        let mut out = Vec::with_capacity(KID_LEN + NONCE_LEN + buffer.len());
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buffer);
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// Opens a value sealed for `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, EncryptionError> {
        let encoded = sealed
            .strip_prefix(PREFIX)
            .ok_or(EncryptionError::Malformed)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| EncryptionError::Malformed)?;
        if bytes.len() < KID_LEN + NONCE_LEN + 16 {
            return Err(EncryptionError::Malformed);
        }
        let (id, rest) = bytes.split_at(KID_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| EncryptionError::UnknownKey(hex(id)))?;
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| EncryptionError::Malformed)?;
        let mut buffer = ciphertext.to_vec();
        let plaintext = key
            .aead
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buffer)
            .map_err(|_| EncryptionError::Tampered)?;
        Ok(plaintext.to_vec())
    }

    /// [`seal`](Self::seal) for text.
    pub fn seal_str(&self, context: &str, plaintext: &str) -> Result<String, EncryptionError> {
        self.seal(context, plaintext.as_bytes())
    }

    /// [`open`](Self::open) for text.
    pub fn open_str(&self, context: &str, sealed: &str) -> Result<String, EncryptionError> {
        String::from_utf8(self.open(context, sealed)?).map_err(|_| EncryptionError::Tampered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const K2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

    #[test]
    fn round_trip_and_fresh_nonces() {
        let c = FieldCipher::new(K1, &[]).unwrap();
        let a = c.seal("t/f", b"secret").unwrap();
        let b = c.seal("t/f", b"secret").unwrap();
        assert_ne!(a, b, "a fresh nonce each time");
        assert_eq!(c.open("t/f", &a).unwrap(), b"secret");
        assert_eq!(
            c.open_str("t/f", &c.seal_str("t/f", "한글").unwrap())
                .unwrap(),
            "한글"
        );
    }

    #[test]
    fn rotation_opens_old_values_and_seals_with_the_new_key() {
        let old = FieldCipher::new(K1, &[]).unwrap();
        let sealed_old = old.seal("ctx", b"v").unwrap();
        let rotated = FieldCipher::new(K2, &[K1]).unwrap();
        assert_eq!(rotated.open("ctx", &sealed_old).unwrap(), b"v");
        let sealed_new = rotated.seal("ctx", b"v").unwrap();
        assert!(matches!(
            old.open("ctx", &sealed_new),
            Err(EncryptionError::UnknownKey(_))
        ));
        let without_old = FieldCipher::new(K2, &[]).unwrap();
        assert!(matches!(
            without_old.open("ctx", &sealed_old),
            Err(EncryptionError::UnknownKey(_))
        ));
    }

    #[test]
    fn tampering_and_bad_input_are_errors_never_garbage() {
        let c = FieldCipher::new(K1, &[]).unwrap();
        let sealed = c.seal("ctx", b"value").unwrap();
        let mut chars: Vec<char> = sealed.chars().collect();
        let last = chars.len() - 3;
        chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert_eq!(c.open("ctx", &tampered), Err(EncryptionError::Tampered));
        assert_eq!(c.open("other", &sealed), Err(EncryptionError::Tampered));
        assert_eq!(c.open("ctx", "plain text"), Err(EncryptionError::Malformed));
        assert_eq!(c.open("ctx", "mtp1.!!!"), Err(EncryptionError::Malformed));
        assert_eq!(c.open("ctx", "mtp1.AAAA"), Err(EncryptionError::Malformed));
        assert!(matches!(
            FieldCipher::new("c2hvcnQ=", &[]),
            Err(EncryptionError::InvalidKey("key"))
        ));
        assert!(matches!(
            FieldCipher::new(K1, &["nope"]),
            Err(EncryptionError::InvalidKey("previous_keys"))
        ));
        let err = FieldCipher::new("not base64 at all", &[])
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("not base64"),
            "the key is never echoed: {err}"
        );
    }
}
