//! Remote strings made harmless to print: no byte of a `kid`, a header or a certificate
//! subject reaches the operator's terminal as a control sequence.
//!
//! Three tools: `quote` for a remote value inside a message (unambiguous, backslashes
//! and quotes escaped too); `text` for a whole rendered line, which turns whatever is
//! still dangerous into visible escapes; `json` for serialised JSON, which escapes the
//! characters that `serde_json` leaves raw (DEL, C1 controls, bidi controls).

use std::borrow::Cow;
use std::fmt::Write;

/// A character a terminal may act on instead of showing: C0 and C1 controls and DEL
/// (ESC starts sequences, CR rewrites a line, U+009B is an 8-bit CSI), line and paragraph
/// separators, and the bidirectional controls that make text read differently from its
/// bytes (Trojan Source, CVE-2021-42574).
pub fn dangerous(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

fn escape_into(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        }
    }
}

/// `s` in double quotes, with `"`, `\` and every dangerous character escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if dangerous(c) => escape_into(&mut out, c),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `s` with every dangerous character shown as an escape (`\x1b`, `\r`, `\u{202e}`).
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(dangerous) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if dangerous(c) {
            escape_into(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Serialised JSON with the dangerous characters `serde_json` leaves raw written as
/// `\uXXXX`. They can only occur inside strings (JSON's syntax is ASCII), where the
/// escape means the same character: the document's value is unchanged. Line breaks
/// between tokens, from pretty printing, are kept.
pub fn json(serialised: &str) -> String {
    let mut out = String::with_capacity(serialised.len());
    for c in serialised.chars() {
        if dangerous(c) && c != '\n' {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_strings_are_shown_not_obeyed() {
        assert_eq!(quote("key\x1b[31m\r1"), r#""key\x1b[31m\r1""#);
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(
            text("rtl\u{202e}txt.exe\u{9b}2J\x7f"),
            r"rtl\u{202e}txt.exe\u{009b}2J\x7f"
        );
        assert!(matches!(text("plain kid-1 ✓"), Cow::Borrowed(_)));
        assert_eq!(json("{\"k\":\"\u{9b}\u{202e}\"}"), r#"{"k":"\u009b\u202e"}"#);
    }

    proptest! {
        #[test]
        fn nothing_dangerous_survives(s in any::<String>()) {
            prop_assert!(!text(&s).chars().any(dangerous));
            prop_assert!(!quote(&s).chars().any(dangerous));
            let safe = json(&serde_json::to_string(&s).unwrap());
            prop_assert!(!safe.chars().any(dangerous));
            // The JSON still says exactly `s`.
            prop_assert_eq!(serde_json::from_str::<String>(&safe).unwrap(), s);
        }
    }
}
