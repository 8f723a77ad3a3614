//! The code blocks of a Markdown document, with the `<!-- marker -->` comments written on the
//! lines right above each fence; and its headings, anchors and links, outside code.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// The workspace's root directory.
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A document of the workspace, read whole.
pub(crate) fn read(relative: &str) -> String {
    let path = workspace().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One fenced code block.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    /// The line of the opening fence (1-based).
    pub(crate) line: usize,
    /// The fence's info string, e.g. `rust,no_run`.
    pub(crate) info: String,
    /// The lines between the fences, each ending in `\n`.
    pub(crate) content: String,
    /// The markers above the fence: `<!-- file: a/b -->` is `("file", Some("a/b"))`,
    /// `<!-- config -->` is `("config", None)`.
    pub(crate) markers: Vec<(String, Option<String>)>,
    /// The `## ` heading the block is under.
    pub(crate) section: String,
}

impl Block {
    /// The language: the info string up to the first `,` or space.
    pub(crate) fn lang(&self) -> &str {
        self.info
            .split([',', ' '])
            .next()
            .unwrap_or_default()
            .trim()
    }

    /// Whether the block carries marker `name` (with any value).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.markers.iter().any(|(n, _)| n == name)
    }

    /// The value of marker `name`, if the block carries it with a value.
    pub(crate) fn marker(&self, name: &str) -> Option<&str> {
        self.markers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

pub(crate) fn parse_marker(line: &str) -> Option<(String, Option<String>)> {
    let inner = line
        .trim()
        .strip_prefix("<!--")?
        .strip_suffix("-->")?
        .trim();
    Some(match inner.split_once(':') {
        Some((name, value)) => (name.trim().to_owned(), Some(value.trim().to_owned())),
        None => (inner.to_owned(), None),
    })
}

/// Every fenced code block of `markdown`, in order.
pub(crate) fn blocks(markdown: &str) -> Vec<Block> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks = Vec::new();
    let mut section = String::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(heading) = line.strip_prefix("## ") {
            section = heading.trim().to_owned();
        }
        let Some(info) = line.strip_prefix("```") else {
            i += 1;
            continue;
        };
        let mut markers = Vec::new();
        let mut above = i;
        while above > 0 {
            match parse_marker(lines[above - 1]) {
                Some(marker) => markers.insert(0, marker),
                None => break,
            }
            above -= 1;
        }
        let start = i;
        let mut content = String::new();
        i += 1;
        while i < lines.len() && lines[i].trim_end() != "```" {
            content.push_str(lines[i]);
            content.push('\n');
            i += 1;
        }
        assert!(
            i < lines.len(),
            "the code block at line {} is never closed",
            start + 1
        );
        blocks.push(Block {
            line: start + 1,
            info: info.trim().to_owned(),
            content,
            markers,
            section: section.clone(),
        });
        i += 1;
    }
    blocks
}

/// The lines of `markdown` outside fenced code blocks (1-based line numbers), fenced as
/// [`blocks`] reads them.
pub(crate) fn prose(markdown: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (i, line) in markdown.lines().enumerate() {
        if fenced {
            fenced = line.trim_end() != "```";
        } else if line.starts_with("```") {
            fenced = true;
        } else {
            out.push((i + 1, line));
        }
    }
    out
}

/// The `<!-- marker -->` lines of `markdown` outside code blocks, in order.
pub(crate) fn markers(markdown: &str) -> Vec<(String, Option<String>)> {
    prose(markdown)
        .into_iter()
        .filter_map(|(_, line)| parse_marker(line))
        .collect()
}

/// A `#` heading.
#[derive(Debug, Clone)]
pub(crate) struct Heading {
    /// Its line (1-based).
    pub(crate) line: usize,
    /// 1 for `#`, 2 for `##`, ...
    pub(crate) level: usize,
    /// The text after the hashes.
    pub(crate) text: String,
}

/// The headings of `markdown`, outside code blocks.
pub(crate) fn headings(markdown: &str) -> Vec<Heading> {
    prose(markdown)
        .into_iter()
        .filter_map(|(line, text)| {
            let level = text.chars().take_while(|c| *c == '#').count();
            let rest = text[level..].strip_prefix(' ')?;
            (1..=6).contains(&level).then(|| Heading {
                line,
                level,
                text: rest.trim().to_owned(),
            })
        })
        .collect()
}

