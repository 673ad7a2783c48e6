//! A real Kafka-protocol broker for tests: [nisshi](https://crates.io/crates/nisshi) 0.8.1 on
//! 127.0.0.1, on a free port, storing in a SQLite file in a temporary directory (durable: a
//! broker killed with SIGKILL and started again on the same file keeps every acknowledged
//! record). Killed when dropped.
//!
//! The binary is found through `$DSR_NISSHI`, then `~/.cache/dsr-tools/bin/nisshi`, then `PATH`.
//! When there is none, [`TestBroker::start`] fails and says how to install it; tests never skip.
//!
//! Enabled by the `testing` feature (`dsr-log = { ..., features = ["testing"] }` in
//! `[dev-dependencies]`).

use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nisshi version the tests are written against.
pub const NISSHI_VERSION: &str = "0.8.1";

/// How to install nisshi where [`nisshi_binary`] looks.
pub const INSTALL_HINT: &str =
    "cargo +nightly install nisshi --version 0.8.1 --locked --root ~/.cache/dsr-tools";

/// Why a test broker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TestBrokerError {
    #[error(
        "nisshi, the Kafka-protocol broker the integration tests start, is not installed: looked \
         at {looked}. Install it with `{INSTALL_HINT}` (nisshi needs rustc >= 1.96, hence \
         nightly; the build takes ~16 minutes, once per machine; `.ci/run` does it), or set \
         DSR_NISSHI to the path of a nisshi {NISSHI_VERSION} binary"
    )]
    NotInstalled { looked: String },

    #[error("DSR_NISSHI is set to {}, which is not a file; unset it or point it at a nisshi binary", path.display())]
    BadOverride { path: PathBuf },

    #[error("could not {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "nisshi ({}) exited before accepting connections on {addr} ({status}); its output:\n{log}",
        binary.display()
    )]
    Exited {
        binary: PathBuf,
        addr: SocketAddr,
        status: String,
        log: String,
    },

    #[error(
        "nisshi ({}) did not accept connections on {addr} within {after:?}; its output:\n{log}",
        binary.display()
    )]
    NotReady {
        binary: PathBuf,
        addr: SocketAddr,
        after: Duration,
        log: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestBrokerError {
    let what = what.into();
    move |source| TestBrokerError::Io { what, source }
}

/// Finds the nisshi binary: `$DSR_NISSHI`, then `~/.cache/dsr-tools/bin/nisshi`, then `PATH`.
pub fn nisshi_binary() -> Result<PathBuf, TestBrokerError> {
    if let Some(path) = std::env::var_os("DSR_NISSHI").filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(TestBrokerError::BadOverride { path })
        };
    }
    let mut looked = vec!["$DSR_NISSHI (unset)".to_owned()];
    if let Some(home) = std::env::var_os("HOME") {
        let cached = Path::new(&home).join(".cache/dsr-tools/bin/nisshi");
        if cached.is_file() {
            return Ok(cached);
        }
        looked.push(cached.display().to_string());
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("nisshi");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    looked.push("nisshi on PATH".to_owned());
    Err(TestBrokerError::NotInstalled {
        looked: looked.join(", "),
    })
}

/// Settings of a [`TestBroker`].
#[derive(Clone, Debug)]
pub struct TestBrokerOptions {
    /// `--group-initial-rebalance-delay`: how long a new group's first join waits for more
    /// members (nisshi's default: 3 s; here 100 ms).
    pub group_initial_rebalance_delay: Duration,
    /// `--group-poll-interval`: how often a held JoinGroup/SyncGroup re-reads the group
    /// (nisshi's default: 500 ms; here 50 ms).
    pub group_poll_interval: Duration,
    /// `?maintenance_interval=` of the storage URL: how often the broker applies retention and
    /// compaction (nisshi's default: 10 minutes). `None` keeps the default.
    pub maintenance_interval: Option<Duration>,
    /// How long to wait for the broker to accept connections.
    pub ready_timeout: Duration,
}

impl Default for TestBrokerOptions {
    fn default() -> Self {
        Self {
            group_initial_rebalance_delay: Duration::from_millis(100),
            group_poll_interval: Duration::from_millis(50),
            maintenance_interval: None,
            ready_timeout: Duration::from_secs(60),
        }
    }
}

