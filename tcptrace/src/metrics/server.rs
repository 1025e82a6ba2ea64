//! The HTTP endpoint: hyper (HTTP/1.1) on a thread and runtime of its own,
//! so a scrape (or a client that connects and sends nothing) never holds up
//! the ring-buffer drain. `/metrics` and `/healthz` (the daemon adds its
//! health on a second line), GET and HEAD only.

use std::{
    convert::Infallible,
    sync::{atomic::Ordering, Arc},
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    body::Incoming, header, server::conn::http1, service::service_fn, Method, Request, Response,
    StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::sync::{watch, Semaphore};

use super::{
    addr::Bound,
    collector::Exporter,
    exposition::{render, Format},
    sink::Shared,
};

/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 64;
/// A client must send its request head within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Stops the endpoint.
pub struct Handle(watch::Sender<bool>);

impl Handle {
    pub fn shutdown(self) {
        let _ = self.0.send(true);
    }
}

pub fn spawn(
    bound: Bound,
    exporter: Exporter,
    shared: Arc<Shared>,
) -> Result<(Handle, JoinHandle<()>)> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(exporter));
    let registry = Arc::new(registry);
    let (tx, rx) = watch::channel(false);
    let addr = bound.addr;
    let thread = std::thread::Builder::new()
        .name("tcptrace-metrics".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("tcptrace: metrics endpoint {addr}: {e}");
                    return;
                }
            };
            if let Err(e) = rt.block_on(serve(bound, registry, shared, rx)) {
                eprintln!("tcptrace: metrics endpoint {addr}: {e:#}");
            }
        })
        .context("starting the metrics thread")?;
    Ok((Handle(tx), thread))
}

async fn serve(
    bound: Bound,
    registry: Arc<Registry>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(bound.listener)
        .with_context(|| format!("listening on {}", bound.addr))?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            _ = stop.changed() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    log::warn!("metrics: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let (registry, shared) = (registry.clone(), shared.clone());
        let service = service_fn(move |req| {
            let response = respond(&req, &registry, &shared);
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                log::debug!("metrics: connection: {e}");
            }
            drop(slot);
        });
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn respond(req: &Request<Incoming>, registry: &Registry, shared: &Shared) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics or /healthz\n");
    }
    match req.uri().path() {
        "/metrics" => {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let format = Format::negotiate(accept);
            match render(registry, format) {
                Ok(body) => {
                    let mut r = Response::new(Full::new(Bytes::from(body)));
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static(format.content_type()),
                    );
                    r
                }
                Err(_) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "encoding the metrics failed\n",
                ),
            }
        }
        "/healthz" if shared.ready.load(Ordering::Acquire) => {
            let health = shared.health.lock().unwrap_or_else(|e| e.into_inner());
            match health.as_ref() {
                // The daemon: its figures on a second line.
                Some(h) => {
                    let mut r = text(StatusCode::OK, "");
                    *r.body_mut() = Full::new(Bytes::from(format!("ok\n{}\n", h.line())));
                    r
                }
                None => text(StatusCode::OK, "ok\n"),
            }
        }
        "/healthz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: hooks attaching\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "GET /metrics or /healthz\n"),
    }
}
