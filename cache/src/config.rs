//! Where olaclick-cache connects: secrets from the environment or from files,
//! and `DATABASE_URL` read with libpq's meaning.
//!
//! tokio-postgres understands most of libpq's URL but rejects the file
//! parameters (`sslrootcert`, `sslcert`, `sslkey`), the `verify-ca` and
//! `verify-full` modes, and the `target_session_attrs` values `primary`,
//! `standby` and `prefer-standby`. [`PgUrl`] takes those out, hands the rest
//! to tokio-postgres unchanged, and the connection layer (`connect.rs`,
//! `tls.rs`) applies them itself.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use percent_encoding::percent_decode_str;

/// A URL with a password in it, given directly or as a file to read.
///
/// A file is read again on every use (every reconnection), so a rotated
/// password is picked up without a restart: the `*_FILE` convention of
/// container secrets (Docker and Kubernetes mount them as files).
#[derive(Clone)]
pub enum Secret {
    Value(String),
    File(PathBuf),
}

/// Shows the URL with its password hidden: a `{:?}` of the configuration
/// must not leak it.
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Value(url) => f.debug_tuple("Value").field(&redact(url)).finish(),
            Secret::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

impl Secret {
    /// From a variable and its `_FILE` twin; setting both is ambiguous.
    pub fn from_pair(name: &str, value: Option<String>, file: Option<PathBuf>) -> Result<Secret> {
        match (value, file) {
            (Some(_), Some(_)) => bail!("set {name} or {name}_FILE, not both"),
            (Some(v), None) => Ok(Secret::Value(v)),
            (None, Some(f)) => Ok(Secret::File(f)),
            (None, None) => bail!("{name} (or {name}_FILE, a file holding it) is required"),
        }
    }

    /// The current value. A file's surrounding whitespace (the newline an
    /// editor or `echo` leaves) is not part of it.
    pub fn read(&self) -> Result<String> {
        match self {
            Secret::Value(v) => Ok(v.clone()),
            Secret::File(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Ok(text.trim().to_string())
            }
        }
    }
}

/// libpq's `sslmode`. Default `prefer`, as libpq's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The libpq `target_session_attrs` values tokio-postgres 0.7 lacks; the
/// others (`any`, `read-write`, `read-only`) are left to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostChoice {
    /// `any`, `read-write`, `read-only`: checked by tokio-postgres, given one
    /// host at a time (connect.rs tries them in order).
    TokioPostgres,
    /// A server in recovery if any host has one, else any server.
    PreferStandby,
    /// Only a server in recovery.
    Standby,
    /// Only a server not in recovery.
    Primary,
}

/// What the TLS layer needs from the URL. Paths, not contents: the files are
/// read on every connection, so renewed certificates are picked up too.
#[derive(Clone, Debug, PartialEq)]
pub struct PgTls {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// One host of the URL's host list, as written (percent-encoded).
#[derive(Clone, Debug, PartialEq)]
pub struct Host {
    pub host: String,
    pub port: Option<String>,
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = percent_decode_str(&self.host).decode_utf8_lossy();
        match &self.port {
            Some(port) => write!(f, "{host}:{port}"),
            None => write!(f, "{host}"),
        }
    }
}

/// A `postgres://` or `postgresql://` URL split the way libpq reads it:
/// `scheme://[user[:password]@][host[:port]][,host[:port]...][/dbname][?k=v&...]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PgUrl {
    scheme: String,
    /// `user[:password]` as written, without the `@`.
    userinfo: Option<String>,
    pub hosts: Vec<Host>,
    /// `/dbname` as written, or empty.
    path: String,
    /// Query parameters as written (key, value), minus the ones taken out.
    params: Vec<(String, String)>,
    pub tls: PgTls,
    pub choice: HostChoice,
    /// What tokio-postgres should be told (`require` where the URL asks for
    /// verification, which `tls.rs` does).
    tokio_sslmode: Option<&'static str>,
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

