//! IAM condition operators on string claims: `StringEquals`, `StringLike` and their
//! negations, with the `ForAnyValue:` / `ForAllValues:` set forms and `IfExists`.
//!
//! Operator names are matched case-insensitively, as IAM does; values case-sensitively.

/// How a condition treats a claim with several values (`aud` as a list, `amr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Set {
    /// No qualifier: a positive operator needs one value to match, a negated one none.
    Single,
    /// `ForAnyValue:`: at least one claim value satisfies the operator (absent: false).
    AnyValue,
    /// `ForAllValues:`: every claim value satisfies the operator (absent: true).
    AllValues,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    Equals,
    /// `*` matches any run of characters, `?` exactly one.
    Like,
}

/// A parsed condition operator such as `ForAnyValue:StringLikeIfExists`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operator {
    pub set: Set,
    pub comparison: Comparison,
    pub negated: bool,
    /// An absent claim satisfies the condition.
    pub if_exists: bool,
}

impl Operator {
    /// The operator named `name`, or `None` when it is not a string operator the doctor
    /// evaluates (`ArnLike`, `Bool`, `DateGreaterThan`…).
    pub fn parse(name: &str) -> Option<Operator> {
        let lower = name.to_ascii_lowercase();
        let (set, rest) = if let Some(rest) = lower.strip_prefix("foranyvalue:") {
            (Set::AnyValue, rest)
        } else if let Some(rest) = lower.strip_prefix("forallvalues:") {
            (Set::AllValues, rest)
        } else {
            (Set::Single, lower.as_str())
        };
        let (rest, if_exists) = match rest.strip_suffix("ifexists") {
            Some(rest) => (rest, true),
            None => (rest, false),
        };
        let (comparison, negated) = match rest {
            "stringequals" => (Comparison::Equals, false),
            "stringlike" => (Comparison::Like, false),
            "stringnotequals" => (Comparison::Equals, true),
            "stringnotlike" => (Comparison::Like, true),
            _ => return None,
        };
        Some(Operator {
            set,
            comparison,
            negated,
            if_exists,
        })
    }

    /// Whether a claim (`None`: absent) satisfies the condition with the policy's
    /// `values`, which are OR'd.
    pub fn holds(&self, claim: Option<&[String]>, values: &[String]) -> bool {
        let matches_any = |v: &String| {
            values.iter().any(|p| match self.comparison {
                Comparison::Equals => p == v,
                Comparison::Like => like(p, v),
            })
        };
        // Satisfied by one claim value: for a negated operator, the value matches none.
        let one = |v: &String| matches_any(v) != self.negated;
        let claim = match claim {
            Some(list) if !list.is_empty() => list,
            _ => {
                return self.if_exists
                    || match self.set {
                        Set::AllValues => true,
                        Set::AnyValue => false,
                        // IAM: a negated operator is true when the key is absent.
                        Set::Single => self.negated,
                    };
            }
        };
        match self.set {
            Set::AnyValue => claim.iter().any(one),
            Set::AllValues => claim.iter().all(one),
            Set::Single if self.negated => claim.iter().all(one),
            Set::Single => claim.iter().any(one),
        }
    }
}

/// IAM's `StringLike`: `*` any run (empty included), `?` one character; case-sensitive.
pub fn like(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    // Greedy with backtracking to the last `*`: linear in practice, never exponential.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < v.len() {
        if i < p.len() && (p[i] == '?' || p[i] == v[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str) -> Operator {
        Operator::parse(name).unwrap_or_else(|| panic!("{name} parses"))
    }

    fn list(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn like_matches_stars_and_question_marks() {
        assert!(like(
            "project_path:group/*",
            "project_path:group/app:ref_type:branch:ref:main"
        ));
        assert!(like(
            "repo:org/*:ref:refs/heads/main",
            "repo:org/app:ref:refs/heads/main"
        ));
        assert!(!like(
            "repo:org/*:ref:refs/heads/main",
            "repo:org/app:ref:refs/heads/dev"
        ));
        assert!(like("a?c", "abc") && !like("a?c", "ac"));
        assert!(like("*", "") && like("**", "x") && like("", ""));
        assert!(!like("Group/*", "group/app"), "values are case-sensitive");
        assert!(like("*a*b*c*", "xxaxxbxxcxx") && !like("*a*b*c*", "xxaxxcxxbxx"));
    }

    #[test]
    fn operator_names_parse_case_insensitively() {
        let parsed = op("forANYvalue:stringlikeIFEXISTS");
        assert_eq!(parsed.set, Set::AnyValue);
        assert_eq!(parsed.comparison, Comparison::Like);
        assert!(parsed.if_exists && !parsed.negated);
        assert!(op("StringNotEquals").negated);
        assert_eq!(Operator::parse("ArnLike"), None);
        assert_eq!(Operator::parse("Bool"), None);
    }

    #[test]
    fn single_valued_operators() {
        let values = list(&["sts.amazonaws.com", "other"]);
        let aud = list(&["sts.amazonaws.com"]);
        assert!(op("StringEquals").holds(Some(&aud), &values), "values are OR'd");
        assert!(!op("StringEquals").holds(Some(&list(&["x"])), &values));
        assert!(
            !op("StringEquals").holds(None, &values),
            "absent fails a positive operator"
        );
        assert!(op("StringEqualsIfExists").holds(None, &values));
        assert!(!op("StringNotEquals").holds(Some(&aud), &values));
        assert!(op("StringNotEquals").holds(Some(&list(&["x"])), &values));
        assert!(
            op("StringNotEquals").holds(None, &values),
            "absent passes a negated operator"
        );
        assert!(!op("StringNotLike").holds(Some(&list(&["other"])), &list(&["oth*"])));
    }

    #[test]
    fn set_operators() {
        let amr = list(&["authenticated", "mfa"]);
        assert!(op("ForAnyValue:StringEquals").holds(Some(&amr), &list(&["mfa"])));
        assert!(!op("ForAnyValue:StringEquals").holds(Some(&amr), &list(&["unauthenticated"])));
        assert!(!op("ForAnyValue:StringEquals").holds(None, &list(&["mfa"])));
        assert!(op("ForAnyValue:StringEqualsIfExists").holds(None, &list(&["mfa"])));
        assert!(!op("ForAllValues:StringEquals").holds(Some(&amr), &list(&["mfa"])));
        assert!(op("ForAllValues:StringLike").holds(Some(&amr), &list(&["*"])));
        assert!(
            op("ForAllValues:StringEquals").holds(None, &list(&["mfa"])),
            "vacuously"
        );
        assert!(op("ForAnyValue:StringNotEquals").holds(Some(&amr), &list(&["mfa"])));
        assert!(!op("ForAllValues:StringNotEquals").holds(Some(&amr), &list(&["mfa"])));
        assert!(op("ForAllValues:StringNotLike").holds(Some(&amr), &list(&["x*"])));
    }
}