/// A nisshi broker on 127.0.0.1 with SQLite storage in a temporary directory.
#[derive(Debug)]
pub struct TestBroker {
    binary: PathBuf,
    options: TestBrokerOptions,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    child: Option<Child>,
}

const STORAGE_FILE: &str = "nisshi.db";
const LOG_FILE: &str = "nisshi.log";

impl TestBroker {
    /// Starts a broker with the default options and waits until it accepts connections.
    pub fn start() -> Result<Self, TestBrokerError> {
        Self::start_with(TestBrokerOptions::default())
    }

    pub fn start_with(options: TestBrokerOptions) -> Result<Self, TestBrokerError> {
        let binary = nisshi_binary()?;
        let mut dir = tempfile::Builder::new()
            .prefix("dsr-nisshi-")
            .tempdir()
            .map_err(io("create a temporary directory for nisshi"))?;
        let mut last_error = None;
        // A free port can be taken by someone else before nisshi binds it: try a few.
        for _ in 0..3 {
            let addr = free_port()?;
            let mut broker = Self {
                binary: binary.clone(),
                options: options.clone(),
                dir,
                addr,
                child: None,
            };
            match broker.spawn() {
                Ok(()) => return Ok(broker),
                Err(error) => {
                    last_error = Some(error);
                    dir = broker.take_dir();
                }
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        self.stop();
        // Swap in a throwaway directory so `Drop` has something to own.
        let placeholder = tempfile::tempdir().expect("a temporary directory");
        std::mem::replace(&mut self.dir, placeholder)
    }

    /// `HOST:PORT` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The SQLite file the broker stores in.
    pub fn storage_file(&self) -> PathBuf {
        self.dir.path().join(STORAGE_FILE)
    }

    /// The broker's output so far (all runs).
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(self.dir.path().join(LOG_FILE)) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// True while the broker process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills the broker with SIGKILL (no shutdown at all) and waits for it to exit.
    pub fn kill(&mut self) {
        self.stop();
    }

    /// Starts the broker again (killing it first if it runs) on the same port and the same
    /// SQLite file, and waits until it accepts connections.
    pub fn restart(&mut self) -> Result<(), TestBrokerError> {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                // The port may linger for a moment after the kill.
                Err(error) if Instant::now() < deadline => {
                    tracing::debug!(%error, "restarting nisshi: retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn spawn(&mut self) -> Result<(), TestBrokerError> {
        let log_path = self.dir.path().join(LOG_FILE);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(format!("open {}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(io(format!("open {}", log_path.display())))?;
        let url = format!("tcp://{}", self.addr);
        let child = Command::new(&self.binary)
            .current_dir(self.dir.path())
            .arg("--listener-url")
            .arg(&url)
            .arg("--advertised-listener-url")
            .arg(&url)
            .arg("--storage-engine")
            .arg(self.storage_url())
            .arg("--group-initial-rebalance-delay")
            .arg(format!(
                "{}ms",
                self.options.group_initial_rebalance_delay.as_millis()
            ))
            .arg("--group-poll-interval")
            .arg(format!(
                "{}ms",
                self.options.group_poll_interval.as_millis().max(1)
            ))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(io(format!("start {}", self.binary.display())))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn storage_url(&self) -> String {
        match self.options.maintenance_interval {
            Some(interval) => format!(
                "sqlite://{STORAGE_FILE}?maintenance_interval={}ms",
                interval.as_millis().max(1)
            ),
            None => format!("sqlite://{STORAGE_FILE}"),
        }
    }

    fn wait_ready(&mut self) -> Result<(), TestBrokerError> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(TestBrokerError::Exited {
                        binary: self.binary.clone(),
                        addr: self.addr,
                        status: status.to_string(),
                        log: tail(&self.log()),
                    });
                }
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if started.elapsed() > self.options.ready_timeout {
                self.stop();
                return Err(TestBrokerError::NotReady {
                    binary: self.binary.clone(),
                    addr: self.addr,
                    after: self.options.ready_timeout,
                    log: tail(&self.log()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> Result<SocketAddr, TestBrokerError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("find a free port"))?;
    listener.local_addr().map_err(io("find a free port"))
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
