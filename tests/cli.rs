//! End-to-end tests of the `smartproxy` binary: exit codes, config checking,
//! signals and graceful shutdown, and connection logs. Every test runs the real binary against
//! real loopback sockets; every wait is bounded and every child is killed on failure.

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_smartproxy");
/// Upper bound of every wait in this file.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Helpers: the child process and its output
// ---------------------------------------------------------------------------------------------

/// Lines read so far from one of the child's pipes.
#[derive(Default)]
struct Captured {
    state: Mutex<CapturedState>,
    changed: Condvar,
}

#[derive(Default)]
struct CapturedState {
    lines: Vec<String>,
    /// The pipe reached EOF.
    done: bool,
}

impl Captured {
    fn start(pipe: impl Read + Send + 'static) -> Arc<Captured> {
        let captured = Arc::new(Captured::default());
        let writer = Arc::clone(&captured);
        thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf)
                            .trim_end_matches(['\n', '\r'])
                            .to_string();
                        lock(&writer.state).lines.push(line);
                        writer.changed.notify_all();
                    }
                }
            }
            lock(&writer.state).done = true;
            writer.changed.notify_all();
        });
        captured
    }

    fn lines(&self) -> Vec<String> {
        lock(&self.state).lines.clone()
    }

    fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// Waits (bounded) until the pipe is closed, so that `lines` holds everything.
    fn wait_done(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let mut state = lock(&self.state);
        while !state.done {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            state = match self.changed.wait_timeout(state, deadline - now) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running `smartproxy`; killed on drop if it is still running.
struct Smartproxy {
    child: Child,
    stdout: Arc<Captured>,
    stderr: Arc<Captured>,
    status: Option<ExitStatus>,
}

impl Smartproxy {
    fn spawn(args: &[&str]) -> Smartproxy {
        Self::spawn_with_env(args, &[])
    }

    fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Smartproxy {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let stdout = Captured::start(child.stdout.take().expect("stdout is piped"));
        let stderr = Captured::start(child.stderr.take().expect("stderr is piped"));
        Smartproxy {
            child,
            stdout,
            stderr,
            status: None,
        }
    }

    fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t")
    }

    /// Sends `sig` to the child (only while it has not been reaped, so the pid is still ours).
    fn signal(&mut self, sig: libc::c_int) {
        assert!(
            self.is_running(),
            "cannot send signal {sig}: smartproxy already exited ({:?})\nstderr:\n{}",
            self.status,
            self.stderr()
        );
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our unreaped child.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill failed: {}", io::Error::last_os_error());
    }

    fn is_running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.status = Some(status);
                false
            }
            Ok(None) => true,
            Err(e) => panic!("try_wait failed: {e}"),
        }
    }

    /// Waits for the child to exit, at most `within`; panics (and the drop kills it) otherwise.
    /// Once it has exited, waits for its output pipes to be drained.
    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        while self.is_running() {
            if Instant::now() >= deadline {
                panic!(
                    "smartproxy did not exit within {within:?}\nstderr:\n{}",
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.stdout.wait_done(Duration::from_secs(5));
        self.stderr.wait_done(Duration::from_secs(5));
        self.status.expect("exited")
    }

    /// Waits for the exit and checks its code.
    fn expect_exit(&mut self, within: Duration, code: i32) {
        let status = self.wait_exit(within);
        assert_eq!(
            status.code(),
            Some(code),
            "unexpected exit status {status:?}\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
    }

    /// Waits until a stderr line (ANSI colours removed) satisfies `pred` and returns it.
    /// Panics when `WAIT` passes or the child exits first.
    fn wait_stderr(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let captured = Arc::clone(&self.stderr);
        let mut seen = 0;
        loop {
            {
                let state = lock(&captured.state);
                for line in &state.lines[seen..] {
                    let plain = strip_ansi(line);
                    if pred(&plain) {
                        return plain;
                    }
                }
                seen = state.lines.len();
                if state.done || Instant::now() >= deadline {
                    drop(state);
                    let running = self.is_running();
                    panic!(
                        "no stderr line {what} (running: {running}, status: {:?})\nstderr:\n{}",
                        self.status,
                        self.stderr()
                    );
                }
                let _ = captured
                    .changed
                    .wait_timeout(state, Duration::from_millis(50));
            }
        }
    }

    /// Everything read from stderr so far, ANSI colours removed.
    fn stderr(&self) -> String {
        strip_ansi(&self.stderr.text())
    }

    fn stdout(&self) -> String {
        strip_ansi(&self.stdout.text())
    }
}

impl Drop for Smartproxy {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a command that is expected to terminate by itself (`check`, `--version`, a failing
/// `run`) and returns it exited.
fn run_to_exit(args: &[&str]) -> Smartproxy {
    let mut proxy = Smartproxy::spawn(args);
    proxy.wait_exit(WAIT);
    proxy
}

/// Removes ANSI escape sequences (CSI ... final byte) from a log line.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Helpers: sockets and config files
// ---------------------------------------------------------------------------------------------

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A std echo server on 127.0.0.1: each connection gets back what it sends, and a FIN once the
/// client has sent its FIN. Its threads live until the test binary exits.
fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo backend");
    let addr = listener.local_addr().expect("local_addr");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let Ok(mut reader) = stream.try_clone() else {
                    return;
                };
                let _ = io::copy(&mut reader, &mut stream);
                let _ = stream.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

fn connect(port: u16) -> TcpStream {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, WAIT)
        .unwrap_or_else(|e| panic!("cannot connect to the proxy on {addr}: {e}"));
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream.set_write_timeout(Some(WAIT)).expect("write timeout");
    stream
}

fn assert_echo(stream: &mut TcpStream, msg: &[u8]) {
    stream.write_all(msg).expect("write to the proxy");
    let mut buf = vec![0; msg.len()];
    stream
        .read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("reading the echo of {msg:?} through the proxy: {e}"));
    assert_eq!(buf, msg, "echo through the proxy");
}

/// The next read is a clean EOF (a FIN, not a reset, not more data).
fn assert_eof(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected EOF, read {n} bytes: {:?}", &buf[..n]),
        Err(e) => panic!("expected EOF (FIN), got error: {e} ({:?})", e.kind()),
    }
}

/// Polls until connecting to `port` is refused (the listener is closed); panics after `within`.
fn wait_refused(port: u16, within: Duration) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + within;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return,
            Ok(stream) => drop(stream),
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            panic!("new connections to {addr} were still not refused after {within:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn write_file(dir: &TempDir, name: &str, content: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, content).expect("write config file");
    path
}

fn path_arg(path: &std::path::Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// One forward route `name` from 127.0.0.1:`port` to `backend`.
fn forward_config(name: &str, port: u16, backend: SocketAddr, graceful: &str) -> String {
    format!(
        r#"{{"bindAddress":"127.0.0.1","gracefulShutdownTimeout":"{graceful}","routes":[{{"name":"{name}","match":{{"ports":{port}}},"action":{{"type":"forward","targets":[{{"host":"127.0.0.1","port":{}}}]}}}}]}}"#,
        backend.port()
    )
}

/// A proxy running a single forward route to a fresh echo backend, ready to accept.
struct Running {
    proxy: Smartproxy,
    port: u16,
    backend: SocketAddr,
    _dir: TempDir,
}

fn start_forward(global_args: &[&str], route: &str, graceful: &str) -> Running {
    start_forward_with_env(global_args, route, graceful, &[])
}

fn start_forward_with_env(
    global_args: &[&str],
    route: &str,
    graceful: &str,
    env: &[(&str, &str)],
) -> Running {
    let backend = echo_backend();
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_file(
        &dir,
        "proxy.json",
        &forward_config(route, port, backend, graceful),
    );
    let mut args = global_args.to_vec();
    args.extend(["run", "-c", path_arg(&path)]);
    let mut proxy = Smartproxy::spawn_with_env(&args, env);
    let listener = format!("127.0.0.1:{port}");
    proxy.wait_stderr("announcing the listener", |line| {
        line.contains("listening") && line.contains(&listener)
    });
    Running {
        proxy,
        port,
        backend,
        _dir: dir,
    }
}

/// Whether `line` (ANSI removed) contains `path: ...` as an error entry.
fn has_error_line(stderr: &str, path: &str) -> bool {
    let prefix = format!("{path}:");
    stderr
        .lines()
        .any(|line| line.trim_start().starts_with(&prefix))
}

// ---------------------------------------------------------------------------------------------
// --version, --help, usage errors
// ---------------------------------------------------------------------------------------------

#[test]
fn version_prints_the_version_and_exits_0() {
    let mut proxy = run_to_exit(&["--version"]);
    proxy.expect_exit(WAIT, 0);
    let out = proxy.stdout();
    assert!(
        out.contains(env!("CARGO_PKG_VERSION")),
        "--version output {out:?} lacks {}",
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn help_exits_0_and_lists_the_subcommands() {
    let mut proxy = run_to_exit(&["--help"]);
    proxy.expect_exit(WAIT, 0);
    let out = proxy.stdout();
    for word in ["run", "check", "--log-level", "--log-format"] {
        assert!(out.contains(word), "--help output lacks {word}:\n{out}");
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["--no-such-flag"][..],
        &["frobnicate"][..],
        &["check"][..],
        &["run", "--no-such-flag"][..],
        &["--log-level", "loud", "run"][..],
        &["--log-format", "xml", "run"][..],
    ] {
        let mut proxy = run_to_exit(args);
        let status = proxy.wait_exit(WAIT);
        assert_eq!(
            status.code(),
            Some(2),
            "`smartproxy {}` should be a usage error (exit 2), got {status:?}\nstderr:\n{}",
            args.join(" "),
            proxy.stderr()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// check -c
// ---------------------------------------------------------------------------------------------

const VALID_JSON: &str = r#"{
  "bindAddress": "127.0.0.1",
  "gracefulShutdownTimeout": 5000,
  "inactivityTimeout": "1.5s",
  "maxPendingDataSize": "64KiB",
  "routes": [
    {
      "name": "tcp",
      "priority": 10,
      "enabled": true,
      "match": {
        "ports": [8000, {"from": 9000, "to": 9010}],
        "clientIp": ["10.0.0.0/8", "192.168.1.*"]
      },
      "action": {
        "type": "forward",
        "targets": [{"host": ["127.0.0.1", "localhost"], "port": 8080}]
      }
    }
  ]
}
"#;

const VALID_YAML: &str = r#"
bindAddress: 127.0.0.1
gracefulShutdownTimeout: 500ms
halfCloseTimeout: 10m
keepAliveTreatment: immortal
routes:
  - name: db
    match:
      ports: {from: 5432, to: 5433}
    action:
      type: forward
      target: {host: 127.0.0.1, port: preserve}
  - match: {ports: 2222}
    action:
      type: forward
      targets:
        - host: 127.0.0.1
          port: 22
"#;

const VALID_TOML: &str = r#"
bindAddress = "127.0.0.1"
connectionTimeout = "2s"
maxConnections = 100

[[routes]]
name = "ssh"

[routes.match]
ports = [2222]

[routes.action]
type = "forward"

[[routes.action.targets]]
host = "127.0.0.1"
port = 22
"#;

#[test]
fn check_accepts_valid_json_yaml_and_toml() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, content) in [
        ("valid.json", VALID_JSON),
        ("valid.yaml", VALID_YAML),
        ("valid.yml", VALID_YAML),
        ("valid.toml", VALID_TOML),
        ("empty.json", r#"{"routes": []}"#),
    ] {
        let path = write_file(&dir, name, content);
        let mut proxy = run_to_exit(&["check", "-c", path_arg(&path)]);
        let status = proxy.wait_exit(WAIT);
        assert_eq!(
            status.code(),
            Some(0),
            "`check` on {name} should pass, got {status:?}\nstderr:\n{}",
            proxy.stderr()
        );
    }
}

#[test]
fn check_reports_every_error_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = r#"{
  "bindAddress": "127.0.0.1",
  "inactivityTimeout": "5 parsecs",
  "keepAliveTreatment": "forever",
  "routes": [
    {"name": "a", "priorty": 5, "match": {"ports": 10001},
     "action": {"type": "forward", "targets": [{"host": "127.0.0.1", "port": 1}]}},
    {"name": "b", "match": {"ports": 10002},
     "action": {"type": "forward", "targets": [{"host": "127.0.0.1", "port": 2}]}},
    {"name": "c", "match": {"ports": 10003},
     "action": {"type": "forward", "targets": [{"host": "127.0.0.1", "port": 70000}]}}
  ]
}
"#;
    let path = write_file(&dir, "broken.json", config);
    let mut proxy = run_to_exit(&["check", "-c", path_arg(&path)]);
    proxy.expect_exit(WAIT, 1);
    let stderr = proxy.stderr();
    assert!(
        stderr.contains("routes[2].action.targets[0].port: 70000 is not a port (1-65535)"),
        "the port error is missing or worded differently:\n{stderr}"
    );
    for path in [
        "inactivityTimeout",  // bad duration
        "keepAliveTreatment", // bad enum value
        "routes[0].priorty",  // unknown key (typo)
        "routes[2].action.targets[0].port",
    ] {
        assert!(
            has_error_line(&stderr, path),
            "no error line for `{path}` (expected `{path}: ...`):\n{stderr}"
        );
    }
    // Valid parts are not reported.
    for path in ["routes[1]", "bindAddress"] {
        assert!(
            !has_error_line(&stderr, path) && !stderr.contains(&format!("{path}.")),
            "`{path}` is valid but was reported:\n{stderr}"
        );
    }
}

#[test]
fn check_fails_on_missing_file_unknown_extension_and_bad_syntax() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("does-not-exist.yaml");
    let ini = write_file(&dir, "proxy.ini", "[routes]\nname = a\n");
    let ini_json = write_file(&dir, "json-inside.ini", r#"{"routes": []}"#);
    let bad_json = write_file(&dir, "bad.json", r#"{"routes": [}"#);
    let bad_yaml = write_file(&dir, "bad.yaml", "routes: [\n  - {name: a\n");
    let bad_toml = write_file(&dir, "bad.toml", "routes = [\n");
    for path in [&missing, &ini, &ini_json, &bad_json, &bad_yaml, &bad_toml] {
        let mut proxy = run_to_exit(&["check", "-c", path_arg(path)]);
        let status = proxy.wait_exit(WAIT);
        let stderr = proxy.stderr();
        assert_eq!(
            status.code(),
            Some(1),
            "`check` on {} should exit 1, got {status:?}\nstderr:\n{stderr}",
            path.display()
        );
        assert!(
            !stderr.trim().is_empty(),
            "`check` on {} exited 1 without saying why",
            path.display()
        );
    }
}

#[test]
fn run_with_an_invalid_config_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = format!(
        r#"{{"bindAddress":"127.0.0.1","routes":[{{"name":"a","match":{{"ports":{port}}},"action":{{"type":"forward","targets":[{{"host":"127.0.0.1","port":70000}}]}}}}]}}"#
    );
    let path = write_file(&dir, "bad.json", &config);
    let mut proxy = run_to_exit(&["run", "-c", path_arg(&path)]);
    proxy.expect_exit(WAIT, 1);
    let stderr = proxy.stderr();
    assert!(
        stderr.contains("routes[0].action.targets[0].port: 70000 is not a port (1-65535)"),
        "stderr:\n{stderr}"
    );
    let missing = dir.path().join("missing.toml");
    let mut proxy = run_to_exit(&["run", "-c", path_arg(&missing)]);
    proxy.expect_exit(WAIT, 1);
}

#[test]
fn ignored_smartproxy_option_is_a_warning_not_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_file(
        &dir,
        "warn.json",
        r#"{"enableDetailedLogging": true, "routes": []}"#,
    );
    let mut proxy = run_to_exit(&["check", "-c", path_arg(&path)]);
    proxy.expect_exit(WAIT, 0);
    let stderr = proxy.stderr();
    let warning = stderr
        .lines()
        .find(|line| line.contains("enableDetailedLogging"))
        .unwrap_or_else(|| panic!("no warning naming enableDetailedLogging:\n{stderr}"));
    assert!(
        warning.to_ascii_lowercase().contains("warn"),
        "the line naming enableDetailedLogging is not a warning: {warning}"
    );
}

// ---------------------------------------------------------------------------------------------
// run: runtime failures
// ---------------------------------------------------------------------------------------------

#[test]
fn port_already_in_use_exits_3_and_names_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("local_addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_file(
        &dir,
        "proxy.json",
        &forward_config("r1", port, SocketAddr::from((Ipv4Addr::LOCALHOST, 9)), "1s"),
    );
    let mut proxy = run_to_exit(&["run", "-c", path_arg(&path)]);
    proxy.expect_exit(WAIT, 3);
    let stderr = proxy.stderr();
    let address = format!("127.0.0.1:{port}");
    assert!(
        stderr.contains(&address),
        "the error does not name {address}:\n{stderr}"
    );
    assert!(
        stderr.contains("os error") || stderr.to_ascii_lowercase().contains("in use"),
        "the error does not give the OS error:\n{stderr}"
    );
    drop(taken);
}

// ---------------------------------------------------------------------------------------------
// run: forwarding, signals, graceful shutdown
// ---------------------------------------------------------------------------------------------

#[test]
fn sigterm_drains_live_connections_then_closes_them_and_exits_0() {
    let mut running = start_forward(&[], "r1", "2s");
    let mut client = connect(running.port);
    assert_echo(&mut client, b"before the signal");

    running.proxy.signal(libc::SIGTERM);
    let signalled = Instant::now();
    wait_refused(running.port, Duration::from_secs(1));
    // The open connection keeps working during the drain.
    assert_echo(&mut client, b"during the drain");
    assert!(
        running.proxy.is_running(),
        "smartproxy exited while a connection was still draining:\n{}",
        running.proxy.stderr()
    );

    running.proxy.expect_exit(Duration::from_secs(2 + 4), 0);
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "exited after {took:?}, before gracefulShutdownTimeout (2s) with a live connection"
    );
    assert!(took <= Duration::from_secs(5), "exit took {took:?}");
    // The live connection was closed by the proxy (FIN) at the deadline.
    assert_eof(&mut client);
}

