//! The code blocks of a Markdown document, with the `<!-- marker -->` comments written on the
//! lines right above each fence.

use std::path::{Path, PathBuf};

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

fn parse_marker(line: &str) -> Option<(String, Option<String>)> {
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
