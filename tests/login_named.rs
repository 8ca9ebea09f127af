//! The login suite (`tests/login/suite.rs`) for a `[[login]]` table named `wiki` whose
//! `public_url` has a path: its endpoints on `/wiki/oauth2/`, its routes under `/wiki/`, its
//! cookies `tollgate_wiki`, `tollgate_wiki_N` and `tollgate_wiki_flow_HEX` with `Path=/wiki`
//! (`__Secure-` over TLS, as `__Host-` needs `Path=/`), its Redis keys
//! `tollgate:login:wiki:...`. A second login, `blog` on `/blog`, shares the host: everything
//! the suite checks must hold with a neighbour that it never signs in to.
//!
//! Needs node with `cd tests/idp && npm ci`, redis-server and nginx (`bash tests/run.sh`
//! installs everything).

mod common;
#[path = "support/idp.rs"]
mod idp;
#[path = "support/login.rs"]
mod login;
#[path = "support/services.rs"]
mod services;
#[path = "login/suite.rs"]
mod suite;

/// `[[login]] name = "wiki"` on `/wiki`, next to `blog` on `/blog` (`{origin}` and `{echo}` are
/// filled in by the suite).
const APP: suite::App = suite::App {
    name: Some("wiki"),
    prefix: "/wiki",
    cookie: "tollgate_wiki",
    redis_keys: "tollgate:login:wiki:",
    siblings: r#"
[[login]]
name = "blog"
client_id = "blog"
client_secret = "blog-secret"
public_url = "{origin}/blog"
cookie_secret = "blog-0123456789abcdef0123456789abcdef"

[[route]]
auth = "login"
login = "blog"
name = "blog"
path = "/blog/"
upstream = "http://{echo}"
"#,
};
