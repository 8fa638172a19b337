//! Client address patterns: `match.clientIp`, the `ipAllowList` and `ipBlockList` lists (global
//! and per route), and the peer lists `trustedProxies` and `proxyProtocol.accept`.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};
use serde_json::Value;

use super::tree::{Ctx, check_entries, expect_string_list, string_or_list};
use crate::config::IpPattern;
use crate::config::units::quoted;

/// A list of client address patterns (`ipAllowList`, `ipBlockList`).
pub(super) fn ip_list(ctx: &mut Ctx, path: &str, value: &Value) -> Option<Vec<IpPattern>> {
    let entries = expect_string_list(ctx, path, value, "IP addresses, CIDRs or globs")?;
    check_entries(ctx, &entries, ip_pattern)
}

/// `match.clientIp`: one pattern or a list of them.
pub(super) fn client_ips(ctx: &mut Ctx, path: &str, value: &Value) -> Option<Vec<IpPattern>> {
    let entries = string_or_list(ctx, path, value, "an IP address, CIDR or glob")?;
    check_entries(ctx, &entries, ip_pattern)
}

/// A CIDR (`10.0.0.0/8`), a bare address (→ /32 or /128) or a glob (`192.168.1.*`).
/// IPv4-mapped IPv6 becomes the IPv4 it names (`::ffff:10.0.0.0/104` → `10.0.0.0/8`,
/// `::ffff:10.0.0.*` → `10.0.0.*`): client addresses are always compared in that form.
fn ip_pattern(text: &str) -> Result<IpPattern, String> {
    let bad = || {
        format!(
            "{} is not a CIDR (e.g. 10.0.0.0/8), an IP address (e.g. 192.168.1.10) or a glob \
             (e.g. 192.168.1.*)",
            quoted(text)
        )
    };
    if text.contains('*') {
        let glob_chars = text
            .chars()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '*'));
        return if glob_chars {
            Ok(IpPattern::Glob(unmap_glob(text).to_string()))
        } else {
            Err(bad())
        };
    }
    if text.contains('/') {
        return IpNet::from_str(text)
            .map(|net| IpPattern::Net(unmap(net.trunc())))
            .map_err(|_| bad());
    }
    IpAddr::from_str(text)
        .map(|address| IpPattern::Net(unmap(IpNet::from(address))))
        .map_err(|_| bad())
}

/// `::ffff:` followed by a dotted IPv4 glob → that glob; anything else unchanged.
fn unmap_glob(glob: &str) -> &str {
    match glob.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("::ffff:") => {
            let rest = &glob[7..];
            if rest.contains('.') && !rest.contains(':') {
                rest
            } else {
                glob
            }
        }
        _ => glob,
    }
}

/// `trustedProxies`, `proxyProtocol.accept`, `proxyIPs`: one or a list of CIDRs or bare
/// addresses (no globs).
pub(super) fn trusted_peers(ctx: &mut Ctx, path: &str, value: &Value) -> Option<Vec<IpNet>> {
    let entries = string_or_list(ctx, path, value, "a CIDR or IP address")?;
    check_entries(ctx, &entries, ip_net)
}

/// A CIDR (`10.0.0.0/8`, host bits cleared) or a bare address (→ /32 or /128). IPv4-mapped IPv6
/// (`::ffff:10.0.0.1`, `::ffff:10.0.0.0/104`) becomes the IPv4 network it names.
fn ip_net(text: &str) -> Result<IpNet, String> {
    let net = if text.contains('/') {
        IpNet::from_str(text).ok()
    } else {
        IpAddr::from_str(text).ok().map(IpNet::from)
    };
    match net {
        Some(net) => Ok(unmap(net.trunc())),
        None if text.contains('*') => Err(format!(
            "{} is a glob; trusted proxies are CIDRs (e.g. 10.0.0.0/8) or IP addresses \
             (e.g. 192.168.1.10)",
            quoted(text)
        )),
        None => Err(format!(
            "{} is not a CIDR (e.g. 10.0.0.0/8) or an IP address (e.g. 192.168.1.10)",
            quoted(text)
        )),
    }
}

/// `::ffff:a.b.c.d/n` with n ≥ 96 → `a.b.c.d/(n - 96)`; anything else unchanged.
fn unmap(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && let Some(prefix) = v6.prefix_len().checked_sub(96)
        && let Ok(v4net) = Ipv4Net::new(v4, prefix)
    {
        return IpNet::V4(v4net.trunc());
    }
    net
}
