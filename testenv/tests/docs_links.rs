//! Every relative link of the documentation resolves: the file or folder it names exists, and its `#anchor`
//! is a heading of the target (by GitHub's slug rules) or an `<a id=…>`/`<a name=…>` in it. External links
//! (http, https, mailto) are not fetched.
//!
//! It lives in the testenv crate because that crate builds in seconds and `make test` runs it: the check
//! needs no product, no server and no helper of `tests/`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// The documents a reader follows links between, relative to the workspace root; every `docs/*.md` too.
const DOCUMENTS: &[&str] = &[
    "README.md",
    "CONTRIBUTING.md",
    "SECURITY.md",
    "ARCHITECTURE.md",
    "charts/idbind/README.md",
    "sim/README.md",
    "bench/REPORT.md",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn documents(root: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = DOCUMENTS.iter().map(PathBuf::from).collect();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| name.ends_with(".md"))
                .map(|name| Path::new("docs").join(name))
                .collect()
        })
        .unwrap_or_default();
    docs.sort();
    found.extend(docs);
    found
}

fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_TASKLISTS
}

/// The link and image destinations of a Markdown text, in order.
fn links(markdown: &str) -> Vec<String> {
    Parser::new_ext(markdown, options())
        .filter_map(|event| match event {
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                Some(dest_url.to_string())
            }
            _ => None,
        })
        .collect()
}

/// GitHub's anchor for a heading's text: lower case, every character but letters, digits, `_`, `-` and spaces
/// dropped, spaces made hyphens; a repeated slug gets `-1`, `-2`, … in order.
fn slug(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors a Markdown text offers: its headings' slugs and the ids and names of its `<a>` tags.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut heading: Option<String> = None;
    for event in Parser::new_ext(markdown, options()) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::End(TagEnd::Heading(_)) => {
                let base = slug(&heading.take().unwrap_or_default());
                let n = seen.entry(base.clone()).or_insert(0);
                found.insert(if *n == 0 { base.clone() } else { format!("{base}-{n}") });
                *n += 1;
            }
            Event::Text(text) | Event::Code(text) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&text);
                }
            }
            Event::Html(html) | Event::InlineHtml(html) => found.extend(html_anchors(&html)),
            _ => {}
        }
    }
    found
}

/// The values of `id=` and `name=` attributes of `<a …>` tags in an HTML fragment.
fn html_anchors(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for tag in html.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or_default();
        if !(tag.starts_with("a ") || tag.starts_with("a\t") || tag.starts_with("a\n")) {
            continue;
        }
        for attribute in ["id=", "name="] {
            for (at, _) in tag.match_indices(attribute) {
                let before = tag[..at].chars().last();
                if !before.is_some_and(char::is_whitespace) {
                    continue;
                }
                let value = &tag[at + attribute.len()..];
                let value = match value.chars().next() {
                    Some(q @ ('"' | '\'')) => value[1..].split(q).next(),
                    _ => value.split(|c: char| c.is_whitespace() || c == '/').next(),
                };
                found.extend(value.map(str::to_string));
            }
        }
    }
    found
}

/// `dir/../x` as `x`, without touching the file system (a missing path must still be reported by name).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// What is wrong with one link of `document` (relative to `root`), if anything.
fn check(
    root: &Path,
    document: &Path,
    link: &str,
    cache: &mut HashMap<PathBuf, BTreeSet<String>>,
) -> Option<String> {
    if ["http://", "https://", "mailto:"].iter().any(|scheme| link.starts_with(scheme)) {
        return None;
    }
    let (path, anchor) = link.split_once('#').map_or((link, None), |(p, a)| (p, Some(a)));
    let target = if path.is_empty() {
        document.to_path_buf()
    } else if let Some(from_root) = path.strip_prefix('/') {
        normalize(Path::new(from_root))
    } else {
        normalize(&document.parent().unwrap_or(Path::new("")).join(path))
    };
    let on_disk = root.join(&target);
    if !on_disk.exists() {
        return Some(format!("{link}: {} does not exist", target.display()));
    }
    let anchor = anchor?;
    if on_disk.is_dir() || target.extension().is_none_or(|e| e != "md") {
        return Some(format!("{link}: an anchor into {}, which is no Markdown file", target.display()));
    }
    let offered = cache
        .entry(target.clone())
        .or_insert_with(|| anchors(&std::fs::read_to_string(&on_disk).unwrap_or_default()));
    (!offered.contains(anchor)).then(|| format!("{link}: {} has no anchor #{anchor}", target.display()))
}

#[test]
fn every_relative_link_and_anchor_of_the_documentation_resolves() {
    let root = root();
    let mut cache = HashMap::new();
    let mut broken = Vec::new();
    let mut checked = 0;
    for document in documents(&root) {
        let text = std::fs::read_to_string(root.join(&document))
            .unwrap_or_else(|e| panic!("{}: {e}", document.display()));
        for link in links(&text) {
            checked += 1;
            if let Some(problem) = check(&root, &document, &link, &mut cache) {
                broken.push(format!("{}: {problem}", document.display()));
            }
        }
    }
    assert!(checked > 30, "only {checked} links found: is the Markdown parsed?");
    assert!(broken.is_empty(), "{} broken links:\n{}", broken.len(), broken.join("\n"));
}

#[test]
fn slugs_follow_githubs_rules() {
    let text = "# Who may bind what: `WorkloadIdentityPolicy`\n## A real node: `make node` (root only)\n\
                ## Values in short\n## Values in short\n<a id=\"kept\"></a>\n\nx <a name='inline'>y</a>\n";
    let found = anchors(text);
    let want = [
        "who-may-bind-what-workloadidentitypolicy",
        "a-real-node-make-node-root-only",
        "values-in-short",
        "values-in-short-1",
        "kept",
        "inline",
    ];
    assert_eq!(found, want.map(String::from).into_iter().collect::<BTreeSet<_>>());
}

#[test]
fn a_missing_file_or_anchor_is_reported() {
    let root = root();
    let mut cache = HashMap::new();
    let readme = Path::new("README.md");
    assert_eq!(check(&root, readme, "https://example.com/x#y", &mut cache), None);
    assert_eq!(check(&root, readme, "SECURITY.md", &mut cache), None);
    assert!(check(&root, readme, "docs/nothing-here.md", &mut cache).is_some());
    assert!(check(&root, readme, "#no-such-heading-anywhere", &mut cache).is_some());
    let from_docs = Path::new("docs/policies.md");
    assert_eq!(check(&root, from_docs, "../README.md#install-on-aks", &mut cache), None);
    assert_eq!(links("`[not](a-link.md)`\n\n```\n[nor](this.md)\n```\n[but](this.md)\n"), ["this.md"]);
}
