//! The bound on per-client state under a flood of distinct source addresses: a proxy with
//! global per-IP limits sees more distinct clients than its tables hold, serves every one of
//! them, keeps its tables at their cap and its memory flat, and gives everything back after.
//!
//! Each client binds its own loopback source address (127.1.0.0 upwards; 127.0.0.0/8 is all
//! loopback on Linux), so the proxy sees each as a different client.

mod common;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use common::*;
use serde_json::json;
use smartproxy::{CloseReason, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};

/// What the backend answers on every connection before it closes.
const ANSWER: &[u8] = b"served\n";

/// The documented cap of each per-client table.
const MAX_ENTRIES: usize = 100_000;

/// Clients in flight at once: enough to keep both cores busy, far below the open file limit
/// (each one costs four descriptors in this process: client, proxy's two sides, backend).
const CONCURRENCY: usize = 256;

/// The flood tests each want the process to themselves: their timings, RSS figures and open
/// file counts mean nothing when the other one runs beside them. The lock is taken before
/// the test's runtime exists, so not even the other test's idle runtime (its own descriptors)
/// can appear in the middle of a test's measurements.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `test` alone, on a runtime of its own like `#[tokio::test]`'s with two workers.
fn alone<F: Future<Output = ()>>(test: F) {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(test);
}

/// The resident set size of this process, in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// The RSS after asking the allocator to return the free memory it keeps (glibc only).
fn trimmed_rss() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
    rss_bytes()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The `n`-th source address of a range that starts at `first`.
fn source(first: Ipv4Addr, n: usize) -> Ipv4Addr {
    let n = u32::try_from(n).expect("small index");
    let addr = Ipv4Addr::from(u32::from(first) + n);
    assert!(
        addr.is_loopback() && addr != Ipv4Addr::LOCALHOST,
        "{addr} stays inside 127.0.0.0/8"
    );
    addr
}

/// A backend that answers ANSWER and closes each connection.
async fn answering_backend() -> u16 {
    backend(|mut stream| async move {
        let _ = stream.write_all(ANSWER).await;
        let _ = stream.shutdown().await;
    })
    .await
}

/// One client from `from`: connects, reads the answer to its end. Returns whether it got the
/// whole answer and then a clean end.
async fn one_client(from: Ipv4Addr, port: u16) -> Result<(), String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(SocketAddr::from((from, 0)))
        .map_err(|e| format!("bind {from}: {e}"))?;
    let mut stream = timeout(PATIENCE, socket.connect(addr(port)))
        .await
        .map_err(|_| format!("{from}: connect timed out"))?
        .map_err(|e| format!("{from}: connect: {e}"))?;
    let mut answer = Vec::new();
    timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .map_err(|_| format!("{from}: no end within {PATIENCE:?}"))?
        .map_err(|e| format!("{from}: read: {e}"))?;
    if answer != ANSWER {
        return Err(format!(
            "{from}: answered {:?}",
            String::from_utf8_lossy(&answer)
        ));
    }
    Ok(())
}

/// What a flood saw.
struct Flood {
    served: usize,
    failures: Vec<String>,
    took: Duration,
    max_entries: usize,
    peak_rss: u64,
}

impl Flood {
    /// How the flood of `clients` went, for the test's output.
    fn summary(&self, clients: usize, rss_before: u64) -> String {
        format!(
            "{clients} clients in {:.1} s ({:.0}/s), {} served; admission entries: max {} \
             sampled; RSS before {:.1} MiB, peak {:.1} MiB",
            self.took.as_secs_f64(),
            clients as f64 / self.took.as_secs_f64(),
            self.served,
            self.max_entries,
            mib(rss_before),
            mib(self.peak_rss),
        )
    }

    /// Every client got the whole answer and a clean end.
    fn assert_no_failures(&self) {
        assert!(
            self.failures.is_empty(),
            "{} clients failed, e.g. {:?}",
            self.failures.len(),
            &self.failures[..self.failures.len().min(5)]
        );
    }
}

