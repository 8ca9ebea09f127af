//! What `tollgate dev` starts, and the gateway configuration it writes for them.

use std::net::SocketAddr;
use std::time::Duration;

use crate::session::random_token;

use super::{refuse_non_loopback, start_demo_app, DevClient, DevIssuer, DevIssuerOptions};

/// What `tollgate dev` set up.
pub struct DevSetup {
    pub config_text: String,
    pub issuer: DevIssuer,
    pub gateway_url: String,
    pub cli_client: (String, String),
}

/// Starts the issuer and the demo app on the current runtime and writes the gateway's config.
pub async fn setup(gateway: SocketAddr) -> std::io::Result<DevSetup> {
    refuse_non_loopback(gateway)?;
    let gateway_url = format!("http://{gateway}");
    let web_secret = random_token();
    let cli = ("dev-cli".to_string(), "dev-secret".to_string());
    let issuer = DevIssuer::start(
        SocketAddr::from((gateway.ip(), 0)),
        DevIssuerOptions {
            clients: vec![
                DevClient {
                    id: "tollgate-dev".into(),
                    secret: web_secret.clone(),
                    redirect_uris: vec![format!("{gateway_url}/oauth2/callback")],
                    post_logout_redirect_uris: vec![format!("{gateway_url}/")],
                },
                DevClient {
                    id: cli.0.clone(),
                    secret: cli.1.clone(),
                    redirect_uris: vec![],
                    post_logout_redirect_uris: vec![],
                },
            ],
            audience: "tollgate-dev-api".into(),
            access_token_ttl: Duration::from_secs(300),
        },
    )
    .await?;
    let app = start_demo_app(SocketAddr::from((gateway.ip(), 0))).await?;
    let cookie_secret = random_token();
    let config_text = format!(
        r#"# Written by `tollgate dev`. Every value here is for local development only.
[server]
listen = "{gateway}"
workers = 1

[admin]
listen = "{admin}"

[log]
format = "pretty"
level = "info"

[[issuer]]
name = "dev"
url = "{issuer}"
audiences = ["tollgate-dev-api"]
token_type = "at+jwt"

[login]
client_id = "tollgate-dev"
client_secret = "{web_secret}"
public_url = "{gateway_url}"
cookie_secret = "{cookie_secret}"
scopes = ["openid", "email", "profile", "offline_access"]

[[route]]
name = "public"
auth = "none"
path = "/public/"
upstream = "http://{app}"

[[route]]
name = "api"
auth = "bearer"
path = "/api/"
upstream = "http://{app}"

[[route]]
name = "app"
auth = "login"
path = "/"
upstream = "http://{app}"
"#,
        admin = SocketAddr::from((gateway.ip(), 0)),
        issuer = issuer.url,
    );
    Ok(DevSetup { config_text, issuer, gateway_url, cli_client: cli })
}

impl DevSetup {
    /// The one-line shell command that fetches a client-credentials token and calls `/api/`.
    pub fn curl_line(&self) -> String {
        let (id, secret) = &self.cli_client;
        format!(
            "curl -s -H \"Authorization: Bearer $(curl -s -u {id}:{secret} -d grant_type=client_credentials -d scope=api {iss}/token | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')\" {gw}/api/hello",
            iss = self.issuer.url,
            gw = self.gateway_url
        )
    }
}
