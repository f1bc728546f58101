//! CPU time a process has spent, from /proc: what a request costs the server, and whether
//! the generator or the server was the bottleneck of a run.

use std::time::Duration;

/// Linux reports /proc times in USER_HZ, which is 100 on every architecture's ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU time of `pid` (all its threads) so far; zero when unreadable.
pub fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / TICKS_PER_SECOND)
}

/// CPU spent by a process over one measured interval.
pub struct CpuSpan {
    pid: u32,
    start: Duration,
}

impl CpuSpan {
    pub fn start(pid: u32) -> CpuSpan {
        CpuSpan {
            pid,
            start: cpu_time(pid),
        }
    }

    pub fn spent(&self) -> Duration {
        cpu_time(self.pid).saturating_sub(self.start)
    }
}

/// Which side a run was limited by: a side that kept its core at least 90 % busy.
pub fn bottleneck(server_busy: f64, client_busy: f64) -> &'static str {
    match (server_busy >= 0.9, client_busy >= 0.9) {
        (true, false) => "server",
        (false, true) => "generator",
        (true, true) => "both",
        (false, false) => "neither",
    }
}
