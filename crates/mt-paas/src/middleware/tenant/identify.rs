//! Which tenant a request names: the configured methods, tried in order.

use std::net::Ipv4Addr;

use http::{HeaderMap, HeaderName, HeaderValue, Uri, header};
use regex::Regex;

use crate::{
    config::{Config, ConfigError, ConfigProblem, DEFAULT_EXTRACT_PATTERN, IdentificationMethod},
    core::models::TenantId,
    http::{ApiError, ProblemCode},
    middleware::auth::{TokenError, TokenVerifier, bearer_token, jwt::token_problem},
};

/// Where an id came from, worded for the caller.
#[derive(Debug, Clone)]
struct Source {
    ko: String,
    en: String,
}

#[derive(Debug, Clone)]
enum Method {
    /// The parsed name, and the name as configured (HeaderName lower-cases it).
    Header(HeaderName, String),
    /// The configured `extract_pattern`; `None` for the default, `^([^.]+)` (the first
    /// label), which is read without the regex engine.
    Subdomain(Option<Regex>),
    JwtClaim {
        claim: String,
        keys: Box<TokenVerifier>,
    },
    QueryParam(String),
}

impl Method {
    fn source(&self) -> Source {
        match self {
            Self::Header(_, name) => Source {
                ko: format!("{name} 헤더"),
                en: format!("the {name} header"),
            },
            Self::Subdomain(_) => Source {
                ko: "호스트 이름(서브도메인)".to_owned(),
                en: "the host name (subdomain)".to_owned(),
            },
            Self::JwtClaim { claim, .. } => Source {
                ko: format!("토큰의 {claim} 클레임"),
                en: format!("the token's {claim} claim"),
            },
            Self::QueryParam(name) => Source {
                ko: format!("{name} 쿼리 파라미터"),
                en: format!("the {name} query parameter"),
            },
        }
    }
}

/// The configured identification methods.
#[derive(Debug, Clone)]
pub(crate) struct Identifier {
    methods: Vec<(Method, Source)>,
    described: Source,
}

impl Identifier {
    pub(crate) fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let mut methods = Vec::new();
        let mut problems = Vec::new();
        for (i, method) in config.tenant_identification.methods.iter().enumerate() {
            let method = match method {
                IdentificationMethod::Header { name } => {
                    match HeaderName::from_bytes(name.as_bytes()) {
                        Ok(parsed) => Method::Header(parsed, name.clone()),
                        Err(_) => {
                            problems.push(problem(
                                config,
                                i,
                                format!("{name:?} is not a valid HTTP header name"),
                            ));
                            continue;
                        }
                    }
                }
                IdentificationMethod::Subdomain { extract_pattern } => {
                    let pattern = &extract_pattern.0;
                    Method::Subdomain(
                        (pattern.as_str() != DEFAULT_EXTRACT_PATTERN).then(|| pattern.clone()),
                    )
                }
                IdentificationMethod::JwtClaim { claim_name } => {
                    match TokenVerifier::from_config(config) {
                        Some(keys) => Method::JwtClaim {
                            claim: claim_name.clone(),
                            keys: Box::new(keys),
                        },
                        None => {
                            problems.push(problem(
                                config,
                                i,
                                "jwt_claim needs auth.jwt.secret (HS256) or algorithm: RS256"
                                    .to_owned(),
                            ));
                            continue;
                        }
                    }
                }
                IdentificationMethod::QueryParam { name } => Method::QueryParam(name.clone()),
            };
            let source = method.source();
            methods.push((method, source));
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        let join = |parts: Vec<&str>, last: &str| match parts.split_last() {
            Some((tail, head)) if !head.is_empty() => format!("{}{last}{tail}", head.join(", ")),
            _ => parts.concat(),
        };
        let described = Source {
            ko: join(methods.iter().map(|(_, s)| s.ko.as_str()).collect(), ", "),
            en: join(methods.iter().map(|(_, s)| s.en.as_str()).collect(), " or "),
        };
        Ok(Self { methods, described })
    }

