//! Sign-in through the market, driven as a browser would: the service's login redirects to
//! the market, the market's form redirects back with a code, the callback issues the
//! service's token, and the token works on the service.

use std::collections::HashMap;

use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::helpers::{register_service, service_config, start_market, start_service, subscribe};

fn query_of(location: &str) -> HashMap<String, String> {
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_in_through_the_market() {
    let dir = tempfile::tempdir().unwrap();
    let market = start_market(&format!("sqlite://{}/m.db", dir.path().display()), None).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service_url = format!("http://{}", listener.local_addr().unwrap());
    register_service(&market.url, Some(service_url.clone())).await;
    subscribe(&market.url, "hallym", "premium", true).await;
    subscribe(&market.url, "korea", "basic", true).await;
    let (status, _) = crate::helpers::operator(
        &market.url,
        reqwest::Method::POST,
        "/users",
        Some(json!({"id": "alice", "tenant_id": "hallym", "name": "Alice Kim", "email": "alice@hallym.ac.kr", "password": "correct-horse"})),
    )
    .await;
    assert_eq!(status, 201);
    let service_dir = dir.path().join("service");
    std::fs::create_dir_all(&service_dir).unwrap();
    let extra = "auth:\n  jwt:\n    secret: sso-test-secret\n  marketplace_sso:\n    enabled: true\n    callback_url: /auth/marketplace/callback\n";
    let mut config = service_config(&service_dir, &market.url, extra);
    config.service.public_url = Some(service_url.clone());
    let service = start_service(listener, config, service_dir).await;
    // The tenants are provisioned through the market first.
    for tenant in ["hallym", "korea"] {
        assert!(
            crate::helpers::eventually(std::time::Duration::from_secs(10), || async {
                crate::helpers::as_tenant(&service.url, tenant, "/whoami")
                    .await
                    .0
                    == 200
            })
            .await
        );
    }

    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let to_market = browser
        .get(format!("{service_url}/auth/marketplace/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(to_market.status(), 302);
    // The sign-in is bound to this browser by an HttpOnly cookie on the callback's path.
    let set_cookie = to_market.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    assert!(
        set_cookie.contains("Path=/auth/marketplace/callback"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let authorize = to_market.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        authorize.starts_with(&format!("{}/api/v1/sso/authorize?", market.url)),
        "{authorize}"
    );
    let params = query_of(&authorize);
    assert_eq!(params["client_id"], crate::helpers::SERVICE);
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(
        params["redirect_uri"],
        format!("{service_url}/auth/marketplace/callback")
    );

    let form = browser.get(&authorize).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let mut fields: Vec<(String, String)> = params.into_iter().collect();
    fields.push(("username".into(), "alice".into()));
    fields.push(("password".into(), "correct-horse".into()));
    let back = browser
        .post(format!("{}/api/v1/sso/authorize", market.url))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 302);
    let callback = back.headers()["location"].to_str().unwrap().to_owned();
    assert!(callback.starts_with(&format!("{service_url}/auth/marketplace/callback?")));

    // Login CSRF: the callback URL opened by another browser — one with no sign-in, or one
    // with a sign-in of its own — signs nobody in.
    let elsewhere = browser.get(&callback).send().await.unwrap();
    assert_eq!(elsewhere.status(), 401, "no cookie");
    let other_login = browser
        .get(format!("{service_url}/auth/marketplace/login"))
        .send()
        .await
        .unwrap();
    let other_cookie = other_login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let victim = browser
        .get(&callback)
        .header("cookie", &other_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(victim.status(), 401, "another browser's sign-in");

    let answer = browser
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let cleared = answer.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cleared.contains("Max-Age=0"),
        "the cookie is cleared: {cleared}"
    );
    let token: Value = answer.json().await.unwrap();
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["sub"], "alice");
    assert_eq!(token["tenant_id"], "hallym");
    let access = token["access_token"].as_str().unwrap();

    // The callback works once, even with the cookie kept.
    let again = browser
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401);

    // The service's own token identifies the tenant and the user.
    let me = browser
        .get(format!("{service_url}/whoami"))
        .bearer_auth(access)
        .header("x-tenant-id", "hallym")
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    // ... and is refused on another tenant (cross-tenant access).
    let other = browser
        .get(format!("{service_url}/whoami"))
        .bearer_auth(access)
        .header("x-tenant-id", "korea")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
    service.running.stop().await;
    market.running.stop().await;
}

/// Wrong passwords are throttled per user (and per address): after five, even the right
/// password waits for the window, with Retry-After; an unknown user costs the same hash and
/// counts the same.
#[tokio::test]
async fn failed_sign_ins_are_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let market = start_market(&format!("sqlite://{}/m.db", dir.path().display()), None).await;
    let service_url = "http://127.0.0.1:9";
    register_service(&market.url, Some(service_url.to_owned())).await;
    subscribe(&market.url, "hallym", "premium", false).await;
    let (status, _) = crate::helpers::operator(
        &market.url,
        reqwest::Method::POST,
        "/users",
        Some(json!({"id": "alice", "tenant_id": "hallym", "name": "Alice", "email": "a@h.kr", "password": "correct-horse"})),
    )
    .await;
    assert_eq!(status, 201);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let attempt = |user: &'static str, password: &'static str| {
        let client = client.clone();
        let url = format!("{}/api/v1/sso/authorize", market.url);
        async move {
            let form = [
                ("response_type", "code"),
                ("client_id", crate::helpers::SERVICE),
                ("redirect_uri", "http://127.0.0.1:9/cb"),
                ("state", "s"),
                (
                    "code_challenge",
                    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                ),
                ("code_challenge_method", "S256"),
                ("username", user),
                ("password", password),
            ];
            let response = client.post(url).form(&form).send().await.unwrap();
            let status = response.status().as_u16();
            let retry = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, retry)
        }
    };
    assert_eq!(attempt("nobody", "x").await.0, 401, "an unknown user");
    for _ in 0..5 {
        assert_eq!(attempt("alice", "wrong").await.0, 401);
    }
    let (status, retry) = attempt("alice", "correct-horse").await;
    assert_eq!(status, 429, "throttled even with the right password");
    let retry: u64 = retry.unwrap().parse().unwrap();
    assert!(retry > 800 && retry <= 900, "{retry}");
    market.running.stop().await;
}
