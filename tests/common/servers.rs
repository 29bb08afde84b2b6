//! Real servers for the tests, started on a free 127.0.0.1 port and stopped when dropped: a
//! `PostgreSQL` (`initdb` in a temporary directory) and a `redis-server`. Without them the tests
//! that need one fail under `CI=true` and are skipped, loudly, otherwise. Shared by the
//! library's inbox tests and the command line's (`cli/tests`, through `#[path]`).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Postgres server in a temporary directory, stopped (and its files removed) on drop.
pub(crate) struct PostgresServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub(crate) port: u16,
    /// Run the tools as this user (when the test runs as root: Postgres refuses root).
    user: Option<&'static str>,
}

impl PostgresServer {
    /// Starts a server, or returns `None` (skip) when none is installed outside CI.
    pub(crate) fn start() -> Option<Self> {
        match Self::try_start() {
            Ok(server) => Some(server),
            Err(error) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("CI=true but PostgreSQL could not be started ({error}): install it (apt-get install -y postgresql)")
            }
            Err(error) => {
                eprintln!("SKIPPED: PostgreSQL could not be started ({error}); install it (apt-get install postgresql) to run these tests");
                None
            }
        }
    }

    pub(crate) fn try_start() -> Result<Self, String> {
        let bin = find_bin().ok_or("initdb and pg_ctl not found")?;
        let root = is_root();
        let dir = tempfile::Builder::new()
            .prefix("tower-webhook-pg")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let user = root.then_some("postgres");
        if let Some(user) = user {
            // The server runs as `user`: it owns the directory.
            run(Command::new("chown")
                .arg(format!("{user}:"))
                .arg(dir.path()))?;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| e.to_string())?
            .local_addr()
            .map_err(|e| e.to_string())?
            .port();
        let server = Self {
            bin,
            dir,
            port,
            user,
        };
        server.tool(
            "initdb",
            &[
                "-D",
                &server.data(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        server.pg_start()?;
        Ok(server)
    }

    pub(crate) fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Runs one of the Postgres tools, as the server's user.
    pub(crate) fn tool(&self, name: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(name);
        let mut command = match self.user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        run(command.args(args))
    }

    pub(crate) fn pg_start(&self) -> Result<(), String> {
        let socket_dir = self.dir.path().display().to_string();
        let settings = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={socket_dir} -c fsync=off",
            self.port
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.tool(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &settings,
                "-l",
                &log,
                "-w",
                "-t",
                "30",
                "start",
            ],
        )
    }

    pub(crate) fn pg_stop(&self) {
        let _ = self.tool(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.pg_stop();
    }
}

pub(crate) fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}

/// Where `initdb` and `pg_ctl` are: `PG_BIN`, the PATH, or Debian's versioned directory.
pub(crate) fn find_bin() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("PG_BIN").map(PathBuf::from) {
        return has_tools(&dir).then_some(dir);
    }
    if let Some(dir) = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| has_tools(dir)))
    {
        return Some(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|dir| has_tools(dir))
        .collect();
    versions.sort();
    versions.pop()
}

/// A `redis-server` child process on a free loopback port, killed (SIGKILL) on drop.
pub(crate) struct RedisServer {
    child: Option<Child>,
    pub(crate) port: u16,
    /// With a directory: append-only file on, `appendfsync always`, in it.
    dir: Option<tempfile::TempDir>,
}

impl RedisServer {
    /// Starts a server without persistence, or returns `None` (skip) outside CI when none is
    /// installed.
    pub(crate) fn start() -> Option<Self> {
        Self::start_with(None)
    }

    /// Starts a server that fsyncs its append-only file before answering, in a directory of
    /// its own.
    pub(crate) fn start_durable() -> Option<Self> {
        Self::start_with(Some(tempfile::tempdir().unwrap()))
    }

    pub(crate) fn start_with(dir: Option<tempfile::TempDir>) -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self {
            child: None,
            port,
            dir,
        };
        match server.spawn() {
            Ok(()) => Some(server),
            Err(error) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("CI=true but redis-server could not be started ({error}): install it (apt-get install -y redis-server)")
            }
            Err(error) => {
                eprintln!("SKIPPED: redis-server could not be started ({error}); run scripts/test, which installs it");
                None
            }
        }
    }

    pub(crate) fn spawn(&mut self) -> std::io::Result<()> {
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
        let mut command = Command::new(binary);
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--protected-mode", "yes"]);
        match &self.dir {
            Some(dir) => command.arg("--dir").arg(dir.path()).args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ]),
            None => command.args(["--appendonly", "no"]),
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(std::io::Error::other(
                    "redis-server did not start listening within 10 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGKILL: no shutdown, no final write.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same port (without persistence, empty).
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn().unwrap();
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server: a stopped server accepts connections
    /// and answers nothing, as a stalled one.
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