#[test]
fn drain_ends_as_soon_as_the_last_connection_closes() {
    let mut running = start_forward(&[], "r1", "60s");
    let mut client = connect(running.port);
    assert_echo(&mut client, b"hello");

    running.proxy.signal(libc::SIGTERM);
    wait_refused(running.port, Duration::from_secs(1));
    assert_echo(&mut client, b"still here");
    let closed = Instant::now();
    client.shutdown(Shutdown::Write).expect("shutdown write");
    assert_eof(&mut client);
    drop(client);

    running.proxy.expect_exit(Duration::from_secs(5), 0);
    let took = closed.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "exit took {took:?} after the last connection closed"
    );
}

#[test]
fn second_sigterm_during_the_drain_exits_at_once() {
    let mut running = start_forward(&[], "r1", "60s");
    let mut client = connect(running.port);
    assert_echo(&mut client, b"hello");

    running.proxy.signal(libc::SIGTERM);
    // Make sure the first signal was handled before sending the second one.
    running
        .proxy
        .wait_stderr("about shutting down", |line| line.contains("shutting down"));
    wait_refused(running.port, Duration::from_secs(1));
    assert_echo(&mut client, b"draining");

    running.proxy.signal(libc::SIGTERM);
    let second = Instant::now();
    running.proxy.expect_exit(Duration::from_secs(5), 0);
    let took = second.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "exit took {took:?} after the second SIGTERM"
    );
    // Closed at once: a FIN or a reset are both acceptable here.
    let mut buf = [0u8; 16];
    match client.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("live connection not closed after the second SIGTERM: {other:?}"),
    }
}

