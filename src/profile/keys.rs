//! Finds keys that are not part of the schema, before serde sees the file.
//!
//! serde's `deny_unknown_fields` stops at the first unknown key and cannot suggest a
//! correction; walking the parsed table against [`Section::KEYS`] reports every unknown key
//! with its position and the closest valid key.

use super::problem::{closest, Problem};
use super::schema::{Key, KeyKind, Profile, Section};
use super::source::{FileId, Origin};
use toml::de::{DeTable, DeValue};

pub fn check_unknown(file: FileId, table: &DeTable, problems: &mut Vec<Problem>) {
    walk(file, "", Profile::KEYS, table, problems);
}

fn walk(file: FileId, prefix: &str, keys: &[Key], table: &DeTable, problems: &mut Vec<Problem>) {
    for (k, v) in table {
        let name = k.get_ref().as_ref();
        let path = format!("{prefix}{name}");
        let Some(key) = keys.iter().find(|key| key.name == name) else {
            let suggestion = closest(name, keys.iter().map(|k| k.name));
            let where_ = if prefix.is_empty() {
                "at the top level".to_owned()
            } else {
                format!("in [{}]", prefix.trim_end_matches('.'))
            };
            problems.push(
                Problem::at(
                    Origin::new(file, k.span()),
                    &path,
                    format!("unknown key {where_}"),
                )
                .suggest(suggestion),
            );
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

/// The dotted key whose value contains `span`, for messages about values serde refused.
pub fn key_at(table: &DeTable, span: &std::ops::Range<usize>) -> Option<String> {
    fn find(prefix: &str, table: &DeTable, span: &std::ops::Range<usize>) -> Option<String> {
        let inside = |s: std::ops::Range<usize>| s.start <= span.start && span.end <= s.end;
        for (k, v) in table {
            let path = format!("{prefix}{}", k.get_ref().as_ref());
            // A table's own span may cover only its header, so always look inside first.
            let deeper = match v.get_ref() {
                DeValue::Table(t) => find(&format!("{path}."), t, span),
                DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| match item
                    .get_ref()
                {
                    DeValue::Table(t) => find(&format!("{path}[{}].", i + 1), t, span),
                    _ => None,
                }),
                _ => None,
            };
            if deeper.is_some() {
                return deeper;
            }
            if inside(v.span()) || inside(k.span()) {
                return Some(path);
            }
        }
        None
    }
    find("", table, span)
}
