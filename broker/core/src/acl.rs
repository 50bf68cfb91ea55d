//! Topic access control: which clients may publish to and subscribe to which topics.
//!
//! An ACL file holds one rule per line, `action access who topic-filter`:
//!
//! ```text
//! # action  access     who            topic-filter
//! allow     publish    user:alice     sensors/%u/#
//! deny      subscribe  client:dev-7   #
//! allow     pubsub     all            devices/%c/#
//! allow     subscribe  all            $SYS/#
//! ```
//!
//! `action` is `allow` or `deny`; `access` is `publish`, `subscribe` or `pubsub`; `who` is
//! `user:NAME`, `client:ID`, `all` or `anonymous` (clients without a username). The filter is the
//! rest of the line (it may contain spaces). Lines whose first non-blank character is `#` are
//! comments; there are no trailing comments because `#` is a filter wildcard.
//!
//! Invariants: rules are checked in file order and the first applicable one decides; when none
//! applies the request is denied. In filters, `%u` is replaced by the username and `%c` by the
//! client id at check time (any other `%` is literal). A rule whose substituted value is missing,
//! empty or contains `+`, `#` or `/` never applies, so a client id like `#` cannot widen a rule.
//! A publish is decided by rules whose filter matches the topic. A subscription (for
//! `$share/group/f`, its inner filter `f`) is allowed by an allow rule whose filter covers it
//! (matches every topic it can match) and denied by a deny rule whose filter intersects it.

mod filter;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// Why an ACL could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A line of ACL text is not a valid rule.
    #[error("line {line}: {reason}")]
    Syntax { line: usize, reason: String },
    /// A line of an ACL file is not a valid rule.
    #[error("{}:{line}: {reason}", path.display())]
    File { path: PathBuf, line: usize, reason: String },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    User(String),
    Client(String),
    All,
    Anonymous,
}

impl Who {
    fn applies(&self, username: Option<&str>, client_id: &str) -> bool {
        match self {
            Who::User(name) => username == Some(name.as_str()),
            Who::Client(id) => client_id == id,
            Who::All => true,
            Who::Anonymous => username.is_none(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    allow: bool,
    publish: bool,
    subscribe: bool,
    who: Who,
    filter: String,
}

impl Rule {
    /// The rule's filter with `%u`/`%c` substituted, or `None` when a value is unusable.
    fn expand<'a>(&'a self, username: Option<&str>, client_id: &str) -> Option<Cow<'a, str>> {
        if !self.filter.contains('%') {
            return Some(Cow::Borrowed(&self.filter));
        }
        let usable = |v: &str| !v.is_empty() && !v.contains(['+', '#', '/']);
        let mut parts = self.filter.split('%');
        let mut out = String::from(parts.next().unwrap_or_default());
        for part in parts {
            if let Some(rest) = part.strip_prefix('u') {
                out.push_str(username.filter(|u| usable(u))?);
                out.push_str(rest);
            } else if let Some(rest) = part.strip_prefix('c') {
                out.push_str(Some(client_id).filter(|c| usable(c))?);
                out.push_str(rest);
            } else {
                out.push('%');
                out.push_str(part);
            }
        }
        Some(Cow::Owned(out))
    }
}

/// A parsed ACL: an ordered list of rules, first match wins, default deny.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    rules: Vec<Rule>,
}

fn token(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    text.split_once(char::is_whitespace).unwrap_or((text, ""))
}

fn parse_rule(line: &str) -> std::result::Result<Rule, String> {
    let (action, rest) = token(line);
    let allow = match action {
        "allow" => true,
        "deny" => false,
        other => return Err(format!("expected `allow` or `deny`, found {other:?}")),
    };
    let (access, rest) = token(rest);
    let (publish, subscribe) = match access {
        "publish" => (true, false),
        "subscribe" => (false, true),
        "pubsub" => (true, true),
        "" => return Err("missing access (`publish`, `subscribe` or `pubsub`)".to_owned()),
        other => return Err(format!("unknown access {other:?}")),
    };
    let (who, rest) = token(rest);
    let who = match who {
        "all" => Who::All,
        "anonymous" => Who::Anonymous,
        "" => return Err("missing who (`user:NAME`, `client:ID`, `all`, `anonymous`)".to_owned()),
        other => match other.split_once(':') {
            Some(("user", name)) if !name.is_empty() => Who::User(name.to_owned()),
            Some(("client", id)) if !id.is_empty() => Who::Client(id.to_owned()),
            _ => return Err(format!("invalid who {other:?}")),
        },
    };
    let filter = rest.trim();
    if filter.is_empty() {
        return Err("missing topic filter".to_owned());
    }
    if !filter::valid_filter(filter) {
        return Err(format!("invalid topic filter {filter:?}"));
    }
    if filter.starts_with("$share/") {
        return Err("rules name the inner filter, not a `$share/` subscription".to_owned());
    }
    Ok(Rule { allow, publish, subscribe, who, filter: filter.to_owned() })
}

/// The filter a subscription is checked against: the inner filter of `$share/group/f`.
fn unshare(filter: &str) -> Option<&str> {
    match filter.strip_prefix("$share/") {
        None => Some(filter),
        Some(rest) => {
            let (group, inner) = rest.split_once('/')?;
            (!group.is_empty() && !group.contains(['+', '#'])).then_some(inner)
        }
    }
}

impl Acl {
    /// Reads and parses the ACL file at `path`; errors name the file and the line.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Self::parse(&text).map_err(|e| match e {
            Error::Syntax { line, reason } => Error::File { path: path.to_path_buf(), line, reason },
            other => other,
        })
    }

    /// Parses ACL text; errors carry the 1-based line number.
    pub fn parse(text: &str) -> Result<Self> {
        let mut rules = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let rule = parse_rule(trimmed).map_err(|reason| Error::Syntax { line: index + 1, reason })?;
            rules.push(rule);
        }
        Ok(Acl { rules })
    }

    /// Whether the client may publish to the topic name `topic`.
    pub fn check_publish(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool {
        if !filter::valid_topic(topic) {
            return false;
        }
        self.rules
            .iter()
            .filter(|r| r.publish && r.who.applies(username, client_id))
            .find_map(|r| {
                let f = r.expand(username, client_id)?;
                filter::matches(&f, topic).then_some(r.allow)
            })
            .unwrap_or(false)
    }

    /// Whether the client may subscribe to `filter` (for `$share/group/f`, to `f`).
    pub fn check_subscribe(&self, username: Option<&str>, client_id: &str, filter: &str) -> bool {
        let Some(inner) = unshare(filter).filter(|f| filter::valid_filter(f)) else {
            return false;
        };
        self.rules
            .iter()
            .filter(|r| r.subscribe && r.who.applies(username, client_id))
            .find_map(|r| {
                let f = r.expand(username, client_id)?;
                let applies = if r.allow { filter::covers(&f, inner) } else { filter::intersect(&f, inner) };
                applies.then_some(r.allow)
            })
            .unwrap_or(false)
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (everything is denied).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests;
