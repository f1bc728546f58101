//! Metric names on both sides: those a PromQL query reads, and those a `/metrics`
//! exposition declares, so that alert rules and dashboards can be checked against a
//! running proxy.

use std::collections::BTreeSet;

/// Words of PromQL that are not metric names: operators, modifiers, aggregations and
/// the literals `inf` and `nan`. Functions need no list: a name followed by `(` is one.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "atan2",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "inf",
    "nan",
];

/// Keywords followed by a parenthesised list of label names, not of expressions.
const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The metric names `query` selects. A small lexer, honest about what it skips: string
/// literals, label matchers (`{...}`), range and subquery brackets (`[...]`), numbers and
/// durations, Grafana variables (`$name`, `${name}`), label lists after `by`, `on` and
/// the like, keywords, and names followed by `(` (functions and aggregations). Every other
/// identifier is a metric name, whatever follows it (`{`, `[`, `)`, an operator, the end).
pub fn metric_names(query: &str) -> BTreeSet<String> {
    let chars: Vec<char> = query.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '{' => i = skip_group(&chars, i, '{', '}'),
            '[' => i = skip_group(&chars, i, '[', ']'),
            '$' => {
                i += 1;
                if chars.get(i) == Some(&'{') {
                    i = skip_group(&chars, i, '{', '}');
                } else {
                    i = skip_while(&chars, i, is_name_char);
                }
            }
            _ if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                // Numbers, exponents, hex and durations such as `24h` or `1h30m`.
                i = skip_while(&chars, i, |c| c.is_ascii_alphanumeric() || c == '.');
            }
            _ if is_name_start(c) => {
                let end = skip_while(&chars, i, is_name_char);
                let word: String = chars[i..end].iter().collect();
                let next = skip_while(&chars, end, char::is_whitespace);
                let opens = chars.get(next) == Some(&'(');
                if LABEL_LISTS.contains(&word.as_str()) && opens {
                    i = skip_group(&chars, next, '(', ')');
                    continue;
                }
                if !opens && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                    names.insert(word);
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    names
}

/// The sample names a text exposition declares, from its `# TYPE` lines: a family
/// declared `counter` is read as `<name>_total`, a `histogram` as `<name>_bucket`,
/// `_sum` and `_count`, an `info` as `<name>_info`, a `gauge` as itself. Declared is what
/// matters: counters appear at their first count, and a query of one that has not
/// counted yet is right, not a typo. An unknown type fails the test.
pub fn declared_samples(exposition: &str) -> BTreeSet<String> {
    let mut samples = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (family, kind) = rest
            .split_once(' ')
            .unwrap_or_else(|| panic!("malformed TYPE line {line:?}"));
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            "info" => &["_info"],
            "gauge" => &[""],
            other => panic!("unknown metric type {other:?} in {line:?}"),
        };
        samples.extend(suffixes.iter().map(|suffix| format!("{family}{suffix}")));
    }
    samples
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn skip_while(chars: &[char], mut i: usize, keep: impl Fn(char) -> bool) -> usize {
    while i < chars.len() && keep(chars[i]) {
        i += 1;
    }
    i
}

/// Past the string literal opening at `start` (backslash escapes in `"` and `'` ones).
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        i += if chars[i] == '\\' && quote != '`' { 2 } else { 1 };
    }
    i + 1
}

/// Past the group opening at `start`, nested groups and strings included.
fn skip_group(chars: &[char], start: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_string(chars, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("unbalanced {open}{close} in {:?}", chars.iter().collect::<String>())
}

#[test]
fn metric_names_skip_functions_keywords_labels_durations_and_variables() {
    let names = |q: &str| metric_names(q).into_iter().collect::<Vec<_>>();
    assert_eq!(names("up"), ["up"]);
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le, document) (rate(a_bucket{job=~"$job", x="}{"}[$__rate_interval])))"#
        ),
        ["a_bucket"]
    );
    assert_eq!(
        names("sum without (outcome) (increase(b_total{outcome!=\"ok\"}[3m])) > 0 unless on (job) group_left (pod) c"),
        ["b_total", "c"]
    );
    assert_eq!(
        names("d > 0.75 * 86400 and e offset 24h or vector(0) - time() < 14 * 1e3"),
        ["d", "e"]
    );
    assert_eq!(
        names("max(f) by (issuer) / ${g} + count(h[5m:1m]) + Inf + NaN"),
        ["f", "h"]
    );
    assert_eq!(names("label_replace(i, \"dst\", \"$1\", \"src\", \"(.*)\")"), ["i"]);
}

#[test]
fn declared_samples_follow_each_type_s_suffixes() {
    let text = "# TYPE a counter\n# TYPE b histogram\n# TYPE c gauge\n# TYPE d info\na_total 1\n# EOF\n";
    let samples: Vec<_> = declared_samples(text).into_iter().collect();
    assert_eq!(samples, ["a_total", "b_bucket", "b_count", "b_sum", "c", "d_info"]);
}
