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
#[test]
fn the_single_login_table_is_the_login_named_default() {
    let w = suite::World::start_edited(&suite::cookie_store(suite::SECRET), "", &[], |c| {
        assert!(c.contains("[login]\n") && !c.contains("login = "), "{c}");
        c.replace("auth = \"login\"\n", "auth = \"login\"\nlogin = \"default\"\n")
    });
    let done = w.login("/", "uma");
    assert_eq!(done.cookies[0].0, "tollgate");
    assert_eq!(suite::works(&w.gw, &done.cookie_header()).as_deref(), Some("uma"));
}
