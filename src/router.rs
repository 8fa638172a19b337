//! The route table, compiled once from the config: for each local port, the enabled routes that
//! listen on it, by priority (higher first) and then file order.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::config::{IpPattern, Route};
use crate::connect::Endpoints;

/// A route as the data path uses it.
pub struct RouteEntry {
    pub name: String,
    client_ip: Vec<IpPattern>,
    pub endpoints: Endpoints,
}

impl RouteEntry {
    fn matches(&self, client_ip: IpAddr) -> bool {
        self.client_ip.is_empty() || self.client_ip.iter().any(|p| ip_matches(p, client_ip))
    }
}

pub struct Router {
    by_port: BTreeMap<u16, Vec<Arc<RouteEntry>>>,
}

impl Router {
    pub fn new(routes: &[Route]) -> Router {
        let mut ordered: Vec<&Route> = routes.iter().filter(|r| r.enabled).collect();
        // A stable sort keeps file order among equal priorities.
        ordered.sort_by_key(|r| std::cmp::Reverse(r.priority));
        let mut by_port: BTreeMap<u16, Vec<Arc<RouteEntry>>> = BTreeMap::new();
        for route in ordered {
            let entry = Arc::new(RouteEntry {
                name: route.name.clone(),
                client_ip: route.matcher.client_ip.clone(),
                endpoints: Endpoints::new(&route.action.targets),
            });
            for &port in &route.matcher.ports {
                by_port.entry(port).or_default().push(Arc::clone(&entry));
            }
        }
        Router { by_port }
    }

    /// Every port some enabled route listens on, ascending.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.by_port.keys().copied()
    }

    /// The first route on `port` whose every given field matches. Only fields known at accept
    /// (port, client address) exist so far, so such ports connect without reading the client.
    pub fn select(&self, port: u16, client_ip: IpAddr) -> Option<&Arc<RouteEntry>> {
        self.by_port
            .get(&port)?
            .iter()
            .find(|route| route.matches(client_ip))
    }
}

fn ip_matches(pattern: &IpPattern, ip: IpAddr) -> bool {
    match pattern {
        IpPattern::Net(net) => net.contains(&ip),
        IpPattern::Glob(glob) => glob_match(glob, &ip.to_string()),
    }
}

/// Case-insensitive glob over the whole text: `*` matches any run of characters (dots
/// included), everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was and which text position it currently swallows up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c.eq_ignore_ascii_case(&t[ti]) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn glob_rules() {
        assert!(glob_match("*.example.com", "a.example.com"));
        assert!(glob_match("*.example.com", "a.b.example.com"));
        assert!(!glob_match("*.example.com", "example.com"));
        assert!(glob_match("192.168.1.*", "192.168.1.20"));
        assert!(!glob_match("192.168.1.*", "192.168.10.2x"));
        assert!(glob_match("EXAMPLE.com", "example.COM"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
    }

    proptest! {
        #[test]
        fn glob_without_star_is_case_insensitive_equality(a in "[a-z0-9.]{0,12}", b in "[a-z0-9.]{0,12}") {
            prop_assert_eq!(glob_match(&a, &b), a.eq_ignore_ascii_case(&b));
        }

        #[test]
        fn star_prefix_matches_any_suffix_extension(prefix in "[a-z.]{0,8}", suffix in "[a-z.]{0,8}") {
            let text = format!("{prefix}{suffix}");
            let pattern = format!("*{suffix}");
            prop_assert!(glob_match(&pattern, &text));
        }
    }
}
