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
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let policy = self.policy.clone();
        if let Some(decided) = policy.admit_now(&mut request) {
            let admitted = match decided {
                Ok(admitted) => admitted,
                Err(answer) => return Box::pin(std::future::ready(Ok(answer))),
            };
            let route = self.inner.call(request);
            return Box::pin(respond(policy, admitted, route));
        }
        // The clone is not ready; the ready one (self.inner) serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let admitted = match policy.admit(&mut request).await {
                Ok(admitted) => admitted,
                Err(answer) => return Ok(answer),
            };
            respond(policy, admitted, inner.call(request)).await
        })
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
