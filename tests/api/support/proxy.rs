//! A TCP proxy in front of RabbitMQ that a test can cut, black-hole and restore, to prove
//! reconnection and failover without touching the shared broker.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct TcpProxy {
    pub address: SocketAddr,
    state: Arc<State>,
    accept: AbortHandle,
}

#[derive(Default)]
struct State {
    cut: AtomicBool,
    /// Bytes are read and thrown away, both ways: the sockets stay open, nothing arrives.
    black_hole: AtomicBool,
    links: Mutex<Vec<AbortHandle>>,
}

/// Copies `from` to `to` until either closes, throwing bytes away while `state` black-holes.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<State>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if state.black_hole.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let accept_state = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if accept_state.cut.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close at once
                }
                let link_state = accept_state.clone();
                let link = tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(upstream).await {
                        let (in_read, in_write) = inbound.into_split();
                        let (out_read, out_write) = outbound.into_split();
                        tokio::select! {
                            () = pump(in_read, out_write, link_state.clone()) => {}
                            () = pump(out_read, in_write, link_state) => {}
                        }
                    }
                });
                accept_state.links.lock().unwrap().push(link.abort_handle());
            }
        })
        .abort_handle();
        Self {
            address,
            state,
            accept,
        }
    }

    /// Drops every open connection and refuses new ones, like a broker that went away.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        for link in self.state.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Keeps every connection open but lets nothing through either way, like a network
    /// partition: only heartbeats and time-outs can tell.
    pub fn black_hole(&self) {
        self.state.black_hole.store(true, Ordering::SeqCst);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
        self.state.black_hole.store(false, Ordering::SeqCst);
    }

    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.address)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
