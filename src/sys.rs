//! Process limits and resource use, from the operating system.

use anyhow::{bail, Result};

/// Raises the open-file limit to at least `needed`: the soft limit up to the
/// hard one, and the hard one too where this process may (root, up to the
/// kernel's `fs.nr_open`). Fails with what the system allows and how to
/// change it when neither is enough.
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
        let want = libc::rlimit { rlim_cur: needed, rlim_max: lim.rlim_max.max(needed) };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
            return Ok(());
        }
    }
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse::<u64>().ok());
    bail!("{}", fd_limit_message(needed, lim.rlim_max, nr_open))
}

/// What to tell a user whose open-file limit is below what the run needs.
fn fd_limit_message(needed: u64, hard: u64, nr_open: Option<u64>) -> String {
    let how = match nr_open {
        Some(max) if max < needed => format!(
            "the kernel allows at most {max} per process (sysctl fs.nr_open); raise that first \
             (sysctl -w fs.nr_open={needed}), then the hard limit"
        ),
        _ => format!(
            "raise it as root (ulimit -Hn {needed} && ulimit -n {needed} in the shell that runs eventbench, \
             LimitNOFILE={needed} in a systemd unit, or nofile in /etc/security/limits.conf)"
        ),
    };
    format!(
        "this run needs about {needed} open files (one per connection, producers twice) but this process may \
         open at most {hard} (its hard limit; ulimit -n shows the soft one, ulimit -Hn this); {how}, or run \
         fewer consumers"
    )
}

/// Serves allocations of 64 KB and more from their own mappings, returned to
/// the system when freed. glibc's default threshold rises to the largest block
/// freed so far, after which the once-a-second compression of past seconds
/// (buffers of a few hundred KB) fragments the heap: a 60 s run's peak RSS
/// came out 11% above a 10 s run's, against 4% with a fixed threshold.
pub fn fix_mmap_threshold() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
}

/// CPU time this process has used so far (user + system, every thread), in ns.
pub fn process_cpu_ns() -> u64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we pass.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

/// CPUs this process may run on (affinity mask and cgroup quota included).
pub fn cpus_available() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// CPU time of each of this process's threads so far (user + system), in
/// ns by thread id, from `/proc/self/task` (clock-tick resolution, 10 ms).
pub fn thread_cpu_ns() -> Vec<(u32, u64)> {
    // SAFETY: sysconf only reads a constant.
    let tick_ns = 1_000_000_000 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let tid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // After the thread's name, which is in parentheses and may hold spaces:
        // field 3 (state) onwards; utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some((tid, ticks * tick_ns))
    })
    .collect()
}

/// The shortest window a CPU share is computed over. The kernel accounts a
/// thread's CPU time in ticks (10 ms in `/proc/self/task`) and a process's
/// in scheduler slices, so over a few milliseconds one tick divided by the
/// window reads as several CPUs' worth: a run aborted as its measured phase
/// began once showed `harness_cpu_pct` 720.9 on 2 CPUs. Below this window
/// the share is not measured (0), rather than noise.
pub const MIN_CPU_WINDOW_NS: u64 = 100_000_000;

/// The process's CPU time and the wall clock at one moment, both in ns, and
/// each thread's CPU time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSample {
    pub wall_ns: u64,
    pub cpu_ns: u64,
    pub threads: Vec<(u32, u64)>,
}

impl CpuSample {
    /// This process now; `wall_ns` on the caller's clock.
    pub fn now(wall_ns: u64) -> CpuSample {
        CpuSample { wall_ns, cpu_ns: process_cpu_ns(), threads: thread_cpu_ns() }
    }

    /// The busiest thread's CPU from `self` to `later`, as a percentage of one
    /// CPU: a single thread can be the limit while the process as a whole
    /// still has CPUs to spare.
    pub fn busiest_thread_pct(&self, later: &CpuSample) -> f64 {
        let wall = later.wall_ns.saturating_sub(self.wall_ns) as f64;
        if wall < MIN_CPU_WINDOW_NS as f64 {
            return 0.0;
        }
        let before = |tid: u32| self.threads.iter().find(|t| t.0 == tid).map_or(0, |t| t.1);
        let busiest = later.threads.iter().map(|&(tid, ns)| ns.saturating_sub(before(tid))).max().unwrap_or(0);
        // A thread's ticks can round past its wall time (11 ticks in 100 ms).
        (100.0 * busiest as f64 / wall).min(100.0)
    }

    /// CPU used from `self` to `later`, as a percentage of what `cpus` CPUs
    /// offer over that wall time (100 = every CPU busy all the time). At
    /// most 100: more is a miscount (the CPU time and the wall time read at
    /// different instants, or a cgroup quota `available_parallelism` rounds
    /// down), never CPU the process had.
    pub fn share_pct(&self, later: &CpuSample, cpus: usize) -> f64 {
        if later.wall_ns.saturating_sub(self.wall_ns) < MIN_CPU_WINDOW_NS {
            return 0.0;
        }
        let wall = later.wall_ns.saturating_sub(self.wall_ns) as f64 * cpus.max(1) as f64;
        (100.0 * later.cpu_ns.saturating_sub(self.cpu_ns) as f64 / wall).min(100.0)
    }
}

