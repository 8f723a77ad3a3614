//! The OpenAPI document of both directions, built from the wire types and the paths of this
//! crate: `docs/openapi.json` is generated from it, and a test fails when the checked-in
//! document is stale (`MT_PAAS_UPDATE_DOCS=1 cargo test -p mt-paas-protocol` rewrites it).

use utoipa::openapi::{
    ComponentsBuilder, Content, HttpMethod, InfoBuilder, OpenApi, OpenApiBuilder, PathItem,
    PathsBuilder, Ref, ResponseBuilder, Server,
    path::{OperationBuilder, ParameterBuilder, ParameterIn},
    request_body::RequestBodyBuilder,
    schema::{ObjectBuilder, Type},
    security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
    tag::TagBuilder,
};

use crate::types::*;

/// The tag of the market's side (service → market).
pub const MARKET_API: &str = "market API (service → market)";
/// The tag of the service's side (market → service, signed).
pub const SERVICE_CONTROL: &str = "service control (market → service)";

/// One operation of the protocol.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// The HTTP method.
    pub method: &'static str,
    /// The path, with `{parameters}`.
    pub path: &'static str,
    /// Which side serves it.
    pub tag: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// The request body's schema.
    pub request: Option<&'static str>,
    /// The success status and its body's schema.
    pub response: (&'static str, Option<&'static str>),
    /// Every other status it answers (each a problem+json, but 304 and 302).
    pub others: &'static [u16],
}

/// What a status means, as the document says it.
pub fn status_meaning(status: u16, control: bool) -> &'static str {
    match (status, control) {
        (200, _) => "Success",
        (201, _) => "Stored",
        (204, _) => "Stored; no body",
        (302, _) => "A redirect to the service's redirect_uri with code and state",
        (304, _) => "Not modified (If-None-Match)",
        (400, true) => "The path's tenant id is malformed",
        (400, false) => "Malformed JSON, query or parameter",
        (401, true) => "Signature, timestamp or webhook-id refused; nothing changed",
        (401, false) => "Missing or wrong API key (or, at sign-in, wrong credentials)",
        (403, _) => {
            "The command's signed target is absent or not this service or the path's tenant; nothing changed"
        }
        (404, true) => "No such control path (another service's id)",
        (404, false) => "Unknown resource",
        (413, _) => "The body is larger than accepted",
        (422, _) => "The body is not what the endpoint takes, naming the field",
        (429, _) => "Too many failed sign-ins; Retry-After",
        _ => "See the problem's code",
    }
}

