//! The HTTP edge: [`ApiError`] (problem+json), [`Locale`], [`ProblemLayer`] and [`cookie`].

mod client;
mod layer;
mod locale;
mod problem;
mod rejection;

pub(crate) use self::layer::panic_response;
pub use self::{
    client::ClientAddresses,
    layer::{ProblemFuture, ProblemLayer, ProblemService},
    locale::Locale,
    problem::{ApiError, PROBLEM_JSON, Param, ProblemCode},
};

/// The value of cookie `name` among a request's `Cookie` headers (the first one so named).
pub fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// `error` and each of its sources, joined by `: ` (reqwest's "builder error" alone says
/// nothing of why).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
