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
        self.files.push(SourceFile { path, text });
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
        let before = &file.text[..origin.start.min(file.text.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
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
    }
}
