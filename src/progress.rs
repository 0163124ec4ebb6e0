//! The live view on stderr: elapsed of total, send and delivery rates, loss so
//! far, connected consumers. It only reads the engine's atomic counters.

use crate::live::Live;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running live view; stops when dropped.
pub struct Progress {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing for a run of `total` (warmup + measure) with `consumers` consumers.
    pub fn start(live: Arc<Live>, total: Duration, consumers: u32) -> Progress {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let thread = std::thread::spawn(move || draw(live, total, consumers, flag));
        Progress { done, thread: Some(thread) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn per_s(delta: u64, dt: f64) -> String {
    let v = delta as f64 / dt.max(1e-3);
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn draw(live: Arc<Live>, total: Duration, consumers: u32, done: Arc<AtomicBool>) {
    let bar = ProgressBar::with_draw_target(Some(total.as_millis() as u64), ProgressDrawTarget::stderr_with_hz(5));
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {percent:>3}%  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let (mut last_sent, mut last_delivered, mut last_at) = (0, 0, Instant::now());
    while !done.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        let (sent, delivered) = (live.sent.load(Relaxed), live.delivered.load(Relaxed));
        let dt = last_at.elapsed().as_secs_f64();
        bar.set_position((started.elapsed().as_millis() as u64).min(total.as_millis() as u64));
        bar.set_message(format!(
            "sent {}/s · delivered {}/s · lost {} · consumers {}/{consumers}",
            per_s(sent - last_sent, dt),
            per_s(delivered - last_delivered, dt),
            live.lost_so_far.load(Relaxed),
            live.connected.load(Relaxed),
        ));
        (last_sent, last_delivered, last_at) = (sent, delivered, Instant::now());
    }
    bar.finish_and_clear();
}
