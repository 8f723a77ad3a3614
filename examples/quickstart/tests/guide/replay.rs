//! Replays the shell blocks of the guide: `<!-- replay: NAME -->` blocks hold `mt-paas tenant
//! create` and `curl` lines; an `<!-- output -->` block right after a one-command replay block
//! is what that command must print (`curl -i`: the status line, the headers shown, a blank
//! line and the body; plain `curl`: the body). A command without a shown output must succeed
//! (a 2xx for curl).
//!
//! Only the host changes: `127.0.0.1:8000` becomes the service under test and
//! `127.0.0.1:8505` the market under test.

use std::{sync::Arc, time::Duration};

use mt_paas::{
    CentralDb, DatabaseRouter, Features, IsolationMode, TenantId, TenantManager,
    config::Config,
    provisioning::{Provisioned, Provisioner},
};

use crate::markdown::{self, Block};

/// How long a `GET` whose answer depends on the market (a push, a hint) is retried.
const EVENTUALLY: Duration = Duration::from_secs(15);

/// One command of a replay block.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    /// `mt-paas tenant create ID --name NAME [--mode MODE]`.
    TenantCreate {
        id: String,
        name: String,
        mode: Option<String>,
    },
    /// `curl [-i] [-s] [-X METHOD] [-H 'Name: value']... [-d BODY] URL`.
    Curl(Curl),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Curl {
    pub(crate) include_head: bool,
    pub(crate) method: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Option<String>,
    pub(crate) url: String,
}

/// A command, where it is in the guide, and the output the guide shows for it.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub(crate) line: usize,
    pub(crate) text: String,
    pub(crate) command: Command,
    pub(crate) output: Option<String>,
}

/// The steps of walkthrough `name`, in the guide's order.
pub(crate) fn steps(name: &str) -> Vec<Step> {
    let blocks = markdown::blocks(&markdown::read("docs/DEVELOPER_GUIDE.md"));
    let mut steps = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        if block.marker("replay") != Some(name) {
            continue;
        }
        let mut block_steps = commands(block);
        if let Some(next) = blocks.get(i + 1)
            && next.has("output")
        {
            assert_eq!(
                block_steps.len(),
                1,
                "guide line {}: an output block follows a replay block of several commands",
                block.line
            );
            block_steps[0].output = Some(next.content.clone());
        }
        steps.extend(block_steps);
    }
    assert!(
        !steps.is_empty(),
        "the guide has no `replay: {name}` blocks"
    );
    steps
}

/// The commands of one block: `\` continues a line, `#` starts a comment.
pub(crate) fn commands(block: &Block) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut pending = String::new();
    let mut first_line = block.line + 1;
    for (n, line) in block.content.lines().enumerate() {
        let line_no = block.line + 1 + n;
        if pending.is_empty() {
            first_line = line_no;
        }
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                pending.push_str(part);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                let text = std::mem::take(&mut pending);
                steps.push(Step {
                    line: first_line,
                    command: parse(&text)
                        .unwrap_or_else(|e| panic!("guide line {first_line}: {e}: {text}")),
                    text,
                    output: None,
                });
            }
        }
    }
    assert!(
        pending.is_empty(),
        "guide line {first_line}: a `\\` continues past the block's end"
    );
    steps
}

/// Splits a shell line into words: single and double quotes, a `#` word ends the line.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        if first == '#' {
            break;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            match c {
                '\'' => loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated '".to_owned()),
                    }
                },
                '"' => loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => word.extend(chars.next()),
                        Some('$') => return Err("shell variables are not replayed".to_owned()),
                        Some(c) => word.push(c),
                        None => return Err("unterminated \"".to_owned()),
                    }
                },
                '$' | '|' | '>' | '<' | '&' | ';' | '`' => {
                    return Err(format!("`{c}` is not replayed: keep guide commands plain"));
                }
                c => word.push(c),
            }
        }
        words.push(word);
    }
    Ok(words)
}

