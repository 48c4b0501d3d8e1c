//! A small HTTP/1.1 client (hyper's), for driving the service over real
//! sockets: the example's own check and the integration tests use it.

use std::net::SocketAddr;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// Anything that went wrong on the wire.
pub type ClientError = Box<dyn std::error::Error + Send + Sync>;

/// An answer: its status and body.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

impl Reply {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A client of the service at one address.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    addr: SocketAddr,
}

impl Client {
    /// A client of the server listening on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr }
    }

    /// Sends one request on a connection of its own.
    pub async fn send(&self, method: &str, path: &str, body: &str) -> Result<Reply, ClientError> {
        let stream = TcpStream::connect(self.addr).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.addr.to_string())
            .header(hyper::header::CONTENT_TYPE, "text/plain")
            .body(Full::new(Bytes::from(body.to_owned())))?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        drop(sender);
        driver.await??;
        Ok(Reply { status, body: String::from_utf8(bytes.to_vec())? })
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Reply, ClientError> {
        self.send("GET", path, "").await
    }

    /// `POST path` with a text body.
    pub async fn post(&self, path: &str, body: &str) -> Result<Reply, ClientError> {
        self.send("POST", path, body).await
    }
}
