//! The layer rule, read from the source: no import cycle between modules, and every arrow
//! between top-level modules points down the order in `LIB_LAYERS` (README, "Architecture").
//!
//! It reads `src/` as text: comments and literals are blanked, then every `use` tree and
//! every `crate::`/`super::`/`self::` path is resolved to the deepest module file it names.
//! `mod` declarations are not arrows (a folder owns its files); `pub use` in a folder's
//! `mod.rs` is. Std only, so it builds in a moment.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's top-level modules, bottom to top. A module may use the crate root
/// (`error_chain`) and modules of lower layers; never a higher layer, and never another
/// module of its own layer.
const LIB_LAYERS: &[&[&str]] = &[
    &["model"],
    &["config"],
    &["telemetry"],
    &["cache"],
    &["tls"],
    &["upstream"],
    &["publish"],
    &["edge"],
    &["ops"],
    &["app"],
    &["fake_idp"],
    &["doctor"],
];

/// The binary's modules (`src/main.rs`), bottom to top; all of them may use the library.
const BIN_LAYERS: &[&[&str]] = &[&["shutdown"], &["demo"], &["cli"]];

mod dependencies;
mod source;

use source::{blank_comments_and_literals, declared_modules, referenced_paths, tokenize};

type Module = Vec<String>;

#[derive(Default)]
struct Graph {
    /// Module path → the file that holds it.
    files: BTreeMap<Module, PathBuf>,
    /// (from, to) module paths.
    arrows: BTreeSet<(Module, Module)>,
}

#[test]
fn library_modules_form_layers_without_cycles() {
    let graph = Graph::read(&src_dir(), "lib.rs");
    assert!(
        graph.files.len() > 20,
        "the library has its modules: {:?}",
        graph.files.keys()
    );
    let problems = graph.problems(LIB_LAYERS);
    assert!(
        problems.is_empty(),
        "the library breaks the layer rule:\n{}",
        problems.join("\n")
    );
}

#[test]
fn binary_modules_form_layers_without_cycles() {
    let graph = Graph::read(&src_dir(), "main.rs");
    let problems = graph.problems(BIN_LAYERS);
    assert!(
        problems.is_empty(),
        "the binary breaks the layer rule:\n{}",
        problems.join("\n")
    );
}