impl PgUrl {
    pub fn parse(url: &str) -> Result<PgUrl> {
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(s, _)| *s == "postgresql" || *s == "postgres")
            .context("DATABASE_URL must be a postgresql:// URL")?;
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.find('/') {
            Some(i) => before_query.split_at(i),
            None => (before_query, ""),
        };
        // The password may contain '@' only percent-encoded, as in libpq;
        // the last '@' ends the user part either way.
        let (userinfo, hostlist) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, authority),
        };
        let mut hosts = Vec::new();
        if !hostlist.is_empty() {
            for item in hostlist.split(',') {
                hosts.push(parse_host(item)?);
            }
        }

        let mut params = Vec::new();
        let mut tls = PgTls {
            mode: SslMode::Prefer,
            root_cert: None,
            cert: None,
            key: None,
        };
        let mut choice = HostChoice::TokioPostgres;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match decode(key).as_str() {
                "sslmode" => {
                    tls.mode = match decode(value).as_str() {
                        "disable" => SslMode::Disable,
                        "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-ca" => SslMode::VerifyCa,
                        "verify-full" => SslMode::VerifyFull,
                        // `allow` (plain first, TLS if refused) has no
                        // tokio-postgres counterpart; say so rather than
                        // guess.
                        other => bail!(
                            "sslmode={other} is not supported (disable, prefer, require, verify-ca, verify-full)"
                        ),
                    }
                }
                "sslrootcert" => tls.root_cert = Some(PathBuf::from(decode(value))),
                "sslcert" => tls.cert = Some(PathBuf::from(decode(value))),
                "sslkey" => tls.key = Some(PathBuf::from(decode(value))),
                "target_session_attrs" => match decode(value).as_str() {
                    "prefer-standby" => choice = HostChoice::PreferStandby,
                    "standby" => choice = HostChoice::Standby,
                    "primary" => choice = HostChoice::Primary,
                    _ => params.push((key.to_string(), value.to_string())),
                },
                _ => params.push((key.to_string(), value.to_string())),
            }
        }
        if choice != HostChoice::TokioPostgres {
            // Each host is tried on its own: hosts, ports or addresses given
            // as parameters could not be paired with them.
            if hosts.is_empty()
                || params
                    .iter()
                    .any(|(k, _)| matches!(decode(k).as_str(), "host" | "hostaddr" | "port"))
            {
                bail!("target_session_attrs=standby, primary or prefer-standby needs every host in the URL's host list (postgresql://user@h1:p1,h2:p2/db)");
            }
        }
        let tokio_sslmode = match tls.mode {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
        };
        Ok(PgUrl {
            scheme: scheme.to_string(),
            userinfo,
            hosts,
            path: path.to_string(),
            params,
            tls,
            choice,
            tokio_sslmode: Some(tokio_sslmode),
        })
    }

    /// The password, decoded (from the user part or a `password` parameter).
    pub fn password(&self) -> Option<String> {
        let from_userinfo = self
            .userinfo
            .as_deref()
            .and_then(|u| u.split_once(':'))
            .map(|(_, p)| decode(p));
        from_userinfo.or_else(|| {
            self.params
                .iter()
                .find(|(k, _)| decode(k) == "password")
                .map(|(_, v)| decode(v))
        })
    }

    fn assemble(&self, hosts: &[Host], password: Option<&str>) -> String {
        let mut out = format!("{}://", self.scheme);
        if let Some(userinfo) = &self.userinfo {
            match (userinfo.split_once(':'), password) {
                (Some((user, _)), Some(replacement)) => {
                    out.push_str(&format!("{user}:{replacement}@"))
                }
                _ => out.push_str(&format!("{userinfo}@")),
            }
        }
        let hosts: Vec<String> = hosts
            .iter()
            .map(|h| match &h.port {
                Some(port) => format!("{}:{port}", h.host),
                None => h.host.clone(),
            })
            .collect();
        out.push_str(&hosts.join(","));
        out.push_str(&self.path);
        let mut params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| match (password, decode(k).as_str()) {
                (Some(replacement), "password") => format!("{k}={replacement}"),
                _ => format!("{k}={v}"),
            })
            .collect();
        if let Some(mode) = self.tokio_sslmode {
            params.push(format!("sslmode={mode}"));
        }
        if !params.is_empty() {
            out.push('?');
            out.push_str(&params.join("&"));
        }
        out
    }

    /// The URL to hand to tokio-postgres, for all hosts or just one.
    pub fn for_tokio_postgres(&self, host: Option<&Host>) -> String {
        match host {
            Some(h) => self.assemble(std::slice::from_ref(h), None),
            None => self.assemble(&self.hosts, None),
        }
    }

    /// The URL for a log line: every host and port, the password as `***`,
    /// the parameters as given (file paths included, they are not secret).
    pub fn redacted(&self) -> String {
        let mut shown = self.clone();
        shown.tokio_sslmode = None;
        let mut extra = Vec::new();
        match self.tls.mode {
            SslMode::Prefer => {}
            mode => extra.push(("sslmode", sslmode_name(mode).to_string())),
        }
        for (name, path) in [
            ("sslrootcert", &self.tls.root_cert),
            ("sslcert", &self.tls.cert),
            ("sslkey", &self.tls.key),
        ] {
            if let Some(path) = path {
                extra.push((name, path.display().to_string()));
            }
        }
        match self.choice {
            HostChoice::TokioPostgres => {}
            HostChoice::PreferStandby => {
                extra.push(("target_session_attrs", "prefer-standby".into()))
            }
            HostChoice::Standby => extra.push(("target_session_attrs", "standby".into())),
            HostChoice::Primary => extra.push(("target_session_attrs", "primary".into())),
        }
        shown
            .params
            .extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
        shown.assemble(&self.hosts, Some("***"))
    }
}

