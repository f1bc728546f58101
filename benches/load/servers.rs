//! The servers as child processes: started pinned to a CPU, their listeners read from
//! what they print, killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::ROLE;

/// Kills a child process when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn_pinned(cpu: Option<usize>, program: &std::path::Path, args: &[&str], role: Option<&str>) -> ChildGuard {
    let mut command = match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string()]).arg(program);
            c
        }
        None => Command::new(program),
    };
    command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(role) = role {
        command.env(ROLE, role);
    }
    ChildGuard(command.spawn().expect("the server starts"))
}

/// Reads `name=ADDR` announcements from a child's output (bounded to 30 s).
pub fn addresses(child: &mut ChildGuard, from_stderr: bool, wanted: &[&str]) -> Vec<SocketAddr> {
    let reader: Box<dyn std::io::Read + Send> = if from_stderr {
        Box::new(child.0.stderr.take().unwrap())
    } else {
        Box::new(child.0.stdout.take().unwrap())
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                // Keep draining so the child never blocks on a full pipe.
                continue;
            }
        }
    });
    let mut found = vec![None; wanted.len()];
    while found.iter().any(Option::is_none) {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server announces its listeners");
        for (i, name) in wanted.iter().enumerate() {
            let key = format!("listener=\"{name}\" listen=");
            let key2 = format!("{name}=");
            let value = line
                .split(&key)
                .nth(1)
                .or_else(|| line.strip_prefix(&key2))
                .and_then(|rest| rest.split_whitespace().next());
            if let Some(addr) = value.and_then(|v| v.parse().ok()) {
                found[i] = Some(addr);
            }
        }
    }
    found.into_iter().map(Option::unwrap).collect()
}
