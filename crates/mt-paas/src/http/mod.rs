//! The HTTP edge: [`ApiError`] (problem+json), [`Locale`] and [`ProblemLayer`].

mod layer;
mod locale;
mod problem;

pub(crate) use self::layer::panic_response;
pub use self::{
    layer::{ProblemFuture, ProblemLayer, ProblemService},
    locale::Locale,
    problem::{ApiError, PROBLEM_JSON, Param, ProblemCode},
};
