//! `stockade cleanup`: removes what sandboxes killed without a chance to clean up (SIGKILL of
//! their stockade) left of their networks: leases, nftables chains, an unused bridge
//! stockade made, the forwarding sysctl. Glue only: the sandbox stage does it.

use super::require_root;
use crate::error::Error;

pub fn cleanup() -> Result<u8, Error> {
    require_root("cleaning up after sandboxes")?;
    crate::sandbox::cleanup_networks().map_err(|e| Error::Sandbox {
        name: "cleanup".into(),
        source: e.into(),
    })?;
    Ok(0)
}
