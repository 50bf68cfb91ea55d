//! MQTT topic names and topic filters: validation, shared-subscription parsing and matching.
//!
//! Owns the rules of MQTT 3.1.1 §4.7 and MQTT 5.0 §4.7 / §4.8.2:
//! - `/` separates levels; empty levels are legal (`/finance` has two levels, the first empty).
//! - `+` matches exactly one level (possibly empty) and must occupy a whole filter level.
//! - `#` matches the parent level and any number of child levels; it must be the last filter level
//!   and stand alone in it.
//! - Topic names starting with `$` are not matched by filters whose first level is `+` or `#`.
//! - Names and filters are at least one byte long and never contain U+0000.
//! - `$share/{ShareName}/{filter}` is a shared subscription: ShareName is non-empty and contains no
//!   `/`, `+` or `#`; the filter after it is a non-empty valid filter.
//!
//! Invariant: [`matches()`], [`filter_covers`] and [`filters_intersect`] work on plain (non-shared)
//! filters, level by level, without allocating and without panicking on any input; their answers
//! are only meaningful for inputs that passed validation.

/// Why a topic name or topic filter was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Names and filters must be at least one byte long.
    #[error("topic is empty")]
    Empty,
    /// A topic name (PUBLISH, will, retained) contains `+` or `#`.
    #[error("topic name contains a wildcard character")]
    WildcardInName,
    /// A wildcard is used in a position the filter grammar does not allow.
    #[error("misplaced wildcard: {0}")]
    BadWildcard(&'static str),
    /// The topic contains the null character U+0000.
    #[error("topic contains the null character U+0000")]
    NullChar,
    /// The topic is longer than the configured limit.
    #[error("topic is {len} bytes long, over the limit of {max}")]
    TooLong { len: usize, max: usize },
    /// The topic has more levels than the configured limit.
    #[error("topic has {levels} levels, over the limit of {max}")]
    TooManyLevels { levels: usize, max: usize },
    /// The ShareName of a `$share/{ShareName}/{filter}` subscription is missing or invalid.
    #[error("invalid share name: {0}")]
    BadShareName(&'static str),
    /// A `$share/{ShareName}/` subscription has no topic filter after the share name.
    #[error("shared subscription has no topic filter after the share name")]
    EmptySharedFilter,
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// The literal first level that marks a shared subscription.
const SHARE_PREFIX: &str = "$share";

/// Size limits for topics, from the broker configuration; they bound memory per subscription and
/// the depth of every topic trie (which is the recursion depth of trie walks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicLimits {
    /// Maximum length in bytes of a whole name or filter (shared prefix included).
    pub max_length: usize,
    /// Maximum number of `/`-separated levels (for a shared filter, of the filter after the
    /// share name).
    pub max_levels: usize,
}

impl Default for TopicLimits {
    /// The protocol maximum length (a UTF-8 string holds at most 65535 bytes) and 128 levels.
    fn default() -> Self {
        TopicLimits { max_length: 65_535, max_levels: 128 }
    }
}

/// A topic filter split into its routing parts: shared subscriptions are routed by their inner
/// filter and delivered to one member of their group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Filter<'a> {
    /// An ordinary subscription.
    Normal(&'a str),
    /// `$share/{group}/{filter}`.
    Shared { group: &'a str, filter: &'a str },
}

impl<'a> Filter<'a> {
    /// The filter that topics are matched against (the share prefix stripped).
    pub fn filter(&self) -> &'a str {
        match *self {
            Filter::Normal(filter) | Filter::Shared { filter, .. } => filter,
        }
    }

    /// The share name, for a shared subscription.
    pub fn group(&self) -> Option<&'a str> {
        match *self {
            Filter::Normal(_) => None,
            Filter::Shared { group, .. } => Some(group),
        }
    }
}

/// Checks a topic name used in PUBLISH, a will or a retained message; names never carry wildcards.
pub fn validate_topic_name(name: &str, limits: &TopicLimits) -> Result<()> {
    check_common(name, limits)?;
    if name.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(Error::WildcardInName);
    }
    check_levels(name, limits)
}

