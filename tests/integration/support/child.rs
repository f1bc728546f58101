//! Child processes the tests start: waited for with a bound, killed when the test ends.

use std::ops::{Deref, DerefMut};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use super::Wait;

/// How often a child is asked whether it exited.
const POLL: Duration = Duration::from_millis(10);

/// A child process, killed and reaped when dropped, however the test ends (a failed
/// assertion included).
pub struct ChildProcess(Child);

impl ChildProcess {
    pub fn spawn(command: &mut Command) -> ChildProcess {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", command.get_program()));
        ChildProcess(child)
    }

    /// Waits (bounded) for the process to exit; fails the test, naming `what` was
    /// waited for, when it is still running after `limit`.
    pub async fn exit_within(&mut self, limit: Duration, what: &str) -> ExitStatus {
        Wait::up_to(limit)
            .every(POLL)
            .until(what, async || self.0.try_wait().unwrap())
            .await
    }

    /// As `exit_within`, blocking the thread: for tests without a runtime.
    pub fn exit_within_blocking(&mut self, limit: Duration, what: &str) -> ExitStatus {
        Wait::up_to(limit)
            .every(POLL)
            .until_blocking(what, || self.0.try_wait().unwrap())
    }
}

impl Deref for ChildProcess {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for ChildProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
