//! Token verification benchmark: what one bearer token costs the first time a service sees
//! it (after that the verified-token cache answers; see the pipeline benchmark). HS256 with
//! `auth.jwt.secret`, and RS256 against a market key fetched from a local JWK set. Run with
//!
//! ```sh
//! cargo bench -p mt-paas --bench tokens
//! ```

#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

use std::time::Instant;

use aws_lc_rs::{
    rand::SystemRandom,
    rsa::{KeyPair, KeySize},
    signature::{KeyPair as _, RSA_PKCS1_SHA256},
};
use axum::{Json, Router, routing::get};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use mt_paas::{JwtKeys, TokenVerifier, config::ConfigLoader};
use serde_json::{Value, json};

const ROUNDS: usize = 7;
const TOKENS: usize = 2_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // A market key, published as a JWK set on a local port.
    let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let public = pair.public_key();
    let jwks = json!({"keys": [{
        "kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
        "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
        "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
    }]});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let jwks = jwks.clone();
            async move { Json(jwks) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mt_paas_config.yaml");
    std::fs::write(
        &path,
        format!(
            "service:\n  id: bench\nauth:\n  jwt:\n    secret: bench-secret\n    algorithm: RS256\n    jwks_url: \"http://{addr}/.well-known/jwks.json\"\n    issuer: bench-market\ndatabase:\n  tenant:\n    migrations: null\n"
        ),
    )
    .unwrap();
    let config = ConfigLoader::new(&path).vars(|_| None).load().unwrap();
    let verifier = TokenVerifier::from_config(&config).unwrap();
    let own = JwtKeys::from_config(&config.auth.jwt).unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;

    let rs256 = |i: usize| {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#);
        let claims = json!({"sub": format!("u{i}"), "tenant_id": "hallym", "aud": "bench", "iss": "bench-market", "exp": exp});
        let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0u8; pair.public_modulus_len()];
        pair.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            input.as_bytes(),
            &mut signature,
        )
        .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    };
    let hs256 = |i: usize| {
        let claims: serde_json::Map<String, Value> =
            json!({"sub": format!("u{i}"), "tenant_id": "hallym", "exp": exp})
                .as_object()
                .unwrap()
                .clone();
        own.issue(claims).unwrap()
    };
    // The first token fetches the key set.
    verifier.verify_fetching(&rs256(0)).await.unwrap();

    let cases: [(&str, Vec<String>); 2] = [
        ("HS256 (auth.jwt.secret)", (0..TOKENS).map(hs256).collect()),
        ("RS256 (market JWKS key)", (0..TOKENS).map(rs256).collect()),
    ];
    println!("{TOKENS} distinct tokens per round, {ROUNDS} rounds, median of the rounds");
    for (name, tokens) in &cases {
        let mut rounds = Vec::new();
        for _ in 0..ROUNDS {
            let start = Instant::now();
            for token in tokens {
                let claims = verifier.verify(token).unwrap();
                assert_eq!(claims["tenant_id"], "hallym");
            }
            rounds.push(start.elapsed().as_nanos() as f64 / TOKENS as f64 / 1000.0);
        }
        println!("{name:<26} {:>8.2} µs per first-seen token", median(rounds));
    }
}
