//! `tower-webhook`: the command line of the `tower-webhook` crate.
//!
//! - `tower-webhook inbox stats | list | show | replay | purge`: look into a durable inbox
//!   (`SQLite`, `PostgreSQL` or Redis Streams) and act on its deliveries, without SQL or Lua
//!   against its private schema;
//! - `tower-webhook sign | send`: a correctly signed delivery for any preset, printed as a
//!   curl command or sent;
//! - `tower-webhook verify`: check a captured request offline, and say why it is refused with
//!   the layer's own diagnostics.
//!
//! Human tables by default, `--json` for scripts; exit codes 0 (done), 1 (refused or not
//! found), 2 (usage), 3 (the store could not be reached). See `tower-webhook --help`.

mod args;
mod exit;
mod inbox;
mod output;
mod request;
mod send;
mod since;
mod verify;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::exit::Exit;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tower-webhook: cannot start: {error}");
            return ExitCode::from(Exit::Refused.code());
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Inbox(command) => inbox::run(command).await,
            Command::Sign(command) => send::sign(&command),
            Command::Send(command) => send::send(command).await,
            Command::Verify(command) => verify::run(&command),
        }
    });
    match result {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(error) => {
            let exit = exit::of(&error);
            eprintln!("tower-webhook: {error:#}");
            ExitCode::from(exit.code())
        }
    }
}
