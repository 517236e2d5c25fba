//! `stockade export --format systemd PROFILE`: plans the profile for the machine that will
//! run the export (a systemd host with cgroup v2) and prints the translation. Glue only:
//! the translation is `export::systemd`, a pure function of the plan.

use super::ExportFormat;
use crate::error::Error;
use crate::profile::SearchPath;

pub fn export(format: ExportFormat, arg: &str, search: &SearchPath) -> Result<u8, Error> {
    let inv = crate::export::invocation();
    let (plan, _) =
        super::load_and_plan_for(arg, search, &inv, Some(crate::export::target_cgroup()))?;
    match format {
        ExportFormat::Systemd => {
            let unit = crate::export::systemd::unit(&plan);
            // What the unit leaves out is in its comments; said on stderr too, so it is
            // seen when the unit is redirected straight into a file.
            let missing = crate::export::systemd::missing(&plan);
            for m in &missing {
                eprintln!("stockade: export: not in the unit: {m}");
            }
            print!("{unit}");
        }
    }
    Ok(0)
}
