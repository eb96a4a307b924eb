//! The import graph of a crate's sources, and the checks that keep it layered.
//!
//! A test hands [`read_sources`] a crate's `src/` folder and checks the result with
//! [`upward_imports`] (every module sits in a layer and imports only its own layer or
//! lower ones) or [`cycles`] (no two files import each other, directly or around a
//! circle). The parser reads paths, not types: every `crate::…`, `super::…` and
//! `self::…` path in code (comments, doc links, string literals and `#[cfg(test)]` items
//! are skipped), with `use` groups expanded and crate-root re-exports followed to the
//! module that defines them. That is what a reader means by "this file knows that one".

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One reference from a module to another module of the same crate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Import {
    /// The importing module (`crate` for `lib.rs`, `a::b` for `a/b.rs` or `a/b/mod.rs`).
    pub from: String,
    /// The imported module.
    pub to: String,
    /// The path as written, expanded (`instance::cell::InstanceHandle`).
    pub path: String,
}

/// A crate's source files: module path → source text.
pub type Sources = BTreeMap<String, String>;

/// Reads every `.rs` file under `src` (a crate's `src/` folder) by module path.
pub fn read_sources(src: &Path) -> std::io::Result<Sources> {
    let mut out = Sources::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(src)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                out.insert(module_of(rel), std::fs::read_to_string(&path)?);
            }
        }
    }
    Ok(out)
}

/// The module path of a file relative to `src/`.
fn module_of(rel: &Path) -> String {
    let parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [only] if only == "lib" || only == "main" => "crate".to_owned(),
        [init @ .., last] if last == "mod" => init.join("::"),
        all => all.join("::"),
    }
}

/// Every import between modules of the crate (self-references left out).
pub fn imports(sources: &Sources) -> Vec<Import> {
    let modules: BTreeSet<&str> = sources.keys().map(String::as_str).collect();
    let reexports = sources
        .get("crate")
        .map(|lib| root_reexports(&code_only(lib)))
        .unwrap_or_default();
    let mut out = BTreeSet::new();
    for (module, text) in sources {
        for path in paths(module, &code_only(text)) {
            let Some(to) = resolve(&path, &modules, &reexports) else {
                continue;
            };
            if to != *module && !is_within(module, &to) {
                out.insert(Import {
                    from: module.clone(),
                    to,
                    path,
                });
            }
        }
    }
    out.into_iter().collect()
}

/// Whether `inner` is `outer` itself or one of its submodules (a parent module naming
/// its own children is structure, not a dependency).
fn is_within(outer: &str, inner: &str) -> bool {
    outer == "crate"
        || inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with("::"))
}

/// Imports that point from a layer to a higher one, and modules that sit in no layer.
/// `layers` lists layers bottom first, each as module paths (a module belongs to the
/// layer of its longest listed prefix: `store` and `store::redb` may sit apart).
pub fn upward_imports(sources: &Sources, layers: &[(&str, &[&str])]) -> Vec<String> {
    let layer_of = |module: &str| -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (i, (_, members)) in layers.iter().enumerate() {
            for m in members.iter() {
                let matches = module == *m
                    || module
                        .strip_prefix(m)
                        .is_some_and(|rest| rest.starts_with("::"));
                if matches && best.is_none_or(|(len, _)| m.len() > len) {
                    best = Some((m.len(), i));
                }
            }
        }
        best.map(|(_, i)| i)
    };
    let mut problems = Vec::new();
    for module in sources.keys() {
        if layer_of(module).is_none() {
            problems.push(format!("module {module} sits in no layer"));
        }
    }
    for import in imports(sources) {
        if let (Some(from), Some(to)) = (layer_of(&import.from), layer_of(&import.to))
            && to > from
        {
            problems.push(format!(
                "{} (layer {}) imports {} (layer {}) through crate::{}",
                import.from, layers[from].0, import.to, layers[to].0, import.path
            ));
        }
    }
    problems
}

/// The circles of the file import graph, each as the modules around it (a two-file
/// cycle reads `[a, b]`). Parent modules naming their children do not count.
pub fn cycles(sources: &Sources) -> Vec<Vec<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for import in imports(sources) {
        // A child importing its parent module's items is the ordinary `super::` and
        // does not make a cycle unless the parent imports the child's items back.
        edges.entry(import.from).or_default().insert(import.to);
    }
    let mut found = BTreeSet::new();
    for start in edges.keys() {
        let mut path = vec![start.clone()];
        walk(&edges, start, &mut path, &mut found);
    }
    found.into_iter().collect()
}