fn parse(line: &str) -> Result<Command, String> {
    let words = words(line)?;
    let mut args = words.iter().map(String::as_str);
    match args.next() {
        Some("mt-paas") => {
            let rest: Vec<&str> = args.collect();
            match rest.as_slice() {
                ["tenant", "create", id, flags @ ..] => {
                    let mut name = None;
                    let mut mode = None;
                    let mut flags = flags.iter();
                    while let Some(flag) = flags.next() {
                        let value = flags.next().ok_or(format!("{flag} needs a value"))?;
                        match *flag {
                            "--name" | "-n" => name = Some((*value).to_owned()),
                            "--mode" => mode = Some((*value).to_owned()),
                            other => return Err(format!("unknown flag {other}")),
                        }
                    }
                    Ok(Command::TenantCreate {
                        id: (*id).to_owned(),
                        name: name.ok_or("--name is required")?,
                        mode,
                    })
                }
                _ => Err("only `mt-paas tenant create` is replayed".to_owned()),
            }
        }
        Some("curl") => {
            let mut curl = Curl {
                include_head: false,
                method: String::new(),
                headers: Vec::new(),
                body: None,
                url: String::new(),
            };
            while let Some(arg) = args.next() {
                let mut value = || args.next().ok_or(format!("{arg} needs a value"));
                match arg {
                    "-i" => curl.include_head = true,
                    "-s" => {}
                    "-X" => curl.method = value()?.to_owned(),
                    "-H" => {
                        let header = value()?;
                        let (name, v) = header
                            .split_once(':')
                            .ok_or(format!("header {header:?} has no ':'"))?;
                        curl.headers
                            .push((name.trim().to_owned(), v.trim().to_owned()));
                    }
                    "-d" => curl.body = Some(value()?.to_owned()),
                    flag if flag.starts_with('-') => {
                        return Err(format!("curl {flag} is not replayed"));
                    }
                    url if curl.url.is_empty() => curl.url = url.to_owned(),
                    extra => return Err(format!("a second URL {extra}")),
                }
            }
            if curl.url.is_empty() {
                return Err("curl without a URL".to_owned());
            }
            if curl.method.is_empty() {
                curl.method = if curl.body.is_some() { "POST" } else { "GET" }.to_owned();
            }
            Ok(Command::Curl(curl))
        }
        _ => Err("only `mt-paas` and `curl` lines are replayed".to_owned()),
    }
}

/// Where the guide's hosts are during a replay.
#[derive(Debug, Clone)]
pub(crate) struct Hosts {
    /// The service, e.g. `127.0.0.1:41234`.
    pub(crate) service: String,
    /// The market, when one runs.
    pub(crate) market: Option<String>,
}

impl Hosts {
    fn map(&self, text: &str) -> String {
        let text = text.replace("127.0.0.1:8000", &self.service);
        match &self.market {
            Some(market) => text.replace("127.0.0.1:8505", market),
            None => text,
        }
    }
}

/// Replays walkthrough `name` against the service (and market) at `hosts`; `config` is the
/// service's configuration, which the CLI commands use as `mt-paas --config` would.
pub(crate) async fn run(name: &str, hosts: &Hosts, config: &Config) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client");
    for step in steps(name) {
        match &step.command {
            Command::TenantCreate { id, name, mode } => {
                assert!(
                    step.output.is_none(),
                    "guide line {}: outputs of mt-paas are not checked",
                    step.line
                );
                tenant_create(config, id, name, mode.as_deref()).await;
            }
            Command::Curl(curl) => replay_curl(&client, hosts, &step, curl).await,
        }
    }
}

/// What `mt-paas tenant create` does: its own connection to the central DB, its own registry
/// and provisioner, as a separate process would have.
async fn tenant_create(config: &Config, id: &str, name: &str, mode: Option<&str>) {
    let config = Arc::new(config.clone());
    let db = CentralDb::connect(&config.database.central)
        .await
        .expect("the central DB opens");
    let manager = TenantManager::new(
        db.clone(),
        config.isolation.mode,
        Features::new(config.features.defaults.clone()),
    );
    let databases = DatabaseRouter::new(config.clone());
    let provisioner = Provisioner::new(config.clone(), manager, databases)
        .await
        .expect("the migrations are readable");
    let id = TenantId::parse(id).expect("a valid tenant id");
    let mode = mode.map(|m| m.parse::<IsolationMode>().expect("a valid --mode"));
    match provisioner.create(id.clone(), name, mode).await {
        Ok(Provisioned::Ready(record)) => assert_eq!(record.id, id),
        other => panic!("mt-paas tenant create {id}: {other:?}"),
    }
    db.close().await;
}

/// What curl would print for `response`.
struct Printed {
    status: u16,
    head: Vec<(String, String)>,
    status_line: String,
    body: String,
}

