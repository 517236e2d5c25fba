//! `stockade analyze TARGET [--json] [--threshold N]`: the exposure report of a profile or a
//! running instance (scored by `inspect::analyze`), printed as a table or JSON.

use crate::error::Error;
use crate::inspect::analyze;
use crate::profile::SearchPath;

pub fn analyze(
    target: &str,
    json: bool,
    threshold: Option<u64>,
    search: &SearchPath,
) -> Result<u8, Error> {
    let (plan, what) = super::plan_of(target, search)?;
    let report = analyze::analyze(&plan);
    if json {
        let text = serde_json::to_string_pretty(&report).expect("a report serialises");
        println!("{text}");
    } else {
        println!("# {what}");
        print!("{}", analyze::text(&report));
    }
    match threshold {
        Some(max) if report.exposure_tenths > max => {
            eprintln!(
                "stockade: exposure {}.{} is above the threshold {}.{}",
                report.exposure_tenths / 10,
                report.exposure_tenths % 10,
                max / 10,
                max % 10
            );
            Ok(1)
        }
        _ => Ok(0),
    }
}
