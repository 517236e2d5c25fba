//! `stockade why TARGET --path P [--access A] | --syscall NAME | --capability CAP`: one
//! question about a profile or a running instance, answered by `inspect::why` and printed
//! with the settings that decide it. Exits 0 allowed, 1 denied.

use super::WhyQuestion;
use crate::error::Error;
use crate::inspect::why;
use crate::profile::SearchPath;

pub fn why(
    target: &str,
    q: &WhyQuestion,
    access: Option<why::PathAccess>,
    search: &SearchPath,
) -> Result<u8, Error> {
    if access.is_some() && q.path.is_none() {
        return Err(Error::Usage(
            "--access asks about a --path; give one".into(),
        ));
    }
    let (plan, what) = super::plan_of(target, search)?;
    let answer = if let Some(p) = &q.path {
        why::path(&plan, p, access.unwrap_or(why::PathAccess::Read))
    } else if let Some(s) = &q.syscall {
        why::syscall(&plan, s)
    } else if let Some(c) = &q.capability {
        why::capability(&plan, c)
    } else {
        unreachable!("clap requires one question")
    }
    .map_err(Error::Usage)?;
    println!("# {what}");
    print!("{}", why::text(&answer));
    Ok(if answer.allowed { 0 } else { 1 })
}
