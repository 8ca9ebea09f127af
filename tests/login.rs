//! The login suite (`tests/login/suite.rs`) for the single `[login]` table: the login named
//! `default`, its endpoints on `/oauth2/`, its routes on `/`, its cookies `tollgate`,
//! `tollgate_N` and `tollgate_flow_HEX`, its Redis keys `tollgate:session:...` (as single-login
//! releases wrote them). `tests/login_named.rs` runs the same suite for a named login on a path.
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

/// `[login]`, on the root of its host.
const APP: suite::App =
    suite::App { name: None, prefix: "", cookie: "tollgate", redis_keys: "tollgate:", siblings: "" };

// ---- only for the default login --------------------------------------------------------------

/// `[login]` is the login named `default`: a route may name it as `login = "default"` (the
/// suite's routes name none, as single-login files do). Its other names of single-login
/// releases (cookie `tollgate`, Redis keys `tollgate:session:`) are `APP`'s, checked by the suite.
/// And, as before there were several logins, the only login answers `/oauth2/*` on any host,
/// not just its `public_url`'s (the suite sends the public host, which several logins need).
#[test]
fn the_single_login_table_is_the_login_named_default() {
    let w = suite::World::start_edited(&suite::cookie_store(suite::SECRET), "", &[], |c| {
        assert!(c.contains("[login]\n") && !c.contains("login = "), "{c}");
        c.replace("auth = \"login\"\n", "auth = \"login\"\nlogin = \"default\"\n")
    });
    let done = w.login("/", "uma");
    assert_eq!(done.cookies[0].0, "tollgate");
    let cookie = done.cookie_header();
    assert_eq!(suite::works(&w.gw, &cookie).as_deref(), Some("uma"));

    // `common::get` says `Host: gateway.test`, not the public URL's host.
    let json = ("Accept", "application/json");
    let info = common::get(w.gw.addr, "/oauth2/userinfo", &[("Cookie", &cookie), json]);
    assert_eq!(info.status, 200, "{}", info.body);
    assert_eq!(info.json()["user"], "uma");
    let out = common::get(w.gw.addr, "/oauth2/sign_out?rd=/bye", &[("Cookie", &cookie), json]);
    assert_eq!(out.status, 302, "{}", out.body);
    let cleared = out.headers_named("set-cookie").any(|l| l.starts_with("tollgate=;") && l.contains("Max-Age=0"));
    assert!(cleared, "sign-out on the other host clears the session: {:?}", out.headers);
}
