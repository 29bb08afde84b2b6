//! The exit codes scripts rely on, and how an error maps to one.

use std::fmt;

use tower_webhook::inbox::InboxError;

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// 0: done.
    Ok,
    /// 1: refused, or not found (what could be done was done and printed).
    Refused,
    /// 2: the command line is wrong (clap's own errors exit 2 too).
    Usage,
    /// 3: the store (or, for `send`, the receiver) could not be reached.
    Unreachable,
}

impl Exit {
    /// The process's exit code.
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Refused => 1,
            Self::Usage => 2,
            Self::Unreachable => 3,
        }
    }
}

/// An error that ends the command with a given exit code (anything else exits 1).
#[derive(Debug)]
pub(crate) struct Coded {
    exit: Exit,
    message: String,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// A usage error (exit 2).
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    Coded {
        exit: Exit::Usage,
        message: message.into(),
    }
    .into()
}

/// The store, or the receiver, could not be reached (exit 3).
pub(crate) fn unreachable(message: impl Into<String>) -> anyhow::Error {
    Coded {
        exit: Exit::Unreachable,
        message: message.into(),
    }
    .into()
}

/// The exit code of `error`: its own when it carries one, 3 for an inbox that failed or did
/// not answer, else 1.
pub(crate) fn of(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        if let Some(coded) = cause.downcast_ref::<Coded>() {
            return coded.exit;
        }
        if let Some(error) = cause.downcast_ref::<InboxError>() {
            return match error {
                InboxError::Full => Exit::Refused,
                _ => Exit::Unreachable,
            };
        }
    }
    Exit::Refused
}
