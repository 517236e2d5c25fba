//! `stockade show PROFILE`: the resolved profile with each value's origin (rendered by the
//! profile stage), followed by the notes planning it gives; with `--plan`, the plan itself.

use crate::error::Error;
use crate::profile::{self, SearchPath};

pub fn show(arg: &str, search: &SearchPath) -> Result<u8, Error> {
    let loaded = profile::load(arg, search).map_err(|inv| Error::Invalid { lines: inv.lines() })?;
    print!("{}", loaded.render());
    // A profile that loads but does not plan on this host is still shown; its notes are
    // only known once it plans.
    if let Ok((_, notes)) = super::load_and_plan(arg, Vec::new(), search) {
        for n in notes {
            println!("# warning: {n}");
        }
    }
    Ok(0)
}

/// `show --plan`: the plan `run` would carry out on this host, as text or its JSON record.
pub fn show_plan(arg: &str, json: bool, search: &SearchPath) -> Result<u8, Error> {
    let (plan, _) = super::load_and_plan(arg, Vec::new(), search)?;
    if json {
        println!("{}", crate::plan::render::json(&plan));
    } else {
        print!("{}", crate::plan::render::text(&plan));
    }
    Ok(0)
}
