//! A problem found in a profile: where, which key, what is wrong, and a suggestion.
//!
//! Problems are collected, not returned on the first one, so `stockade check` can list every
//! mistake in one pass. They render as `file:line:col: key: message (did you mean ...?)`,
//! with every control character escaped: keys, values and file names come from the input and
//! must not reach a terminal as escape sequences. A profile may hold a million mistakes, so
//! only the first [`SHOWN`] are kept and the rest are counted.

use super::source::{Origin, SourceMap};
use std::fmt::Write;
use std::path::PathBuf;

/// Where a problem is.
#[derive(Debug, Clone, PartialEq)]
pub enum At {
    /// A value or key in a profile file.
    Span(Origin),
    /// A file as a whole (unreadable, or a key that is missing from it).
    File(PathBuf),
    /// Nowhere in particular (a profile that was not found).
    Nowhere,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub at: At,
    /// The dotted key, such as `exec.command` or `mount[2].target`.
    pub key: Option<String>,
    pub message: String,
    /// A key or value that was probably meant.
    pub suggestion: Option<String>,
}

impl Problem {
    pub fn new(at: At, key: impl Into<Option<String>>, message: impl Into<String>) -> Self {
        Problem {
            at,
            key: key.into(),
            message: message.into(),
            suggestion: None,
        }
    }

    pub fn at(origin: Origin, key: &str, message: impl Into<String>) -> Self {
        Problem::new(At::Span(origin), Some(key.to_owned()), message)
    }

    pub fn suggest(mut self, suggestion: Option<&str>) -> Self {
        self.suggestion = suggestion.map(str::to_owned);
        self
    }

    pub fn render(&self, map: &SourceMap) -> String {
        let mut s = String::new();
        match &self.at {
            At::Span(o) => {
                let _ = write!(s, "{}: ", map.locate(*o));
            }
            At::File(p) => {
                let _ = write!(s, "{}: ", p.display());
            }
            At::Nowhere => {}
        }
        if let Some(k) = &self.key {
            let _ = write!(s, "{k}: ");
        }
        s.push_str(&self.message);
        if let Some(sugg) = &self.suggestion {
            let _ = write!(s, " (did you mean `{sugg}`?)");
        }
        escape_controls(&s)
    }
}

/// How many problems are reported; beyond them, only their number.
pub const SHOWN: usize = 100;

/// Problems in the order found: the first [`SHOWN`] kept, the rest counted, so memory and
/// output stay small however many a file holds.
#[derive(Debug, Default)]
pub struct Problems {
    kept: Vec<Problem>,
    more: usize,
}

impl Problems {
    pub fn push(&mut self, p: Problem) {
        if self.kept.len() < SHOWN {
            self.kept.push(p);
        } else {
            self.more += 1;
        }
    }

    /// Pushes the problem `f` makes, making it only if it will be kept: past the cap, a
    /// million unknown keys cost a count each, not a message and a suggestion each.
    pub fn push_with(&mut self, f: impl FnOnce() -> Problem) {
        if self.kept.len() < SHOWN {
            self.kept.push(f());
        } else {
            self.more += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// One line per kept problem, then `and N more problems` if some were only counted.
    pub fn render(&self, map: &SourceMap) -> Vec<String> {
        let mut lines: Vec<String> = self.kept.iter().map(|p| p.render(map)).collect();
        match self.more {
            0 => {}
            1 => lines.push("and 1 more problem".to_owned()),
            n => lines.push(format!("and {n} more problems")),
        }
        lines
    }
}

impl Extend<Problem> for Problems {
    fn extend<I: IntoIterator<Item = Problem>>(&mut self, iter: I) {
        for p in iter {
            self.push(p);
        }
    }
}

impl FromIterator<Problem> for Problems {
    fn from_iter<I: IntoIterator<Item = Problem>>(iter: I) -> Self {
        let mut all = Problems::default();
        all.extend(iter);
        all
    }
}

/// `text` with control characters (and the bidirectional overrides that reorder what a
/// terminal shows) written as escapes: `\n`, `\t`, `\r`, otherwise `\u{1b}`.
pub fn escape_controls(text: &str) -> String {
    let hostile = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(hostile) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if hostile(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = word.chars().count();
    let limit = (len / 3).max(2);
    let word = word.to_lowercase();
    candidates
        .into_iter()
        // The distance is at least the difference in length: skipping those candidates keeps
        // a megabyte-long key from costing a megabyte of work per candidate.
        .filter(|c| c.chars().count().abs_diff(len) <= limit)
        .map(|c| (edit_distance(&word, &c.to_lowercase()), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_but_not_strangers() {
        let keys = ["command", "user", "group", "workdir"];
        assert_eq!(closest("comand", keys), Some("command"));
        assert_eq!(closest("usr", keys), Some("user"));
        assert_eq!(closest("zebra", keys), None);
        assert_eq!(closest(&"x".repeat(1 << 20), keys), None);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain `key`"), "plain `key`");
        assert_eq!(
            escape_controls("\u{1b}[31mred\u{7}\n\t\u{202e}x"),
            "\\u{1b}[31mred\\u{7}\\n\\t\\u{202e}x"
        );
    }

    #[test]
    fn only_the_first_problems_are_kept() {
        let mut all = Problems::default();
        for i in 0..SHOWN + 5 {
            all.push(Problem::new(At::Nowhere, None, format!("p{i}")));
        }
        let lines = all.render(&SourceMap::default());
        assert_eq!(lines.len(), SHOWN + 1);
        assert_eq!(lines[SHOWN - 1], format!("p{}", SHOWN - 1));
        assert_eq!(lines[SHOWN], "and 5 more problems");
    }
}