fn sslmode_name(mode: SslMode) -> &'static str {
    match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    }
}

fn parse_host(item: &str) -> Result<Host> {
    // An IPv6 address is bracketed: [::1]:5432.
    let (host, port) = if let Some(rest) = item.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .context("DATABASE_URL: unclosed '[' in a host")?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => bail!("DATABASE_URL: unexpected text after [{addr}]"),
        };
        (format!("[{addr}]"), port)
    } else {
        match item.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (item.to_string(), None),
        }
    };
    if let Some(port) = port {
        if !port.is_empty() && port.parse::<u16>().is_err() {
            bail!("DATABASE_URL: port {port:?} of host {host} is not a number");
        }
    }
    Ok(Host {
        host,
        port: port.filter(|p| !p.is_empty()).map(str::to_string),
    })
}

/// The passwords in a URL of either kind, decoded and as written, to scrub
/// from messages.
pub fn passwords(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(pg) = PgUrl::parse(url) {
        if let Some(p) = pg.password() {
            found.push(p);
        }
    } else if let Ok(parsed) = url::Url::parse(url) {
        if let Some(p) = parsed.password() {
            found.push(decode(p));
        }
    }
    let raw: Vec<String> = found
        .iter()
        .map(|p| {
            percent_encoding::utf8_percent_encode(p, percent_encoding::NON_ALPHANUMERIC).to_string()
        })
        .collect();
    found.extend(raw);
    // The user part as written may encode differently from NON_ALPHANUMERIC:
    // take it verbatim too.
    if let Some((_, after_scheme)) = url.split_once("://") {
        let authority = after_scheme.split(['/', '?']).next().unwrap_or("");
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            if let Some((_, p)) = userinfo.split_once(':') {
                found.push(p.to_string());
            }
        }
    }
    found.retain(|p| !p.is_empty());
    found.sort();
    found.dedup();
    found
}