#[test]
fn sigint_shuts_down_gracefully_like_sigterm() {
    let mut running = start_forward(&[], "r1", "1s");
    let mut client = connect(running.port);
    assert_echo(&mut client, b"hello");

    running.proxy.signal(libc::SIGINT);
    let signalled = Instant::now();
    wait_refused(running.port, Duration::from_secs(1));
    assert_echo(&mut client, b"during the drain");

    running.proxy.expect_exit(Duration::from_secs(1 + 4), 0);
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "exited after {took:?}, before gracefulShutdownTimeout (1s) with a live connection"
    );
    assert_eof(&mut client);
}

#[test]
fn second_sigint_during_the_drain_exits_at_once() {
    let mut running = start_forward(&[], "r1", "60s");
    let mut client = connect(running.port);
    assert_echo(&mut client, b"hello");

    running.proxy.signal(libc::SIGINT);
    running
        .proxy
        .wait_stderr("about shutting down", |line| line.contains("shutting down"));
    wait_refused(running.port, Duration::from_secs(1));

    running.proxy.signal(libc::SIGINT);
    let second = Instant::now();
    running.proxy.expect_exit(Duration::from_secs(5), 0);
    assert!(second.elapsed() < Duration::from_secs(3));
    drop(client);
}

#[test]
fn sighup_is_logged_and_the_proxy_keeps_serving() {
    let mut running = start_forward(&[], "r1", "1s");
    let mut client = connect(running.port);
    assert_echo(&mut client, b"before SIGHUP");

    if std::path::Path::new("/proc/self/net/tcp").exists() {
        let listening = listening_addresses(running.proxy.pid());
        assert_eq!(
            listening,
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            "with bindAddress 127.0.0.1 and one route, the only listener should be on 127.0.0.1"
        );
    }

    running.proxy.signal(libc::SIGHUP);
    running
        .proxy
        .wait_stderr("mentioning SIGHUP", |line| line.contains("SIGHUP"));
    assert!(
        running.proxy.is_running(),
        "SIGHUP killed smartproxy:\n{}",
        running.proxy.stderr()
    );
    // Existing and new connections still work.
    assert_echo(&mut client, b"after SIGHUP");
    let mut fresh = connect(running.port);
    assert_echo(&mut fresh, b"new connection after SIGHUP");
    drop(fresh);
    client.shutdown(Shutdown::Write).expect("shutdown write");
    assert_eof(&mut client);
    drop(client);

    running.proxy.signal(libc::SIGTERM);
    running.proxy.expect_exit(Duration::from_secs(5), 0);
}

