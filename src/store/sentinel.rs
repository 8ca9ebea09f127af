//! Finding the primary: each sentinel in turn is asked `SENTINEL get-master-addr-by-name`, and
//! the address it names is accepted only when that server itself answers `ROLE` as master (a
//! sentinel that has not yet seen a failover names the old primary, now down or a replica).
//! Each sentinel and each named server is tried at most once per lookup, every step under the
//! dialer's timeout, so a lookup is bounded by (sentinels × 2) connection attempts.

use std::time::Duration;

use super::conn::{Conn, Dialer, Reply};
use super::url::{Credentials, Endpoint};
use super::RedisError;

/// The sentinels of one master and how to reach the servers they name.
pub struct Lookup<'a> {
    pub sentinels: &'a [Endpoint],
    pub master: &'a str,
    pub sentinel_auth: Option<&'a Credentials>,
    pub auth: Option<&'a Credentials>,
    pub db: u32,
    pub dialer: &'a Dialer,
    /// The sentinel to ask first (the one that answered last time): a sentinel that is down
    /// then costs its timeout once, not on every lookup.
    pub first: usize,
}

impl Lookup<'_> {
    /// The primary, a connection to it (authenticated, database selected, role checked), and
    /// the index of the sentinel that named it.
    pub async fn primary(&self) -> Result<(Endpoint, Conn, usize), RedisError> {
        let mut why = Vec::new();
        let mut tried: Vec<Endpoint> = Vec::new();
        let n = self.sentinels.len();
        for i in (0..n).map(|k| (self.first + k) % n.max(1)) {
            let sentinel = &self.sentinels[i];
            let named = match self.ask(sentinel).await {
                Ok(named) => named,
                Err(e) => {
                    why.push(format!("sentinel {sentinel}: {e}"));
                    continue;
                }
            };
            if tried.contains(&named) {
                continue;
            }
            tried.push(named.clone());
            match open_primary(self.dialer, &named, self.auth, self.db).await {
                Ok(conn) => return Ok((named, conn, i)),
                Err(e) => why.push(format!("{named} (named by {sentinel}): {e}")),
            }
        }
        Err(RedisError::NoPrimary { master: self.master.to_string(), why: why.join("; ") })
    }

    async fn ask(&self, sentinel: &Endpoint) -> Result<Endpoint, RedisError> {
        let mut conn = self.dialer.dial(sentinel, self.sentinel_auth).await?;
        let reply =
            conn.call(&[b"SENTINEL", b"get-master-addr-by-name", self.master.as_bytes()], self.dialer.timeout).await?;
        match reply {
            Reply::Array(items) => match items.as_slice() {
                [Reply::Bytes(host), Reply::Bytes(port)] => {
                    let host = std::str::from_utf8(host).map_err(|_| RedisError::Protocol)?;
                    let port =
                        std::str::from_utf8(port).ok().and_then(|p| p.parse().ok()).ok_or(RedisError::Protocol)?;
                    Ok(Endpoint::new(host, port))
                }
                _ => Err(RedisError::Protocol),
            },
            Reply::Nil => Err(RedisError::Server(format!("the sentinel does not monitor {:?}", self.master))),
            _ => Err(RedisError::Protocol),
        }
    }
}

/// A connection to `ep` once it proves to be a primary.
pub async fn open_primary(
    dialer: &Dialer,
    ep: &Endpoint,
    auth: Option<&Credentials>,
    db: u32,
) -> Result<Conn, RedisError> {
    let mut conn = dialer.dial(ep, auth).await?;
    select(&mut conn, db, dialer.timeout).await?;
    match conn.call(&[b"ROLE"], dialer.timeout).await {
        Ok(Reply::Array(items)) => match items.first() {
            Some(Reply::Bytes(role)) if role == b"master" => Ok(conn),
            Some(Reply::Bytes(role)) => {
                Err(RedisError::NotPrimary { addr: ep.to_string(), role: String::from_utf8_lossy(role).into_owned() })
            }
            _ => Err(RedisError::Protocol),
        },
        Ok(_) => Err(RedisError::Protocol),
        Err(RedisError::Server(msg)) if msg.starts_with("NOPERM") => Err(RedisError::Server(format!(
            "{msg} (the Redis user needs the ROLE command, `+role`, to check it reached the primary)"
        ))),
        Err(e) => Err(e),
    }
}

/// `SELECT db` (nothing for database 0).
pub async fn select(conn: &mut Conn, db: u32, timeout: Duration) -> Result<(), RedisError> {
    if db != 0 {
        let db = db.to_string();
        conn.call(&[b"SELECT", db.as_bytes()], timeout).await?;
    }
    Ok(())
}
