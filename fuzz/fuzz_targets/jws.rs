//! JWS verification of arbitrary strings: `TokenVerifier::verify` (what `auth.jwt` accepts,
//! here HS256 with a secret) and `JwtKeys::verify`, which must agree for an HS256-only config.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mt_paas::{
    config::ConfigLoader,
    JwtKeys, TokenVerifier,
};

/// The HS256 secret the seed tokens are signed with.
const SECRET: &str = "fuzz-jwt-secret-0123456789abcdef";

static KEYS: LazyLock<(TokenVerifier, JwtKeys)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("mt_paas_config.yaml");
    let yaml = format!(
        "database:\n  tenant:\n    migrations: null\nauth:\n  jwt:\n    secret: \"{SECRET}\"\n    algorithm: \"HS256\"\n"
    );
    std::fs::write(&path, yaml).expect("write the config");
    let config = ConfigLoader::new(&path)
        .env(None)
        .vars(|_| None)
        .load()
        .expect("the fuzz config loads");
    let verifier = TokenVerifier::from_config(&config).expect("an HS256 verifier");
    let keys = JwtKeys::from_config(&config.auth.jwt).expect("HS256 keys");
    (verifier, keys)
});

fuzz_target!(|data: &[u8]| {
    let (verifier, keys) = &*KEYS;
    let token = String::from_utf8_lossy(data);
    let token = token.trim_end_matches('\n');
    let by_verifier = verifier.verify(token);
    let by_keys = keys.verify(token);
    assert_eq!(
        by_verifier, by_keys,
        "TokenVerifier and JwtKeys agree on HS256"
    );
    if let Ok(claims) = &by_verifier {
        assert!(
            claims.get("exp").is_some_and(serde_json::Value::is_number),
            "a verified token has a numeric exp"
        );
    }
});
