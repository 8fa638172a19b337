//! PROXY protocol interop with a real HAProxy (the `haproxy` binary; scripts/test installs
//! it, and these tests say they are skipped and pass when it is missing): HAProxy in front of
//! smartproxy with `send-proxy-v2` and `send-proxy`, and smartproxy's `sendProxyProtocol`
//! v2 and v1 into an HAProxy `accept-proxy` listener. HAProxy runs in the foreground as a
//! child process on loopback ports and is killed when the test ends, also on a panic.

mod common;

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::http::*;
use common::*;
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// `haproxy` on the PATH, else where Debian installs it (/usr/sbin is not on every user's PATH).
fn haproxy_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("haproxy"))
        .find(|candidate| candidate.is_file())
}

/// A running `haproxy -db`; killed (and its log shown, when the test failed) on drop.
struct HaProxy {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl HaProxy {
    /// Starts HAProxy with `config` and waits until each of `ports` accepts connections.
    /// `None`, after saying so, when HAProxy is not installed.
    async fn start(config: &str, ports: &[u16]) -> Option<HaProxy> {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("haproxy.cfg");
        std::fs::write(&config_path, config).expect("write the HAProxy config");
        let log = dir.path().join("haproxy.log");
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let Some(binary) = haproxy_binary() else {
            eprintln!("skipped: haproxy is not installed (scripts/test installs it)");
            return None;
        };
        let spawned = Command::new(binary)
            .arg("-db")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn();
        let child = spawned.expect("start haproxy");
        let mut haproxy = HaProxy {
            child,
            log,
            _dir: dir,
        };
        for &port in ports {
            haproxy.wait_accepting(port).await;
        }
        Some(haproxy)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `port` (at most 500 times, 20 ms apart) until it accepts; panics with HAProxy's
    /// log if HAProxy exits or the port never opens.
    async fn wait_accepting(&mut self, port: u16) {
        for _ in 0..500 {
            if let Some(status) = self.child.try_wait().expect("haproxy status") {
                panic!("haproxy exited ({status}):\n{}", self.log());
            }
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("haproxy never accepted on port {port}:\n{}", self.log());
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("haproxy log:\n{}", self.log());
        }
    }
}

/// The part of every HAProxy config the tests share.
fn haproxy_config(sections: &str) -> String {
    format!(
        "global\n    maxconn 200\n\n\
         defaults\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\n\
         {sections}"
    )
}

fn http_route(name: &str, port: u16, backend: u16, client_ip: Option<&str>) -> Value {
    let mut route = json!({
        "name": name,
        "match": {"ports": port, "domains": "app.test"},
        "action": {"type": "forward", "targets": [{"host": "127.0.0.1", "port": backend}]}
    });
    if let Some(ip) = client_ip {
        route["priority"] = json!(10);
        route["match"]["clientIp"] = json!(ip);
    }
    route
}

/// One GET to app.test on 127.0.0.1:`port` from `source`; the echo backend's JSON.
async fn get_from(source: Ipv4Addr, port: u16) -> Value {
    let mut client = h1_client_from(source, port).await;
    let got = send(&mut client, "app.test", "/", &[]).await;
    assert_eq!(got.status, 200, "{}", got.text());
    got.json()
}

#[tokio::test]
async fn haproxy_send_proxy_in_front_of_smartproxy_names_the_client() {
    let (five, _) = echo_http_backend("five").await;
    let (others, _) = echo_http_backend("others").await;
    let port = free_port();
    let proxy = start_proxy(json!({
        "bindAddress": "127.0.0.1",
        "proxyProtocol": {"accept": ["127.0.0.1"]},
        "routes": [
            http_route("from-five", port, five, Some("127.0.0.5")),
            http_route("others", port, others, None),
        ]
    }))
    .await;
    let (v2_front, v1_front) = (free_port(), free_port());
    let config = haproxy_config(&format!(
        "frontend to_smartproxy_v2\n    mode tcp\n    bind 127.0.0.1:{v2_front}\n    default_backend smartproxy_v2\n\n\
         frontend to_smartproxy_v1\n    mode tcp\n    bind 127.0.0.1:{v1_front}\n    default_backend smartproxy_v1\n\n\
         backend smartproxy_v2\n    mode tcp\n    server s 127.0.0.1:{port} send-proxy-v2\n\n\
         backend smartproxy_v1\n    mode tcp\n    server s 127.0.0.1:{port} send-proxy\n"
    ));
    let Some(haproxy) = HaProxy::start(&config, &[v2_front, v1_front]).await else {
        return;
    };
    for (version, front) in [("send-proxy-v2", v2_front), ("send-proxy", v1_front)] {
        let seen = get_from(Ipv4Addr::new(127, 0, 0, 5), front).await;
        assert_eq!(seen["backend"], "five", "{version}: {seen}");
        assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.5", "{version}");
        // Another client through the same HAProxy takes the other route.
        let seen = get_from(Ipv4Addr::new(127, 0, 0, 4), front).await;
        assert_eq!(seen["backend"], "others", "{version}: {seen}");
        assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.4", "{version}");
    }
    wait_no_live(&proxy).await;
    drop(haproxy);
}

#[tokio::test]
async fn smartproxy_send_proxy_protocol_into_haproxy_accept_proxy_names_the_client() {
    let (echo, requests) = echo_http_backend("echo").await;
    let front = free_port();
    let config = haproxy_config(&format!(
        "frontend from_smartproxy\n    mode http\n    bind 127.0.0.1:{front} accept-proxy\n    option forwardfor\n    default_backend echo\n\n\
         backend echo\n    mode http\n    server e 127.0.0.1:{echo}\n"
    ));
    let Some(haproxy) = HaProxy::start(&config, &[front]).await else {
        return;
    };
    let (v2_port, v1_port) = (free_port(), free_port());
    let route = |name: &str, port: u16, version: &str| {
        json!({"name": name, "match": {"ports": port},
               "action": {"type": "forward", "targets": [
                   {"host": "127.0.0.1", "port": front, "sendProxyProtocol": version}]}})
    };
    let proxy = start_proxy(json!({
        "bindAddress": "127.0.0.1",
        "routes": [route("v2", v2_port, "v2"), route("v1", v1_port, "v1")]
    }))
    .await;
    for (version, port) in [("v2", v2_port), ("v1", v1_port)] {
        let seen = get_from(Ipv4Addr::new(127, 0, 0, 6), port).await;
        assert_eq!(seen["backend"], "echo", "{version}: {seen}");
        assert_eq!(
            seen["headers"]["x-forwarded-for"], "127.0.0.6",
            "{version}: {seen}"
        );
    }
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 2);
    wait_no_live(&proxy).await;
    drop(haproxy);
}
