//! Process limits and resource use, from the operating system.

use anyhow::{bail, Result};

/// Raises the soft open-file limit to at least `needed` (up to the hard
/// limit); fails with a clear message when the hard limit is too low.
pub fn raise_fd_limit(needed: u64) -> Result<()> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Ok(()); // cannot tell; let connecting fail if it must
        }
        if lim.rlim_cur >= needed {
            return Ok(());
        }
        if lim.rlim_max < needed {
            bail!(
                "this run needs about {needed} open files but the hard limit is {}; raise it (ulimit -Hn) or use fewer consumers",
                lim.rlim_max
            );
        }
        lim.rlim_cur = needed.max(lim.rlim_cur);
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            bail!("cannot raise the open-file limit to {needed}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}