/// Every operation, in the order of DESIGN §6.
pub fn operations() -> Vec<Operation> {
    let op = |method, path, tag, summary, request, response, others| Operation {
        method,
        path,
        tag,
        summary,
        request,
        response,
        others,
    };
    const POSTED: &[u16] = &[400, 401, 404, 413, 422];
    const CONTROL: &[u16] = &[400, 401, 403, 404, 413, 422];
    // The paths are those of `paths` (a test holds them together), with the market's
    // `/api/v1` base spelled out.
    vec![
        op(
            "POST",
            "/api/v1/services/{service_id}/heartbeat",
            MARKET_API,
            "Status report (DESIGN §6.2); the answer carries pending commands",
            Some("Heartbeat"),
            ("200", Some("HeartbeatResponse")),
            POSTED,
        ),
        op(
            "GET",
            "/api/v1/services/{service_id}/tenants/{tenant_id}/entitlement",
            MARKET_API,
            "One tenant's entitlement; ETag / If-None-Match → 304",
            None,
            ("200", Some("Entitlement")),
            &[304, 400, 401, 404],
        ),
        op(
            "GET",
            "/api/v1/services/{service_id}/entitlements",
            MARKET_API,
            "Entitlements changed since `since_revision` (bulk sync)",
            None,
            ("200", Some("EntitlementPage")),
            &[400, 401, 404],
        ),
        op(
            "POST",
            "/api/v1/services/{service_id}/usage",
            MARKET_API,
            "Usage per tenant, dimension and period; a resend is a duplicate",
            Some("UsageReport"),
            ("200", Some("UsageReceipt")),
            POSTED,
        ),
        op(
            "POST",
            "/api/v1/audit/alerts",
            MARKET_API,
            "Security alert (DESIGN §6.4), idempotent by event_id",
            Some("AuditAlert"),
            ("201", None),
            &[200, 400, 401, 404, 413, 422],
        ),
        op(
            "POST",
            "/api/v1/commands/{command_id}/ack",
            MARKET_API,
            "Acknowledge a pulled command",
            Some("CommandAck"),
            ("200", None),
            POSTED,
        ),
        op(
            "POST",
            "/api/v1/services/{service_id}/tenants/{tenant_id}/provisioning-result",
            MARKET_API,
            "Outcome of a provision or deprovision command",
            Some("ProvisioningResult"),
            ("204", None),
            POSTED,
        ),
        op(
            "GET",
            "/api/v1/sso/authorize",
            MARKET_API,
            "Sign-in (authorization code, PKCE S256): the sign-in form",
            None,
            ("200", None),
            &[400, 404, 422],
        ),
        op(
            "POST",
            "/api/v1/sso/authorize",
            MARKET_API,
            "Sign-in form sent: a redirect to the service with code and state",
            None,
            ("302", None),
            &[400, 401, 404, 413, 422, 429],
        ),
        op(
            "POST",
            "/api/v1/sso/token",
            MARKET_API,
            "Exchange a code and its PKCE verifier for the user",
            Some("SsoTokenRequest"),
            ("200", Some("SsoTokenResponse")),
            &[400, 401, 413, 422],
        ),
        op(
            "GET",
            "/api/v1/.well-known/jwks.json",
            MARKET_API,
            "The keys of the market's RS256 tokens (RFC 7517); no API key",
            None,
            ("200", Some("JwkSet")),
            &[],
        ),
        op(
            "POST",
            "/api/v1/services/{service_id}/tenants/{tenant_id}/block",
            SERVICE_CONTROL,
            "Kill switch: block the tenant (DESIGN §6.5)",
            Some("BlockCommand"),
            ("200", Some("CommandReceipt")),
            CONTROL,
        ),
        op(
            "POST",
            "/api/v1/services/{service_id}/tenants/{tenant_id}/unblock",
            SERVICE_CONTROL,
            "Lift the tenant's block",
            Some("UnblockCommand"),
            ("200", Some("CommandReceipt")),
            CONTROL,
        ),
        op(
            "POST",
            "/api/v1/services/{service_id}/tenants",
            SERVICE_CONTROL,
            "Provision a tenant",
            Some("ProvisionCommand"),
            ("200", Some("CommandReceipt")),
            CONTROL,
        ),
        op(
            "DELETE",
            "/api/v1/services/{service_id}/tenants/{tenant_id}",
            SERVICE_CONTROL,
            "Deprovision a tenant (archived first unless archive is false)",
            Some("DeprovisionCommand"),
            ("200", Some("CommandReceipt")),
            CONTROL,
        ),
        op(
            "POST",
            "/api/v1/services/{service_id}/events",
            SERVICE_CONTROL,
            "Hint: a tenant's entitlement changed; refetch it",
            Some("EventHint"),
            ("200", Some("CommandReceipt")),
            CONTROL,
        ),
    ]
}

fn schema_ref(name: &str) -> Content {
    Content::new(Some(Ref::from_schema_name(name)))
}

