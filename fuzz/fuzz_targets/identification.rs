//! Tenant identification (header, subdomain, jwt_claim, query_param, in that order) of a
//! request made from the input: the first line is the request target (a path with a query, or
//! an absolute URI whose host stands in for a missing Host header), each further line a
//! `name: value` header (`host`, `x-tenant-id`, `authorization: Bearer ...`, any other).
//! Lines that are not a valid header are skipped.

#![no_main]

use std::sync::LazyLock;

use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use libfuzzer_sys::fuzz_target;
use mt_paas::{
    config::ConfigLoader,
    fuzzing::{Identified, Identifier, identifier, identify},
};

/// The HS256 secret the seed tokens are signed with.
const SECRET: &str = "fuzz-jwt-secret-0123456789abcdef";

static IDENTIFIER: LazyLock<Identifier> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("mt_paas_config.yaml");
    let yaml = format!(
        r#"service:
  id: "fuzz_service"
tenant_identification:
  methods:
    - type: "header"
      name: "X-Tenant-ID"
    - type: "subdomain"
      extract_pattern: "^([^.]+)"
    - type: "jwt_claim"
      claim_name: "tenant_id"
    - type: "query_param"
      name: "tenant_id"
database:
  tenant:
    migrations: null
auth:
  jwt:
    secret: "{SECRET}"
    algorithm: "HS256"
"#
    );
    std::fs::write(&path, yaml).expect("write the config");
    let config = ConfigLoader::new(&path)
        .env(None)
        .vars(|_| None)
        .load()
        .expect("the fuzz config loads");
    identifier(&config).expect("the fuzz identifier builds")
});

fuzz_target!(|data: &[u8]| {
    let identifier = &*IDENTIFIER;
    let mut lines = data.split(|b| *b == b'\n');
    let target = lines.next().unwrap_or_default();
    let uri = Uri::try_from(target).unwrap_or_else(|_| Uri::from_static("/"));
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    let first = identify(identifier, &headers, &uri);
    // The second sight of a token comes from the verified-token cache: same answer.
    let second = identify(identifier, &headers, &uri);
    assert_eq!(first, second, "identification is deterministic");
    if let Identified::Tenant(id) = &first {
        assert!(
            id.as_str().parse::<mt_paas::TenantId>().is_ok(),
            "an identified tenant id is a valid id"
        );
    }
    assert_ne!(first, Identified::NeedsKeys, "HS256 only: no market keys");
});