    /// The tenant id the request names, by the first method that yields one.
    /// [`Unidentified::NeedsKeys`]: a market token names a key not known yet; call
    /// [`fetch_keys`](Self::fetch_keys) and identify again.
    pub(crate) fn identify(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<Option<TenantId>, Unidentified> {
        for (method, source) in &self.methods {
            let found = match method {
                Method::Header(name, _) => from_header(headers.get_all(name).iter(), source)?,
                Method::Subdomain(pattern) => from_host(headers, uri, pattern.as_ref(), source)?,
                Method::JwtClaim { claim, keys } => from_token(headers, claim, keys, source)?,
                Method::QueryParam(name) => from_query(uri, name, source)?,
            };
            if let Some(value) = found {
                return TenantId::parse_lenient(&value)
                    .map(Some)
                    .map_err(|_| invalid(source).into());
            }
        }
        Ok(None)
    }

    /// Verifies `jwt_claim` tokens with `verifier`.
    pub(crate) fn share_verifier(&mut self, verifier: &TokenVerifier) {
        for (method, _) in &mut self.methods {
            if let Method::JwtClaim { keys, .. } = method {
                **keys = verifier.clone();
            }
        }
    }

    /// Fetches the market's signing keys for [`Unidentified::NeedsKeys`]; the problem to
    /// answer when they cannot be fetched.
    pub(crate) async fn fetch_keys(&self) -> Result<(), ApiError> {
        for (method, _) in &self.methods {
            if let Method::JwtClaim { keys, .. } = method
                && let Some(market) = keys.market_keys()
            {
                return market
                    .refresh()
                    .await
                    .map_err(|_| token_problem(TokenError::KeysUnavailable));
            }
        }
        Ok(())
    }

    /// The problem for a tenant route called without a tenant.
    pub(crate) fn required(&self) -> ApiError {
        ApiError::new(ProblemCode::TenantRequired).localized_param(
            "methods",
            self.described.ko.clone(),
            self.described.en.clone(),
        )
    }
}

/// Why a request's tenant is not known (yet).
#[derive(Debug)]
pub(crate) enum Unidentified {
    /// Answer with this problem.
    Problem(ApiError),
    /// A market token signed with a key not known yet.
    NeedsKeys,
}

impl From<ApiError> for Unidentified {
    fn from(problem: ApiError) -> Self {
        Self::Problem(problem)
    }
}

fn problem(config: &Config, index: usize, message: String) -> ConfigProblem {
    ConfigProblem {
        file: config.sources.base.display().to_string(),
        key: format!("tenant_identification.methods[{index}]"),
        message,
    }
}

fn invalid(source: &Source) -> ApiError {
    ApiError::new(ProblemCode::InvalidTenantId).localized_param(
        "source",
        source.ko.clone(),
        source.en.clone(),
    )
}

fn ambiguous(source: &Source) -> ApiError {
    ApiError::new(ProblemCode::AmbiguousTenant).localized_param(
        "source",
        source.ko.clone(),
        source.en.clone(),
    )
}

/// The one value of a header; several different values are ambiguous; a present but empty or
/// non-ASCII value is invalid.
fn from_header<'a>(
    mut values: impl Iterator<Item = &'a HeaderValue>,
    source: &Source,
) -> Result<Option<String>, ApiError> {
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let text = |v: &HeaderValue| -> Result<String, ApiError> {
        let s = v.to_str().map_err(|_| invalid(source))?.trim();
        if s.is_empty() {
            return Err(invalid(source));
        }
        Ok(s.to_owned())
    };
    let value = text(first)?;
    for other in values {
        if !text(other)?.eq_ignore_ascii_case(&value) {
            return Err(ambiguous(source));
        }
    }
    Ok(Some(value))
}