/// The OpenAPI 3.1 document.
pub fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    let mut items: Vec<(String, PathItem)> = Vec::new();
    for op in operations() {
        let method = match op.method {
            "GET" => HttpMethod::Get,
            "DELETE" => HttpMethod::Delete,
            _ => HttpMethod::Post,
        };
        let control = op.tag == SERVICE_CONTROL;
        let mut operation = OperationBuilder::new()
            .tag(op.tag)
            .summary(Some(op.summary));
        for param in op
            .path
            .split('{')
            .skip(1)
            .filter_map(|p| p.split_once('}').map(|(n, _)| n))
        {
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name(param)
                    .parameter_in(ParameterIn::Path)
                    .required(utoipa::openapi::Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
        if control {
            for header in [
                crate::webhook::HEADER_ID,
                crate::webhook::HEADER_TIMESTAMP,
                crate::webhook::HEADER_SIGNATURE,
            ] {
                operation = operation.parameter(
                    ParameterBuilder::new()
                        .name(header)
                        .parameter_in(ParameterIn::Header)
                        .required(utoipa::openapi::Required::True)
                        .description(Some("Standard Webhooks: HMAC-SHA256(secret, id.timestamp.body), ±300 s, ids never reused"))
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
                );
            }
        } else {
            operation =
                operation.security(SecurityRequirement::new("api_key", Vec::<String>::new()));
        }
        if let Some(request) = op.request {
            operation = operation.request_body(Some(
                RequestBodyBuilder::new()
                    .content("application/json", schema_ref(request))
                    .build(),
            ));
        }
        let (status, body) = op.response;
        let mut ok = ResponseBuilder::new().description("Success");
        if let Some(body) = body {
            ok = ok.content("application/json", schema_ref(body));
        }
        operation = operation.response(status, ok.build());
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content("application/problem+json", schema_ref("Problem"))
                .build()
        };
        operation = if control {
            operation
                .response(
                    "401",
                    problem("Signature, timestamp or webhook-id refused; nothing changed"),
                )
                .response("422", problem("The body is not the command"))
        } else {
            operation
                .response("401", problem("Missing or wrong API key"))
                .response("404", problem("Unknown resource"))
                .response("422", problem("Invalid body, naming the field"))
        };
        items.push((op.path.to_owned(), PathItem::new(method, operation.build())));
    }
    // Several methods on one path become one path item.
    let mut merged: Vec<(String, PathItem)> = Vec::new();
    for (path, item) in items {
        match merged.iter_mut().find(|(p, _)| *p == path) {
            Some((_, existing)) => existing.merge_operations(item),
            None => merged.push((path, item)),
        }
    }
    for (path, item) in merged {
        paths = paths.path(path, item);
    }

    let components = ComponentsBuilder::new()
        .schema_from::<Heartbeat>()
        .schema_from::<ServiceStatus>()
        .schema_from::<HeartbeatMetrics>()
        .schema_from::<WindowCounters>()
        .schema_from::<HeartbeatResponse>()
        .schema_from::<Entitlement>()
        .schema_from::<SubscriptionInfo>()
        .schema_from::<SubscriptionState>()
        .schema_from::<Limits>()
        .schema_from::<Block>()
        .schema_from::<EntitlementPage>()
        .schema_from::<UsageReport>()
        .schema_from::<UsageRecord>()
        .schema_from::<UsageReceipt>()
        .schema_from::<AuditAlert>()
        .schema_from::<Severity>()
        .schema_from::<CommandAck>()
        .schema_from::<AckStatus>()
        .schema_from::<ProvisioningResult>()
        .schema_from::<ProvisioningStatus>()
        .schema_from::<BlockCommand>()
        .schema_from::<UnblockCommand>()
        .schema_from::<ProvisionCommand>()
        .schema_from::<DeprovisionCommand>()
        .schema_from::<EventHint>()
        .schema_from::<Command>()
        .schema_from::<CommandReceipt>()
        .schema_from::<SsoTokenRequest>()
        .schema_from::<SsoTokenResponse>()
        .schema_from::<JwkSet>()
        .schema_from::<Jwk>()
        .schema_from::<Problem>()
        .security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("marketplace.api_key"))
                    .build(),
            ),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("mt-paas control plane")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Both directions between a service built on mt-paas and the marketplace (DESIGN §6). \
                     Market API paths live on the market (`marketplace.api_url` ends in `/api/v1`); service control \
                     paths live on the service and are signed by the market.",
                ))
                .build(),
        )
        .servers(Some([Server::new("http://127.0.0.1:8505"), Server::new("http://127.0.0.1:8000")]))
        .tags(Some([
            TagBuilder::new().name(MARKET_API).description(Some("Served by the market; the service authenticates with its API key")).build(),
            TagBuilder::new().name(SERVICE_CONTROL).description(Some("Served by the service; the market signs each message (Standard Webhooks)")).build(),
        ]))
        .paths(paths.build())
        .components(Some(components))
        .build()
}