fn walk(
    edges: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    path: &mut Vec<String>,
    found: &mut BTreeSet<Vec<String>>,
) {
    let last = path.last().cloned().unwrap_or_default();
    for next in edges.get(&last).into_iter().flatten() {
        if next == start {
            // Report each circle once, rotated to start at its smallest module.
            let min = path
                .iter()
                .enumerate()
                .min_by_key(|(_, m)| *m)
                .map_or(0, |(i, _)| i);
            let mut circle = path[min..].to_vec();
            circle.extend_from_slice(&path[..min]);
            found.insert(circle);
        } else if !path.contains(next) && next.as_str() > start {
            path.push(next.clone());
            walk(edges, start, path, found);
            path.pop();
        }
    }
}

/// The module a path names: its longest prefix that is a module, or the module a root
/// re-export comes from.
fn resolve(
    path: &str,
    modules: &BTreeSet<&str>,
    reexports: &BTreeMap<String, String>,
) -> Option<String> {
    let segments: Vec<&str> = path.split("::").collect();
    for n in (1..=segments.len()).rev() {
        let candidate = segments[..n].join("::");
        if modules.contains(candidate.as_str()) {
            return Some(candidate);
        }
    }
    let first = segments.first()?;
    let origin = reexports.get(*first)?;
    resolve(origin, modules, reexports).or_else(|| Some("crate".to_owned()))
}

/// `pub use` items of the crate root: exported name → the path it comes from.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = lib;
    while let Some(at) = rest.find("pub use ") {
        rest = &rest[at + "pub use ".len()..];
        let end = rest.find(';').unwrap_or(rest.len());
        for path in expand(&rest[..end]) {
            let path = path.strip_prefix("crate::").unwrap_or(&path).to_owned();
            let (path, name) = match path.split_once(" as ") {
                Some((p, alias)) => (p.trim().to_owned(), alias.trim().to_owned()),
                None => {
                    let name = path.rsplit("::").next().unwrap_or(&path).to_owned();
                    (path, name)
                }
            };
            out.insert(name, path);
        }
        rest = &rest[end..];
    }
    out
}

/// Every crate-relative path in `code` (written in module `module`), expanded.
fn paths(module: &str, code: &str) -> Vec<String> {
    let parent = match module.rsplit_once("::") {
        Some((p, _)) => p.to_owned(),
        None => String::new(),
    };
    let mut out = Vec::new();
    for (prefix, base) in [
        ("crate::", String::new()),
        ("super::", parent),
        ("self::", module.to_owned()),
    ] {
        let mut from = 0;
        while let Some(at) = code[from..].find(prefix) {
            let start = from + at;
            from = start + prefix.len();
            let preceded = code[..start]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            if preceded || (prefix != "crate::" && module == "crate") {
                continue;
            }
            let mut tail = path_tail(&code[from..]);
            let mut base = base.clone();
            while prefix == "super::"
                && let Some(up) = tail.strip_prefix("super::")
            {
                tail = up;
                base = base
                    .rsplit_once("::")
                    .map_or(String::new(), |(p, _)| p.to_owned());
            }
            for p in expand(tail) {
                let p = p.split(" as ").next().unwrap_or("").trim().to_owned();
                if p.is_empty() || p == "self" || p == "*" {
                    continue;
                }
                let p = p.strip_suffix("::self").unwrap_or(&p).to_owned();
                let p = p.strip_suffix("::*").unwrap_or(&p).to_owned();
                out.push(if base.is_empty() {
                    p
                } else {
                    format!("{base}::{p}")
                });
            }
        }
    }
    out
}

/// The path text after a `crate::` (segments, then at most one brace group).
fn path_tail(s: &str) -> &str {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    return &s[..=i];
                }
            }
            c if depth == 0 && !(c.is_alphanumeric() || c == '_' || c == ':') => {
                return &s[..i];
            }
            _ => {}
        }
    }
    s
}

