//! A TCP proxy in front of Redis whose connections a test can cut, to play a network
//! hiccup for one client without disturbing anyone else on the same server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Proxy {
    port: u16,
    live: Arc<Mutex<Vec<AbortHandle>>>,
    accepted: Arc<AtomicUsize>,
    listener: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(redis_url: &str) -> Proxy {
        let target = redis_url.trim_start_matches("redis://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let live = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let listener = tokio::spawn({
            let (live, accepted) = (live.clone(), accepted.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let target = target.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    live.lock().expect("lock").push(task.abort_handle());
                }
            }
        });
        Proxy { port, live, accepted, listener }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Drops every open connection; returns how many there were.
    pub fn cut(&self) -> usize {
        let live: Vec<AbortHandle> = std::mem::take(&mut *self.live.lock().expect("lock"));
        let open = live.iter().filter(|t| !t.is_finished()).count();
        for task in live {
            task.abort();
        }
        open
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.listener.abort();
        self.cut();
    }
}