/// Runs `clients` clients from distinct sources starting at `first`, CONCURRENCY at a time,
/// while sampling the proxy's admission entries and this process's RSS every 20 ms.
async fn flood(proxy: &Arc<Proxy>, port: u16, first: Ipv4Addr, clients: usize) -> Flood {
    let served = Arc::new(AtomicUsize::new(0));
    let max_entries = Arc::new(AtomicUsize::new(0));
    let peak_rss = Arc::new(AtomicU64::new(rss_bytes()));
    let sampling = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (proxy, max_entries, peak_rss, stop) = (
            Arc::clone(proxy),
            Arc::clone(&max_entries),
            Arc::clone(&peak_rss),
            sampling.clone(),
        );
        tokio::spawn(async move {
            // Bounded by the flood's own bound (see the deadline below) and by `stop`.
            let until = Instant::now() + Duration::from_secs(170);
            while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                let entries = proxy.admission_entries();
                assert!(
                    entries <= MAX_ENTRIES,
                    "{entries} admission entries, more than {MAX_ENTRIES}"
                );
                max_entries.fetch_max(entries, Ordering::SeqCst);
                peak_rss.fetch_max(rss_bytes(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    // No client may take the whole run hostage: the flood as a whole is bounded too.
    let deadline = started + Duration::from_secs(150);
    let mut failures = Vec::new();
    let mut running = JoinSet::new();
    let mut record = |outcome: Result<Result<(), String>, tokio::task::JoinError>| match outcome {
        Ok(Ok(())) => {
            served.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Err(e)) => failures.push(e),
        Err(e) => failures.push(format!("client task: {e}")),
    };
    for n in 0..clients {
        assert!(
            Instant::now() < deadline,
            "the flood did not finish in time: {n} of {clients} clients started"
        );
        if running.len() >= CONCURRENCY {
            let done = running.join_next().await.expect("a running client");
            record(done);
        }
        running.spawn(one_client(source(first, n), port));
    }
    while let Some(done) = running.join_next().await {
        record(done);
    }
    let took = started.elapsed();
    sampling.store(true, Ordering::SeqCst);
    sampler
        .await
        .expect("sampler: admission entries stayed under the cap");
    Flood {
        served: served.load(Ordering::SeqCst),
        failures,
        took,
        max_entries: max_entries.load(Ordering::SeqCst),
        peak_rss: peak_rss.load(Ordering::SeqCst),
    }
}

async fn start(globals: serde_json::Value) -> (Arc<Proxy>, u16) {
    let backend_port = answering_backend().await;
    let port = free_port();
    let proxy = start_proxy(one_route(port, backend_port, globals)).await;
    (Arc::new(proxy), port)
}

/// 110,000 distinct clients against tables of 100,000 entries, with a connection rate limit
/// (so each entry outlives its connection for the rate window): the table fills to its cap
/// and evicts, every client is served, memory stays bounded, and after the window every entry
/// is purged and every socket closed.
#[test]
fn a_flood_of_distinct_sources_is_served_bounded_and_forgotten() {
    alone(flood_of_distinct_sources());
}

async fn flood_of_distinct_sources() {
    const CLIENTS: usize = 110_000;
    let (proxy, port) = start(json!({
        "maxConnectionsPerIP": 5,
        "connectionRateLimitPerMinute": 1000,
    }))
    .await;
    let fds_before = open_fds();
    let rss_before = rss_bytes();

    let seen = flood(&proxy, port, Ipv4Addr::new(127, 1, 0, 0), CLIENTS).await;
    let flood_ended = Instant::now();
    let entries_at_end = proxy.admission_entries();
    let rss_at_end = rss_bytes();
    println!(
        "flood: {}; at the end: {entries_at_end} admission entries, RSS {:.1} MiB",
        seen.summary(CLIENTS, rss_before),
        mib(rss_at_end),
    );
    seen.assert_no_failures();
    assert_eq!(seen.served, CLIENTS, "every client was served");
    assert!(entries_at_end <= MAX_ENTRIES, "{entries_at_end} entries");
    // The table did fill up: more distinct clients than it holds went through it.
    assert!(
        seen.max_entries.max(entries_at_end) > MAX_ENTRIES / 2,
        "the table never filled ({} entries at most): the flood did not reach it",
        seen.max_entries
    );
    // Neither limit was ever hit: one connection per client.
    assert_eq!(proxy.closed_with(CloseReason::Limit), 0);
    assert_eq!(proxy.total_connections(), CLIENTS as u64);
    // Measured here (debug build, 2 shared cores): RSS grows by about 33 MiB at the peak:
    // the relay buffers of the 256 connections in flight (64 KiB each way), the tasks and
    // sockets of both ends of the flood, the allocator's arenas, and the table itself (100,000
    // entries of 40 bytes in a map of 131,072 buckets: about 5.5 MiB). 64 MiB leaves room for
    // a busier machine and still fails if each of the 110,000 clients left 600 bytes behind.
    let growth = seen.peak_rss.max(rss_at_end).saturating_sub(rss_before);
    assert!(
        growth < 64 * 1024 * 1024,
        "RSS grew by {:.1} MiB during the flood",
        mib(growth)
    );

    // An entry expires once its client has no live connection and no connection inside the
    // 60 s window, and the purge runs every 10 s: every client connected before the flood
    // ended, so all are gone 70 s after it (80 s leaves a busy machine 10 s of slack).
    let purge_deadline = flood_ended + Duration::from_secs(80);
    while proxy.admission_entries() > 0 {
        assert!(
            Instant::now() < purge_deadline,
            "{} admission entries still held 80 s after the flood",
            proxy.admission_entries()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let purged_after = flood_ended.elapsed();
    wait_no_live(&proxy).await;
    wait_fds_back(fds_before, || 0).await;
    let rss_after = rss_bytes();
    // What the allocator keeps of the freed memory is not a leak: handing it back shows how
    // much is really still in use.
    let rss_trimmed = trimmed_rss();
    println!(
        "flood: entries 0 after {:.1} s; RSS after the purge {:.1} MiB, {:.1} MiB once the \
         allocator hands back what it keeps",
        purged_after.as_secs_f64(),
        mib(rss_after),
        mib(rss_trimmed),
    );
    // Measured here: the allocator keeps about 29 MiB of freed memory (glibc does not hand
    // back what is not at the top of its heaps on its own); handed back, RSS is 7-11 MiB above
    // its start (arena fragmentation, the runtime's grown slabs). 24 MiB fails if each client
    // left about 230 bytes behind.
    let kept = rss_trimmed.saturating_sub(rss_before);
    assert!(
        kept < 24 * 1024 * 1024,
        "RSS stayed {:.1} MiB above its start once the allocator handed back its free memory",
        mib(kept)
    );
}

/// With only a per-IP connection cap (no rate window), an entry lives exactly as long as its
/// client's last connection: 20,000 distinct clients later the table is empty at once.
#[test]
fn per_ip_entries_go_with_their_last_connection() {
    alone(per_ip_entries_only_while_connected());
}

async fn per_ip_entries_only_while_connected() {
    const CLIENTS: usize = 20_000;
    let (proxy, port) = start(json!({"maxConnectionsPerIP": 5})).await;
    let fds_before = open_fds();
    let rss_before = rss_bytes();

    let seen = flood(&proxy, port, Ipv4Addr::new(127, 3, 0, 0), CLIENTS).await;
    println!("per-IP only: {}", seen.summary(CLIENTS, rss_before));
    seen.assert_no_failures();
    assert_eq!(seen.served, CLIENTS);
    assert_eq!(proxy.closed_with(CloseReason::Limit), 0);
    // An entry exists only while its client has a live connection: at most one per live
    // connection, never anywhere near the number of clients.
    assert!(
        seen.max_entries <= 4 * CONCURRENCY,
        "{} entries at once for {CONCURRENCY} clients in flight",
        seen.max_entries
    );
    wait_no_live(&proxy).await;
    // No purge involved (it runs every 10 s): the last connection took its entry with it.
    assert_eq!(proxy.admission_entries(), 0);
    wait_fds_back(fds_before, || 0).await;
}
