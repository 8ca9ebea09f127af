//! A small Redis client: the handful of commands sessions need, over RESP2, with a pool of
//! connections. Kept in-house because the `redis` crate would add more build than it saves.

use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis at {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("redis at {addr} timed out")]
    Timeout { addr: String },
    #[error("redis error: {0}")]
    Server(String),
    #[error("unexpected redis reply")]
    Protocol,
    #[error("invalid redis URL: expected redis://[:PASSWORD@]HOST:PORT[/DB] (TLS, rediss://, is not supported)")]
    Url,
}

/// A reply value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Nil,
    Ok,
    Int(i64),
    Bytes(Vec<u8>),
    Array(Vec<Reply>),
}

type Conn = BufReader<TcpStream>;

pub struct Redis {
    addr: String,
    password: Option<String>,
    db: u32,
    idle: Mutex<Vec<Conn>>,
    timeout: Duration,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redis({}/{})", self.addr, self.db)
    }
}

impl Redis {
    /// `redis://[:password@]host:port[/db]`. (TLS, `rediss://`, is not supported yet, and is
    /// refused when the configuration is checked.)
    pub fn from_url(url: &str) -> Result<Redis, RedisError> {
        let bad = || RedisError::Url;
        let rest = url.strip_prefix("redis://").ok_or_else(bad)?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let (hostport, db) = match rest.split_once('/') {
            Some((h, d)) if !d.is_empty() => (h, d.parse().map_err(|_| bad())?),
            Some((h, _)) => (h, 0),
            None => (rest, 0),
        };
        if hostport.is_empty() {
            return Err(bad());
        }
        let addr = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:6379") };
        // The password is percent-encoded in the URL, like any userinfo.
        let password = match auth.map(|a| a.rsplit_once(':').map_or(a, |(_, p)| p)) {
            Some(p) if !p.is_empty() => Some(crate::util::percent_decode(p, false).ok_or_else(bad)?),
            _ => None,
        };
        Ok(Redis { addr, password, db, idle: Mutex::new(Vec::new()), timeout: Duration::from_secs(3) })
    }

    /// Runs one command and returns its reply. A connection that fails is dropped, not reused.
    pub async fn cmd(&self, args: &[&[u8]]) -> Result<Reply, RedisError> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect().await?,
        };
        let reply = tokio::time::timeout(self.timeout, roundtrip(&mut conn, args))
            .await
            .map_err(|_| RedisError::Timeout { addr: self.addr.clone() })?
            .map_err(|source| RedisError::Io { addr: self.addr.clone(), source })?;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < 32 {
            idle.push(conn);
        }
        match reply {
            Err(msg) => Err(RedisError::Server(msg)),
            Ok(r) => Ok(r),
        }
    }

    async fn connect(&self) -> Result<Conn, RedisError> {
        let io = |source| RedisError::Io { addr: self.addr.clone(), source };
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| RedisError::Timeout { addr: self.addr.clone() })?
            .map_err(io)?;
        let _ = stream.set_nodelay(true);
        let mut conn = BufReader::new(stream);
        if let Some(pw) = &self.password {
            roundtrip(&mut conn, &[b"AUTH", pw.as_bytes()]).await.map_err(io)?.map_err(RedisError::Server)?;
        }
        if self.db != 0 {
            let db = self.db.to_string();
            roundtrip(&mut conn, &[b"SELECT", db.as_bytes()]).await.map_err(io)?.map_err(RedisError::Server)?;
        }
        Ok(conn)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
        match self.cmd(&[b"GET", key.as_bytes()]).await? {
            Reply::Nil => Ok(None),
            Reply::Bytes(b) => Ok(Some(b)),
            _ => Err(RedisError::Protocol),
        }
    }

    pub async fn set_ex(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), RedisError> {
        let secs = ttl.as_secs().max(1).to_string();
        self.cmd(&[b"SET", key.as_bytes(), value, b"EX", secs.as_bytes()]).await.map(drop)
    }

    /// `SET key value EX ttl XX`: replaces the value only if the key still exists. False when
    /// it was gone (deleted by a sign-out or logout meanwhile).
    pub async fn replace_ex(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, RedisError> {
        let secs = ttl.as_secs().max(1).to_string();
        Ok(self.cmd(&[b"SET", key.as_bytes(), value, b"EX", secs.as_bytes(), b"XX"]).await? == Reply::Ok)
    }

    pub async fn del(&self, keys: &[&str]) -> Result<(), RedisError> {
        let mut args: Vec<&[u8]> = vec![b"DEL"];
        args.extend(keys.iter().map(|k| k.as_bytes()));
        self.cmd(&args).await.map(drop)
    }

    /// Adds `member` to the set at `key` and (re)sets the set's expiry.
    pub async fn sadd_ex(&self, key: &str, member: &str, ttl: Duration) -> Result<(), RedisError> {
        self.cmd(&[b"SADD", key.as_bytes(), member.as_bytes()]).await?;
        let secs = ttl.as_secs().max(1).to_string();
        self.cmd(&[b"EXPIRE", key.as_bytes(), secs.as_bytes()]).await.map(drop)
    }

    pub async fn smembers(&self, key: &str) -> Result<Vec<String>, RedisError> {
        match self.cmd(&[b"SMEMBERS", key.as_bytes()]).await? {
            Reply::Array(items) => Ok(items
                .into_iter()
                .filter_map(|r| match r {
                    Reply::Bytes(b) => String::from_utf8(b).ok(),
                    _ => None,
                })
                .collect()),
            _ => Err(RedisError::Protocol),
        }
    }

    /// `SET key value NX PX ms`: true when this caller took the lock.
    pub async fn lock(&self, key: &str, ttl: Duration) -> Result<bool, RedisError> {
        let ms = ttl.as_millis().max(1).to_string();
        Ok(self.cmd(&[b"SET", key.as_bytes(), b"1", b"NX", b"PX", ms.as_bytes()]).await? == Reply::Ok)
    }
}

