//! A test harness for tests that need an optional service (pgvector, Chroma): each test names
//! what it needs; when that does not answer, the test is listed as ignored with the missing
//! service in brackets (`test [needs chroma] chroma_collections_per_tenant ... ignored`) and one
//! line says how to get it, so a skipped test never reads "ok". Under `CI=true` nothing is
//! ignored: the test runs, and fails. `bash .ci/test` (the README's test command) installs and
//! starts every such service. Included with `#[path]` by each suite that needs it.

#![allow(dead_code)] // Each suite needs some of the services only.

use std::{future::Future, process::ExitCode, time::Duration};

use libtest_mimic::{Arguments, Failed, Trial};

/// An optional service a test needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Needs {
    /// Nothing beyond what every suite needs (SQLite, the local Postgres and Redis).
    Nothing,
    /// The `vector` extension in the local Postgres.
    Pgvector,
    /// A Chroma server (`MT_PAAS_TEST_CHROMA`, default `http://127.0.0.1:8100`).
    Chroma,
    /// Chromium (`/usr/bin/chromium`, or `CHROMIUM`), Node.js and the browser tests'
    /// `playwright-core` (`npm ci` in `crates/mt-paas-market/tests/browser`).
    Browser,
    /// A Docker engine with compose and the locally built `mt-paas/postgres:15` image
    /// (`.ci/docker.sh`).
    Docker,
}

impl Needs {
    fn label(self) -> &'static str {
        match self {
            Self::Nothing => "",
            Self::Pgvector => "needs pgvector",
            Self::Chroma => "needs chroma",
            Self::Browser => "needs chromium",
            Self::Docker => "needs docker",
        }
    }

    /// `Err(why)` when the service does not answer.
    async fn probe(self) -> Result<(), String> {
        match self {
            Self::Nothing => Ok(()),
            Self::Pgvector => {
                let url = postgres_url();
                let pool = sqlx::PgPool::connect(&url)
                    .await
                    .map_err(|e| format!("Postgres at {url} is not reachable ({e})"))?;
                let available: Option<String> = sqlx::query_scalar(
                    "SELECT name::text FROM pg_available_extensions WHERE name = 'vector'",
                )
                .fetch_optional(&pool)
                .await
                .map_err(|e| format!("Postgres at {url} did not answer ({e})"))?;
                pool.close().await;
                available
                    .map(|_| ())
                    .ok_or_else(|| format!("the Postgres at {url} has no `vector` extension"))
            }
            Self::Browser => {
                let chromium = chromium_path();
                if !std::path::Path::new(&chromium).exists() {
                    return Err(format!("no Chromium at {chromium}"));
                }
                let node = std::process::Command::new("node").arg("--version").output();
                if !node.is_ok_and(|o| o.status.success()) {
                    return Err("no Node.js (`node`) on the PATH".to_owned());
                }
                let modules = browser_tests_dir().join("node_modules/playwright-core");
                if !modules.exists() {
                    return Err(format!("{} is missing (npm ci)", modules.display()));
                }
                Ok(())
            }
            Self::Docker => {
                let answers = |program: &str, args: &[&str]| {
                    std::process::Command::new(program)
                        .args(args)
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
                };
                if !answers("docker", &["info"]) {
                    return Err("no Docker engine answers (`docker info`)".to_owned());
                }
                for image in [DOCKER_DB_IMAGE, DOCKER_APP_BASE_IMAGE] {
                    if !answers("docker", &["image", "inspect", image]) {
                        return Err(format!("the image {image} is not built"));
                    }
                }
                Ok(())
            }
            Self::Chroma => {
                let url = chroma_url();
                let answer = reqwest::Client::new()
                    .get(format!("{url}/api/v2/heartbeat"))
                    .timeout(Duration::from_secs(3))
                    .send()
                    .await;
                match answer {
                    Ok(a) if a.status().is_success() => Ok(()),
                    Ok(a) => Err(format!("Chroma at {url} answered {}", a.status())),
                    Err(e) => Err(format!("Chroma at {url} is not reachable ({e})")),
                }
            }
        }
    }
}

/// The tenant database image the Docker tests' stacks run (built by `.ci/docker.sh`).
pub(crate) const DOCKER_DB_IMAGE: &str = "mt-paas/postgres:15";

/// The base of the service app images the tests build (`.ci/docker.sh`: Debian with CA
/// certificates).
pub(crate) const DOCKER_APP_BASE_IMAGE: &str = "mt-paas/app-base:bookworm";

/// The Postgres the suites use (`MT_PAAS_TEST_PG`).
pub(crate) fn postgres_url() -> String {
    std::env::var("MT_PAAS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The Chromium the browser tests drive (`CHROMIUM`, default Debian's `/usr/bin/chromium`).
pub(crate) fn chromium_path() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

/// The market's browser tests (console.mjs and its package.json).
pub(crate) fn browser_tests_dir() -> std::path::PathBuf {
    // Every suite that includes this file is two levels below the workspace root.
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/mt-paas-market/tests/browser")
}

/// The Chroma server the suites use (`MT_PAAS_TEST_CHROMA`).
pub(crate) fn chroma_url() -> String {
    std::env::var("MT_PAAS_TEST_CHROMA").unwrap_or_else(|_| "http://127.0.0.1:8100".to_owned())
}

/// One test: its name, what it needs, and its body (run on a two-worker Tokio runtime).
pub(crate) struct Test {
    name: &'static str,
    needs: Needs,
    run: Box<dyn FnOnce() -> Result<(), Failed> + Send>,
}

/// A test of `body`, which needs `needs`.
pub(crate) fn test<F, Fut>(name: &'static str, needs: Needs, body: F) -> Test
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    Test {
        name,
        needs,
        run: Box::new(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| Failed::from(format!("no Tokio runtime: {e}")))?
                .block_on(body());
            Ok(())
        }),
    }
}

/// Probes what the tests need, then runs them as libtest would.
pub(crate) fn main(tests: Vec<Test>) -> ExitCode {
    let args = Arguments::from_args();
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let mut needed: Vec<Needs> = tests.iter().map(|t| t.needs).collect();
    needed.sort_by_key(|n| n.label());
    needed.dedup();
    let missing: Vec<(Needs, String)> = if in_ci || args.list {
        Vec::new()
    } else {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        match runtime {
            Ok(runtime) => needed
                .into_iter()
                .filter_map(|n| runtime.block_on(n.probe()).err().map(|why| (n, why)))
                .collect(),
            Err(_) => Vec::new(),
        }
    };
    for (needs, why) in &missing {
        let count = tests.iter().filter(|t| t.needs == *needs).count();
        println!(
            "note: {count} test(s) [{}] are ignored: {why}. `bash .ci/test` installs and starts it (under CI=true they run and fail).",
            needs.label()
        );
    }
    let trials = tests
        .into_iter()
        .map(|t| {
            let ignored = missing.iter().any(|(n, _)| *n == t.needs);
            Trial::test(t.name, t.run)
                .with_kind(t.needs.label())
                .with_ignored_flag(ignored)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}
