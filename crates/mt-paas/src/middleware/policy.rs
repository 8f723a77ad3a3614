//! One way to write a layer of the request pipeline (the tower-http pattern): a [`Policy`]
//! says what happens before the route (admit the request, or answer it), around it (a
//! task-local scope) and after it (headers, counts); [`PolicyLayer`] is the tower plumbing,
//! written once for every policy.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::response::Response;
use futures_util::future::Either;
use http::Request;
use tower::{Layer, Service};

/// What one layer of the pipeline decides.
pub(crate) trait Policy: Send + Sync + 'static {
    /// What admitting a request learned that serving and answering it need.
    type Admitted: Send + 'static;

    /// Admits `request` (and may add to its extensions), or answers it: `Err` is the answer,
    /// and the route never runs.
    fn admit<B: Send>(
        &self,
        request: &mut Request<B>,
    ) -> impl Future<Output = Result<Self::Admitted, Response>> + Send;

    /// Decides at once when the policy can without waiting, so the route's future is made
    /// without a clone of the inner service. `None` (the default) takes [`admit`](Self::admit),
    /// which then decides from scratch: an `admit_now` that answers `None` must have had no
    /// effect on the request or elsewhere.
    fn admit_now<B>(&self, request: &mut Request<B>) -> Option<Result<Self::Admitted, Response>> {
        let _ = request;
        None
    }

    /// Runs the route's future: as it is, unless the policy scopes it (a task-local).
    fn serve<F>(
        &self,
        admitted: &Self::Admitted,
        route: F,
    ) -> impl Future<Output = F::Output> + Send
    where
        F: Future<Output = Result<Response, Infallible>> + Send,
    {
        let _ = admitted;
        route
    }

    /// Adjusts the route's answer (headers, counts).
    fn answered(
        &self,
        admitted: Self::Admitted,
        response: &mut Response,
    ) -> impl Future<Output = ()> + Send {
        let _ = (admitted, response);
        async {}
    }
}

/// The layer of a [`Policy`].
pub(crate) struct PolicyLayer<P> {
    policy: Arc<P>,
}

impl<P> PolicyLayer<P> {
    /// A layer applying `policy`.
    pub(crate) fn of(policy: P) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }

    /// The policy.
    pub(crate) fn policy(&self) -> &P {
        &self.policy
    }
}

impl<P> Clone for PolicyLayer<P> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
        }
    }
}

impl<P: std::fmt::Debug> std::fmt::Debug for PolicyLayer<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.policy.fmt(f)
    }
}

impl<P, S> Layer<S> for PolicyLayer<P> {
    type Service = PolicyService<P, S>;

    fn layer(&self, inner: S) -> Self::Service {
        PolicyService {
            policy: self.policy.clone(),
            inner,
        }
    }
}

/// The service of a [`PolicyLayer`].
pub(crate) struct PolicyService<P, S> {
    policy: Arc<P>,
    inner: S,
}

impl<P, S: Clone> Clone for PolicyService<P, S> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<P, S> std::fmt::Debug for PolicyService<P, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyService")
            .field("policy", &std::any::type_name::<P>())
            .finish_non_exhaustive()
    }
}

impl<P, S, B> Service<Request<B>> for PolicyService<P, S>
where
    P: Policy,
    S: Service<Request<B>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxedAnswer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.answer(request) {
            Either::Left(refused) => Box::pin(refused),
            Either::Right(answer) => answer,
        }
    }
}

/// The future of a policy's answer.
pub(crate) type BoxedAnswer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// A policy's answer: a refusal decided at once (no allocation), or the request's way
/// through the policy and the route. Only the outermost layer answers so: inside another
/// policy's future the wide `Left` would be moved with every future around it.
pub(crate) type Answer = Either<std::future::Ready<Result<Response, Infallible>>, BoxedAnswer>;