// ---------------------------------------------------------------------------------------------
// Connection logs
// ---------------------------------------------------------------------------------------------

/// One connection that sends 5 bytes, gets them back, then half-closes first (`client_fin`).
/// Returns the client's own address.
fn one_client_fin_connection(port: u16) -> SocketAddr {
    let mut client = connect(port);
    let local = client.local_addr().expect("local_addr");
    assert_echo(&mut client, b"hello");
    client.shutdown(Shutdown::Write).expect("shutdown write");
    assert_eof(&mut client);
    drop(client);
    local
}

#[test]
fn debug_log_has_a_connection_closed_line() {
    let mut running = start_forward(&["--log-level", "debug"], "r-log", "1s");
    let client = one_client_fin_connection(running.port);
    let line = running
        .proxy
        .wait_stderr("for the closed connection", |line| {
            line.contains("connection closed")
        });
    for needle in [
        "r-log".to_string(),
        "bytes_in=5".to_string(),
        "bytes_out=5".to_string(),
        "duration_ms=".to_string(),
        "reason=client_fin".to_string(),
        client.to_string(),
        running.backend.to_string(),
    ] {
        assert!(
            line.contains(&needle),
            "connection-closed line lacks {needle:?}: {line}"
        );
    }
    running.proxy.signal(libc::SIGTERM);
    running.proxy.expect_exit(Duration::from_secs(5), 0);
}