/// Opens `path` for reading only if it is a regular file of at most
/// `max_bytes` (following symlinks): a FIFO would block the reader for
/// ever, a device (`/dev/zero`) never ends, and a huge file would be read
/// into memory. The open itself never blocks (`O_NONBLOCK`, which regular
/// files ignore). The file comes back limited to `max_bytes`, should it grow.
pub fn open_regular(path: &std::path::Path, max_bytes: u64) -> std::io::Result<std::io::Take<std::fs::File>> {
    use std::io::{Error, ErrorKind, Read};
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    let what = if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("a device")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    };
    if let Some(what) = what {
        return Err(Error::new(ErrorKind::InvalidInput, format!("{what}, not a regular file")));
    }
    if meta.len() > max_bytes {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} bytes, more than the {max_bytes} bytes read at most", meta.len()),
        ));
    }
    Ok(file.take(max_bytes))
}

/// [`open_regular`], read whole as text.
pub fn read_regular(path: &std::path::Path, max_bytes: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    open_regular(path, max_bytes)?.read_to_string(&mut text)?;
    Ok(text)
}

/// Ignores SIGXFSZ: past a file-size limit (`ulimit -f`) a write then
/// fails with EFBIG, an error like a full disk's, instead of killing the
/// process with temporary files and a staging directory left behind.
pub fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// 32 random bits from the kernel (`getrandom(2)`); should it fail, the
/// time and the process id mixed, which still differ between processes.
pub fn random_u32() -> u32 {
    let mut buf = [0u8; 4];
    // SAFETY: getrandom writes at most `buf.len()` bytes into `buf`.
    let got = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if got == buf.len() as isize {
        return u32::from_ne_bytes(buf);
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let mut x = nanos as u64 ^ (u64::from(std::process::id()) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    (x ^ (x >> 33)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_too_short_for_the_kernels_accounting_has_no_share() {
        // One 10 ms tick over 1.4 ms of wall time on 2 CPUs read as 357%; over 100 ms it is 5%.
        let at = |wall_ns, cpu_ns, thread_ns| CpuSample { wall_ns, cpu_ns, threads: vec![(1, thread_ns)] };
        let (before, tick) = (at(0, 0, 0), 10_000_000);
        assert_eq!(before.share_pct(&at(1_400_000, tick, tick), 2), 0.0);
        assert_eq!(before.busiest_thread_pct(&at(1_400_000, tick, tick)), 0.0);
        assert_eq!(before.share_pct(&at(100_000_000, tick, tick), 2), 5.0);
        assert_eq!(before.busiest_thread_pct(&at(100_000_000, tick, tick)), 10.0);
        // More than the CPUs offer (the aborted run's 720.9 on 2 CPUs, or 11
        // ticks of one thread in 100 ms) is a miscount: at most 100.
        assert_eq!(before.share_pct(&at(100_000_000, 15 * tick, 0), 1), 100.0);
        assert_eq!(before.busiest_thread_pct(&at(100_000_000, 0, 11 * tick)), 100.0);
        assert_eq!(before.share_pct(&at(100_000_000, 15 * tick, 0), 2), 75.0);
    }

    #[test]
    fn cpu_share_counts_this_process_against_the_cpus_it_may_use() {
        // This thread's own CPU time: the process's also counts the other tests running beside it.
        let thread_cpu_ns = || {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: clock_gettime writes into the timespec given.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        };
        let start = std::time::Instant::now();
        let own_before = thread_cpu_ns();
        let before = CpuSample::now(0);
        let mut x = 1u64;
        while start.elapsed() < std::time::Duration::from_millis(150) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let after = CpuSample::now(start.elapsed().as_nanos() as u64);
        let own = 100.0 * (thread_cpu_ns() - own_before) as f64 / start.elapsed().as_nanos() as f64;
        let one_cpu = before.share_pct(&after, 1);
        // One busy thread: nearly all of one CPU, unless the machine took some of it away.
        assert!(one_cpu > 1.0 && one_cpu < 150.0, "{one_cpu}");
        // On one CPU, the share of four times as many, up to the cap of 100.
        assert!(((4.0 * before.share_pct(&after, 4)).min(100.0) - one_cpu).abs() < 1e-9);
        assert_eq!(after.share_pct(&before, 2), 0.0, "time never runs backwards");
        // This thread did the spinning: the busiest thread is at least as busy
        // as it (ticks are 10 ms, so allow a tick either way over the 50 ms).
        let busiest = before.busiest_thread_pct(&after);
        assert!(busiest > 1.0 && busiest < 150.0 && busiest >= own - 25.0, "{busiest} vs this thread's {own}");
    }

    #[test]
    fn an_open_file_limit_beyond_the_system_says_what_and_how() {
        let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open").unwrap().trim().parse().unwrap();
        let e = raise_fd_limit(nr_open + 1).unwrap_err().to_string();
        assert!(e.contains(&format!("needs about {} open files", nr_open + 1)) && e.contains("fs.nr_open"), "{e}");
        assert!(raise_fd_limit(16).is_ok(), "a limit already met needs nothing");

        let m = fd_limit_message(6000, 4096, Some(1 << 20));
        assert!(m.contains("at most 4096") && m.contains("ulimit -Hn 6000") && m.contains("fewer consumers"), "{m}");
    }
}