/// The endpoint table of `docs/PROTOCOL.md`, in Markdown.
pub fn markdown_table() -> String {
    let mut out =
        String::from("| direction | method | path | body | answer |\n|---|---|---|---|---|\n");
    for op in operations() {
        let direction = if op.tag == SERVICE_CONTROL {
            "market → service (signed)"
        } else {
            "service → market"
        };
        out.push_str(&format!(
            "| {direction} | `{}` | `{}` | {} | {} {} |\n",
            op.method,
            op.path,
            op.request.map_or("—".to_owned(), |r| format!("`{r}`")),
            op.response.0,
            op.response.1.map_or(String::new(), |r| format!("`{r}`")),
        ));
    }
    out
}

/// Whether the document lists `status` for `method` on `path` (a concrete path: its
/// `{parameters}` match any segment). Tests check every answer they see against it.
pub fn documents(method: &str, path: &str, status: u16) -> bool {
    let matches = |pattern: &str| {
        let (a, b): (Vec<&str>, Vec<&str>) =
            (pattern.split('/').collect(), path.split('/').collect());
        a.len() == b.len()
            && a.iter()
                .zip(&b)
                .all(|(p, s)| (p.starts_with('{') && !s.is_empty()) || p == s)
    };
    operations().iter().any(|op| {
        op.method.eq_ignore_ascii_case(method)
            && matches(op.path)
            && (op.response.0 == status.to_string() || op.others.contains(&status))
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::paths;

    const BEGIN: &str = "<!-- BEGIN GENERATED: endpoints (cargo test -p mt-paas-protocol) -->\n";
    const END: &str = "<!-- END GENERATED -->";

    fn docs() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs")
    }

    fn update() -> bool {
        std::env::var_os("MT_PAAS_UPDATE_DOCS").is_some()
    }

    #[test]
    fn the_checked_in_openapi_document_is_current() {
        let generated = document().to_pretty_json().unwrap() + "\n";
        let path = docs().join("openapi.json");
        if update() {
            std::fs::write(&path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/openapi.json is stale: run MT_PAAS_UPDATE_DOCS=1 cargo test -p mt-paas-protocol"
        );
    }

    #[test]
    fn the_protocol_document_lists_every_endpoint() {
        let path = docs().join("PROTOCOL.md");
        let text = std::fs::read_to_string(&path).unwrap();
        let (head, rest) = text
            .split_once(BEGIN)
            .expect("PROTOCOL.md has the generated section");
        let (_, tail) = rest.split_once(END).expect("the generated section ends");
        let current = format!("{head}{BEGIN}{}{END}{tail}", markdown_table());
        if update() {
            std::fs::write(&path, &current).unwrap();
        }
        assert!(
            text == current,
            "docs/PROTOCOL.md's endpoint table is stale: run MT_PAAS_UPDATE_DOCS=1 cargo test -p mt-paas-protocol"
        );
    }

    #[test]
    fn the_operations_use_this_crates_paths() {
        let service = "svc";
        let tenant = "t1";
        let on_market = |p: String| format!("/api/v1{p}");
        let expected = [
            on_market(paths::heartbeat(service)),
            on_market(paths::entitlement(service, tenant)),
            on_market(paths::entitlements(service)),
            on_market(paths::usage(service)),
            on_market(paths::AUDIT_ALERTS.to_owned()),
            on_market(paths::command_ack("c1")),
            on_market(paths::provisioning_result(service, tenant)),
            on_market(paths::SSO_AUTHORIZE.to_owned()),
            on_market(paths::SSO_AUTHORIZE.to_owned()),
            on_market(paths::SSO_TOKEN.to_owned()),
            on_market(paths::JWKS.to_owned()),
            paths::block(service, tenant),
            paths::unblock(service, tenant),
            paths::provision(service),
            paths::deprovision(service, tenant),
            paths::events(service),
        ];
        let filled: Vec<String> = operations()
            .iter()
            .map(|op| {
                op.path
                    .replace("{service_id}", service)
                    .replace("{tenant_id}", tenant)
                    .replace("{command_id}", "c1")
            })
            .collect();
        assert_eq!(filled, expected);
    }
}
