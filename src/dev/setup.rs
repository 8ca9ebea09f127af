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

/// The demo apps: path prefix (the login's name too) and client id. Each signs in with its own
/// client and keeps its own session, on one host by path.
pub const APPS: [(&str, &str); 2] = [("wiki", "tollgate-dev-wiki"), ("blog", "tollgate-dev-blog")];

/// Starts the issuer and the demo app on the current runtime and writes the gateway's config.
pub async fn setup(gateway: SocketAddr) -> std::io::Result<DevSetup> {
    refuse_non_loopback(gateway)?;
    let gateway_url = format!("http://{gateway}");
    let cli = ("dev-cli".to_string(), "dev-secret".to_string());
    let web: Vec<(&str, &str, String)> = APPS.iter().map(|(app, id)| (*app, *id, random_token())).collect();
    let mut clients: Vec<DevClient> = web
        .iter()
        .map(|(app, id, secret)| DevClient {
            id: id.to_string(),
            secret: secret.clone(),
            redirect_uris: vec![format!("{gateway_url}/{app}/oauth2/callback")],
            post_logout_redirect_uris: vec![format!("{gateway_url}/{app}/")],
        })
        .collect();
    clients.push(DevClient {
        id: cli.0.clone(),
        secret: cli.1.clone(),
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
    });
    let issuer = DevIssuer::start(
        SocketAddr::from((gateway.ip(), 0)),
        DevIssuerOptions { clients, audience: "tollgate-dev-api".into(), access_token_ttl: Duration::from_secs(300) },
    )
    .await?;
    let app = start_demo_app(SocketAddr::from((gateway.ip(), 0))).await?;
    let mut logins = String::new();
    let mut routes = String::new();
    for (name, id, secret) in &web {
        logins.push_str(&format!(
            r#"[[login]]
name = "{name}"
client_id = "{id}"
client_secret = "{secret}"
public_url = "{gateway_url}/{name}"
cookie_secret = "{cookie_secret}"
scopes = ["openid", "email", "profile", "offline_access"]

"#,
            cookie_secret = random_token(),
        ));
        routes.push_str(&format!(
            "[[route]]\nname = \"{name}\"\nauth = \"login\"\nlogin = \"{name}\"\npath = \"/{name}/\"\nupstream = \"http://{app}\"\n\n"
        ));
    }
    let config_text = format!(
        r#"# Written by `tollgate dev`. Every value here is for local development only.
[server]
listen = "{gateway}"
workers = 1
# A development run needs few connections; a low open-file limit then still leaves
# descriptors for the development issuer and the demo app, which share this process.
max_connections = 256

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

# Two apps on one host by path, each signing in with its own client: sessions, cookies
# (Path=/wiki, Path=/blog) and sign-out are per app.
{logins}[[route]]
name = "home"
auth = "none"
path = "/"
upstream = "http://{app}"

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

{routes}"#,
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
