//! Reading arrows out of Rust source: comments and literals blanked, then `use` trees and
//! `crate::`/`super::`/`self::` paths, made absolute from the module that names them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::Module;

/// The source with comments, strings and character literals replaced by spaces, so that
/// a path inside them is not read as an arrow.
pub fn blank_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_char_before(&chars, i) {
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            i += 2 + hashes;
            while i < chars.len() {
                if chars[i] == '"' && chars[i + 1..].iter().take(hashes).filter(|&&h| h == '#').count() == hashes {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A character literal ('a', '\n', '\u{..}'), or a lifetime ('a), which stays.
            let close = if next == Some('\\') {
                chars[i + 2..].iter().position(|&x| x == '\'').map(|p| i + 2 + p)
            } else if chars.get(i + 2) == Some(&'\'') {
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
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Identifiers, `::`, and single punctuation characters.
pub fn tokenize(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push("::".to_owned());
            i += 2;
        } else {
            if !c.is_whitespace() {
                tokens.push(c.to_string());
            }
            i += 1;
        }
    }
    tokens
}

/// `mod name;` declarations (inline `mod name { .. }` stays part of its file).
pub fn declared_modules(tokens: &[String]) -> Vec<String> {
    tokens
        .windows(3)
        .filter(|w| w[0] == "mod" && w[2] == ";")
        .map(|w| w[1].clone())
        .collect()
}

/// Every module path the file names, made absolute from `here`.
pub fn referenced_paths(here: &Module, tokens: &[String], files: &BTreeMap<Module, PathBuf>) -> Vec<Module> {
    let mut found = Vec::new();
    // Depth of inline `mod x { .. }` blocks: `super` inside one first leaves it.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        match t {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                while inline.last().is_some_and(|(_, d)| *d > depth) {
                    inline.pop();
                }
            }
            "mod" if tokens.get(i + 2).is_some_and(|b| b == "{") => {
                inline.push((tokens[i + 1].clone(), depth + 1));
            }
            _ => {}
        }
        let mut current = here.clone();
        current.extend(inline.iter().map(|(name, _)| name.clone()));
        if t == "use" {
            let end = tokens[i..]
                .iter()
                .position(|x| x == ";")
                .map_or(tokens.len(), |p| i + p);
            let mut pos = i + 1;
            for path in use_tree(&tokens[..end], &mut pos, Vec::new()) {
                if let Some(absolute) = absolute(&current, inline.len(), &path, files, true) {
                    found.push(absolute);
                }
            }
            i = end;
            continue;
        }
        let after_separator = i == 0 || tokens[i - 1] != "::";
        if after_separator && matches!(t, "crate" | "super" | "self") && tokens.get(i + 1).is_some_and(|x| x == "::") {
            let mut path = vec![t.to_owned()];
            let mut j = i + 1;
            while tokens.get(j).is_some_and(|x| x == "::") && tokens.get(j + 1).is_some_and(|x| is_ident(x)) {
                path.push(tokens[j + 1].clone());
                j += 2;
            }
            if let Some(absolute) = absolute(&current, inline.len(), &path, files, false) {
                found.push(absolute);
            }
            i = j;
            continue;
        }
        i += 1;
    }
    found
}

fn is_ident(token: &str) -> bool {
    token.chars().next().is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// The paths of one use tree starting at `pos`: `a::b::{c, d::e as f, *}`.
fn use_tree(tokens: &[String], pos: &mut usize, prefix: Vec<String>) -> Vec<Vec<String>> {
    let mut path = prefix;
    let mut paths = Vec::new();
    while *pos < tokens.len() {
        let t = tokens[*pos].as_str();
        match t {
            "::" => *pos += 1,
            "{" => {
                *pos += 1;
                loop {
                    paths.extend(use_tree(tokens, pos, path.clone()));
                    match tokens.get(*pos).map(String::as_str) {
                        Some(",") => *pos += 1,
                        Some("}") => {
                            *pos += 1;
                            return paths;
                        }
                        _ => return paths,
                    }
                    if tokens.get(*pos).is_some_and(|x| x == "}") {
                        *pos += 1;
                        return paths;
                    }
                }
            }
            "," | "}" => break,
            "as" => *pos += 2,
            "*" => *pos += 1,
            _ if is_ident(t) => {
                path.push(t.to_owned());
                *pos += 1;
            }
            _ => *pos += 1,
        }
    }
    paths.push(path);
    paths
}

/// `path` as seen from module `current` (which is `inline` inline blocks deep in its
/// file), made absolute; `None` for another crate. In `use`, a first segment that is a
/// child module of `current` is relative (the 2018 edition's uniform paths).
fn absolute(
    current: &Module,
    inline: usize,
    path: &[String],
    files: &BTreeMap<Module, PathBuf>,
    in_use: bool,
) -> Option<Module> {
    let first = path.first()?;
    let mut base: Module;
    let rest: &[String];
    match first.as_str() {
        "crate" => {
            base = Vec::new();
            rest = &path[1..];
        }
        "self" | "super" => {
            base = current.clone();
            let mut k = 0;
            while path.get(k).is_some_and(|s| s == "self" || s == "super") {
                if path[k] == "super" {
                    base.pop();
                }
                k += 1;
            }
            rest = &path[k..];
        }
        _ if in_use => {
            let mut child = current[..current.len() - inline].to_vec();
            child.push(first.clone());
            if !files.contains_key(&child) {
                return None;
            }
            base = current[..current.len() - inline].to_vec();
            rest = path;
        }
        _ => return None,
    }
    // Inline blocks are not files: strip them before looking the module up.
    let file_depth = current.len() - inline;
    if base.len() > file_depth {
        base.truncate(file_depth);
    }
    base.extend(rest.iter().cloned());
    Some(base)
}
