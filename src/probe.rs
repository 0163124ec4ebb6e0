//! The machine's own floor, measured beside every run: how late a thread
//! that sleeps on a schedule wakes up, and how much CPU processes other than
//! eventbench (and the private servers it started) took, and the hypervisor
//! stole, over the measured phase.
//!
//! Why: on a shared or virtual machine a sleeping thread can wake
//! milliseconds late, and a paced client's messages then go out late by as
//! much, whatever Redis or eventbench do. A latency bound tighter than that
//! floor says nothing about either, and a capacity search must not read it
//! as the system's failure (`capacity::slo`). The probe is one thread that
//! wakes every [`PERIOD`] (about 1% of a core) and reads `/proc` twice per
//! run; nothing on the message path.

use crate::live::Live;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Between two wake-ups of the probe: a paced client's 500 messages a second.
pub const PERIOD: Duration = Duration::from_millis(2);

/// Other processes above this share of one core (%) over a step: the machine was disturbed.
pub const OTHER_CPU_LIMIT_PCT: f64 = 30.0;
/// Steal time above this share of the machine's CPU time (%): the machine was disturbed.
pub const STEAL_LIMIT_PCT: f64 = 5.0;

/// What the probe measured over a run's measured phase (all `None` when it
/// did not see the phase: a checkpoint, or a run stopped before it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// How late the probe's thread woke after its deadline, µs.
    pub wakeup_p50_us: Option<f64>,
    pub wakeup_p99_us: Option<f64>,
    pub wakeup_p999_us: Option<f64>,
    pub wakeup_max_us: Option<f64>,
    /// CPU used by every process but this one, its descendants (workers,
    /// private servers), % of one core (150 = one and a half cores).
    pub other_cpu_pct: Option<f64>,
    /// Time the hypervisor ran something else while this machine wanted the CPU, % of its CPU time.
    pub steal_pct: Option<f64>,
}

impl Machine {
    /// Whether other processes or the hypervisor took enough CPU to disturb a run.
    pub fn disturbed(&self) -> bool {
        self.other_cpu_pct.is_some_and(|p| p > OTHER_CPU_LIMIT_PCT)
            || self.steal_pct.is_some_and(|p| p > STEAL_LIMIT_PCT)
    }
}

/// The probe of one run: a thread, from [`Probe::start`] to [`Probe::finish`].
pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Machine>>,
}

