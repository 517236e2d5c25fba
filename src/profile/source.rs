//! Where every profile value came from.
//!
//! A profile is merged from several files (includes, the profile itself, drop-ins), so every
//! value carries an [`Origin`]: the file it was read from and its byte span there. The
//! [`SourceMap`] owns the file texts and turns an origin into `file:line:col` only when a
//! message or `show` needs it. This module reads no files itself.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::Cell;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Index of a file in the [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileId(pub u32);

/// A byte span inside one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Origin {
    pub file: FileId,
    pub start: usize,
    pub end: usize,
}

impl Origin {
    pub fn new(file: FileId, span: Range<usize>) -> Self {
        Origin {
            file,
            start: span.start,
            end: span.end,
        }
    }
}

/// A value together with the place it was written.
#[derive(Clone, PartialEq)]
pub struct Src<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Src<T> {
    pub fn new(value: T, origin: Origin) -> Self {
        Src { value, origin }
    }
}

impl<T: fmt::Debug> fmt::Debug for Src<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<T> std::ops::Deref for Src<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

thread_local! {
    // serde offers no way to pass context into `Deserialize`; the file being parsed is set
    // here for the duration of one `with_file` call so every `Src` can record it.
    static CURRENT_FILE: Cell<FileId> = const { Cell::new(FileId(0)) };
}

/// Runs `f` (a deserialization of one file) with `file` recorded as the origin of every `Src`.
pub fn with_file<R>(file: FileId, f: impl FnOnce() -> R) -> R {
    let previous = CURRENT_FILE.with(|c| c.replace(file));
    let result = f();
    CURRENT_FILE.with(|c| c.set(previous));
    result
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Src<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = toml::Spanned::<T>::deserialize(d)?;
        let span = spanned.span();
        let file = CURRENT_FILE.with(|c| c.get());
        Ok(Src::new(spanned.into_inner(), Origin::new(file, span)))
    }
}

impl<T: Serialize> Serialize for Src<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

/// One profile file as read.
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    /// Byte offset of every line's start, so a position is found by binary search: scanning
    /// the text for each of a million problems would be quadratic.
    line_starts: Vec<usize>,
}

/// Every file a profile was assembled from.
#[derive(Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

/// A human position: 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location<'a> {
    pub path: &'a Path,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.col)
    }
}

impl SourceMap {
    pub fn add(&mut self, path: PathBuf, text: String) -> FileId {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        self.files.push(SourceFile {
            path,
            text,
            line_starts,
        });
        FileId(self.files.len() as u32 - 1)
    }

    pub fn file(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    pub fn files(&self) -> impl Iterator<Item = &SourceFile> {
        self.files.iter()
    }

    pub fn locate(&self, origin: Origin) -> Location<'_> {
        let file = self.file(origin.file);
        let at = origin.start.min(file.text.len());
        let line = file.line_starts.partition_point(|&s| s <= at);
        let line_start = file.line_starts[line - 1];
        // Counting the bytes that start a character gives the column even when `at` is not
        // on a character boundary, where slicing the text would panic.
        let col = file.text.as_bytes()[line_start..at]
            .iter()
            .filter(|&&b| (b as i8) >= -0x40)
            .count()
            + 1;
        Location {
            path: &file.path,
            line,
            col,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_counts_lines_and_columns_from_one() {
        let mut map = SourceMap::default();
        let id = map.add("a.toml".into(), "x = 1\n  y = 2\n".into());
        let loc = map.locate(Origin::new(id, 8..9));
        assert_eq!((loc.line, loc.col), (2, 3));
        assert_eq!(loc.to_string(), "a.toml:2:3");
        // The first line, a line's first column, the end of the text, multi-byte characters.
        let id = map.add("b.toml".into(), "é = 1\nx\n".into());
        let at = |i| {
            let l = map.locate(Origin::new(id, i..i));
            (l.line, l.col)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(3), (1, 3));
        assert_eq!(at(7), (2, 1));
        assert_eq!(at(9), (3, 1));
        assert_eq!(at(99), (3, 1));
    }
}
