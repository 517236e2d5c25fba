//! A problem found in a profile: where, which key, what is wrong, and a suggestion.
//!
//! Problems are collected, not returned on the first one, so `stockade check` can list every
//! mistake in one pass. They render as `file:line:col: key: message (did you mean ...?)`.

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
        s
    }
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word.to_lowercase(), &c.to_lowercase()), c))
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
    }
}