/// The checker itself: a planted cycle and a planted upward arrow are both found, and the
/// arrows it reads from each kind of path are the ones the source names.
#[test]
fn the_checker_finds_planted_cycles_and_upward_arrows() {
    let dir = tempdir("layers");
    write(&dir, "lib.rs", "pub mod low;\npub mod high;\npub mod pair;\n");
    write(
        &dir,
        "low.rs",
        "use crate::high::Thing; // a comment naming crate::pair\n",
    );
    write(
        &dir,
        "high.rs",
        "use crate::{low, pair::a::X};\nfn f() { let s = \"crate::low\"; }\n",
    );
    write(&dir, "pair/mod.rs", "pub mod a;\npub mod b;\npub use self::b::B;\n");
    write(&dir, "pair/a.rs", "use super::b::Y;\n");
    write(&dir, "pair/b.rs", "fn g() { crate::pair::a::f(); }\n");
    let graph = Graph::read(&dir, "lib.rs");
    let arrow = |from: &str, to: &str| (module(from), module(to));
    let expected: BTreeSet<_> = [
        arrow("low", "high"),
        arrow("high", "low"),
        arrow("high", "pair::a"),
        arrow("pair", "pair::b"),
        arrow("pair::a", "pair::b"),
        arrow("pair::b", "pair::a"),
    ]
    .into_iter()
    .collect();
    assert_eq!(graph.arrows, expected);
    let problems = graph.problems(&[&["low"], &["pair"], &["high"]]);
    let text = problems.join("\n");
    assert!(text.contains("cycle: high -> low -> high"), "{text}");
    assert!(text.contains("cycle: pair::a -> pair::b -> pair::a"), "{text}");
    assert!(text.contains("low -> high points up"), "{text}");
    assert_eq!(problems.len(), 3, "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn module(path: &str) -> Module {
    path.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn show(module: &Module) -> String {
    if module.is_empty() {
        "(root)".to_owned()
    } else {
        module.join("::")
    }
}

impl Graph {
    /// Reads the crate whose root file is `dir/root`, following `mod` declarations.
    fn read(dir: &Path, root: &str) -> Graph {
        let mut graph = Graph::default();
        let mut pending = vec![(Vec::new(), dir.join(root))];
        let mut sources = Vec::new();
        while let Some((path, file)) = pending.pop() {
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {file:?}: {e}"));
            let tokens = tokenize(&blank_comments_and_literals(&text));
            for child in declared_modules(&tokens) {
                let folder = if path.is_empty() || file.file_name().is_some_and(|n| n == "mod.rs") {
                    file.parent().unwrap().to_owned()
                } else {
                    file.with_extension("")
                };
                let flat = folder.join(format!("{child}.rs"));
                let nested = folder.join(&child).join("mod.rs");
                let child_file = if flat.exists() { flat } else { nested };
                let mut child_path = path.clone();
                child_path.push(child);
                pending.push((child_path, child_file));
            }
            graph.files.insert(path.clone(), file);
            sources.push((path, tokens));
        }
        for (from, tokens) in sources {
            for named in referenced_paths(&from, &tokens, &graph.files) {
                if let Some(to) = graph.deepest_module(&named) {
                    if to != from {
                        graph.arrows.insert((from.clone(), to));
                    }
                }
            }
        }
        graph
    }

    fn deepest_module(&self, path: &[String]) -> Option<Module> {
        (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|prefix| self.files.contains_key(prefix))
    }

    /// Every cycle and every arrow against `layers`, one line each.
    fn problems(&self, layers: &[&[&str]]) -> Vec<String> {
        let mut problems: Vec<String> = self.cycles().iter().map(|c| format!("cycle: {c}")).collect();
        let layer_of = |m: &Module| {
            m.first()
                .and_then(|top| layers.iter().position(|layer| layer.contains(&top.as_str())))
        };
        for top in self.files.keys().filter(|m| m.len() == 1) {
            if layer_of(top).is_none() {
                problems.push(format!("{} is in no layer", show(top)));
            }
        }
        for (from, to) in &self.arrows {
            if to.is_empty() || from.first() == to.first() {
                continue;
            }
            if let (Some(a), Some(b)) = (layer_of(from), layer_of(to)) {
                if b >= a {
                    let word = if a == b { "crosses its layer" } else { "points up" };
                    problems.push(format!("{} -> {} {word}", show(from), show(to)));
                }
            }
        }
        problems
    }

    /// Each strongly connected set of modules, written as one cycle through it.
    fn cycles(&self) -> Vec<String> {
        let nodes: Vec<&Module> = self.files.keys().collect();
        let index: BTreeMap<&Module, usize> = nodes.iter().enumerate().map(|(i, m)| (*m, i)).collect();
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        for (from, to) in &self.arrows {
            next[index[from]].push(index[to]);
        }
        let reach = |start: usize| {
            let mut seen = vec![false; nodes.len()];
            let mut stack = vec![start];
            while let Some(n) = stack.pop() {
                for &m in &next[n] {
                    if !seen[m] {
                        seen[m] = true;
                        stack.push(m);
                    }
                }
            }
            seen
        };
        let reachable: Vec<Vec<bool>> = (0..nodes.len()).map(reach).collect();
        let mut reported = vec![false; nodes.len()];
        let mut cycles = Vec::new();
        for start in 0..nodes.len() {
            if reported[start] || !reachable[start][start] {
                continue;
            }
            let members: Vec<usize> = (0..nodes.len())
                .filter(|&m| reachable[start][m] && reachable[m][start])
                .collect();
            for &m in &members {
                reported[m] = true;
            }
            cycles.push(shortest_cycle(start, &next, &members, &nodes));
        }
        cycles
    }
}

/// A shortest way from `start` back to itself inside `members`, as `a -> b -> a`.
fn shortest_cycle(start: usize, next: &[Vec<usize>], members: &[usize], nodes: &[&Module]) -> String {
    let mut came_from: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    'search: while let Some(n) = queue.pop_front() {
        for &m in &next[n] {
            if !members.contains(&m) || came_from.contains_key(&m) {
                continue;
            }
            came_from.insert(m, n);
            if m == start {
                break 'search;
            }
            queue.push_back(m);
        }
    }
    let mut way = vec![start];
    let mut at = came_from[&start];
    while at != start {
        way.push(at);
        at = came_from[&at];
    }
    way.push(start);
    way.reverse();
    way.iter().map(|&n| show(nodes[n])).collect::<Vec<_>>().join(" -> ")
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jwks-edge-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}