impl Probe {
    /// Starts the probe's thread; it waits for `live`'s measured phase and
    /// measures it. None on virtual time (a paused runtime, `clock`): the
    /// machine's wake-ups say nothing of a virtual run, whose columns stay empty.
    pub fn start(live: Arc<Live>) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        if crate::clock::runtime_paused() {
            return Probe { stop, thread: None };
        }
        let stopped = stop.clone();
        let thread =
            std::thread::Builder::new().name("eventbench-probe".into()).spawn(move || measure(&live, &stopped)).ok();
        Probe { stop, thread }
    }

    /// Stops the probe and returns what it measured.
    pub fn finish(mut self) -> Machine {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The probe's thread: waits for the measured phase, then wakes on schedule
/// until it ends (or the run stops), sampling `/proc` at both ends.
fn measure(live: &Live, stop: &AtomicBool) -> Machine {
    let quit = || stop.load(Ordering::Relaxed) || live.stop_requested();
    let (start_ns, end_ns) = loop {
        if quit() {
            return Machine::default();
        }
        match live.measured_phase() {
            Some(phase) => break phase,
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let now = || live.now_ns().unwrap_or(0);
    // Until the measured phase starts, in short sleeps: a stop during a long
    // warmup must not wait for it (`finish` joins this thread).
    while now() < start_ns {
        if quit() {
            return Machine::default();
        }
        std::thread::sleep(Duration::from_nanos(start_ns.saturating_sub(now()).min(5_000_000)));
    }
    set_timer_slack();
    let before = CpuTimes::now();
    let started = Instant::now();
    // Bounded, so that saturating_record clamps at a minute: an unbounded
    // `new` starts at a highest value of 2 ns and saturates there.
    let mut late = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
    let mut deadline = started;
    while now() < end_ns && !quit() {
        deadline += PERIOD;
        sleep_until(deadline);
        let lateness = Instant::now().saturating_duration_since(deadline);
        late.saturating_record(lateness.as_nanos() as u64);
        // A probe that fell far behind measures the next deadline, not a backlog of them.
        if lateness > PERIOD {
            deadline = Instant::now();
        }
    }
    let after = CpuTimes::now();
    let wall_ns = started.elapsed().as_nanos() as f64;
    let us = |q: f64| (!late.is_empty()).then(|| late.value_at_quantile(q) as f64 / 1e3);
    let (other_cpu_pct, steal_pct) = before.other_and_steal(&after, wall_ns);
    Machine {
        wakeup_p50_us: us(0.5),
        wakeup_p99_us: us(0.99),
        wakeup_p999_us: us(0.999),
        wakeup_max_us: us(1.0),
        other_cpu_pct,
        steal_pct,
    }
}

/// Asks for wake-ups without the kernel's default 50 µs of timer slack, as a
/// pacer's timerfd gets them.
fn set_timer_slack() {
    // SAFETY: prctl with PR_SET_TIMERSLACK only changes this thread's timer slack.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// Sleeps until `deadline` on the monotonic clock.
fn sleep_until(deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    if !left.is_zero() {
        std::thread::sleep(left);
    }
}

/// The machine's CPU time and this process tree's, at one moment, in clock ticks.
#[derive(Debug, Clone, Default, PartialEq)]
struct CpuTimes {
    /// user + nice + system + irq + softirq of every CPU (`/proc/stat`).
    busy: u64,
    steal: u64,
    /// Every field of `/proc/stat`'s `cpu` line (guest time is already in user).
    total: u64,
    /// This process and each descendant: utime + stime by pid.
    own: HashMap<u32, u64>,
}

impl CpuTimes {
    fn now() -> CpuTimes {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let (busy, steal, total) = parse_stat(&stat).unwrap_or_default();
        CpuTimes { busy, steal, total, own: own_tree() }
    }

    /// Other processes' CPU (% of one core) and steal (% of the machine's CPU time), from `self` to `later`.
    fn other_and_steal(&self, later: &CpuTimes, wall_ns: f64) -> (Option<f64>, Option<f64>) {
        if self.total == 0 || later.total <= self.total || wall_ns <= 0.0 {
            return (None, None);
        }
        // SAFETY: sysconf only reads a constant.
        let tick_ns = 1e9 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let own: u64 = later.own.iter().map(|(pid, t)| t.saturating_sub(self.own.get(pid).copied().unwrap_or(0))).sum();
        let other = later.busy.saturating_sub(self.busy).saturating_sub(own);
        let steal = later.steal.saturating_sub(self.steal) as f64 / (later.total - self.total) as f64;
        (Some(100.0 * other as f64 * tick_ns / wall_ns), Some(100.0 * steal))
    }
}

/// `(busy, steal, total)` ticks from `/proc/stat`'s first line.
fn parse_stat(stat: &str) -> Option<(u64, u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal guest guest_nice
    let busy = at(0) + at(1) + at(2) + at(5) + at(6);
    let total = (0..8).map(at).sum();
    Some((busy, at(7), total))
}

/// `(pid, ppid, utime + stime)` from a `/proc/<pid>/stat` line.
fn parse_pid_stat(stat: &str) -> Option<(u32, u32, u64)> {
    let pid = stat.split(' ').next()?.parse().ok()?;
    // After the name, which is in parentheses and may hold spaces: field 3 (state) onwards.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((pid, ppid, ticks))
}

/// CPU ticks of this process and all its descendants, by pid.
fn own_tree() -> HashMap<u32, u64> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return HashMap::new() };
    let all: Vec<(u32, u32, u64)> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            e.file_name().to_str()?.parse::<u32>().ok()?;
            parse_pid_stat(&std::fs::read_to_string(e.path().join("stat")).ok()?)
        })
        .collect();
    let mut own: HashMap<u32, u64> = HashMap::new();
    let me = std::process::id();
    let mut frontier = vec![me];
    if let Some(&(_, _, t)) = all.iter().find(|p| p.0 == me) {
        own.insert(me, t);
    }
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid, t) in &all {
            if ppid == parent && own.insert(pid, t).is_none() {
                frontier.push(pid);
            }
        }
    }
    own
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_lines_parse() {
        let stat = "cpu  100 5 50 1000 7 3 2 40 0 0\ncpu0 50 2 25 500 3 1 1 20 0 0\n";
        assert_eq!(parse_stat(stat), Some((160, 40, 1207)));
        let line = "4242 (redis (x) y) S 4000 4242 4000 0 -1 4194560 1 0 0 0 17 9 0 0 20 0 4 0 1 2 3";
        assert_eq!(parse_pid_stat(line), Some((4242, 4000, 26)));
    }

    #[test]
    fn a_busy_child_is_our_own_and_a_busy_stranger_is_other() {
        let before = CpuTimes { busy: 1000, steal: 10, total: 5000, own: HashMap::from([(1, 100), (2, 50)]) };
        // 2 s of wall time at 100 ticks a second: 200 ticks is one core.
        let after = CpuTimes { busy: 1500, steal: 30, total: 5400, own: HashMap::from([(1, 300), (2, 150), (3, 20)]) };
        let (other, steal) = before.other_and_steal(&after, 2e9);
        // 500 busy ticks, 320 of them ours: 180 ticks over 2 s is 90% of a core (at 100 Hz).
        // SAFETY: sysconf only reads a constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert!((other.unwrap() - 180.0 / hz / 2.0 * 100.0).abs() < 1e-9, "{other:?}");
        assert!((steal.unwrap() - 5.0).abs() < 1e-9, "{steal:?}");
        assert_eq!(before.other_and_steal(&before, 2e9), (None, None), "no time passed");
    }

    #[test]
    fn this_process_counts_as_its_own_tree() {
        let own = own_tree();
        assert!(own.contains_key(&std::process::id()), "{own:?}");
        let disturbed = Machine { other_cpu_pct: Some(80.0), ..Machine::default() };
        assert!(disturbed.disturbed() && !Machine::default().disturbed());
        assert!(Machine { steal_pct: Some(9.0), ..Machine::default() }.disturbed());
    }
}