impl<P, S> PolicyService<P, S>
where
    P: Policy,
{
    /// Answers `request` (what [`Service::call`] boxes).
    pub(crate) fn answer<B>(&mut self, mut request: Request<B>) -> Answer
    where
        S: Service<Request<B>, Response = Response, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static,
    {
        if let Some(decided) = self.policy.admit_now(&mut request) {
            let admitted = match decided {
                Ok(admitted) => admitted,
                Err(answer) => return Either::Left(std::future::ready(Ok(answer))),
            };
            let route = self.inner.call(request);
            return Either::Right(Box::pin(respond(self.policy.clone(), admitted, route)));
        }
        let policy = self.policy.clone();
        // The clone is not ready; the ready one (self.inner) serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Either::Right(Box::pin(async move {
            let admitted = match policy.admit(&mut request).await {
                Ok(admitted) => admitted,
                Err(answer) => return Ok(answer),
            };
            respond(policy, admitted, inner.call(request)).await
        }))
    }
}

/// Runs an admitted request's route as the policy serves it, then lets it adjust the answer.
async fn respond<P: Policy>(
    policy: Arc<P>,
    admitted: P::Admitted,
    route: impl Future<Output = Result<Response, Infallible>> + Send,
) -> Result<Response, Infallible> {
    let mut response = policy.serve(&admitted, route).await?;
    policy.answered(admitted, &mut response).await;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::body::Body;
    use http::StatusCode;
    use tower::ServiceExt;

    use super::*;

    /// A route that counts its clones and calls.
    #[derive(Default)]
    struct Counted {
        clones: Arc<AtomicUsize>,
        calls: Arc<AtomicUsize>,
    }

    impl Clone for Counted {
        fn clone(&self) -> Self {
            self.clones.fetch_add(1, Ordering::SeqCst);
            Self {
                clones: self.clones.clone(),
                calls: self.calls.clone(),
            }
        }
    }

    impl Service<Request<Body>> for Counted {
        type Response = Response;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<Body>) -> Self::Future {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(Response::new(Body::empty())))
        }
    }

    /// Decides by the request's `decide` header: `now` admits at once, `refuse` refuses at
    /// once, anything else waits for `admit` (which admits). Answers carry who decided.
    struct ByHeader;

    fn decision<B>(request: &Request<B>) -> &str {
        request
            .headers()
            .get("decide")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn refused() -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::FORBIDDEN;
        response
    }

    impl Policy for ByHeader {
        type Admitted = &'static str;

        async fn admit<B: Send>(&self, _: &mut Request<B>) -> Result<&'static str, Response> {
            Ok("admit")
        }

        fn admit_now<B>(&self, request: &mut Request<B>) -> Option<Result<&'static str, Response>> {
            match decision(request) {
                "now" => Some(Ok("admit_now")),
                "refuse" => Some(Err(refused())),
                _ => None,
            }
        }

        async fn answered(&self, admitted: &'static str, response: &mut Response) {
            response
                .headers_mut()
                .insert("decided-by", http::HeaderValue::from_static(admitted));
        }
    }

    #[tokio::test]
    async fn a_decision_made_at_once_clones_nothing_and_a_refusal_never_reaches_the_route() {
        let route = Counted::default();
        let (clones, calls) = (route.clones.clone(), route.calls.clone());
        let mut service = PolicyLayer::of(ByHeader).layer(route);
        let request = |decide: &'static str| {
            Request::get("/")
                .header("decide", decide)
                .body(Body::empty())
                .unwrap()
        };
        let decided_by = |response: &Response| {
            response
                .headers()
                .get("decided-by")
                .map(|v| v.to_str().unwrap().to_owned())
        };
        // The route's (clones, calls) so far.
        let counts = || (clones.load(Ordering::SeqCst), calls.load(Ordering::SeqCst));
        let mut send = async |decide| {
            let ready = service.ready().await.unwrap();
            ready.call(request(decide)).await.unwrap()
        };

        let response = send("now").await;
        assert_eq!(decided_by(&response).as_deref(), Some("admit_now"));
        assert_eq!(counts(), (0, 1));

        let response = send("refuse").await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(decided_by(&response), None, "answered ran on a refusal");
        assert_eq!(counts(), (0, 1));

        // Waiting for `admit` takes the ready service and leaves a clone in its place.
        let response = send("wait").await;
        assert_eq!(decided_by(&response).as_deref(), Some("admit"));
        assert_eq!(counts(), (1, 2));

        // The outermost layer's unboxed answer decides alike.
        let answer = service.answer(request("refuse"));
        assert!(matches!(answer, Either::Left(_)));
        assert_eq!(answer.await.unwrap().status(), StatusCode::FORBIDDEN);
        assert!(matches!(service.answer(request("now")), Either::Right(_)));
    }
}
