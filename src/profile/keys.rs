//! Finds keys that are not part of the schema, before serde sees the file.
//!
//! serde's `deny_unknown_fields` stops at the first unknown key and cannot suggest a
//! correction; walking the parsed table against [`Section::KEYS`] reports every unknown key
//! with its position and the closest valid key.

use super::problem::{closest, Problem, Problems};
use super::schema::{Key, KeyKind, Profile, Section};
use super::source::{FileId, Origin};
use toml::de::{DeTable, DeValue};

pub fn check_unknown(file: FileId, table: &DeTable, problems: &mut Problems) {
    walk(file, "", Profile::KEYS, table, problems);
}

fn walk(file: FileId, prefix: &str, keys: &[Key], table: &DeTable, problems: &mut Problems) {
    // The table is sorted by key; problems are reported in the order they were written, so
    // the first ones kept are the first ones in the file.
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    for (k, v) in entries {
        let name = k.get_ref().as_ref();
        let path = format!("{prefix}{name}");
        let Some(key) = keys.iter().find(|key| key.name == name) else {
            problems.push_with(|| {
                let where_ = if prefix.is_empty() {
                    "at the top level".to_owned()
                } else {
                    format!("in [{}]", prefix.trim_end_matches('.'))
                };
                Problem::at(
                    Origin::new(file, k.span()),
                    &path,
                    format!("unknown key {where_}"),
                )
                .suggest(closest(name, keys.iter().map(|k| k.name)))
            });
            continue;
        };
        // Type mismatches (a string where a table belongs) are left to serde, which names
        // the expected type.
        match (&key.kind, v.get_ref()) {
            (KeyKind::Table(sub), DeValue::Table(t)) => {
                walk(file, &format!("{path}."), sub, t, problems)
            }
            (KeyKind::List(sub), DeValue::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let DeValue::Table(t) = item.get_ref() {
                        walk(file, &format!("{path}[{}].", i + 1), sub, t, problems);
                    }
                }
            }
            _ => {}
        }
    }
}

/// What [`find_in`] asks of each entry: its table's dotted prefix, its key and its value.
type Visit<'v, 'a> = dyn FnMut(
        &str,
        &'a toml::Spanned<std::borrow::Cow<'a, str>>,
        &'a toml::Spanned<DeValue<'a>>,
    ) -> Option<String>
    + 'v;

/// Walks the tables below `table` depth first, deepest answer first: `visit(prefix, key,
/// value)` is asked about each entry after the entries inside its value, so a table whose
/// own span covers only its header is looked inside before it answers for itself.
fn find_in<'a>(prefix: &str, table: &'a DeTable, visit: &mut Visit<'_, 'a>) -> Option<String> {
    for (k, v) in table {
        let path = format!("{prefix}{}", k.get_ref().as_ref());
        let deeper =
            match v.get_ref() {
                DeValue::Table(t) => find_in(&format!("{path}."), t, visit),
                DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| match item
                    .get_ref()
                {
                    DeValue::Table(t) => find_in(&format!("{path}[{}].", i + 1), t, visit),
                    _ => None,
                }),
                _ => None,
            };
        if deeper.is_some() {
            return deeper;
        }
        if let Some(found) = visit(prefix, k, v) {
            return Some(found);
        }
    }
    None
}

/// The dotted key whose value contains `span`, for messages about values serde refused.
pub fn key_at(table: &DeTable, span: &std::ops::Range<usize>) -> Option<String> {
    let inside = |s: std::ops::Range<usize>| s.start <= span.start && span.end <= s.end;
    find_in("", table, &mut |prefix, k, v| {
        (inside(v.span()) || inside(k.span())).then(|| format!("{prefix}{}", k.get_ref().as_ref()))
    })
}

/// The message for toml's bare "duplicate key" at `span` (the key's last segment), naming
/// the key and the table it was repeated in. toml stops before building the tree, so the
/// table is found by parsing again with that key renamed to a placeholder of the same length
/// (every other span stays put) and looking up where the placeholder landed. A later
/// duplicate is renamed too, a few times over; past that the table goes unnamed.
pub fn duplicate_message(text: &str, span: &std::ops::Range<usize>) -> String {
    let Some(key) = text.get(span.clone()) else {
        return "duplicate key".to_owned();
    };
    // A header (`[exec]` twice) rather than a key: the line opens with `[` and no inline
    // table or value comes before the key (`[{ a = 1, a = 2 }]` in an array is a key).
    let line = &text[text[..span.start].rfind('\n').map_or(0, |i| i + 1)..span.start];
    let header = line.trim_start().starts_with('[') && !line.contains(['{', '=']);
    let mut renamed = text.as_bytes().to_vec();
    renamed[span.clone()].fill(b'_');
    let mut table = None;
    for _ in 0..4 {
        // Whole characters were replaced by ASCII, so this is still UTF-8.
        let Ok(again) = std::str::from_utf8(&renamed) else {
            break;
        };
        let next = match DeTable::parse(again) {
            Ok(t) => {
                table = parent_of(t.get_ref(), span);
                break;
            }
            Err(e) if e.message().trim() == "duplicate key" => e.span(),
            Err(_) => break,
        };
        match next {
            Some(s) if s != *span && s.end <= renamed.len() => renamed[s].fill(b'_'),
            _ => break,
        }
    }
    match (table, header) {
        (Some(t), true) if t.is_empty() => format!("table [{key}] is defined twice"),
        (Some(t), true) => format!("table [{t}.{key}] is defined twice"),
        (Some(t), false) if t.is_empty() => format!("duplicate key `{key}` at the top level"),
        (Some(t), false) => format!("duplicate key `{key}` in table [{t}]"),
        (None, _) => format!("duplicate key `{key}`"),
    }
}

/// The dotted name of the table holding the key written at `span`.
fn parent_of(table: &DeTable, span: &std::ops::Range<usize>) -> Option<String> {
    find_in("", table, &mut |prefix, k, _| {
        (k.span() == *span).then(|| prefix.trim_end_matches('.').to_owned())
    })
}