async fn roundtrip(conn: &mut Conn, args: &[&[u8]]) -> std::io::Result<Result<Reply, String>> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    conn.get_mut().write_all(&out).await?;
    read_reply(conn, 0).await
}

fn protocol(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

async fn read_reply(conn: &mut Conn, depth: usize) -> std::io::Result<Result<Reply, String>> {
    if depth > 4 {
        return Err(protocol("nested too deep"));
    }
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        return Err(protocol("connection closed"));
    }
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(line.len().min(1));
    Ok(match kind {
        "+" => Ok(if rest == "OK" { Reply::Ok } else { Reply::Bytes(rest.as_bytes().to_vec()) }),
        "-" => Err(rest.to_string()),
        ":" => Ok(Reply::Int(rest.parse().map_err(|_| protocol("bad integer"))?)),
        "$" => {
            let n: i64 = rest.parse().map_err(|_| protocol("bad length"))?;
            if n < 0 {
                Ok(Reply::Nil)
            } else if n > 16 << 20 {
                return Err(protocol("value too large"));
            } else {
                let mut buf = vec![0u8; n as usize + 2];
                conn.read_exact(&mut buf).await?;
                buf.truncate(n as usize);
                Ok(Reply::Bytes(buf))
            }
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| protocol("bad length"))?;
            if n < 0 {
                Ok(Reply::Nil)
            } else {
                let mut items = Vec::with_capacity((n as usize).min(1024));
                for _ in 0..n.min(100_000) {
                    match Box::pin(read_reply(conn, depth + 1)).await? {
                        Ok(r) => items.push(r),
                        Err(e) => return Ok(Err(e)),
                    }
                }
                Ok(Reply::Array(items))
            }
        }
        _ => return Err(protocol("unknown reply type")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let r = Redis::from_url("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!((r.addr.as_str(), r.db, r.password.as_deref()), ("127.0.0.1:6380", 2, None));
        let r = Redis::from_url("redis://:s3cret%40x@redis.local").unwrap();
        assert_eq!((r.addr.as_str(), r.password.as_deref()), ("redis.local:6379", Some("s3cret@x")));
        assert!(!format!("{r:?}").contains("s3cret"));
        for bad in ["http://x", "redis://", "redis://h:1/x", "rediss://h:6380"] {
            assert!(Redis::from_url(bad).is_err(), "{bad}");
        }
    }
}
