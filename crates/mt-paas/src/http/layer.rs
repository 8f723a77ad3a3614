//! [`ProblemLayer`]: the outermost layer of an mt-paas app. It answers every error as
//! problem+json in the caller's language, including axum's own rejections, the router's 404
//! and 405, and panics.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use axum::{body::Body, response::Response};
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::{ApiError, Locale, ProblemCode};

/// The largest error body that is read to carry its text into the problem's `reason`.
const MAX_REASON_BYTES: usize = 4 * 1024;

/// Renders error responses as localized `application/problem+json`.
///
/// - a response carrying an [`ApiError`] is re-rendered in the caller's language;
/// - any other 4xx or 5xx without a JSON body (axum's rejections, the router's 404 and 405)
///   becomes the matching problem, with the original text in `reason` for a 4xx; the text
///   of a 5xx is logged, never shown.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProblemLayer;

impl<S> Layer<S> for ProblemLayer {
    type Service = ProblemService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProblemService { inner }
    }
}

/// The service of [`ProblemLayer`].
#[derive(Debug, Clone)]
pub struct ProblemService<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for ProblemService<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ProblemFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let accept = request.headers().get(header::ACCEPT_LANGUAGE).cloned();
        ProblemFuture {
            state: State::Inner {
                future: self.inner.call(request),
                accept,
            },
        }
    }
}

type Convert = Pin<Box<dyn Future<Output = Response> + Send>>;

pin_project! {
    /// The future of [`ProblemService`].
    pub struct ProblemFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner { #[pin] future: F, accept: Option<HeaderValue> },
        Convert { future: Convert },
    }
}

impl<F> std::fmt::Debug for ProblemFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProblemFuture").finish_non_exhaustive()
    }
}

impl<F> Future for ProblemFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { future, accept } => {
                    let Ok(mut response) = ready!(future.poll(cx));
                    let status = response.status();
                    if let Some(error) = response.extensions().get::<ApiError>() {
                        log_cause(error);
                        let locale = Locale::from_accept_language(accept.as_ref());
                        if locale == Locale::Ko {
                            return Poll::Ready(Ok(response));
                        }
                        if let Some(error) = response.extensions_mut().remove::<ApiError>() {
                            let mut response = rerender(response, &error, locale);
                            response.extensions_mut().insert(error);
                            return Poll::Ready(Ok(response));
                        }
                    }
                    if !(status.is_client_error() || status.is_server_error())
                        || has_json_body(&response)
                    {
                        return Poll::Ready(Ok(response));
                    }
                    let locale = Locale::from_accept_language(accept.as_ref());
                    this.state.set(State::Convert {
                        future: Box::pin(convert(response, locale)),
                    });
                }
                StateProj::Convert { future } => {
                    return Poll::Ready(Ok(ready!(future.as_mut().poll(cx))));
                }
            }
        }
    }
}

/// Logs what an error recorded as its cause, once, where every answer passes.
fn log_cause(error: &ApiError) {
    let Some(cause) = error.cause_text() else {
        return;
    };
    if error.status().is_server_error() {
        tracing::error!(code = %error.code(), cause, "request failed");
    } else {
        tracing::debug!(code = %error.code(), cause, "request refused");
    }
}

fn has_json_body(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.split(';').next().unwrap_or_default().trim();
            ct.eq_ignore_ascii_case("application/json") || ct.ends_with("+json")
        })
}

/// Swaps the body for the error rendered in `locale`, keeping the other headers.
fn rerender(mut response: Response, error: &ApiError, locale: Locale) -> Response {
    let fresh = error.bare_response(locale);
    let (parts, body) = fresh.into_parts();
    *response.body_mut() = body;
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_LENGTH);
    for name in [header::CONTENT_TYPE, header::CONTENT_LANGUAGE] {
        if let Some(value) = parts.headers.get(&name) {
            headers.insert(name, value.clone());
        }
    }
    response
}

async fn convert(response: Response, locale: Locale) -> Response {
    let (mut parts, body) = response.into_parts();
    let status = parts.status;
    let text = match http_body_util::Limited::new(body, MAX_REASON_BYTES)
        .collect()
        .await
    {
        Ok(collected) => String::from_utf8(collected.to_bytes().to_vec()).unwrap_or_default(),
        Err(_) => String::new(),
    };
    let mut error = ApiError::new(ProblemCode::for_status(status)).with_status(status);
    let text = text.trim();
    if status.is_server_error() {
        if !text.is_empty() {
            tracing::error!(%status, body = text, "error response replaced by a problem");
        }
    } else if let Some(explained) = super::rejection::explain(text) {
        // serde's reason, read into the field and a message in each language.
        tracing::debug!(%status, reason = text, "request refused");
        if let Some(field) = explained.field {
            error = error.member("field", field);
        }
        error = error.localized_detail(explained.ko, explained.en);
    } else if !text.is_empty() {
        error = error.member("reason", text);
    }
    let fresh = error.to_response(locale);
    parts.headers.remove(header::CONTENT_LENGTH);
    let (fresh_parts, body) = fresh.into_parts();
    for (name, value) in &fresh_parts.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    parts.extensions.extend(fresh_parts.extensions);
    Response::from_parts(parts, body)
}

/// The response for a panic in a handler: a 500 problem; the panic is logged.
pub(crate) fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = message, "a handler panicked");
    ApiError::new(ProblemCode::Internal)
        .with_status(StatusCode::INTERNAL_SERVER_ERROR)
        .into_response_body()
}

impl ApiError {
    fn into_response_body(self) -> Response<Body> {
        self.to_response(Locale::Ko)
    }
}
