//! One connection to a Redis server or sentinel: TCP or TLS (rustls), `AUTH`, and RESP2 commands
//! and replies with every length bounded, so a broken or hostile server cannot make tollgate
//! allocate without limit or wait forever.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::url::{Credentials, Endpoint};
use super::RedisError;

/// A reply value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Nil,
    Ok,
    Int(i64),
    Bytes(Vec<u8>),
    Array(Vec<Reply>),
}

/// A socket, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A line longer than this is not RESP from a server we should talk to.
const MAX_LINE: u64 = 64 * 1024;
/// The largest bulk value read (sessions are a few kilobytes).
const MAX_BULK: i64 = 16 << 20;
const MAX_ARRAY: i64 = 100_000;
const MAX_DEPTH: usize = 4;

/// How connections are made: TLS or not, and the time allowed for connect plus handshake.
#[derive(Clone)]
pub struct Dialer {
    pub tls: Option<tokio_rustls::TlsConnector>,
    pub timeout: Duration,
}

pub struct Conn {
    io: BufReader<Box<dyn Io>>,
    /// Where it goes, for errors.
    pub endpoint: Arc<str>,
}

impl Dialer {
    /// Connects (and handshakes, with TLS; the certificate must name `ep.host`), then `AUTH`s.
    pub async fn dial(&self, ep: &Endpoint, auth: Option<&Credentials>) -> Result<Conn, RedisError> {
        let name: Arc<str> = ep.to_string().into();
        let io = tokio::time::timeout(self.timeout, self.open(ep, &name))
            .await
            .map_err(|_| RedisError::Timeout { addr: name.to_string() })??;
        let mut conn = Conn { io: BufReader::new(io), endpoint: name };
        if let Some(a) = auth {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            args.extend(a.username.as_deref().map(str::as_bytes));
            args.push(a.password.as_bytes());
            conn.call(&args, self.timeout).await?;
        }
        Ok(conn)
    }

    async fn open(&self, ep: &Endpoint, name: &Arc<str>) -> Result<Box<dyn Io>, RedisError> {
        let io_err = |source| RedisError::Io { addr: name.to_string(), source };
        let tcp = TcpStream::connect((ep.host.as_str(), ep.port)).await.map_err(io_err)?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else { return Ok(Box::new(tcp)) };
        let server_name = ServerName::try_from(ep.host.clone()).map_err(|_| RedisError::Tls {
            addr: name.to_string(),
            why: format!("{:?} is not a valid TLS server name", ep.host),
        })?;
        let stream = tls
            .connect(server_name, tcp)
            .await
            .map_err(|e| RedisError::Tls { addr: name.to_string(), why: e.to_string() })?;
        Ok(Box::new(stream))
    }
}

impl Conn {
    /// Sends one command and reads its reply; an error reply is [`RedisError::Server`].
    pub async fn call(&mut self, args: &[&[u8]], timeout: Duration) -> Result<Reply, RedisError> {
        match self.roundtrip(args, timeout).await? {
            Ok(r) => Ok(r),
            Err(msg) => Err(RedisError::Server(msg)),
        }
    }