#[test]
fn rust_log_env_enables_debug_logs_too() {
    let mut running = start_forward_with_env(&[], "r-env", "1s", &[("RUST_LOG", "debug")]);
    one_client_fin_connection(running.port);
    let line = running
        .proxy
        .wait_stderr("for the closed connection", |line| {
            line.contains("connection closed")
        });
    assert!(line.contains("r-env"), "{line}");
    running.proxy.signal(libc::SIGTERM);
    running.proxy.expect_exit(Duration::from_secs(5), 0);
}

#[test]
fn json_log_lines_are_json_and_carry_the_connection_fields() {
    let mut running = start_forward(
        &["--log-level", "debug", "--log-format", "json"],
        "r-json",
        "1s",
    );
    let client = one_client_fin_connection(running.port);
    let line = running
        .proxy
        .wait_stderr("for the closed connection", |line| {
            line.contains("connection closed")
        });
    assert!(
        line.contains(r#""reason":"client_fin""#),
        "raw JSON line lacks \"reason\":\"client_fin\": {line}"
    );
    let value: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("connection-closed line is not JSON ({e}): {line}"));
    // tracing's JSON format nests the event's fields under "fields"; accept a flat layout too.
    let fields = value.get("fields").unwrap_or(&value);
    let field = |name: &str| {
        fields
            .get(name)
            .or_else(|| value.get(name))
            .unwrap_or_else(|| panic!("no `{name}` in {line}"))
            .clone()
    };
    assert_eq!(field("route"), "r-json", "{line}");
    assert_eq!(field("bytes_in"), 5, "{line}");
    assert_eq!(field("bytes_out"), 5, "{line}");
    assert_eq!(field("reason"), "client_fin", "{line}");
    assert!(field("duration_ms").is_u64(), "{line}");
    assert_eq!(field("client"), client.to_string(), "{line}");
    assert_eq!(field("backend"), running.backend.to_string(), "{line}");

    running.proxy.signal(libc::SIGTERM);
    running.proxy.expect_exit(Duration::from_secs(5), 0);
    // Every line on stderr is a JSON object.
    for line in running.proxy.stderr.lines() {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(&line);
        assert!(
            matches!(parsed, Ok(serde_json::Value::Object(_))),
            "stderr line is not a JSON object: {line:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The embedded default config
// ---------------------------------------------------------------------------------------------

/// Addresses of the TCP sockets `pid` has in LISTEN state (Linux `/proc`).
fn listening_addresses(pid: libc::pid_t) -> Vec<IpAddr> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: HashSet<String> = fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let mut found = Vec::new();
    for (table, v6) in [("tcp", false), ("tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for row in text.lines().skip(1) {
            let cols: Vec<&str> = row.split_whitespace().collect();
            if cols.len() < 10 || cols[3] != "0A" || !inodes.contains(cols[9]) {
                continue;
            }
            let Some((hex, _port)) = cols[1].split_once(':') else {
                continue;
            };
            let words: Vec<u32> = (0..hex.len() / 8)
                .filter_map(|i| u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok())
                .collect();
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
            let ip = if v6 {
                let array: [u8; 16] = bytes.try_into().expect("16 bytes");
                IpAddr::V6(Ipv6Addr::from(array))
            } else {
                let array: [u8; 4] = bytes.try_into().expect("4 bytes");
                IpAddr::V4(Ipv4Addr::from(array))
            };
            found.push(ip);
        }
    }
    found
}

/// The embedded default config binds 127.0.0.1:8080; its tests take turns.
static DEFAULT_PORT: Mutex<()> = Mutex::new(());

fn assert_default_config_runs(args: &[&str]) {
    let _turn = lock(&DEFAULT_PORT);
    let mut proxy = Smartproxy::spawn(args);
    // Started: it either announces a listener or says it has no routes.
    proxy.wait_stderr("showing that it started", |line| {
        line.contains("listening") || line.contains("no routes")
    });
    // And stays up.
    thread::sleep(Duration::from_millis(200));
    assert!(
        proxy.is_running(),
        "`smartproxy {}` exited on its own: {:?}\nstderr:\n{}",
        args.join(" "),
        proxy.status,
        proxy.stderr()
    );
    for ip in listening_addresses(proxy.pid()) {
        let loopback = match ip {
            IpAddr::V4(v4) => v4.is_loopback(),
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        };
        assert!(
            loopback,
            "the default config listens on a non-loopback address {ip}"
        );
    }
    // The welcome page, from a plain HTTP client.
    let mut client = TcpStream::connect("127.0.0.1:8080").expect("connect to the welcome page");
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost:8080\r\nConnection: close\r\n\r\n")
        .expect("request");
    client.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut page = String::new();
    client.read_to_string(&mut page).expect("welcome page");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("text/html"), "{page}");
    assert!(page.contains("smartproxy"), "{page}");
    assert!(
        page.contains("routes:"),
        "the page shows how to write a route: {page}"
    );
    proxy.signal(libc::SIGTERM);
    proxy.expect_exit(Duration::from_secs(5), 0);
}

#[test]
fn no_arguments_runs_the_default_config_until_sigterm() {
    assert_default_config_runs(&[]);
}

#[test]
fn run_without_a_file_runs_the_default_config_until_sigterm() {
    assert_default_config_runs(&["run"]);
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

fn self_signed(name: &str) -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("cert");
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

fn terminate_config(port: u16, backend: SocketAddr, cert: &Path, key: &Path) -> String {
    serde_json::json!({
        "bindAddress": "127.0.0.1",
        "routes": [{"name": "site", "match": {"ports": port},
                    "action": {"type": "forward",
                               "target": {"host": "127.0.0.1", "port": backend.port()},
                               "tls": {"mode": "terminate",
                                       "certificate": {"certFile": cert, "keyFile": key}}}}]
    })
    .to_string()
}

#[test]
fn check_reports_an_unreadable_certificate_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.crt");
    let key = write_file(&dir, "site.key", "not a key");
    let config = terminate_config(free_port(), echo_backend(), &missing, &key);
    let path = write_file(&dir, "proxy.json", &config);
    let mut proxy = run_to_exit(&["check", "-c", path_arg(&path)]);
    proxy.expect_exit(WAIT, 1);
    let stderr = proxy.stderr();
    assert!(
        stderr.contains(&format!(
            "routes[0].action.tls.certificate: {}: No such file or directory",
            missing.display()
        )),
        "{stderr}"
    );
}

/// Whether a TLS handshake with `name` on `port` succeeds for a client that trusts only
/// `trusted` (a self-signed certificate): i.e. whether the proxy presents that certificate.
fn presents(port: u16, name: &str, trusted: &str) -> bool {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(trusted.as_bytes()).expect("PEM"))
        .expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from(name.to_string()).expect("name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server_name).expect("client");
    let mut sock = connect(port);
    while conn.is_handshaking() {
        if conn.complete_io(&mut sock).is_err() {
            return false;
        }
    }
    true
}

#[test]
fn sighup_rereads_certificate_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first_cert, first_key) = self_signed("site.test");
    let (second_cert, second_key) = self_signed("site.test");
    let cert_path = write_file(&dir, "site.crt", &first_cert);
    let key_path = write_file(&dir, "site.key", &first_key);
    let port = free_port();
    let config = terminate_config(port, echo_backend(), &cert_path, &key_path);
    let path = write_file(&dir, "proxy.json", &config);
    let mut proxy = Smartproxy::spawn(&["run", "-c", path_arg(&path)]);
    proxy.wait_stderr("announcing the listener", |line| line.contains("listening"));
    assert!(presents(port, "site.test", &first_cert));
    assert!(!presents(port, "site.test", &second_cert));

    std::fs::write(&cert_path, &second_cert).expect("new certificate");
    std::fs::write(&key_path, &second_key).expect("new key");
    proxy.signal(libc::SIGHUP);
    proxy.wait_stderr("SIGHUP re-read the files", |line| {
        line.contains("certificate files re-read") && line.contains("replaced=1")
    });
    assert!(
        presents(port, "site.test", &second_cert),
        "{}",
        proxy.stderr()
    );

    // A broken file is refused and the certificate in service stays.
    std::fs::write(&cert_path, "garbage").expect("break the certificate");
    proxy.signal(libc::SIGHUP);
    proxy.wait_stderr("nothing replaced", |line| line.contains("replaced=0"));
    assert!(
        proxy
            .stderr()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("site.crt")),
        "the bad file is named in a warning:\n{}",
        proxy.stderr()
    );
    assert!(presents(port, "site.test", &second_cert));
    assert!(proxy.is_running(), "{}", proxy.stderr());
    proxy.signal(libc::SIGTERM);
    proxy.expect_exit(Duration::from_secs(5), 0);
}
