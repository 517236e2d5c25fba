//! `stockade check [PROFILE...]`: loads and plans each profile as `run` would, printing
//! `NAME: ok` or every problem, and the notes of the holes a valid profile opens.

use crate::error::Error;
use crate::profile::SearchPath;

pub fn check(profiles: Vec<String>, search: &SearchPath) -> Result<u8, Error> {
    let names = if profiles.is_empty() {
        search.all_names()
    } else {
        profiles
    };
    if names.is_empty() {
        return Err(Error::NoProfiles {
            dirs: search
                .dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let mut failed = 0;
    for name in &names {
        match super::load_and_plan(name, Vec::new(), search) {
            Ok((_, notes)) => {
                println!("{name}: ok");
                // Valid, but weaker than the defaults on purpose: say so every time.
                for n in notes {
                    eprintln!("warning: {n}");
                }
            }
            // The problems are check's output; the summary is its error.
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
            }
        }
    }
    if failed == 0 {
        Ok(0)
    } else {
        Err(Error::CheckFailed {
            failed,
            checked: names.len(),
        })
    }
}