    /// Like [`Conn::call`], but I/O failures and error replies are kept apart: `Ok(Err(msg))`
    /// is the server's refusal, the connection still usable.
    pub async fn roundtrip(&mut self, args: &[&[u8]], timeout: Duration) -> Result<Result<Reply, String>, RedisError> {
        let addr = &self.endpoint;
        let io = &mut self.io;
        let work = async move {
            io.get_mut().write_all(&encode(args)).await?;
            // TLS buffers records until flushed.
            io.get_mut().flush().await?;
            read_reply(io, 0).await
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| RedisError::Timeout { addr: addr.to_string() })?
            .map_err(|source| RedisError::Io { addr: addr.to_string(), source })
    }
}

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn protocol(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

async fn read_line(io: &mut BufReader<Box<dyn Io>>) -> std::io::Result<String> {
    let mut line = String::new();
    let n = (&mut *io).take(MAX_LINE).read_line(&mut line).await?;
    if n == 0 {
        return Err(protocol("connection closed"));
    }
    match line.strip_suffix("\r\n") {
        Some(l) => Ok(l.to_string()),
        None => Err(protocol("reply line too long or cut off")),
    }
}

/// Reads one reply from `bytes`, as from a connection that then closes. For the fuzz targets.
#[doc(hidden)]
pub async fn read_reply_from(bytes: Vec<u8>) -> std::io::Result<Result<Reply, String>> {
    let mut io: BufReader<Box<dyn Io>> = BufReader::new(Box::new(std::io::Cursor::new(bytes)));
    read_reply(&mut io, 0).await
}

async fn read_reply(io: &mut BufReader<Box<dyn Io>>, depth: usize) -> std::io::Result<Result<Reply, String>> {
    if depth > MAX_DEPTH {
        return Err(protocol("nested too deep"));
    }
    let line = read_line(io).await?;
    // Split at a byte: a line starting with a multi-byte character is of no known type (found
    // by the `redis_reply` properties: `split_at(1)` panicked there).
    let (kind, rest) = line.split_at_checked(1).unwrap_or(("", ""));
    let length = |s: &str| s.parse::<i64>().map_err(|_| protocol("bad length"));
    Ok(match kind {
        "+" => Ok(if rest == "OK" { Reply::Ok } else { Reply::Bytes(rest.as_bytes().to_vec()) }),
        "-" => Err(rest.to_string()),
        ":" => Ok(Reply::Int(rest.parse().map_err(|_| protocol("bad integer"))?)),
        "$" => match length(rest)? {
            n if n < 0 => Ok(Reply::Nil),
            n if n > MAX_BULK => return Err(protocol("value too large")),
            n => {
                let mut buf = vec![0u8; n as usize + 2];
                io.read_exact(&mut buf).await?;
                if !buf.ends_with(b"\r\n") {
                    return Err(protocol("bulk value not terminated"));
                }
                buf.truncate(n as usize);
                Ok(Reply::Bytes(buf))
            }
        },
        "*" => match length(rest)? {
            n if n < 0 => Ok(Reply::Nil),
            n if n > MAX_ARRAY => return Err(protocol("array too long")),
            n => {
                let mut items = Vec::with_capacity((n as usize).min(1024));
                let mut refused = None;
                // Every element is read, even after an error element, so the stream stays in step.
                for _ in 0..n {
                    match Box::pin(read_reply(io, depth + 1)).await? {
                        Ok(r) => items.push(r),
                        Err(e) => refused = refused.or(Some(e)),
                    }
                }
                match refused {
                    Some(e) => Err(e),
                    None => Ok(Reply::Array(items)),
                }
            }
        },
        _ => return Err(protocol("unknown reply type")),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn parse(bytes: &'static [u8]) -> std::io::Result<Result<Reply, String>> {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(bytes).await.unwrap();
        drop(client);
        let mut io: BufReader<Box<dyn Io>> = BufReader::new(Box::new(server));
        read_reply(&mut io, 0).await
    }

    #[tokio::test]
    async fn replies() {
        assert_eq!(parse(b"+OK\r\n").await.unwrap(), Ok(Reply::Ok));
        assert_eq!(parse(b"-READONLY no\r\n").await.unwrap(), Err("READONLY no".into()));
        assert_eq!(parse(b"$-1\r\n").await.unwrap(), Ok(Reply::Nil));
        assert_eq!(parse(b"$3\r\nabc\r\n").await.unwrap(), Ok(Reply::Bytes(b"abc".to_vec())));
        let role =
            parse(b"*3\r\n$6\r\nmaster\r\n:10\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n$2\r\n10\r\n").await;
        assert!(matches!(role.unwrap(), Ok(Reply::Array(items)) if items.len() == 3));
    }

    #[tokio::test]
    async fn hostile_replies_are_errors() {
        for bad in [
            &b"$17000000\r\n"[..],
            b"*100001\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
            b"$3\r\nabcde",
            b"?what\r\n",
            b":12x\r\n",
            b"+no end",
            b"",
            "\u{e9}\r\n".as_bytes(),
        ] {
            assert!(parse(bad).await.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long: &'static [u8] = Box::leak(vec![b'+'; 70_000].into_boxed_slice());
        assert!(parse(long).await.is_err());
    }
}
