//! The extension IRIs of the xAPI statements a service sends to the LRS for its activity
//! log (DESIGN §7.2): what an LRS reader, such as `mt-paas lrs`, looks up in a statement.

/// The tenant, in `context.extensions`.
pub const TENANT_EXTENSION: &str = "https://mt-paas.dev/xapi/extensions/tenant";
/// The service, in `context.extensions`.
pub const SERVICE_EXTENSION: &str = "https://mt-paas.dev/xapi/extensions/service";
/// The activity's result, in `result.extensions`.
pub const RESULT_EXTENSION: &str = "https://mt-paas.dev/xapi/extensions/result";
