//! A keep-alive HTTP/1.1 connection for the benchmarks: no client library to compile.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// A keep-alive HTTP/1.1 connection that sends one fixed request and reads one response.
pub struct Conn {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

impl Conn {
    /// A connection to `addr`.
    pub async fn open(addr: std::net::SocketAddr) -> Res<Self> {
        Ok(Self {
            stream: TcpStream::connect(addr).await?,
            buf: Vec::new(),
        })
    }

    /// The body of the last response.
    pub fn body(&self) -> &[u8] {
        match self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) => &self.buf[end + 4..],
            None => &[],
        }
    }

    /// Sends `request` and reads the response; its status.
    pub async fn roundtrip(&mut self, request: &[u8]) -> Res<u16> {
        self.stream.write_all(request).await?;
        self.buf.clear();
        loop {
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err("connection closed".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = std::str::from_utf8(&self.buf[..end])?;
            let status: u16 = head.get(9..12).ok_or("short status line")?.parse()?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .ok_or("no content-length")?;
            if self.buf.len() >= end + 4 + len {
                return Ok(status);
            }
        }
    }
}