/// Expands a `use` tree (`a::{b, c::{d, e as f}}`) into full paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.to_owned()];
    };
    let prefix = tree[..open].trim_end_matches("::").trim();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    let mut items = Vec::new();
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    for item in items.into_iter().map(str::trim).filter(|s| !s.is_empty()) {
        for sub in expand(item) {
            out.push(match (prefix.is_empty(), sub.as_str()) {
                (true, _) => sub,
                (false, "self") => prefix.to_owned(),
                (false, _) => format!("{prefix}::{sub}"),
            });
        }
    }
    out
}

/// `text` without comments, string and char literals, and `#[cfg(test)]` items.
pub fn code_only(text: &str) -> String {
    let stripped = strip_comments_and_strings(text);
    strip_test_items(&stripped)
}

fn strip_comments_and_strings(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0usize;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#')) && !prev_is_ident(b, i) => {
                // A raw string: r"…" or r#"…"#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                'scan: while j < b.len() {
                    if b[j] == b'"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&b'#')) {
                        j += 1 + hashes;
                        break 'scan;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' => {
                // A char literal ('x', '\n', '\'') or a lifetime ('a): keep lifetimes.
                let close = if b.get(i + 1) == Some(&b'\\') {
                    b[i + 2..]
                        .iter()
                        .position(|&c| c == b'\'')
                        .map(|p| i + 2 + p)
                } else if b.get(i + 2) == Some(&b'\'') {
                    Some(i + 2)
                } else {
                    None
                };
                match close {
                    Some(end) => {
                        out.push_str("' '");
                        i = end + 1;
                    }
                    None => {
                        out.push('\'');
                        i += 1;
                    }
                }
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or(' ');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    out
}

fn prev_is_ident(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// Removes every item marked `#[cfg(test)]` (up to its closing brace or semicolon).
fn strip_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (i, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_of(files: &[(&str, &str)]) -> Sources {
        files
            .iter()
            .map(|(m, s)| (m.to_string(), s.to_string()))
            .collect()
    }

    const LAYERS: &[(&str, &[&str])] = &[("base", &["a"]), ("top", &["b", "crate"])];

    #[test]
    fn an_upward_import_is_reported_and_a_downward_one_is_not() {
        let src = crate_of(&[
            ("crate", "mod a; mod b;"),
            ("a", "use crate::b::Thing;"),
            ("b", "use crate::a::Other;"),
        ]);
        let problems = upward_imports(&src, LAYERS);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("a (layer base) imports b (layer top)"));
    }

    #[test]
    fn groups_super_paths_and_root_reexports_resolve_to_their_modules() {
        let src = crate_of(&[
            ("crate", "pub use b::{Thing, inner::Deep as Renamed};"),
            ("a", "use crate::{Renamed, x::{y}};"),
            ("a::c", "fn f() -> super::super::b::Thing { todo() }"),
            ("b", ""),
            ("b::inner", ""),
        ]);
        let found: Vec<(String, String)> =
            imports(&src).into_iter().map(|i| (i.from, i.to)).collect();
        assert!(
            found.contains(&("a".into(), "b::inner".into())),
            "{found:?}"
        );
        assert!(found.contains(&("a::c".into(), "b".into())), "{found:?}");
        let problems = upward_imports(&src, LAYERS);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn comments_strings_and_test_items_are_not_imports() {
        let src = crate_of(&[
            ("crate", ""),
            (
                "a",
                "//! See [`crate::b::Thing`].\n/* crate::b */ const S: &str = \"crate::b\";\n\
                 const R: &str = r#\"crate::b\"#; const C: char = '\"';\n\
                 #[cfg(test)]\nmod tests { use crate::b::Thing; }\nfn f<'a>(x: &'a str) {}",
            ),
            ("b", ""),
        ]);
        assert!(upward_imports(&src, LAYERS).is_empty());
    }

    #[test]
    fn a_module_outside_every_layer_is_reported() {
        let src = crate_of(&[("crate", ""), ("a", ""), ("stray", "")]);
        assert_eq!(
            upward_imports(&src, LAYERS),
            vec!["module stray sits in no layer".to_owned()]
        );
    }

    #[test]
    fn two_files_that_import_each_other_are_a_cycle() {
        let src = crate_of(&[
            ("crate", "mod a; mod b; mod c;"),
            ("a", "use crate::b::X;"),
            ("b", "use crate::a::Y;"),
            ("c", "use crate::a::Y;"),
        ]);
        assert_eq!(cycles(&src), vec![vec!["a".to_owned(), "b".to_owned()]]);
    }
}
