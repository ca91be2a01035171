//! `GET /metrics` over HTTP, from a thread of its own. The thread is restarted with backoff when it
//! dies (a panic while serving a request): the endpoint is worth neither a daemon restart nor its
//! silent loss ([`crate::supervise::spawn_restarting`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::exposition::CONTENT_TYPE;
use super::model::Metrics;

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen for metrics on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
}

/// The HTTP endpoint; stops when dropped.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    /// Set when the server is dropped: the thread's end is then expected, not restarted.
    closing: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl MetricsServer {
    /// Serves `GET /metrics` on `addr` from a thread of its own.
    pub fn start(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<Self, MetricsError> {
        let server = tiny_http::Server::http(addr).map_err(|e| MetricsError::Bind {
            addr,
            reason: e.to_string(),
        })?;
        let bound = server.server_addr().to_ip().unwrap_or(addr);
        let server = Arc::new(server);
        let srv = Arc::clone(&server);
        let closing = Arc::new(AtomicBool::new(false));
        let thread =
            crate::supervise::spawn_restarting("metrics", Arc::clone(&closing), move || {
                for req in srv.incoming_requests() {
                    crate::faults::panic_point("metrics");
                    let resp = if req.method() == &tiny_http::Method::Get
                        && req.url().split('?').next() == Some("/metrics")
                    {
                        let header = tiny_http::Header::from_bytes(
                            &b"Content-Type"[..],
                            CONTENT_TYPE.as_bytes(),
                        )
                        .ok();
                        let mut r = tiny_http::Response::from_string(metrics.render());
                        if let Some(h) = header {
                            r.add_header(h);
                        }
                        r
                    } else {
                        tiny_http::Response::from_string("not found\n").with_status_code(404)
                    };
                    if let Err(e) = req.respond(resp) {
                        tracing::debug!(error = %e, "metrics response failed");
                    }
                }
            })
            .map_err(|e| MetricsError::Bind {
                addr,
                reason: e.to_string(),
            })?;
        Ok(MetricsServer {
            server,
            closing,
            thread: Some(thread),
            addr: bound,
        })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_serves_metrics_and_404s_elsewhere() {
        use std::io::{Read, Write};
        let m = Arc::new(Metrics::default());
        m.starts_cold.inc();
        let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), m).unwrap();
        let get = |path: &str| {
            let mut s = std::net::TcpStream::connect(srv.addr).unwrap();
            write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            body
        };
        let body = get("/metrics");
        assert!(
            body.starts_with("HTTP/1.1 200") || body.starts_with("HTTP/1.0 200"),
            "{body}"
        );
        assert!(body.contains("portsyncd_starts_total{mode=\"cold\"} 1"));
        assert!(body.contains("version=0.0.4"), "{body}");
        assert!(get("/other").contains(" 404 "));
    }
}
