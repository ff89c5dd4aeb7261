//! Local ports for brokers and listeners started by tests and benchmarks: a free one, and waiting until
//! something listens on one. Shared by `tests/support` and `benches/bridge` (included by path).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Waits up to about 10 s for a listener on `port` of 127.0.0.1; panics naming `what` if none comes.
pub fn wait_until_listening(port: u16, what: &str) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..400 {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} did not listen on {addr} within 10 s");
}
