//! The HTTP edge: [`ApiError`] (problem+json), [`Locale`] and [`ProblemLayer`].

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
