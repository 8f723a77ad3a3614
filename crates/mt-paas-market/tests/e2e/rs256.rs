//! `auth.jwt.algorithm: RS256`: the market signs user tokens with its RSA keys and publishes
//! them as a JWK set; the service verifies the tokens addressed to it against that set,
//! follows rotation and retirement, and refuses every other kind of token.

use std::time::Duration;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::helpers::{
    SERVICE, eventually, operator, register_service, service_config, start_market, start_service,
    subscribe,
};

const WAIT: Duration = Duration::from_secs(10);

/// GET `path` with a bearer token and no tenant header: the token's `tenant_id` names it.
async fn with_token(service_url: &str, path: &str, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{service_url}{path}"))
        .bearer_auth(token)
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn mint(market_url: &str, body: Value) -> String {
    let (status, minted) = operator(market_url, reqwest::Method::POST, "/tokens", Some(body)).await;
    assert_eq!(status, 200, "{minted}");
    minted["token"].as_str().unwrap().to_owned()
}

fn header_of(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

/// A token with `header` and `claims`, signed (HMAC-SHA256) with `key` whatever `alg` says.
fn hs256_with(header: &Value, claims: &Value, key: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
        input.as_bytes(),
    );
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_tokens_verify_against_the_published_keys() {
    let dir = tempfile::tempdir().unwrap();
    let market = start_market(&format!("sqlite://{}/m.db", dir.path().display()), None).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service_url = format!("http://{}", listener.local_addr().unwrap());
    register_service(&market.url, Some(service_url.clone())).await;
    subscribe(&market.url, "hallym", "premium", true).await;
    subscribe(&market.url, "korea", "basic", true).await;
    let (status, _) = operator(
        &market.url,
        reqwest::Method::POST,
        "/services",
        Some(json!({"id": "other_service", "name": "Other", "api_key": "other-api-key-1", "webhook_secret": "whsec_b3RoZXItc2VydmljZS1zZWNyZXQtb2YtZW5vdWdo"})),
    )
    .await;
    assert_eq!(status, 201);

    let service_dir = dir.path().join("service");
    std::fs::create_dir_all(&service_dir).unwrap();
    // No secret: only the market's tokens are accepted. The token names the tenant.
    let extra = "auth:\n  jwt:\n    algorithm: RS256\ntenant_identification:\n  methods:\n    - type: jwt_claim\n      claim_name: tenant_id\n    - type: header\n      name: X-Tenant-ID\n";
    let config = service_config(&service_dir, &market.url, extra);
    let service = start_service(listener, config, service_dir).await;
    for tenant in ["hallym", "korea"] {
        assert!(
            eventually(WAIT, || async {
                crate::helpers::as_tenant(&service.url, tenant, "/whoami")
                    .await
                    .0
                    == 200
            })
            .await
        );
    }

    // The published set: one RSA key, for signatures with RS256.
    let jwks: Value = reqwest::get(format!("{}/api/v1/.well-known/jwks.json", market.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    assert_eq!(keys[0]["kty"], "RSA");
    assert_eq!(keys[0]["alg"], "RS256");
    assert_eq!(keys[0]["use"], "sig");
    let first_kid = keys[0]["kid"].as_str().unwrap().to_owned();

    let alice = mint(
        &market.url,
        json!({"service_id": SERVICE, "tenant_id": "hallym", "sub": "alice", "name": "Alice Kim"}),
    )
    .await;
    assert_eq!(header_of(&alice)["alg"], "RS256");
    assert_eq!(header_of(&alice)["kid"], first_kid.as_str());

    // An independent implementation verifies the market's token with the published key.
    let decoding = jsonwebtoken::DecodingKey::from_rsa_components(
        keys[0]["n"].as_str().unwrap(),
        keys[0]["e"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[SERVICE]);
    let decoded =
        jsonwebtoken::decode::<serde_json::Map<String, Value>>(&alice, &decoding, &validation)
            .unwrap();
    assert_eq!(decoded.claims["tenant_id"], "hallym");

    let (status, me) = with_token(&service.url, "/me", &alice).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me["tenant"], "hallym",
        "the tenant came from the verified token"
    );
    assert_eq!(me["sub"], "alice");
    assert_eq!(me["name"], "Alice Kim");

    // A token for another service of the same market is not accepted here.
    let elsewhere = mint(
        &market.url,
        json!({"service_id": "other_service", "tenant_id": "hallym", "sub": "alice"}),
    )
    .await;
    let (status, problem) = with_token(&service.url, "/me", &elsewhere).await;
    assert_eq!(status, 401, "{problem}");
    assert_eq!(problem["code"], "invalid_token");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("another service"),
        "{problem}"
    );

    // Algorithm confusion: an HS256 token keyed with the public key's bytes, `none`, and a
    // payload swapped under alice's signature are all refused.
    let claims =
        json!({"sub": "mallory", "tenant_id": "korea", "aud": SERVICE, "exp": 9_999_999_999u64});
    let jwk_text = serde_json::to_string(&keys[0]).unwrap();
    for key in [
        jwk_text.as_bytes(),
        keys[0]["n"].as_str().unwrap().as_bytes(),
    ] {
        let confused = hs256_with(
            &json!({"alg": "HS256", "typ": "JWT", "kid": first_kid}),
            &claims,
            key,
        );
        let (status, problem) = with_token(&service.url, "/me", &confused).await;
        assert_eq!(status, 401, "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("algorithm"),
            "{problem}"
        );
    }
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    assert_eq!(with_token(&service.url, "/me", &none).await.0, 401);
    let parts: Vec<&str> = alice.split('.').collect();
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    let (status, problem) = with_token(&service.url, "/me", &swapped).await;
    assert_eq!(status, 401);
    assert!(
        problem["detail"].as_str().unwrap().contains("signature"),
        "{problem}"
    );

    // Rotation: tokens of the new key verify at once (the service fetches the set when it
    // meets an unknown key id), and tokens of the old key keep verifying.
    let (status, rotated) =
        operator(&market.url, reqwest::Method::POST, "/signing-keys", None).await;
    assert_eq!(status, 201, "{rotated}");
    let second_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_ne!(second_kid, first_kid);
    let bob = mint(
        &market.url,
        json!({"service_id": SERVICE, "tenant_id": "korea", "sub": "bob"}),
    )
    .await;
    assert_eq!(header_of(&bob)["kid"], second_kid.as_str());
    let (status, me) = with_token(&service.url, "/me", &bob).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["tenant"], "korea");
    assert_eq!(with_token(&service.url, "/me", &alice).await.0, 200);

    // Retirement: once the service fetches the set again, the old key's tokens stop
    // working, also those it had verified (and remembered) before.
    let (status, _) = operator(
        &market.url,
        reqwest::Method::DELETE,
        &format!("/signing-keys/{first_kid}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, listed) = operator(&market.url, reqwest::Method::GET, "/signing-keys", None).await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(listed[0]["retired_at"].is_string(), "{listed}");
    assert_eq!(listed[1]["current"], true);
    // A third key makes the service fetch the set again.
    let (status, _) = operator(&market.url, reqwest::Method::POST, "/signing-keys", None).await;
    assert_eq!(status, 201);
    let carol = mint(
        &market.url,
        json!({"service_id": SERVICE, "tenant_id": "hallym", "sub": "carol"}),
    )
    .await;
    assert_eq!(with_token(&service.url, "/me", &carol).await.0, 200);
    let (status, problem) = with_token(&service.url, "/me", &alice).await;
    assert_eq!(status, 401, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("key"),
        "{problem}"
    );
    assert_eq!(with_token(&service.url, "/me", &bob).await.0, 200);

    // Bad operator input is a 4xx naming the field.
    let (status, problem) = operator(
        &market.url,
        reqwest::Method::POST,
        "/tokens",
        Some(json!({"service_id": SERVICE, "tenant_id": "hallym", "sub": "x", "ttl_seconds": 0})),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "ttl_seconds");
    let (status, _) = operator(
        &market.url,
        reqwest::Method::DELETE,
        "/signing-keys/no-such-key",
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_market_rs256_tokens_get_a_503_and_own_tokens_still_work() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on this port: the market is down from the start.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let market_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let extra = "auth:\n  jwt:\n    algorithm: RS256\n    secret: own-hs256-secret\n";
    let mut config = service_config(dir.path(), &market_url, extra);
    config.marketplace.subscription_check = false;
    let service = start_service(listener, config, dir.path().to_path_buf()).await;
    service
        .framework
        .tenants()
        .create(mt_paas::NewTenant::new(
            "snu".parse().unwrap(),
            "서울대학교",
        ))
        .await
        .unwrap();

    let unknown_key = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": "k1"}).to_string()),
        URL_SAFE_NO_PAD
            .encode(json!({"sub": "u", "aud": SERVICE, "exp": 9_999_999_999u64}).to_string()),
        URL_SAFE_NO_PAD.encode([7u8; 256]),
    );
    let response = reqwest::Client::new()
        .get(format!("{}/me", service.url))
        .header("x-tenant-id", "snu")
        .bearer_auth(&unknown_key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        503,
        "the keys cannot be fetched: not a 401"
    );
    assert_eq!(response.headers()["retry-after"], "5");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "market_unavailable");

    // The service's own HS256 tokens do not need the market.
    let own = mt_paas::JwtKeys::from_config(&service.framework.config().auth.jwt)
        .unwrap()
        .issue(json!({"sub": "dana"}).as_object().unwrap().clone())
        .unwrap();
    let response = reqwest::Client::new()
        .get(format!("{}/me", service.url))
        .header("x-tenant-id", "snu")
        .bearer_auth(&own)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["sub"], "dana");
}

/// `iss` is checked: a service that expects another market's tokens refuses this market's,
/// though they are signed with a published key and addressed to it.
#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let market = start_market(&format!("sqlite://{}/m.db", dir.path().display()), None).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    register_service(
        &market.url,
        Some(format!("http://{}", listener.local_addr().unwrap())),
    )
    .await;
    subscribe(&market.url, "hallym", "premium", true).await;
    let service_dir = dir.path().join("service");
    std::fs::create_dir_all(&service_dir).unwrap();
    let extra = "auth:\n  jwt:\n    algorithm: RS256\n    issuer: \"https://market.elsewhere.example/api/v1\"\ntenant_identification:\n  methods:\n    - type: jwt_claim\n      claim_name: tenant_id\n";
    let config = service_config(&service_dir, &market.url, extra);
    let service = start_service(listener, config, service_dir).await;
    let token = mint(
        &market.url,
        json!({"service_id": SERVICE, "tenant_id": "hallym", "sub": "alice"}),
    )
    .await;
    let (status, problem) = with_token(&service.url, "/me", &token).await;
    assert_eq!(status, 401, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("another market"),
        "{problem}"
    );
    service.running.stop().await;
    market.running.stop().await;
}
