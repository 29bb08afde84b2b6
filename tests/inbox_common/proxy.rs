//! A TCP proxy between an inbox and its server (Postgres, Redis) that cuts a connection right
//! after a request reached the server, before its answer comes back: the client sees its
//! connection closed under a request the server carried out (a commit whose answer was lost).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long the cut connection still forwards the client's bytes (the rest of a request split
/// over several writes) before it is closed; the server's answers are dropped meanwhile.
const GRACE: Duration = Duration::from_millis(200);

/// The proxy: listens on a port of its own, relays every connection to the server's port.
pub(crate) struct Proxy {
    port: u16,
    marker: Arc<Mutex<Option<Vec<u8>>>>,
    cuts: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// A proxy to the server listening on 127.0.0.1:`upstream`.
    pub(crate) async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let marker: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
        let cuts: Arc<AtomicUsize> = Arc::default();
        let (armed, counted) = (Arc::clone(&marker), Arc::clone(&cuts));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                tokio::spawn(relay(
                    client,
                    server,
                    Arc::clone(&armed),
                    Arc::clone(&counted),
                ));
            }
        });
        Self {
            port,
            marker,
            cuts,
            task,
        }
    }

    /// The port clients connect to.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Arms the proxy: the next write of a client that holds `marker` is forwarded to the
    /// server, the server's answer is dropped, and that connection is closed (both ways).
    pub(crate) fn arm(&self, marker: &[u8]) {
        *self.marker.lock().unwrap() = Some(marker.to_vec());
    }

    /// How many connections were cut.
    pub(crate) fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays one connection until either side closes it, or until it is cut.
async fn relay(
    client: TcpStream,
    server: TcpStream,
    marker: Arc<Mutex<Option<Vec<u8>>>>,
    cuts: Arc<AtomicUsize>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let muted = Arc::new(AtomicBool::new(false));
    let (cut, mut cut_seen) = tokio::sync::watch::channel(false);
    let quiet = Arc::clone(&muted);
    let answers = tokio::spawn(async move {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            tokio::select! {
                _ = cut_seen.changed() => return,
                read = server_read.read(&mut buffer) => {
                    let n = match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if quiet.load(Ordering::SeqCst) {
                        continue;
                    }
                    if client_write.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut buffer = vec![0; 64 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match client_read.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let hit = {
            let mut armed = marker.lock().unwrap();
            let seen = [tail.as_slice(), &buffer[..n]].concat();
            // A marker that ends in this write (it may start in the previous one).
            let hit = armed.as_ref().is_some_and(|m| {
                seen.windows(m.len())
                    .enumerate()
                    .any(|(at, window)| window == m.as_slice() && at + m.len() > tail.len())
            });
            if hit {
                *armed = None;
            }
            tail = seen[seen.len().saturating_sub(256)..].to_vec();
            hit
        };
        if hit {
            muted.store(true, Ordering::SeqCst);
        }
        if server_write.write_all(&buffer[..n]).await.is_err() {
            break;
        }
        if hit {
            let _ = tokio::time::timeout(GRACE, async {
                while let Ok(n) = client_read.read(&mut buffer).await {
                    if n == 0 || server_write.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            })
            .await;
            cuts.fetch_add(1, Ordering::SeqCst);
            let _ = cut.send(true);
            break;
        }
    }
    // Closing our halves (a FIN to each side, never a reset that could discard what the server
    // has not read yet).
    drop(server_write);
    drop(client_read);
    let _ = answers.await;
}
