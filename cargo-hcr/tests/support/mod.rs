//! What the integration tests share: a running `cargo hcr run` and every
//! line it (and the host it started) printed.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// Which of the child's outputs a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

/// A running `cargo-hcr` and every line it (and the host) printed.
pub struct Running {
    pub child: Child,
    lines: Receiver<(Stream, String)>,
    pub seen: Vec<(Stream, String)>,
}

impl Running {
    /// Starts `command` (cargo-hcr, as a test set it up) with its outputs
    /// read line by line.
    pub fn spawn(mut command: Command) -> Running {
        let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let (tx, lines) = mpsc::channel();
        for (stream, pipe) in [
            (Stream::Out, Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>),
            (Stream::Err, Box::new(child.stderr.take().unwrap())),
        ] {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((stream, line)).is_err() {
                        break;
                    }
                }
            });
        }
        Running { child, lines, seen: Vec::new() }
    }

    /// The index of the first line at or after `from` on `stream` that
    /// satisfies `wanted`, waiting up to `timeout` for it.
    pub fn wait_for(&mut self, from: usize, stream: Stream, timeout: Duration, wanted: impl Fn(&str) -> bool) -> usize {
        let deadline = Instant::now() + timeout;
        let mut next = from;
        loop {
            if let Some(found) = self.seen[next..].iter().position(|(s, line)| *s == stream && wanted(line)) {
                return next + found;
            }
            next = self.seen.len();
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("not seen in {timeout:?} on {stream:?}; everything:\n{}", self.transcript()),
            }
        }
    }

    /// Every line so far, marked by stream.
    pub fn transcript(&self) -> String {
        self.seen
            .iter()
            .map(|(s, line)| format!("{}| {line}\n", if *s == Stream::Out { "out" } else { "err" }))
            .collect()
    }

    /// The lines so far on `stream` from `from` on.
    pub fn lines_since(&self, from: usize, stream: Stream) -> Vec<&str> {
        self.seen[from..].iter().filter(|(s, _)| *s == stream).map(|(_, line)| line.as_str()).collect()
    }

    /// The status lines (`[hcr] ...`) from `from` on.
    pub fn status_since(&self, from: usize) -> Vec<&str> {
        self.lines_since(from, Stream::Err).into_iter().filter(|l| l.starts_with("[hcr] ")).collect()
    }

    /// Sends `cargo-hcr` `signal`.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: `kill` has no memory-safety preconditions; the child is
        // not reaped, so its id is still its own.
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, signal) }, 0);
    }

    /// Waits for `cargo-hcr` to exit, reading the rest of its output.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The pipes close once the host is gone too.
                while let Ok(line) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    self.seen.push(line);
                }
                return status;
            }
            assert!(Instant::now() < deadline, "cargo-hcr did not exit; everything:\n{}", self.transcript());
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The host's pid, from its first line.
    pub fn host_pid(&mut self, from: usize, timeout: Duration) -> u32 {
        let line = self.wait_for(from, Stream::Out, timeout, |l| l.starts_with("host pid "));
        self.seen[line].1["host pid ".len()..].parse().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // After a failure: the host dies with cargo-hcr.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
