//! Test harness: the two database engines every storage test runs against.
//!
//! - SQLite: a file in a temporary directory.
//! - PostgreSQL: a real server started here ([`Postgres::start`]) from the Debian packages'
//!   binaries (installed with apt-get when missing), owned by the `postgres` system user,
//!   listening on a free loopback port, stopped on drop. Tests run it with `fsync` off; the
//!   benchmarks that measure durable commits use [`Postgres::start_durable`].
//!
//! When PostgreSQL cannot be started the test fails with the reason: the suite never skips.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

/// Serializes apt-get across the tests of this binary.
static INSTALL: Mutex<()> = Mutex::new(());

const DB_NAME: &str = "enigm_test";

/// The newest installed `/usr/lib/postgresql/<version>/bin` with initdb and pg_ctl.
fn find_bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn run(cmd: &mut Command, what: &str) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// The server binaries, installing the Debian package `postgresql` if they are missing.
fn ensure_installed() -> Result<PathBuf> {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(bin) = find_bin_dir() {
        return Ok(bin);
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "PostgreSQL is not installed and installing it needs root: apt-get install postgresql"
        );
    }
    run(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get update",
    )?;
    run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "postgresql"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install postgresql",
    )?;
    find_bin_dir().context("postgresql installed, but no /usr/lib/postgresql/*/bin/initdb")
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.port())
}

/// A private PostgreSQL server for one test.
pub struct Postgres {
    dir: TempDir,
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    uid: u32,
    gid: u32,
    url: String,
}

impl Postgres {
    /// Find (or install) the server, initdb a cluster in a temporary directory, start it on
    /// a free loopback port with `fsync`, `synchronous_commit` and `full_page_writes` off (a
    /// test needs no crash safety), and create the test database.
    pub fn start() -> Result<Postgres> {
        Self::start_with(false)
    }

    /// [`Postgres::start`] with PostgreSQL's durable defaults: `fsync`, `synchronous_commit`
    /// and `full_page_writes` on, so a commit returns only once it is on disk.
    pub fn start_durable() -> Result<Postgres> {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> Result<Postgres> {
        let bin = ensure_installed()?;
        let user = nix::unistd::User::from_name("postgres")
            .context("looking up the postgres user")?
            .context("no `postgres` system user (the postgresql package creates it)")?;
        let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
        let dir = tempfile::Builder::new()
            .prefix("enigm-pg-")
            .tempdir()
            .context("creating the PostgreSQL temp dir")?;
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .context("chown of the PostgreSQL temp dir to postgres")?;
        let data = dir.path().join("data");
        let sockets = dir.path().join("sock");
        std::fs::create_dir(&sockets)?;
        std::os::unix::fs::chown(&sockets, Some(uid), Some(gid))?;
        let mut pg = Postgres {
            dir,
            bin,
            data,
            port: 0,
            uid,
            gid,
            url: String::new(),
        };
        run(
            pg.command("initdb")
                .arg("-D")
                .arg(&pg.data)
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
                .args((!durable).then_some("--no-sync")),
            "initdb",
        )?;
        let mut last_error = None;
        for _ in 0..3 {
            let port = free_port()?;
            let switch = if durable { "on" } else { "off" };
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync={switch} \
                 -c synchronous_commit={switch} -c full_page_writes={switch} \
                 -c shared_buffers=16MB -c max_connections=40",
                sockets.display()
            );
            let log = pg.dir.path().join("server.log");
            let started = run(
                pg.command("pg_ctl")
                    .arg("-D")
                    .arg(&pg.data)
                    .arg("-l")
                    .arg(&log)
                    .args(["-w", "-t", "60", "-o", &options, "start"]),
                "pg_ctl start",
            );
            match started {
                Ok(_) => {
                    pg.port = port;
                    break;
                }
                Err(e) => {
                    let log = std::fs::read_to_string(&log).unwrap_or_default();
                    last_error = Some(e.context(log));
                }
            }
        }
        if pg.port == 0 {
            return Err(last_error.unwrap_or_else(|| anyhow::anyhow!("pg_ctl start failed")));
        }
        run(
            pg.command("createdb")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &pg.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .arg(DB_NAME),
            "createdb",
        )?;
        pg.url = format!("postgres://postgres@127.0.0.1:{}/{DB_NAME}", pg.port);
        Ok(pg)
    }

    /// A command for one of the server's binaries, run as the postgres user.
    fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        cmd.uid(self.uid)
            .gid(self.gid)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .env_remove("PGHOST")
            .env_remove("PGPORT");
        cmd
    }

    /// The test database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The single value `query` returns, run with `psql` as the postgres user.
    pub fn query_value(&self, query: &str) -> Result<String> {
        let out = run(
            self.command("psql")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", "postgres", "-At", "-c", query])
                .arg(DB_NAME),
            "psql",
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// `pg_dump` of the test database (plain SQL text), run as the postgres user.
    pub fn dump(&self) -> Result<Vec<u8>> {
        let out = run(
            self.command("pg_dump")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .arg(DB_NAME),
            "pg_dump",
        )?;
        Ok(out.stdout)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.port != 0 {
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

/// Which engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// A fresh, empty database of one engine, with a directory for test files.
pub struct TestDb {
    pub kind: Kind,
    dir: TempDir,
    pg: Option<Postgres>,
    url: String,
}

impl TestDb {
    /// A new database of `kind`.
    pub fn new(kind: Kind) -> Result<TestDb> {
        let dir = tempfile::tempdir()?;
        let (pg, url) = match kind {
            Kind::Sqlite => {
                let path = dir.path().join("enigm.sqlite");
                (None, format!("sqlite://{}?mode=rwc", path.display()))
            }
            Kind::Postgres => {
                let pg = Postgres::start().context("starting PostgreSQL for the storage tests")?;
                let url = pg.url().to_owned();
                (Some(pg), url)
            }
        };
        Ok(TestDb { kind, dir, pg, url })
    }

    /// The database URL for `Store::open`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A directory for the test's own files (key files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the engine keeps of the database: for SQLite the file with its -wal and
    /// -shm files (as present now), for PostgreSQL a `pg_dump`.
    pub fn dump(&self) -> Result<Vec<u8>> {
        match &self.pg {
            Some(pg) => pg.dump(),
            None => {
                let base = self.dir.path().join("enigm.sqlite");
                let mut out = std::fs::read(&base).context("reading the SQLite file")?;
                for suffix in ["-wal", "-shm"] {
                    let p = PathBuf::from(format!("{}{suffix}", base.display()));
                    if let Ok(bytes) = std::fs::read(&p) {
                        out.extend_from_slice(&bytes);
                    }
                }
                Ok(out)
            }
        }
    }

    /// Whether the SQLite write-ahead log exists (SQLite only).
    pub fn sqlite_wal_exists(&self) -> bool {
        self.dir.path().join("enigm.sqlite-wal").exists()
    }
}
