//! Fuzzes the profile language: TOML parsing, the unknown-key walk, serde with spans, the
//! merge of several layers (drop-ins), validation and `show`'s rendering, which must load
//! back. Input: up to four files separated by a line `#---`. Nothing may panic.
#![no_main]
#![allow(dead_code, unused_imports)] // the module is stockade's; the fuzzer uses only its entry points

#[path = "../../src/profile/mod.rs"]
mod profile;

use libfuzzer_sys::fuzz_target;
use profile::Section;
use std::path::PathBuf;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let layers: Vec<(PathBuf, String)> = text
        .split("\n#---\n")
        .take(4)
        .enumerate()
        .map(|(i, t)| (PathBuf::from(format!("/fuzz/{i}.toml")), t.to_owned()))
        .collect();
    match profile::load_texts(&layers) {
        Ok(loaded) => {
            let mut r = profile::schema::Render {
                map: &loaded.sources,
                out: String::new(),
            };
            loaded.profile.render("", &mut r);
            // What `show` prints is a profile too: it must load again.
            if let Err(e) =
                profile::load_texts(&[(PathBuf::from("/fuzz/shown.toml"), r.out.clone())])
            {
                panic!(
                    "show's output does not load back: {:?}\n{}",
                    e.lines(),
                    r.out
                );
            }
        }
        Err(invalid) => {
            // Every problem renders with its file and position.
            let _ = invalid.lines();
        }
    }
});