/// A URL fit for a log line: hosts and ports shown, password as `***`.
pub fn redact(url: &str) -> String {
    if let Ok(pg) = PgUrl::parse(url) {
        return pg.redacted();
    }
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparsable URL>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_host_url_is_redacted_readably() {
        let url = "postgresql://u:pw@h1:5471,h2:5472/db?target_session_attrs=read-write";
        assert_eq!(
            redact(url),
            "postgresql://u:***@h1:5471,h2:5472/db?target_session_attrs=read-write"
        );
    }

    #[test]
    fn percent_encoded_passwords_are_found_and_hidden() {
        // "p@ss:w/rd%" encoded
        let url = "postgresql://app:p%40ss%3Aw%2Frd%25@db.example:5432/shop?sslmode=verify-full&sslrootcert=/etc/ca.pem";
        let pg = PgUrl::parse(url).unwrap();
        assert_eq!(pg.password().as_deref(), Some("p@ss:w/rd%"));
        assert_eq!(
            pg.hosts,
            vec![Host {
                host: "db.example".into(),
                port: Some("5432".into())
            }]
        );
        let shown = redact(url);
        assert!(
            !shown.contains("p%40ss") && !shown.contains("p@ss"),
            "{shown}"
        );
        assert_eq!(
            shown,
            "postgresql://app:***@db.example:5432/shop?sslmode=verify-full&sslrootcert=/etc/ca.pem"
        );
        let secrets = passwords(url);
        assert!(secrets.contains(&"p@ss:w/rd%".to_string()), "{secrets:?}");
        assert!(
            secrets.contains(&"p%40ss%3Aw%2Frd%25".to_string()),
            "{secrets:?}"
        );
    }

    #[test]
    fn a_password_parameter_is_hidden_too() {
        let url = "postgresql://app@h/db?password=hunter2&application_name=x";
        assert_eq!(
            redact(url),
            "postgresql://app@h/db?password=***&application_name=x"
        );
        assert_eq!(passwords(url), vec!["hunter2".to_string()]);
    }

    #[test]
    fn file_parameters_are_stripped_for_tokio_postgres() {
        let pg = PgUrl::parse(
            "postgresql://u:pw@localhost:5471/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&sslcert=/c.pem&sslkey=/k.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(
            pg.tls,
            PgTls {
                mode: SslMode::VerifyFull,
                root_cert: Some("/tmp/ca.pem".into()),
                cert: Some("/c.pem".into()),
                key: Some("/k.pem".into()),
            }
        );
        let for_tokio = pg.for_tokio_postgres(None);
        assert_eq!(
            for_tokio,
            "postgresql://u:pw@localhost:5471/db?connect_timeout=3&sslmode=require"
        );
        // tokio-postgres accepts what is left.
        let parsed: tokio_postgres::Config = for_tokio.parse().unwrap();
        assert_eq!(
            parsed.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
    }

    #[test]
    fn sslmode_defaults_to_prefer_and_maps_for_tokio_postgres() {
        let pg = PgUrl::parse("postgres://u@h/db").unwrap();
        assert_eq!(pg.tls.mode, SslMode::Prefer);
        assert_eq!(
            pg.for_tokio_postgres(None),
            "postgres://u@h/db?sslmode=prefer"
        );
        let pg = PgUrl::parse("postgres://u@h/db?sslmode=verify-ca").unwrap();
        assert_eq!(pg.tls.mode, SslMode::VerifyCa);
        assert!(pg.for_tokio_postgres(None).ends_with("sslmode=require"));
        assert!(PgUrl::parse("postgres://u@h/db?sslmode=allow").is_err());
        assert!(PgUrl::parse("mysql://u@h/db").is_err());
        assert!(PgUrl::parse("postgres://u@h:notaport/db").is_err());
    }

    #[test]
    fn prefer_standby_is_taken_out_and_hosts_split() {
        let pg = PgUrl::parse(
            "postgresql://u:pw@h1:5471,[::1]:5472,h3/db?target_session_attrs=prefer-standby&application_name=a",
        )
        .unwrap();
        assert_eq!(pg.choice, HostChoice::PreferStandby);
        assert_eq!(pg.hosts.len(), 3);
        assert_eq!(pg.hosts[1].to_string(), "[::1]:5472");
        assert_eq!(pg.hosts[2].port, None);
        assert_eq!(
            pg.for_tokio_postgres(Some(&pg.hosts[1])),
            "postgresql://u:pw@[::1]:5472/db?application_name=a&sslmode=prefer"
        );
        assert_eq!(
            pg.redacted(),
            "postgresql://u:***@h1:5471,[::1]:5472,h3/db?application_name=a&target_session_attrs=prefer-standby"
        );
        // What tokio-postgres knows stays with it.
        let pg = PgUrl::parse("postgresql://u@h1,h2/db?target_session_attrs=read-write").unwrap();
        assert_eq!(pg.choice, HostChoice::TokioPostgres);
        assert!(pg
            .for_tokio_postgres(None)
            .contains("target_session_attrs=read-write"));
        // Hosts given as parameters can't be tried one by one.
        assert!(PgUrl::parse("postgresql:///db?host=/tmp&target_session_attrs=standby").is_err());
    }

    #[test]
    fn a_unix_socket_url_passes_through() {
        let url = "postgresql://postgres@%2Fvar%2Ftmp%2Folaclick:5498/db";
        let pg = PgUrl::parse(url).unwrap();
        assert_eq!(pg.hosts[0].to_string(), "/var/tmp/olaclick:5498");
        let parsed: tokio_postgres::Config = pg.for_tokio_postgres(None).parse().unwrap();
        assert_eq!(parsed.get_ports(), &[5498]);
    }

    #[test]
    fn redis_urls_are_redacted_with_the_url_crate() {
        assert_eq!(
            redact("rediss://olaclick:s3cret@127.0.0.1:6380/0"),
            "rediss://olaclick:***@127.0.0.1:6380/0"
        );
        assert_eq!(
            passwords("rediss://olaclick:s3cret@127.0.0.1:6380"),
            vec!["s3cret".to_string()]
        );
        assert_eq!(redact("not a url"), "<unparsable URL>");
    }

    #[test]
    fn debug_output_hides_the_password() {
        let secret = Secret::Value("postgresql://u:hunter2@h/db".into());
        let shown = format!("{secret:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("u:***@h"),
            "{shown}"
        );
    }

    #[test]
    fn secrets_come_from_one_place_and_files_are_reread() {
        assert!(Secret::from_pair("DATABASE_URL", None, None).is_err());
        assert!(Secret::from_pair("DATABASE_URL", Some("x".into()), Some("/f".into())).is_err());
        let dir =
            std::env::temp_dir().join(format!("olaclick-cache-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("url");
        std::fs::write(&file, "postgresql://u:one@h/db\n").unwrap();
        let secret = Secret::from_pair("DATABASE_URL", None, Some(file.clone())).unwrap();
        assert_eq!(secret.read().unwrap(), "postgresql://u:one@h/db");
        std::fs::write(&file, "postgresql://u:two@h/db").unwrap();
        assert_eq!(secret.read().unwrap(), "postgresql://u:two@h/db");
        std::fs::remove_dir_all(&dir).unwrap();
        let missing = Secret::File(dir.join("gone")).read().unwrap_err();
        assert!(format!("{missing:#}").contains("gone"), "{missing:#}");
    }
}
