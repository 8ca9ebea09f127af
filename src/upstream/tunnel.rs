//! WebSocket tunnels: the request that upgrades hands its two upgraded connections to the
//! client connection serving it, which runs the tunnel once the 101 is out.

use std::sync::{Arc, Mutex};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// A WebSocket tunnel: the client's and the upstream's upgraded connections, joined once both
/// upgrades complete.
pub struct Tunnel {
    client: OnUpgrade,
    upstream: OnUpgrade,
    route: String,
}

/// Where the client connection serving a request takes over the tunnel the request opens. The
/// server sets it around each request ([`with_tunnel_slot`]) and runs the tunnel after the
/// HTTP exchange ends, under the connection's own limits: its `max_connections` place, the
/// tunnel idle timeout and the drain at shutdown.
pub type TunnelSlot = Arc<Mutex<Option<Tunnel>>>;

tokio::task_local! {
    static TUNNEL_SLOT: TunnelSlot;
}

/// Runs `fut` (one request) with `slot` as the place its tunnel goes.
/// A plain function, not `async`: an async wrapper would hold `fut` twice (its argument and
/// the scope around it), doubling the request future.
pub fn with_tunnel_slot<F: std::future::Future>(
    slot: TunnelSlot,
    fut: F,
) -> impl std::future::Future<Output = F::Output> {
    TUNNEL_SLOT.scope(slot, fut)
}

/// Hands the upgraded connections to the client connection serving this request, which joins
/// them once the 101 response is out. Outside a serving connection nothing would bound the
/// tunnel, so it is refused (both sides are closed).
pub fn open(client: OnUpgrade, upstream: OnUpgrade, route: String) {
    let tunnel = Tunnel { client, upstream, route };
    match TUNNEL_SLOT.try_with(Arc::clone) {
        Ok(slot) => *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(tunnel),
        Err(_) => tracing::warn!(route = tunnel.route, "upgrade outside a client connection; closing the tunnel"),
    }
}

impl Tunnel {
    /// Copies bytes both ways until either side closes.
    pub async fn run(self) {
        let Tunnel { client, upstream, route } = self;
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(route, error = %e, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(route, error = %e, "tunnel closed with an error");
        }
    }
}