/// The id in the host name: none for an IP literal or a single-label host (`localhost`).
/// `pattern` `None` is the default, [`DEFAULT_EXTRACT_PATTERN`].
fn from_host(
    headers: &HeaderMap,
    uri: &Uri,
    pattern: Option<&Regex>,
    source: &Source,
) -> Result<Option<String>, ApiError> {
    let host = match headers.get(header::HOST) {
        Some(value) => value.to_str().map_err(|_| invalid(source))?,
        None => match uri.host() {
            Some(host) => host,
            None => return Ok(None),
        },
    };
    let Some(name) = host_name(host) else {
        return Ok(None);
    };
    let Some(pattern) = pattern else {
        let label = name.split('.').next().unwrap_or_default();
        return Ok((!label.is_empty()).then(|| label.to_ascii_lowercase()));
    };
    let name = name.to_ascii_lowercase();
    let Some(captures) = pattern.captures(&name) else {
        return Ok(None);
    };
    let found = captures
        .get(1)
        .or_else(|| captures.get(0))
        .map(|m| m.as_str());
    Ok(found.filter(|s| !s.is_empty()).map(str::to_owned))
}

/// The host name without port or trailing dot; `None` for IP literals and single labels.
fn host_name(host: &str) -> Option<&str> {
    let host = host.trim();
    if host.starts_with('[') {
        return None; // an IPv6 literal
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return None,
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || !name.contains('.') || name.parse::<Ipv4Addr>().is_ok() {
        return None;
    }
    Some(name)
}

/// The claim of a verified bearer token; a token that fails verification is a 401.
fn from_token(
    headers: &HeaderMap,
    claim: &str,
    keys: &TokenVerifier,
    source: &Source,
) -> Result<Option<String>, Unidentified> {
    let Some(token) = bearer_token(headers) else {
        return Ok(None);
    };
    let verified = match keys.verified(token) {
        Ok(verified) => verified,
        Err(TokenError::UnknownKey) if keys.market_keys().is_some() => {
            return Err(Unidentified::NeedsKeys);
        }
        Err(e) => return Err(token_problem(e).into()),
    };
    match verified.claims.get(claim) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(source).into()),
    }
}

fn from_query(uri: &Uri, name: &str, source: &Source) -> Result<Option<String>, ApiError> {
    let Some(query) = uri.query() else {
        return Ok(None);
    };
    let mut found: Option<String> = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key != name {
            continue;
        }
        let value = value.trim();
        if value.is_empty() {
            return Err(invalid(source));
        }
        match &found {
            Some(existing) if !existing.eq_ignore_ascii_case(value) => {
                return Err(ambiguous(source));
            }
            Some(_) => {}
            None => found = Some(value.to_owned()),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert_eq!(host_name("hallym.localhost"), Some("hallym.localhost"));
        assert_eq!(host_name("hallym.localhost:8000"), Some("hallym.localhost"));
        assert_eq!(
            host_name("hallym.keli.k-university.ai."),
            Some("hallym.keli.k-university.ai")
        );
        assert_eq!(host_name("localhost"), None);
        assert_eq!(host_name("localhost:8000"), None);
        assert_eq!(host_name("127.0.0.1:8000"), None);
        assert_eq!(host_name("10.0.0.1"), None);
        assert_eq!(host_name("[::1]:8000"), None);
        assert_eq!(host_name("[::1]"), None);
        assert_eq!(host_name(""), None);
        assert_eq!(host_name("a.b:port"), None);
    }

    /// The default pattern is read without the regex engine, with the regex's answers.
    #[test]
    fn the_first_label_is_what_the_default_pattern_finds() {
        let regex = Regex::new(DEFAULT_EXTRACT_PATTERN).unwrap();
        let source = Method::Subdomain(None).source();
        for host in [
            "hallym.localhost",
            "Hallym.Example.TEST:8080",
            "t001.example.test.",
            ".example.test",
            "a..b",
            "x.y",
            "localhost",
            "127.0.0.1",
            "[::1]:80",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, host.parse().unwrap());
            let uri = Uri::from_static("/");
            assert_eq!(
                from_host(&headers, &uri, None, &source).unwrap(),
                from_host(&headers, &uri, Some(&regex), &source).unwrap(),
                "{host}"
            );
        }
    }
}