async fn send(client: &reqwest::Client, hosts: &Hosts, curl: &Curl) -> Printed {
    let mut url = hosts.map(&curl.url);
    if !url.starts_with("http://") && !url.starts_with("https://") {
        url = format!("http://{url}");
    }
    let method = reqwest::Method::from_bytes(curl.method.as_bytes()).expect("an HTTP method");
    let mut request = client.request(method, url);
    for (name, value) in &curl.headers {
        request = request.header(name, value);
    }
    if let Some(body) = &curl.body {
        request = request.body(hosts.map(body));
    }
    let response = request.send().await.expect("the request is answered");
    let status = response.status();
    let head = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    Printed {
        status: status.as_u16(),
        status_line: format!(
            "HTTP/1.1 {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or_default()
        ),
        head,
        body: response.text().await.unwrap_or_default(),
    }
}

/// Whether `printed` is what `expected` (an output block) shows; the difference otherwise.
fn compare(expected: &str, include_head: bool, printed: &Printed) -> Result<(), String> {
    let expected_body = if include_head {
        let (head, body) = expected
            .split_once("\n\n")
            .ok_or("an output of `curl -i` needs a blank line between head and body")?;
        let mut lines = head.lines();
        let status_line = lines.next().unwrap_or_default();
        if status_line != printed.status_line {
            return Err(format!(
                "status: shown {status_line:?}, got {:?}",
                printed.status_line
            ));
        }
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or(format!("header line {line:?} has no ':'"))?;
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            let got: Vec<&str> = printed
                .head
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
                .collect();
            if !got.contains(&value) {
                return Err(format!("header {name}: shown {value:?}, got {got:?}"));
            }
        }
        body
    } else {
        expected
    };
    if expected_body.trim_end() != printed.body.trim_end() {
        return Err(format!(
            "body (status {}):\n  shown: {}\n  got:   {}",
            printed.status,
            expected_body.trim_end(),
            printed.body.trim_end()
        ));
    }
    Ok(())
}

async fn replay_curl(client: &reqwest::Client, hosts: &Hosts, step: &Step, curl: &Curl) {
    let Some(expected) = &step.output else {
        let printed = send(client, hosts, curl).await;
        assert!(
            (200..300).contains(&printed.status),
            "guide line {}: `{}` answered {}: {}",
            step.line,
            step.text,
            printed.status,
            printed.body
        );
        return;
    };
    // A GET may be repeated while the market's push or hint is on its way; anything else
    // must be right the first time.
    let deadline = tokio::time::Instant::now()
        + if curl.method == "GET" {
            EVENTUALLY
        } else {
            Duration::ZERO
        };
    loop {
        let printed = send(client, hosts, curl).await;
        match compare(expected, curl.include_head, &printed) {
            Ok(()) => return,
            Err(difference) if tokio::time::Instant::now() >= deadline => panic!(
                "guide line {}: `{}` does not answer what the guide shows: {difference}",
                step.line, step.text
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

#[test]
fn shell_lines_parse_like_a_shell() {
    let block = Block {
        line: 10,
        info: "sh".to_owned(),
        content: "# a comment\nmt-paas tenant create hallym --name 한림대학교\ncurl -X POST -H 'X-Tenant-ID: hallym' \\\n     -d '{\"text\":\"a b\"}' 127.0.0.1:8000/notes   # trailing\n".to_owned(),
        markers: Vec::new(),
        section: String::new(),
    };
    let steps = commands(&block);
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].line, 12);
    assert_eq!(
        steps[0].command,
        Command::TenantCreate {
            id: "hallym".to_owned(),
            name: "한림대학교".to_owned(),
            mode: None
        }
    );
    assert_eq!(steps[1].line, 13);
    let Command::Curl(curl) = &steps[1].command else {
        panic!("a curl")
    };
    assert_eq!(curl.method, "POST");
    assert_eq!(
        curl.headers,
        [("X-Tenant-ID".to_owned(), "hallym".to_owned())]
    );
    assert_eq!(curl.body.as_deref(), Some("{\"text\":\"a b\"}"));
    assert_eq!(curl.url, "127.0.0.1:8000/notes");
    assert!(parse("curl -H \"Authorization: Bearer $TOKEN\" x").is_err());
    assert!(parse("cargo run").is_err());
}
