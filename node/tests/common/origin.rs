//! [`Origin`]: a small HTTP server on loopback standing in for an application's data source,
//! counting the requests it gets per path.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Answers `GET /items/<key>`: keys starting with `absent` are 404, every other key is 200 with
/// a body of `value_size` bytes derived from the key, and `Cache-Control: max-age=60`.
pub struct Origin {
    pub addr: String,
    pub hits: Arc<Mutex<BTreeMap<String, usize>>>,
    task: JoinHandle<()>,
}

impl Origin {
    pub async fn start(value_size: usize) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let hits: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        let counted = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let counted = counted.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let counted = counted.clone();
                        async move {
                            let path = request.uri().path().to_owned();
                            *counted.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                            let key = path.trim_start_matches("/items/");
                            let response = if key.starts_with("absent") {
                                Response::builder()
                                    .status(StatusCode::NOT_FOUND)
                                    .body(Full::new(Bytes::new()))
                            } else {
                                let mut body = format!("{key}=").into_bytes();
                                body.resize(value_size, b'.');
                                Response::builder()
                                    .header("cache-control", "public, max-age=60")
                                    .body(Full::new(Bytes::from(body)))
                            };
                            Ok::<_, Infallible>(response.unwrap())
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Origin { addr, hits, task }
    }

    /// The origin template for a group spec.
    pub fn template(&self) -> String {
        format!("http://{}/items/{{key}}", self.addr)
    }

    /// Requests for `key` so far.
    pub fn hits_of(&self, key: &str) -> usize {
        let path = format!("/items/{key}");
        self.hits.lock().unwrap().get(&path).copied().unwrap_or(0)
    }

    /// Requests so far, all keys.
    pub fn total_hits(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