/// Checks a topic filter from SUBSCRIBE or UNSUBSCRIBE, including the shared-subscription syntax.
pub fn validate_topic_filter(filter: &str, limits: &TopicLimits) -> Result<()> {
    check_common(filter, limits)?;
    let inner = match filter.split_once('/') {
        Some((SHARE_PREFIX, rest)) => {
            let (group, inner) = rest.split_once('/').ok_or(if rest.is_empty() {
                Error::BadShareName("empty")
            } else {
                Error::EmptySharedFilter
            })?;
            if group.is_empty() {
                return Err(Error::BadShareName("empty"));
            }
            if group.bytes().any(|b| b == b'+' || b == b'#') {
                return Err(Error::BadShareName("contains a wildcard character"));
            }
            if inner.is_empty() {
                return Err(Error::EmptySharedFilter);
            }
            inner
        }
        None if filter == SHARE_PREFIX => return Err(Error::BadShareName("missing")),
        _ => filter,
    };
    check_levels(inner, limits)?;
    let mut levels = inner.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.len() > 1 && level.contains('+') {
            return Err(Error::BadWildcard("'+' must occupy a whole level"));
        }
        if level.contains('#') && (level.len() > 1 || levels.peek().is_some()) {
            return Err(Error::BadWildcard("'#' must stand alone in the last level"));
        }
    }
    Ok(())
}

fn check_common(topic: &str, limits: &TopicLimits) -> Result<()> {
    if topic.is_empty() {
        return Err(Error::Empty);
    }
    if topic.len() > limits.max_length {
        return Err(Error::TooLong { len: topic.len(), max: limits.max_length });
    }
    if topic.contains('\0') {
        return Err(Error::NullChar);
    }
    Ok(())
}

fn check_levels(topic: &str, limits: &TopicLimits) -> Result<()> {
    let levels = topic.bytes().filter(|&b| b == b'/').count() + 1;
    if levels > limits.max_levels {
        return Err(Error::TooManyLevels { levels, max: limits.max_levels });
    }
    Ok(())
}

/// Splits a filter into its share name and routed filter. Meant for filters that passed
/// [`validate_topic_filter`]; anything that does not have the shared form is returned as
/// [`Filter::Normal`].
pub fn parse_filter(filter: &str) -> Filter<'_> {
    if let Some((SHARE_PREFIX, rest)) = filter.split_once('/') {
        if let Some((group, inner)) = rest.split_once('/') {
            return Filter::Shared { group, filter: inner };
        }
    }
    Filter::Normal(filter)
}

/// Whether the first level of a plain filter is a wildcard (such filters never match `$` topics).
fn starts_with_wildcard(filter: &str) -> bool {
    filter.starts_with('+') || filter.starts_with('#')
}

/// Whether a plain filter's first level is a literal starting with `$`, so every topic it matches
/// starts with `$`.
fn only_dollar_topics(filter: &str) -> bool {
    filter.starts_with('$')
}

/// Whether `topic` (a topic name) is matched by the plain filter `filter`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && starts_with_wildcard(filter) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic matched by the plain filter `inner` is also matched by `outer`, e.g. an ACL
/// grant on `outer` permits a subscription to `inner`. `a/#` covers `a/+/b`; `a/+` does not cover
/// `a/#`; `#` does not cover `$SYS/#`.
pub fn filter_covers(outer: &str, inner: &str) -> bool {
    if starts_with_wildcard(outer) && only_dollar_topics(inner) {
        return false;
    }
    let mut outer_levels = outer.split('/');
    let mut inner_levels = inner.split('/');
    loop {
        match (outer_levels.next(), inner_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(i)) if i != "#" => {}
            (Some(o), Some(i)) if o == i => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether at least one topic name is matched by both plain filters, e.g. an ACL denial on one of
/// them affects a subscription to the other.
pub fn filters_intersect(a: &str, b: &str) -> bool {
    if (starts_with_wildcard(a) && only_dollar_topics(b)) || (starts_with_wildcard(b) && only_dollar_topics(a)) {
        return false;
    }
    let mut a_levels = a.split('/');
    let mut b_levels = b.split('/');
    loop {
        match (a_levels.next(), b_levels.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(x), Some(y)) if x == y => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests;
