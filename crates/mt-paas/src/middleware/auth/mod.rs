//! Authentication: the service's JWTs ([`JwtKeys`]), [`AuthLayer`] and the [`CurrentUser`]
//! extractor, and guard layers for routes that need a user or a feature.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use mt_paas::{CurrentUser, require_feature, require_user};
//!
//! async fn profile(user: CurrentUser) -> String {
//!     format!("{} of {:?}", user.sub(), user.tenant_id())
//! }
//!
//! let routes: Router = Router::new()
//!     .route("/profile", get(profile))                      // the extractor requires a user
//!     .route("/admin", get(|| async { "admin" }).route_layer(require_user()))
//!     .route("/quiz", get(|| async { "quiz" }).route_layer(require_feature("quiz")));
//! ```
//!
//! [`AuthLayer`] runs after tenant identification. A request without a bearer token passes
//! without a user (routes choose: the `CurrentUser` extractor or [`require_user`] answer 401).
//! Which tokens verify is `auth.jwt`'s choice ([`TokenVerifier`]): the service's own HS256
//! tokens when a secret is set, and with `algorithm: RS256` the market's RS256 tokens whose
//! `aud` is this service, checked against the keys the market publishes.
//! A bearer token that fails verification — forged, expired, `alg: none`, another algorithm —
//! is 401 on every route. A verified token whose `tenant_id` is another tenant's is 403
//! `cross_tenant_access`, and with `security.cross_tenant_audit` a `cross_tenant_access_attempt`
//! alert goes to the market (DESIGN §6.4).

pub(crate) mod guard;
mod jwks;
pub(crate) mod jwt;
pub(crate) mod layer;
#[cfg(feature = "sso")]
pub(crate) mod sso;

use http::{HeaderMap, header};

pub(crate) use self::{
    jwt::{Claims, TokenError, TokenVerifier},
    layer::{AuthLayer, CurrentUser},
};

/// The token of `Authorization: Bearer <token>`, if that is the scheme. A bearer header
/// with an empty or non-ASCII token yields `""`, which fails verification as malformed.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let value = value.trim_ascii();
    let scheme_end = value.iter().position(|b| *b == b' ').unwrap_or(value.len());
    if !value[..scheme_end].eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    Some(std::str::from_utf8(&value[scheme_end..]).map_or("", str::trim))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc "),
        );
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer"));
        assert_eq!(bearer_token(&h), Some(""));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
        );
        assert_eq!(bearer_token(&h), Some(""));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearerx abc"),
        );
        assert_eq!(bearer_token(&h), None);
    }
}
