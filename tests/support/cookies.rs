//! The cookie allowlist, checked from outside: every `Set-Cookie` the test helpers see
//! is recorded, and `TestApp::stop` fails the test if any of them is not one of ours
//! with the attributes it must carry. Independent of the API's own cookie code.

use std::sync::Mutex;

use reqwest::header::{HeaderMap, SET_COOKIE};

/// Our cookies' names (each also with the `__Host-` prefix over https).
pub const ALLOWED: [&str; 4] = ["pp_session", "pp_oauth", "pp_signup", "pp_age_refused"];

static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records the `Set-Cookie` headers of a response.
pub fn observe(headers: &HeaderMap) {
    let mut seen = SEEN.lock().expect("cookies seen");
    seen.extend(headers.get_all(SET_COOKIE).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()));
}

/// How many `Set-Cookie` headers were seen so far in this process.
pub fn seen_count() -> usize {
    SEEN.lock().expect("cookies seen").len()
}

/// Whether one `Set-Cookie` is allowed: a name of ours, `HttpOnly`, `SameSite=Lax`,
/// `Path=/`, a `Max-Age`, no `Domain` (host-only), and `Secure` with a `__Host-` name.
pub fn check(set_cookie: &str) -> Result<(), String> {
    let mut parts = set_cookie.split(';').map(str::trim);
    let (name, _) = parts.next().and_then(|p| p.split_once('=')).ok_or("no name=value")?;
    let attributes: Vec<String> = parts.map(str::to_ascii_lowercase).collect();
    let has = |a: &str| attributes.iter().any(|x| x == a);
    let base = name.strip_prefix("__Host-").unwrap_or(name);
    if !ALLOWED.contains(&base) {
        return Err(format!("{name} is not on the allowlist"));
    }
    for required in ["httponly", "samesite=lax", "path=/"] {
        if !has(required) {
            return Err(format!("{name} lacks {required}"));
        }
    }
    if !attributes.iter().any(|a| a.starts_with("max-age=")) {
        return Err(format!("{name} has no Max-Age"));
    }
    if attributes.iter().any(|a| a.starts_with("domain=")) {
        return Err(format!("{name} names a Domain"));
    }
    if name.starts_with("__Host-") && !has("secure") {
        return Err(format!("{name} is not Secure"));
    }
    Ok(())
}

/// Fails the test if any cookie seen was not allowed.
pub fn check_all_seen() {
    let seen = SEEN.lock().expect("cookies seen");
    let refused: Vec<String> = seen.iter().filter_map(|c| check(c).err().map(|e| format!("{e}: {c}"))).collect();
    assert!(refused.is_empty(), "cookies outside the allowlist:\n{}", refused.join("\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowlist_refuses_what_it_should() {
        assert!(check("pp_session=a; HttpOnly; SameSite=Lax; Path=/; Max-Age=60").is_ok());
        assert!(check("__Host-pp_session=a; HttpOnly; SameSite=Lax; Path=/; Max-Age=60; Secure").is_ok());
        for bad in [
            "_ga=GA1.1; Path=/; Max-Age=60",
            "pp_session=a; SameSite=Lax; Path=/; Max-Age=60",
            "pp_session=a; HttpOnly; SameSite=None; Path=/; Max-Age=60",
            "pp_session=a; HttpOnly; SameSite=Lax; Path=/; Max-Age=60; Domain=example.org",
            "__Host-pp_session=a; HttpOnly; SameSite=Lax; Path=/; Max-Age=60",
            "pp_session=a; HttpOnly; SameSite=Lax; Path=/",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
