//! Runs the built `tower-webhook` binary.
#![allow(dead_code, unreachable_pub)]

use std::process::{Command, Output, Stdio};

/// What a run printed, and its exit code.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout's lines, each read as JSON.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{self:?}"))
            })
            .collect()
    }

    /// Panics unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(self.code, code, "{self:#?}");
        self
    }
}

/// Runs `tower-webhook args...` (no `INBOX_URL` or `WEBHOOK_*` from the environment).
pub fn cli(args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tower-webhook"));
    command
        .args(args)
        .env_remove("INBOX_URL")
        .env_remove("WEBHOOK_SECRET")
        .env_remove("WEBHOOK_URL")
        .env_remove("WEBHOOK_PUBLIC_URL")
        .stdin(Stdio::null());
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}