/// The anchor GitHub gives a heading: lower-cased, every character but letters, digits, `-`,
/// `_` and spaces dropped, spaces made `-` ("6. Control-plane protocol" →
/// `6-control-plane-protocol`, "12.2 설정" → `122-설정`).
pub(crate) fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor a document offers: its headings' slugs, a repeated one with `-1`, `-2`, ...
pub(crate) fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for heading in headings(markdown) {
        let slug = slug(&heading.text);
        let count = seen.entry(slug.clone()).or_default();
        anchors.insert(if *count == 0 {
            slug
        } else {
            format!("{slug}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// A link of a document: `[text](target)`, `![text](target)` or a definition `[text]: target`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Link {
    /// Its line (1-based).
    pub(crate) line: usize,
    /// The text in brackets.
    pub(crate) text: String,
    /// Where it points, as written.
    pub(crate) target: String,
}

/// `line` without its code spans (`` `x` ``, ``` `` x `` ```).
fn without_code_spans(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let run = |at: usize| chars[at..].iter().take_while(|c| **c == '`').count();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let n = run(i);
        // The closing run has exactly as many backticks; without one, they are literal.
        let mut j = i + n;
        let close = loop {
            if j >= chars.len() {
                break None;
            }
            if chars[j] == '`' {
                let m = run(j);
                if m == n {
                    break Some(j + m);
                }
                j += m;
            } else {
                j += 1;
            }
        };
        match close {
            Some(end) => i = end,
            None => {
                out.extend(&chars[i..i + n]);
                i += n;
            }
        }
    }
    out
}

/// The links of `markdown`, outside code blocks and code spans.
pub(crate) fn links(markdown: &str) -> Vec<Link> {
    let mut links = Vec::new();
    for (line, text) in prose(markdown) {
        let text = without_code_spans(text);
        // A definition: `[label]: target`.
        if let Some(rest) = text.trim_start().strip_prefix('[')
            && let Some((label, target)) = rest.split_once("]:")
            && let Some(target) = target.split_whitespace().next()
        {
            links.push(Link {
                line,
                text: label.to_owned(),
                target: target.trim_matches(['<', '>']).to_owned(),
            });
            continue;
        }
        let chars: Vec<char> = text.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if *c != '[' {
                continue;
            }
            // The matching `]`, then `(`.
            let mut depth = 0;
            let Some(close) = (i..chars.len()).find(|&j| {
                match chars[j] {
                    '[' => depth += 1,
                    ']' => depth -= 1,
                    _ => {}
                }
                depth == 0
            }) else {
                continue;
            };
            if chars.get(close + 1) != Some(&'(') {
                continue;
            }
            let inner: String = chars[close + 2..].iter().collect();
            let Some(end) = inner.find(')') else {
                continue;
            };
            let target = inner[..end].split_whitespace().next().unwrap_or_default();
            links.push(Link {
                line,
                text: chars[i + 1..close].iter().collect(),
                target: target.trim_matches(['<', '>']).to_owned(),
            });
        }
    }
    links
}

/// `%XX` sequences decoded (an anchor may be written percent-encoded).
pub(crate) fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn blocks_and_markers_are_read() {
    let doc = "# T\n## One\n<!-- file: a/b.rs -->\n<!-- config -->\n```rust,no_run\nfn x() {}\n```\n\n```sh\nls\n```\n";
    let blocks = blocks(doc);
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].lang(), "rust");
    assert_eq!(blocks[0].marker("file"), Some("a/b.rs"));
    assert!(blocks[0].has("config"));
    assert_eq!(blocks[0].content, "fn x() {}\n");
    assert_eq!(blocks[0].section, "One");
    assert!(blocks[1].markers.is_empty());
    assert_eq!(blocks[1].line, 9);
}

#[test]
fn headings_slugs_and_links_are_read() {
    assert_eq!(
        slug("6. Control-plane protocol"),
        "6-control-plane-protocol"
    );
    assert_eq!(slug("12.2 Configuration"), "122-configuration");
    assert_eq!(slug("`tenant_identification`"), "tenant_identification");
    assert_eq!(
        slug("4.4 Subscription, kill switch and features"),
        "44-subscription-kill-switch-and-features"
    );
    assert_eq!(slug("12.2 설정"), "122-설정");
    assert_eq!(slug("7.2 Activity log (xAPI)"), "72-activity-log-xapi");
    let doc = "# T\n## A\n```sh\n## not a heading [x](nowhere.md)\n```\n## A\n\
               See [the `guide`](docs/GUIDE.md#a-1) and `[code](no.md)`, ![img](i.png).\n\
               ``a `[x](y)` b`` [b](<c.md>)\n[def]: ../x.md \"title\"\n";
    let anchors = anchors(doc);
    assert_eq!(
        anchors,
        BTreeSet::from(["t".into(), "a".into(), "a-1".into()])
    );
    let targets: Vec<(usize, String)> =
        links(doc).into_iter().map(|l| (l.line, l.target)).collect();
    assert_eq!(
        targets,
        [
            (7, "docs/GUIDE.md#a-1".to_owned()),
            (7, "i.png".to_owned()),
            (8, "c.md".to_owned()),
            (9, "../x.md".to_owned()),
        ]
    );
    assert_eq!(links(doc)[0].text, "the ");
    assert_eq!(percent_decoded("122-%EC%84%A4%EC%A0%95"), "122-설정");
    assert_eq!(
        markers("<!-- a -->\n```\n<!-- b -->\n```\n<!-- c: d -->\n").len(),
        2
    );
}
