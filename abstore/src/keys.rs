//! The ABStore key schema (Bucketeer-compatible): the one place where Redis key names are built
//! and parsed. Writers, readers, prune and backup filters all go through it, so they can never
//! disagree on a layout, and every parsed key formats back to exactly the bytes it came from.

use std::fmt;
use std::fmt::Write as _;
use std::str::FromStr;

use sha1::{Digest, Sha1};

/// The last valid bucket: 9999-12-31T23:00:00Z. Later stamps would not survive a round trip
/// through tools that format dates with four-digit years.
pub const MAX_BUCKET_SECS: i64 = 253_402_297_200;

/// The variation id Bucketeer records for default (non-targeted) evaluations.
pub const DEFAULT_VARIATION: &str = "default";

const HOUR_SECS: i64 = 3_600;
const DAY_SECS: i64 = 86_400;
const SEPARATOR: char = ':';
/// Lower-case hex digits (dedup digests).
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";
const MAX_ID_BYTES: usize = 256;
const MAX_USER_BYTES: usize = 512;
const MAX_EVENT_ID_BYTES: usize = 256;
const MAX_ENV_BYTES: usize = 64;
const MAX_TEMP_ID_BYTES: usize = 64;
/// i64::MAX has 19 digits; refusing longer text up front keeps parsing cheap on hostile input.
const MAX_BUCKET_DIGITS: usize = 19;
const DIGEST_HEX_LEN: usize = 40;
/// Partitions of a flag in the cluster layout (docs/cluster.md): a flag's counters spread over
/// this many hash slots. Part of the key schema: readers sum over all of them.
pub const PARTITIONS: u16 = 16;
/// Keys and values in error messages are cut so a hostile 512 MB key cannot flood the logs.
const ERROR_KEY_CHARS: usize = 120;
const ERROR_VALUE_CHARS: usize = 64;

/// How wide a counter bucket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Granularity {
    /// Bucketeer's real layout: one bucket per UTC hour.
    #[default]
    Hour,
    /// One bucket per UTC day (what Bucketeer's RFC describes).
    Day,
}

impl Granularity {
    /// The bucket width in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Granularity::Hour => HOUR_SECS,
            Granularity::Day => DAY_SECS,
        }
    }
}

/// Unix seconds at the start of a UTC hour in `0..=MAX_BUCKET_SECS`; a day bucket is simply an
/// hour bucket that also starts a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BucketTimestamp(i64);

impl BucketTimestamp {
    /// Accepts only the start of a UTC hour within the supported range.
    pub fn from_secs(secs: i64) -> Result<Self, KeyError> {
        Self::check(secs).map_err(KeyError::without_key)
    }

    /// The bucket of granularity `g` that contains `unix_secs`.
    pub fn containing(unix_secs: i64, g: Granularity) -> Result<Self, KeyError> {
        if !(0..=MAX_BUCKET_SECS + HOUR_SECS - 1).contains(&unix_secs) {
            return Err(KeyError::without_key(KeyErrorReason::InvalidBucket {
                text: unix_secs.to_string(),
                problem: BucketProblem::OutOfRange,
            }));
        }
        Self::from_secs(unix_secs - unix_secs % g.seconds())
    }

    /// Unix seconds.
    pub fn secs(self) -> i64 {
        self.0
    }

    /// Whether this bucket starts a UTC day, i.e. could be a day-granularity bucket.
    pub fn is_day_start(self) -> bool {
        self.0 % DAY_SECS == 0
    }

    /// The bucket one hour or one day later.
    pub fn next(self, g: Granularity) -> Result<Self, KeyError> {
        // Cannot overflow: self.0 <= MAX_BUCKET_SECS, far below i64::MAX.
        Self::from_secs(self.0 + g.seconds())
    }

    fn check(secs: i64) -> Result<Self, KeyErrorReason> {
        let problem = if !(0..=MAX_BUCKET_SECS).contains(&secs) {
            BucketProblem::OutOfRange
        } else if secs % HOUR_SECS != 0 {
            BucketProblem::NotHourStart
        } else {
            return Ok(Self(secs));
        };
        Err(KeyErrorReason::InvalidBucket {
            text: secs.to_string(),
            problem,
        })
    }

    /// Only canonical decimal is accepted, so that the parsed key re-formats to the same bytes.
    fn parse(text: &str) -> Result<Self, KeyErrorReason> {
        let problem = if text.is_empty() {
            BucketProblem::Empty
        } else if !text.bytes().all(|b| b.is_ascii_digit()) {
            BucketProblem::NotDecimal
        } else if text.len() > 1 && text.starts_with('0') {
            BucketProblem::LeadingZero
        } else if text.len() > MAX_BUCKET_DIGITS {
            BucketProblem::OutOfRange
        } else {
            return match text.parse::<i64>() {
                Ok(secs) => Self::check(secs),
                // 19 digits can still exceed i64::MAX.
                Err(_) => Err(KeyErrorReason::InvalidBucket {
                    text: text.to_owned(),
                    problem: BucketProblem::OutOfRange,
                }),
            };
        };
        Err(KeyErrorReason::InvalidBucket {
            text: truncate(text, ERROR_VALUE_CHARS),
            problem,
        })
    }
}

impl fmt::Display for BucketTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// An environment prefix: 1..=64 of `[A-Za-z0-9_.-]`, never a kind tag (that would make the
/// prefix indistinguishable from an unprefixed key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Env(String);

impl Env {
    pub fn new(s: &str) -> Result<Env, KeyError> {
        Self::check(s).map_err(KeyError::without_key)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn check(s: &str) -> Result<Env, KeyErrorReason> {
        let problem = if s.is_empty() {
            Some(ValueProblem::Empty)
        } else if let Some(ch) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            Some(ValueProblem::NotAllowed {
                ch,
                allowed: "A-Z, a-z, 0-9, '_', '.' and '-'",
            })
        } else if s.len() > MAX_ENV_BYTES {
            Some(ValueProblem::TooLong {
                len: s.len(),
                max: MAX_ENV_BYTES,
            })
        } else if KeyKind::from_tag(s).is_some() {
            Some(ValueProblem::IsKindTag)
        } else {
            None
        };
        match problem {
            None => Ok(Env(s.to_owned())),
            Some(problem) => Err(KeyErrorReason::InvalidEnv {
                env: truncate(s, ERROR_VALUE_CHARS),
                problem,
            }),
        }
    }
}

impl fmt::Display for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Env {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Env::new(s)
    }
}

impl AsRef<str> for Env {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The four counter families Bucketeer keeps per bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CounterKind {
    /// `ec`: evaluations, an integer written with INCRBY.
    EvaluationCount,
    /// `uc`: users who were evaluated, a HyperLogLog written with PFADD.
    EvaluationUsers,
    /// `gc`: goal (conversion) events, an integer.
    GoalCount,
    /// `gu`: users who converted, a HyperLogLog.
    GoalUsers,
}

impl CounterKind {
    pub const ALL: [CounterKind; 4] = [
        CounterKind::EvaluationCount,
        CounterKind::EvaluationUsers,
        CounterKind::GoalCount,
        CounterKind::GoalUsers,
    ];

    pub fn tag(self) -> &'static str {
        self.key_kind().tag()
    }

    /// Goal counters carry a goal id segment.
    pub fn is_goal(self) -> bool {
        matches!(self, CounterKind::GoalCount | CounterKind::GoalUsers)
    }

    /// The HyperLogLog kinds: read with PFCOUNT/PFMERGE, not GET/MGET.
    pub fn is_unique_users(self) -> bool {
        matches!(self, CounterKind::EvaluationUsers | CounterKind::GoalUsers)
    }

    pub fn key_kind(self) -> KeyKind {
        match self {
            CounterKind::EvaluationCount => KeyKind::EvaluationCount,
            CounterKind::EvaluationUsers => KeyKind::EvaluationUsers,
            CounterKind::GoalCount => KeyKind::GoalCount,
            CounterKind::GoalUsers => KeyKind::GoalUsers,
        }
    }
}

impl fmt::Display for CounterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// What a dedup flag guards; part of the digest so an evaluation and a goal event that happen to
/// share an id do not suppress each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Evaluation,
    Goal,
}

impl EventKind {
    pub fn tag(self) -> &'static str {
        match self {
            EventKind::Evaluation => "evaluation",
            EventKind::Goal => "goal",
        }
    }
}

/// Every kind of key in the schema, named by the tag that starts it (after any environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    EvaluationCount,
    EvaluationUsers,
    GoalCount,
    GoalUsers,
    Dedup,
    Assignment,
    Experiment,
    /// The experiments an environment has (the tracking API's index): one set.
    ExperimentIndex,
    Temp,
}

impl KeyKind {
    pub const ALL: [KeyKind; 9] = [
        KeyKind::EvaluationCount,
        KeyKind::EvaluationUsers,
        KeyKind::GoalCount,
        KeyKind::GoalUsers,
        KeyKind::Dedup,
        KeyKind::Assignment,
        KeyKind::Experiment,
        KeyKind::ExperimentIndex,
        KeyKind::Temp,
    ];

    pub fn tag(self) -> &'static str {
        match self {
            KeyKind::EvaluationCount => "ec",
            KeyKind::EvaluationUsers => "uc",
            KeyKind::GoalCount => "gc",
            KeyKind::GoalUsers => "gu",
            KeyKind::Dedup => "dd",
            KeyKind::Assignment => "as",
            KeyKind::Experiment => "exp",
            KeyKind::ExperimentIndex => "exps",
            KeyKind::Temp => "tmp",
        }
    }

    pub fn from_tag(tag: &str) -> Option<KeyKind> {
        KeyKind::ALL.into_iter().find(|k| k.tag() == tag)
    }

    /// The layout after any environment prefix, for error messages and docs.
    pub fn layout(self) -> &'static str {
        match self {
            KeyKind::EvaluationCount => "ec:<bucket_ts>:<flag>:<variation>",
            KeyKind::EvaluationUsers => "uc:<bucket_ts>:<flag>:<variation>",
            KeyKind::GoalCount => "gc:<bucket_ts>:<flag>:<goal>:<variation>",
            KeyKind::GoalUsers => "gu:<bucket_ts>:<flag>:<goal>:<variation>",
            KeyKind::Dedup => "dd:<40 lowercase hex sha1>",
            KeyKind::Assignment => "as:<flag>:<user> (the user may contain ':')",
            KeyKind::Experiment => "exp:<flag>",
            KeyKind::ExperimentIndex => "exps",
            KeyKind::Temp => "tmp:<id>",
        }
    }

    pub fn counter_kind(self) -> Option<CounterKind> {
        CounterKind::ALL.into_iter().find(|c| c.key_kind() == self)
    }

    /// A Redis SCAN MATCH pattern for every key of this kind in `env` (or without an
    /// environment). Env characters are never glob metacharacters, so no escaping is needed.
    pub fn scan_pattern(self, env: Option<&Env>) -> String {
        if self == KeyKind::ExperimentIndex {
            // One key, no parts after the tag.
            return match env {
                Some(env) => format!("{env}:{}", self.tag()),
                None => self.tag().to_owned(),
            };
        }
        match env {
            Some(env) => format!("{env}:{}:*", self.tag()),
            None => format!("{}:*", self.tag()),
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// A counter key; fields are private so every instance has passed validation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterKey {
    env: Option<Env>,
    kind: CounterKind,
    bucket: BucketTimestamp,
    flag: String,
    /// Some exactly when `kind.is_goal()`.
    goal: Option<String>,
    variation: String,
    /// Cluster layout: the flag's partition, written as the hash tag `{<flag>:<p>}`.
    partition: Option<u16>,
}

/// `key` written into a string allocated once with room for `capacity` bytes: every recorded
/// event builds three keys, and growing a `String` from empty reallocated each a few times.
fn key_string(key: &dyn fmt::Display, capacity: usize) -> String {
    let mut out = String::with_capacity(capacity);
    // Writing into a String cannot fail.
    let _ = fmt::write(&mut out, format_args!("{key}"));
    out
}

impl CounterKey {
    /// The key as a string ([`ToString`] without the reallocations): what a recorder sends.
    pub fn to_key_string(&self) -> String {
        let names = self.flag.len()
            + self.variation.len()
            + self.goal.as_ref().map_or(0, String::len)
            + self.env.as_ref().map_or(0, |env| env.as_str().len());
        // Separators, tag, bucket (at most 20 digits) and partition tag fit in 48.
        key_string(self, names + 48)
    }

    /// An `ec` or `uc` key.
    pub fn evaluation(
        env: Option<&Env>,
        kind: CounterKind,
        bucket: BucketTimestamp,
        flag: &str,
        variation: &str,
    ) -> Result<Self, KeyError> {
        let check = || {
            if kind.is_goal() {
                return Err(KeyErrorReason::WrongCounterKind {
                    kind,
                    expected: "an evaluation kind (ec or uc); use CounterKey::goal",
                });
            }
            check_id(Field::Flag, flag)?;
            check_id(Field::Variation, variation)
        };
        // The bucket is formatted for the error only (every recorded event builds two keys).
        check().map_err(|r| {
            let bucket_text = bucket.to_string();
            KeyError::for_parts(env, kind.key_kind(), &[&bucket_text, flag, variation], r)
        })?;
        Ok(Self {
            env: env.cloned(),
            kind,
            bucket,
            flag: flag.to_owned(),
            goal: None,
            variation: variation.to_owned(),
            partition: None,
        })
    }

    /// A `gc` or `gu` key.
    pub fn goal(
        env: Option<&Env>,
        kind: CounterKind,
        bucket: BucketTimestamp,
        flag: &str,
        goal: &str,
        variation: &str,
    ) -> Result<Self, KeyError> {
        let check = || {
            if !kind.is_goal() {
                return Err(KeyErrorReason::WrongCounterKind {
                    kind,
                    expected: "a goal kind (gc or gu); use CounterKey::evaluation",
                });
            }
            check_id(Field::Flag, flag)?;
            check_id(Field::Goal, goal)?;
            check_id(Field::Variation, variation)
        };
        check().map_err(|r| {
            let bucket_text = bucket.to_string();
            KeyError::for_parts(
                env,
                kind.key_kind(),
                &[&bucket_text, flag, goal, variation],
                r,
            )
        })?;
        Ok(Self {
            env: env.cloned(),
            kind,
            bucket,
            flag: flag.to_owned(),
            goal: Some(goal.to_owned()),
            variation: variation.to_owned(),
            partition: None,
        })
    }

    /// The same counter in the cluster layout, in partition `partition` of its flag
    /// (`0..PARTITIONS`, from [`partition_of`] the event's user).
    pub fn partitioned(self, partition: u16) -> Result<Self, KeyError> {
        check_partition(partition).map_err(|r| KeyError::for_key(&self.to_string(), r))?;
        Ok(CounterKey {
            partition: Some(partition),
            ..self
        })
    }

    /// The partition of the cluster layout, if this key uses it.
    pub fn partition(&self) -> Option<u16> {
        self.partition
    }

    pub fn env(&self) -> Option<&Env> {
        self.env.as_ref()
    }

    pub fn kind(&self) -> CounterKind {
        self.kind
    }

    pub fn bucket(&self) -> BucketTimestamp {
        self.bucket
    }

    pub fn flag(&self) -> &str {
        &self.flag
    }

    /// The goal id of a goal counter. (Not `goal()`: that name is the constructor.)
    pub fn goal_id(&self) -> Option<&str> {
        self.goal.as_deref()
    }

    pub fn variation(&self) -> &str {
        &self.variation
    }

    /// The same counter in another bucket; range reads walk buckets this way without
    /// re-validating the other components.
    pub fn with_bucket(&self, bucket: BucketTimestamp) -> CounterKey {
        CounterKey {
            bucket,
            ..self.clone()
        }
    }
}

impl fmt::Display for CounterKey {
    // Pieces written one by one (no format arguments): every recorded event formats two.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(env) = &self.env {
            f.write_str(env.as_str())?;
            f.write_char(SEPARATOR)?;
        }
        f.write_str(self.kind.tag())?;
        f.write_char(SEPARATOR)?;
        fmt::Display::fmt(&self.bucket.0, f)?;
        f.write_char(SEPARATOR)?;
        match self.partition {
            Some(p) => {
                f.write_char('{')?;
                f.write_str(&self.flag)?;
                f.write_char(SEPARATOR)?;
                fmt::Display::fmt(&p, f)?;
                f.write_char('}')?;
            }
            None => f.write_str(&self.flag)?,
        }
        if let Some(goal) = &self.goal {
            f.write_char(SEPARATOR)?;
            f.write_str(goal)?;
        }
        f.write_char(SEPARATOR)?;
        f.write_str(&self.variation)
    }
}

/// Any ABStore key. Build non-counter keys with the constructors ([`Key::assignment`] …): the
/// variant fields are public for matching, and a hand-built variant skips validation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Counter(CounterKey),
    Dedup {
        env: Option<Env>,
        digest: [u8; 20],
        /// Cluster layout: the event's flag and partition, the hash tag `{<flag>:<p>}` its
        /// counters carry, so the flag and the counters share a slot.
        tag: Option<(String, u16)>,
    },
    Assignment {
        env: Option<Env>,
        flag: String,
        user: String,
    },
    Experiment {
        env: Option<Env>,
        flag: String,
    },
    /// `exps`: the set of flags with an `exp:<flag>` key (what the tracking API lists).
    ExperimentIndex {
        env: Option<Env>,
    },
    Temp {
        env: Option<Env>,
        id: String,
    },
}

impl Key {
    /// The key as a string ([`ToString`] without the reallocations).
    pub fn to_key_string(&self) -> String {
        match self {
            Key::Counter(counter) => counter.to_key_string(),
            Key::Dedup { env, tag, .. } => key_string(
                self,
                env.as_ref().map_or(0, |env| env.as_str().len())
                    + tag.as_ref().map_or(0, |(flag, _)| flag.len())
                    + 64,
            ),
            other => other.to_string(),
        }
    }

    /// Parses a raw Redis key. Total on any input: hostile or corrupt keys from SCAN produce
    /// an error, never a panic.
    pub fn parse(raw: &[u8]) -> Result<Key, KeyError> {
        let text = std::str::from_utf8(raw).map_err(|e| {
            KeyError::for_key(
                &String::from_utf8_lossy(raw),
                KeyErrorReason::NotUtf8 {
                    valid_up_to: e.valid_up_to(),
                },
            )
        })?;
        parse_text(text).map_err(|reason| KeyError::for_key(text, reason))
    }

    /// The dedup flag for one event. Hashing keeps the key short and fixed-size whatever the
    /// event id looks like.
    pub fn dedup(env: Option<&Env>, kind: EventKind, event_id: &str) -> Result<Key, KeyError> {
        check_len(Field::EventId, event_id, MAX_EVENT_ID_BYTES).map_err(KeyError::without_key)?;
        let mut hasher = Sha1::new();
        hasher.update(kind.tag().as_bytes());
        hasher.update([b':']);
        hasher.update(event_id.as_bytes());
        Ok(Key::Dedup {
            env: env.cloned(),
            digest: hasher.finalize().into(),
            tag: None,
        })
    }

    /// The dedup flag of one event in the cluster layout: in the slot of the event's counters
    /// (flag `flag`, partition `partition`).
    pub fn dedup_partitioned(
        env: Option<&Env>,
        kind: EventKind,
        event_id: &str,
        flag: &str,
        partition: u16,
    ) -> Result<Key, KeyError> {
        check_id(Field::Flag, flag)
            .and_then(|()| check_partition(partition))
            .map_err(KeyError::without_key)?;
        match Key::dedup(env, kind, event_id)? {
            Key::Dedup { env, digest, .. } => Ok(Key::Dedup {
                env,
                digest,
                tag: Some((flag.to_owned(), partition)),
            }),
            other => Ok(other),
        }
    }

    pub fn assignment(env: Option<&Env>, flag: &str, user: &str) -> Result<Key, KeyError> {
        check_id(Field::Flag, flag)
            .and_then(|()| check_user(user))
            .map_err(|r| KeyError::for_parts(env, KeyKind::Assignment, &[flag, user], r))?;
        Ok(Key::Assignment {
            env: env.cloned(),
            flag: flag.to_owned(),
            user: user.to_owned(),
        })
    }

    pub fn experiment(env: Option<&Env>, flag: &str) -> Result<Key, KeyError> {
        check_id(Field::Flag, flag)
            .map_err(|r| KeyError::for_parts(env, KeyKind::Experiment, &[flag], r))?;
        Ok(Key::Experiment {
            env: env.cloned(),
            flag: flag.to_owned(),
        })
    }

    /// The experiment index of `env`.
    pub fn experiment_index(env: Option<&Env>) -> Key {
        Key::ExperimentIndex { env: env.cloned() }
    }

    pub fn temp(env: Option<&Env>, id: &str) -> Result<Key, KeyError> {
        check_temp_id(id).map_err(|r| KeyError::for_parts(env, KeyKind::Temp, &[id], r))?;
        Ok(Key::Temp {
            env: env.cloned(),
            id: id.to_owned(),
        })
    }

    pub fn kind(&self) -> KeyKind {
        match self {
            Key::Counter(c) => c.kind.key_kind(),
            Key::Dedup { .. } => KeyKind::Dedup,
            Key::Assignment { .. } => KeyKind::Assignment,
            Key::Experiment { .. } => KeyKind::Experiment,
            Key::ExperimentIndex { .. } => KeyKind::ExperimentIndex,
            Key::Temp { .. } => KeyKind::Temp,
        }
    }

    pub fn env(&self) -> Option<&Env> {
        match self {
            Key::Counter(c) => c.env.as_ref(),
            Key::Dedup { env, .. }
            | Key::Assignment { env, .. }
            | Key::Experiment { env, .. }
            | Key::ExperimentIndex { env }
            | Key::Temp { env, .. } => env.as_ref(),
        }
    }

    /// The flag a key belongs to, for filters that select one experiment's data.
    pub fn flag(&self) -> Option<&str> {
        match self {
            Key::Counter(c) => Some(&c.flag),
            Key::Assignment { flag, .. } | Key::Experiment { flag, .. } => Some(flag),
            Key::Dedup { .. } | Key::ExperimentIndex { .. } | Key::Temp { .. } => None,
        }
    }

    /// Some only for counter keys.
    pub fn bucket(&self) -> Option<BucketTimestamp> {
        self.as_counter().map(CounterKey::bucket)
    }

    pub fn as_counter(&self) -> Option<&CounterKey> {
        match self {
            Key::Counter(c) => Some(c),
            _ => None,
        }
    }

    /// A counter whose bucket starts a UTC day. Prune does not use this: it removes hourly and
    /// daily counters alike by bucket start. The key does not record its granularity, so an
    /// hourly bucket at 00:00 UTC also answers true.
    pub fn is_day_keyed(&self) -> bool {
        self.bucket().is_some_and(BucketTimestamp::is_day_start)
    }
}

impl From<CounterKey> for Key {
    fn from(key: CounterKey) -> Self {
        Key::Counter(key)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Key::Counter(c) = self {
            return c.fmt(f);
        }
        if let Some(env) = self.env() {
            f.write_str(env.as_str())?;
            f.write_char(SEPARATOR)?;
        }
        if let Key::ExperimentIndex { .. } = self {
            return f.write_str(self.kind().tag());
        }
        f.write_str(self.kind().tag())?;
        f.write_char(SEPARATOR)?;
        match self {
            Key::Counter(_) => Ok(()),
            Key::Dedup { digest, tag, .. } => {
                if let Some((flag, p)) = tag {
                    write!(f, "{{{flag}{SEPARATOR}{p}}}{SEPARATOR}")?;
                }
                // Every recorded event formats one: the hex digits in one write.
                let mut hex = [0u8; 40];
                for (pair, byte) in hex.chunks_exact_mut(2).zip(digest) {
                    pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
                    pair[1] = HEX_DIGITS[usize::from(byte & 0x0f)];
                }
                f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
            }
            Key::Assignment { flag, user, .. } => write!(f, "{flag}{SEPARATOR}{user}"),
            Key::Experiment { flag, .. } => f.write_str(flag),
            Key::ExperimentIndex { .. } => Ok(()),
            Key::Temp { id, .. } => f.write_str(id),
        }
    }
}

impl FromStr for Key {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Key::parse(s.as_bytes())
    }
}

/// A key that could not be built or parsed: which key (when there is one) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", KeyLabel(.key.as_deref()))]
pub struct KeyError {
    /// Lossy UTF-8, cut to about 120 characters.
    key: Option<String>,
    reason: KeyErrorReason,
}

impl KeyError {
    /// The offending key (lossy UTF-8, truncated with '…'), if the error concerns a whole key.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    pub fn reason(&self) -> &KeyErrorReason {
        &self.reason
    }

    fn without_key(reason: KeyErrorReason) -> Self {
        Self { key: None, reason }
    }

    fn for_key(key: &str, reason: KeyErrorReason) -> Self {
        Self {
            key: Some(truncate(key, ERROR_KEY_CHARS)),
            reason,
        }
    }

    /// Names the key a constructor would have built, so the message reads like a parse error.
    fn for_parts(env: Option<&Env>, kind: KeyKind, parts: &[&str], reason: KeyErrorReason) -> Self {
        let mut key = String::new();
        if let Some(env) = env {
            key.push_str(env.as_str());
            key.push(SEPARATOR);
        }
        key.push_str(kind.tag());
        for part in parts {
            key.push(SEPARATOR);
            key.push_str(part);
        }
        Self::for_key(&key, reason)
    }
}

struct KeyLabel<'a>(Option<&'a str>);

impl fmt::Display for KeyLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(key) => write!(f, "key {key:?}: "),
            None => Ok(()),
        }
    }
}

/// Why a key was rejected. [`KeyErrorReason::category`] gives a short label to count by.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyErrorReason {
    #[error("not valid UTF-8 (first invalid byte at offset {valid_up_to})")]
    NotUtf8 { valid_up_to: usize },
    #[error("the key is empty")]
    Empty,
    #[error(
        "segment {segment:?} is not a key kind (expected [<env>:] followed by one of ec, uc, gc, gu, dd, as, exp, tmp)"
    )]
    UnknownKind { segment: String },
    #[error("environment {env:?} {problem}")]
    InvalidEnv { env: String, problem: ValueProblem },
    #[error(
        "{kind} key has {found} ':'-separated segments after any environment prefix, expected {}",
        kind.layout()
    )]
    WrongSegmentCount { kind: KeyKind, found: usize },
    #[error("{field} {value:?} {problem}")]
    InvalidComponent {
        field: Field,
        value: String,
        problem: ValueProblem,
    },
    #[error("bucket timestamp {} {problem}", BucketLabel(text, *problem))]
    InvalidBucket {
        text: String,
        problem: BucketProblem,
    },
    #[error("dedup digest {text:?} is not 40 lowercase hex characters")]
    InvalidDigest { text: String },
    #[error("counter kind {kind} is not {expected}")]
    WrongCounterKind {
        kind: CounterKind,
        expected: &'static str,
    },
    #[error("partition {partition} is out of range (0..{partitions})")]
    Partition { partition: u16, partitions: u16 },
}

impl KeyErrorReason {
    /// A short, stable label (e.g. for a metric) that does not include the offending value.
    pub fn category(&self) -> &'static str {
        match self {
            KeyErrorReason::NotUtf8 { .. } => "not_utf8",
            KeyErrorReason::Empty => "empty",
            KeyErrorReason::UnknownKind { .. } => "unknown_kind",
            KeyErrorReason::InvalidEnv { .. } => "invalid_env",
            KeyErrorReason::WrongSegmentCount { .. } => "segment_count",
            KeyErrorReason::InvalidComponent { .. } => "invalid_component",
            KeyErrorReason::InvalidBucket { .. } => "invalid_bucket",
            KeyErrorReason::InvalidDigest { .. } => "invalid_digest",
            KeyErrorReason::WrongCounterKind { .. } => "wrong_counter_kind",
            KeyErrorReason::Partition { .. } => "partition",
        }
    }
}

/// A key component other than the environment, bucket and digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Flag,
    Goal,
    Variation,
    User,
    EventId,
    TempId,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Flag => "flag",
            Field::Goal => "goal",
            Field::Variation => "variation",
            Field::User => "user",
            Field::EventId => "event id",
            Field::TempId => "temp id",
        })
    }
}

/// What is wrong with an environment or a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ValueProblem {
    #[error("is empty")]
    Empty,
    #[error("is {len} bytes long, at most {max} are allowed")]
    TooLong { len: usize, max: usize },
    #[error("contains ':', the key separator")]
    Colon,
    #[error("contains control character {0:?}")]
    Control(char),
    #[error("contains whitespace {0:?}")]
    Whitespace(char),
    #[error("contains {ch:?}; only {allowed} are allowed")]
    NotAllowed { ch: char, allowed: &'static str },
    #[error("is a key kind tag, so the key would read as having no environment")]
    IsKindTag,
}

/// What is wrong with a bucket timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BucketProblem {
    #[error("is empty")]
    Empty,
    #[error("is not plain decimal digits (no sign, no spaces)")]
    NotDecimal,
    #[error("has a leading zero")]
    LeadingZero,
    #[error("is outside 0..={MAX_BUCKET_SECS} (1970 to 9999-12-31T23:00:00Z)")]
    OutOfRange,
    #[error("is not the start of a UTC hour")]
    NotHourStart,
}

/// Numbers read better bare; malformed text is quoted so odd characters are visible.
struct BucketLabel<'a>(&'a str, BucketProblem);

impl fmt::Display for BucketLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let numeric = !self.0.is_empty()
            && self
                .0
                .bytes()
                .enumerate()
                .all(|(i, b)| b.is_ascii_digit() || (i == 0 && b == b'-'));
        if numeric && !matches!(self.1, BucketProblem::NotDecimal) {
            f.write_str(self.0)
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

fn parse_text(text: &str) -> Result<Key, KeyErrorReason> {
    if text.is_empty() {
        return Err(KeyErrorReason::Empty);
    }
    let (first, after_first) = split_first(text);
    let (env, kind, rest) = match KeyKind::from_tag(first) {
        Some(kind) => (None, kind, after_first),
        None => {
            let Some(after_env) = after_first else {
                return Err(unknown_kind(first));
            };
            let (second, rest) = split_first(after_env);
            match KeyKind::from_tag(second) {
                Some(kind) => (Some(Env::check(first)?), kind, rest),
                // Blame the segment most likely to be the typo.
                None if Env::check(first).is_ok() => return Err(unknown_kind(second)),
                None => return Err(unknown_kind(first)),
            }
        }
    };
    match kind {
        KeyKind::EvaluationCount
        | KeyKind::EvaluationUsers
        | KeyKind::GoalCount
        | KeyKind::GoalUsers => {
            let goal_kind = matches!(kind, KeyKind::GoalCount | KeyKind::GoalUsers);
            let parts: Vec<&str> = rest.map_or_else(Vec::new, |r| r.split(SEPARATOR).collect());
            let (bucket, after) = parts
                .split_first()
                .ok_or(KeyErrorReason::WrongSegmentCount { kind, found: 1 })?;
            // `{<flag>:<p>}` (cluster layout) spans two segments.
            let (flag, partition, after) = match tagged(after) {
                Some((flag, p, after)) => (flag, Some(p), after),
                None => match after.split_first() {
                    Some((flag, after)) => (*flag, None, after),
                    None => ("", None, &[][..]),
                },
            };
            let (goal, variation) = match (goal_kind, after) {
                (false, [variation]) => (None, *variation),
                (true, [goal, variation]) => (Some(*goal), *variation),
                _ => {
                    return Err(KeyErrorReason::WrongSegmentCount {
                        kind,
                        found: parts.len() + 1,
                    });
                }
            };
            let bucket = BucketTimestamp::parse(bucket)?;
            check_id(Field::Flag, flag)?;
            if let Some(goal) = goal {
                check_id(Field::Goal, goal)?;
            }
            check_id(Field::Variation, variation)?;
            Ok(Key::Counter(CounterKey {
                env,
                kind: counter_kind(kind)?,
                bucket,
                flag: flag.to_owned(),
                goal: goal.map(str::to_owned),
                variation: variation.to_owned(),
                partition,
            }))
        }
        KeyKind::Dedup => {
            let parts: Vec<&str> = rest.map_or_else(Vec::new, |r| r.split(SEPARATOR).collect());
            let (tag, digest) = match parts.as_slice() {
                [digest] => (None, *digest),
                [_, _, digest] => match tagged(&parts) {
                    Some((flag, p, _)) => {
                        check_id(Field::Flag, flag)?;
                        (Some((flag.to_owned(), p)), *digest)
                    }
                    None => {
                        return Err(KeyErrorReason::WrongSegmentCount {
                            kind,
                            found: parts.len() + 1,
                        });
                    }
                },
                _ => {
                    return Err(KeyErrorReason::WrongSegmentCount {
                        kind,
                        found: parts.len() + 1,
                    });
                }
            };
            Ok(Key::Dedup {
                env,
                digest: parse_digest(digest)?,
                tag,
            })
        }
        KeyKind::Assignment => {
            // The user is everything after the flag, so it may itself contain ':'.
            let Some((flag, user)) = rest.and_then(|r| r.split_once(SEPARATOR)) else {
                return Err(KeyErrorReason::WrongSegmentCount {
                    kind,
                    found: if rest.is_some() { 2 } else { 1 },
                });
            };
            check_id(Field::Flag, flag)?;
            check_user(user)?;
            Ok(Key::Assignment {
                env,
                flag: flag.to_owned(),
                user: user.to_owned(),
            })
        }
        KeyKind::Experiment => {
            let [flag] = split_exact(kind, rest)?;
            check_id(Field::Flag, flag)?;
            Ok(Key::Experiment {
                env,
                flag: flag.to_owned(),
            })
        }
        KeyKind::ExperimentIndex => {
            let [] = split_exact(kind, rest)?;
            Ok(Key::ExperimentIndex { env })
        }
        KeyKind::Temp => {
            let [id] = split_exact(kind, rest)?;
            check_temp_id(id)?;
            Ok(Key::Temp {
                env,
                id: id.to_owned(),
            })
        }
    }
}

fn counter_kind(kind: KeyKind) -> Result<CounterKind, KeyErrorReason> {
    // Only reached for the four counter tags, which always map; the error keeps this total.
    kind.counter_kind().ok_or_else(|| unknown_kind(kind.tag()))
}

fn unknown_kind(segment: &str) -> KeyErrorReason {
    KeyErrorReason::UnknownKind {
        segment: truncate(segment, ERROR_VALUE_CHARS),
    }
}

/// Splits at the first ':'; the remainder is None when there is no ':' at all, so that "ec"
/// and "ec:" count as one and two segments.
/// `["{<flag>", "<p>}", rest…]` → the flag, the partition and the rest: the cluster layout's
/// hash tag. `None` when the segments do not have that shape.
fn tagged<'a, 'b>(parts: &'b [&'a str]) -> Option<(&'a str, u16, &'b [&'a str])> {
    let (first, rest) = parts.split_first()?;
    let (second, rest) = rest.split_first()?;
    let flag = first.strip_prefix('{')?;
    let p = second.strip_suffix('}')?;
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let p: u16 = p.parse().ok()?;
    (p < PARTITIONS).then_some((flag, p, rest))
}

fn check_partition(partition: u16) -> Result<(), KeyErrorReason> {
    if partition < PARTITIONS {
        Ok(())
    } else {
        Err(KeyErrorReason::Partition {
            partition,
            partitions: PARTITIONS,
        })
    }
}

/// Hash slots of a Redis Cluster.
pub const CLUSTER_SLOTS: u16 = 16_384;

/// Redis Cluster's slot of a key: CRC16-XMODEM of the hash tag (the bytes between the first
/// `{` and the next `}`, when not empty) or of the whole key, modulo 16 384.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    let mut crc: u16 = 0;
    for &b in hashed {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % CLUSTER_SLOTS
}

/// The partition of a flag an event of `user` goes to in the cluster layout: the first two
/// bytes of SHA-1(user) modulo [`PARTITIONS`]. A function of the user alone, so a duplicate
/// lands on the same dedup flag and each partition holds disjoint users (unique users add up).
pub fn partition_of(user: &str) -> u16 {
    let digest = Sha1::digest(user.as_bytes());
    u16::from_be_bytes([digest[0], digest[1]]) % PARTITIONS
}

fn split_first(text: &str) -> (&str, Option<&str>) {
    match text.split_once(SEPARATOR) {
        Some((head, tail)) => (head, Some(tail)),
        None => (text, None),
    }
}

/// The N segments after the kind tag, or the actual count (tag included) if it is not N.
fn split_exact<const N: usize>(
    kind: KeyKind,
    rest: Option<&str>,
) -> Result<[&str; N], KeyErrorReason> {
    let mut out = [""; N];
    let mut found = 1;
    for (i, part) in rest
        .into_iter()
        .flat_map(|r| r.split(SEPARATOR))
        .enumerate()
    {
        if let Some(slot) = out.get_mut(i) {
            *slot = part;
        }
        found += 1;
    }
    if found == N + 1 {
        Ok(out)
    } else {
        Err(KeyErrorReason::WrongSegmentCount { kind, found })
    }
}

fn parse_digest(text: &str) -> Result<[u8; 20], KeyErrorReason> {
    let invalid = || KeyErrorReason::InvalidDigest {
        text: truncate(text, ERROR_VALUE_CHARS),
    };
    // Uppercase hex would decode too but re-format differently, so it is refused.
    if text.len() != DIGEST_HEX_LEN || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(invalid());
    }
    let mut digest = [0u8; 20];
    hex::decode_to_slice(text, &mut digest).map_err(|_| invalid())?;
    Ok(digest)
}

fn component_error(field: Field, value: &str, problem: ValueProblem) -> KeyErrorReason {
    KeyErrorReason::InvalidComponent {
        field,
        value: truncate(value, ERROR_VALUE_CHARS),
        problem,
    }
}

fn check_len(field: Field, value: &str, max: usize) -> Result<(), KeyErrorReason> {
    if value.is_empty() {
        Err(component_error(field, value, ValueProblem::Empty))
    } else if value.len() > max {
        Err(component_error(
            field,
            value,
            ValueProblem::TooLong {
                len: value.len(),
                max,
            },
        ))
    } else {
        Ok(())
    }
}

/// Flag, goal and variation ids: a ':' would shift every later segment, and whitespace or
/// control characters make keys unreadable in redis-cli and logs.
fn check_id(field: Field, value: &str) -> Result<(), KeyErrorReason> {
    check_len(field, value, MAX_ID_BYTES)?;
    // Printable ASCII other than ':' is neither a colon, a control character nor whitespace:
    // most ids are, and pass on this byte scan (every event checks several).
    if value.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Ok(());
    }
    for ch in value.chars() {
        let problem = if ch == SEPARATOR {
            ValueProblem::Colon
        } else if ch.is_control() {
            ValueProblem::Control(ch)
        } else if ch.is_whitespace() {
            ValueProblem::Whitespace(ch)
        } else {
            continue;
        };
        return Err(component_error(field, value, problem));
    }
    Ok(())
}

/// User ids come from customers' systems and are the last segment, so they may contain ':' and
/// spaces; only ASCII control characters are refused.
fn check_user(value: &str) -> Result<(), KeyErrorReason> {
    check_len(Field::User, value, MAX_USER_BYTES)?;
    match value.chars().find(char::is_ascii_control) {
        Some(ch) => Err(component_error(
            Field::User,
            value,
            ValueProblem::Control(ch),
        )),
        None => Ok(()),
    }
}

fn check_temp_id(value: &str) -> Result<(), KeyErrorReason> {
    check_len(Field::TempId, value, MAX_TEMP_ID_BYTES)?;
    match value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        Some(ch) => Err(component_error(
            Field::TempId,
            value,
            ValueProblem::NotAllowed {
                ch,
                allowed: "A-Z, a-z, 0-9 and '-'",
            },
        )),
        None => Ok(()),
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or_default()),
        None => text.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `to_key_string` writes what `to_string` writes, for every shape a recorder sends.
    #[test]
    fn key_strings_are_the_keys() {
        let env = Env::new("alephbet").unwrap();
        let bucket = BucketTimestamp::containing(1_765_000_000, Granularity::Hour).unwrap();
        let long = "f".repeat(MAX_ID_BYTES);
        for env in [None, Some(&env)] {
            for flag in ["flag-1", long.as_str()] {
                let counters = [
                    CounterKey::evaluation(env, CounterKind::EvaluationCount, bucket, flag, "b")
                        .unwrap(),
                    CounterKey::goal(env, CounterKind::GoalUsers, bucket, flag, "buy", "b")
                        .unwrap(),
                ];
                for counter in counters {
                    assert_eq!(counter.to_key_string(), counter.to_string());
                    let partitioned = counter.partitioned(PARTITIONS - 1).unwrap();
                    assert_eq!(partitioned.to_key_string(), partitioned.to_string());
                    let key = Key::Counter(partitioned);
                    assert_eq!(key.to_key_string(), key.to_string());
                }
                let id = "0123456789abcdef0123456789abcdef01234567";
                for key in [
                    Key::dedup(env, EventKind::Goal, id).unwrap(),
                    Key::dedup_partitioned(env, EventKind::Evaluation, id, flag, 7).unwrap(),
                    Key::assignment(env, flag, "user 1").unwrap(),
                    Key::experiment(env, flag).unwrap(),
                ] {
                    assert_eq!(key.to_key_string(), key.to_string());
                }
            }
        }
    }

    /// 2023-11-14T22:00:00Z, an hour start but not a day start.
    const HOUR: i64 = 1_699_999_200;
    /// 2023-11-15T00:00:00Z.
    const DAY: i64 = 1_700_006_400;

    fn env(s: &str) -> Env {
        Env::new(s).unwrap()
    }

    fn bucket(secs: i64) -> BucketTimestamp {
        BucketTimestamp::from_secs(secs).unwrap()
    }

    fn parse(s: &str) -> Result<Key, KeyError> {
        Key::parse(s.as_bytes())
    }

    fn reason(s: &str) -> KeyErrorReason {
        parse(s).unwrap_err().reason().clone()
    }

    /// Parsing must give back the key and the key must format to the same text.
    fn assert_round_trip(text: &str, key: &Key) {
        assert_eq!(key.to_string(), text);
        assert_eq!(&parse(text).unwrap(), key);
        assert_eq!(&text.parse::<Key>().unwrap(), key);
    }

    #[test]
    fn key_slot_matches_redis() {
        // Values `CLUSTER KEYSLOT` gives (the CRC16-XMODEM check value of "123456789" is 0x31C3).
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"{foo}bar"), 12_182);
        assert_eq!(key_slot(b"foo"), 12_182);
    }

    #[test]
    fn the_cluster_layout_tags_flag_and_partition_and_round_trips() {
        let e = env("prod");
        let ec = CounterKey::evaluation(
            Some(&e),
            CounterKind::EvaluationCount,
            bucket(HOUR),
            "f",
            "v",
        )
        .unwrap()
        .partitioned(7)
        .unwrap();
        assert_eq!(ec.partition(), Some(7));
        assert_round_trip("prod:ec:1699999200:{f:7}:v", &ec.clone().into());
        assert_eq!(ec.with_bucket(bucket(HOUR + 3600)).partition(), Some(7));
        let gu = CounterKey::goal(None, CounterKind::GoalUsers, bucket(DAY), "f", "buy", "v")
            .unwrap()
            .partitioned(0)
            .unwrap();
        assert_round_trip("gu:1700006400:{f:0}:buy:v", &gu.into());
        let dd = Key::dedup_partitioned(None, EventKind::Evaluation, "event-1", "f", 7).unwrap();
        let text = dd.to_string();
        assert!(text.starts_with("dd:{f:7}:"), "{text}");
        assert_round_trip(&text, &dd);
        // Sentinel mode's keys are unchanged and still parse.
        let plain = Key::dedup(None, EventKind::Evaluation, "event-1").unwrap();
        assert_eq!(plain.to_string().len(), 3 + 40);
        assert_round_trip(&plain.to_string(), &plain);
        // Out of range, and shapes that are neither layout.
        assert!(
            CounterKey::evaluation(None, CounterKind::EvaluationCount, bucket(HOUR), "f", "v")
                .unwrap()
                .partitioned(PARTITIONS)
                .is_err()
        );
        assert!(matches!(
            reason("ec:1699999200:{f:16}:v"),
            KeyErrorReason::WrongSegmentCount { .. }
        ));
        assert!(matches!(
            reason("dd:{f:3}:x:0123456789abcdef0123456789abcdef01234567"),
            KeyErrorReason::WrongSegmentCount { .. }
        ));
    }

    #[test]
    fn an_events_keys_share_one_slot_in_the_cluster_layout() {
        for user in ["u1", "someone@example.com", "42"] {
            let p = partition_of(user);
            assert!(p < PARTITIONS);
            let b = bucket(HOUR);
            let keys = [
                Key::dedup_partitioned(None, EventKind::Goal, "id-9", "checkout", p)
                    .unwrap()
                    .to_string(),
                CounterKey::evaluation(None, CounterKind::EvaluationCount, b, "checkout", "v")
                    .unwrap()
                    .partitioned(p)
                    .unwrap()
                    .to_string(),
                CounterKey::evaluation(None, CounterKind::EvaluationUsers, b, "checkout", "v")
                    .unwrap()
                    .partitioned(p)
                    .unwrap()
                    .to_string(),
                CounterKey::goal(None, CounterKind::GoalCount, b, "checkout", "buy", "v")
                    .unwrap()
                    .partitioned(p)
                    .unwrap()
                    .to_string(),
            ];
            let slots: std::collections::BTreeSet<u16> =
                keys.iter().map(|k| key_slot(k.as_bytes())).collect();
            assert_eq!(slots.len(), 1, "{keys:?}");
        }
    }

    #[test]
    fn one_hot_flag_spreads_over_every_shard() {
        // A realistic skew: one flag gets half of all events, 99 others share the rest; users
        // are many. Shards own the even split of 3 (and 4) shards. Each shard's share of the
        // events must stay near 1/shards: the hot flag's 16 partitions land on every shard.
        for shards in [3u16, 4] {
            let bounds: Vec<u16> = (1..=shards)
                .map(|s| (16_384u32 * u32::from(s) / u32::from(shards)) as u16)
                .collect();
            let shard_of = |slot: u16| bounds.iter().position(|b| slot < *b).unwrap();
            let mut load = vec![0u64; usize::from(shards)];
            for i in 0..200_000u64 {
                let flag = if i % 2 == 0 {
                    "hot".to_owned()
                } else {
                    format!("flag-{}", i % 99)
                };
                let user = format!("user-{}", i.wrapping_mul(2_654_435_761) % 1_000_003);
                let key = CounterKey::evaluation(
                    None,
                    CounterKind::EvaluationCount,
                    bucket(HOUR),
                    &flag,
                    "v",
                )
                .unwrap()
                .partitioned(partition_of(&user))
                .unwrap()
                .to_string();
                load[shard_of(key_slot(key.as_bytes()))] += 1;
            }
            let total: u64 = load.iter().sum();
            let shares: Vec<f64> = load.iter().map(|l| *l as f64 / total as f64).collect();
            let fair = 1.0 / f64::from(shards);
            println!("{shards} shards: event shares {shares:.3?} ({load:?})");
            for share in &shares {
                assert!(
                    (share - fair).abs() < 0.5 * fair,
                    "{shards} shards: shares {shares:?} (one hot flag must not pin a shard)"
                );
            }
        }
    }

    #[test]
    fn evaluation_counters_round_trip_with_and_without_env() {
        // The basic Bucketeer layouts every writer and reader depends on.
        for kind in [CounterKind::EvaluationCount, CounterKind::EvaluationUsers] {
            let plain =
                CounterKey::evaluation(None, kind, bucket(HOUR), "flag-1", "var-a").unwrap();
            assert_round_trip(
                &format!("{}:1699999200:flag-1:var-a", kind.tag()),
                &plain.into(),
            );
            let e = env("prod");
            let prefixed =
                CounterKey::evaluation(Some(&e), kind, bucket(HOUR), "flag-1", DEFAULT_VARIATION)
                    .unwrap();
            assert_eq!(prefixed.env(), Some(&e));
            assert_eq!(prefixed.goal_id(), None);
            assert_round_trip(
                &format!("prod:{}:1699999200:flag-1:default", kind.tag()),
                &prefixed.into(),
            );
        }
    }

    #[test]
    fn goal_counters_round_trip_with_and_without_env() {
        // Goal keys have one more segment; its position must not drift.
        for kind in [CounterKind::GoalCount, CounterKind::GoalUsers] {
            let key = CounterKey::goal(None, kind, bucket(DAY), "f", "purchase", "v").unwrap();
            assert_eq!(key.goal_id(), Some("purchase"));
            assert_round_trip(
                &format!("{}:1700006400:f:purchase:v", kind.tag()),
                &key.into(),
            );
            let e = env("staging.eu-1");
            let key = CounterKey::goal(Some(&e), kind, bucket(DAY), "f", "purchase", "v").unwrap();
            assert_round_trip(
                &format!("staging.eu-1:{}:1700006400:f:purchase:v", kind.tag()),
                &key.into(),
            );
        }
    }

    #[test]
    fn dedup_key_is_sha1_of_kind_and_event_id() {
        // Pinned so tracker processes of different versions agree on the flag they set.
        // python3 -c "import hashlib;print(hashlib.sha1(b'evaluation:3b241101-e2bb-4255-8caf-4136c566a962').hexdigest())"
        let id = "3b241101-e2bb-4255-8caf-4136c566a962";
        let key = Key::dedup(None, EventKind::Evaluation, id).unwrap();
        assert_round_trip("dd:397cd045cdc3965268d3fa191e072f17360c2f35", &key);
        let key = Key::dedup(Some(&env("prod")), EventKind::Goal, id).unwrap();
        assert_round_trip("prod:dd:73a580a89b367bf8f32e87304b2f23c2aa97f9a6", &key);
    }

    #[test]
    fn assignment_user_may_contain_colons_and_spaces() {
        // User ids come from customers; only the flag segment must be ':'-free.
        let key = Key::assignment(None, "flag", "tenant:42:user 7").unwrap();
        assert_round_trip("as:flag:tenant:42:user 7", &key);
        let key = Key::assignment(Some(&env("p")), "flag", "ユーザー").unwrap();
        assert_round_trip("p:as:flag:ユーザー", &key);
        assert_eq!(key.flag(), Some("flag"));
    }

    #[test]
    fn experiment_and_temp_keys_round_trip() {
        // The two single-component kinds.
        assert_round_trip("exp:flag-1", &Key::experiment(None, "flag-1").unwrap());
        assert_round_trip(
            "prod:exp:flag-1",
            &Key::experiment(Some(&env("prod")), "flag-1").unwrap(),
        );
        let id = "0e6c7a1b-aaaa-4bbb-8ccc-123456789abc";
        assert_round_trip(&format!("tmp:{id}"), &Key::temp(None, id).unwrap());
        assert_round_trip(
            &format!("prod:tmp:{id}"),
            &Key::temp(Some(&env("prod")), id).unwrap(),
        );
    }

    #[test]
    fn key_accessors_report_kind_env_bucket_and_day_keying() {
        // Accessors of the parsed key: kind, env, bucket and whether the bucket starts a day.
        let day = parse("prod:gc:1700006400:f:g:v").unwrap();
        assert_eq!(day.kind(), KeyKind::GoalCount);
        assert_eq!(day.env().map(Env::as_str), Some("prod"));
        assert_eq!(day.bucket(), Some(bucket(DAY)));
        assert!(day.is_day_keyed());
        let hour = parse("ec:1699999200:f:v").unwrap();
        assert!(!hour.is_day_keyed());
        let other = parse("exp:f").unwrap();
        assert_eq!(other.bucket(), None);
        assert!(!other.is_day_keyed());
        assert_eq!(other.env(), None);
    }

    #[test]
    fn bucketeer_example_stamp_1700000000_is_not_an_hour_start() {
        // 1700000000 % 3600 == 800: a key with it cannot have been written by Bucketeer.
        let err = parse("ec:1700000000:f:v").unwrap_err();
        assert_eq!(
            err.to_string(),
            "key \"ec:1700000000:f:v\": bucket timestamp 1700000000 is not the start of a UTC hour"
        );
        assert!(parse("ec:1699999200:f:v").is_ok());
    }

    #[test]
    fn bucket_text_must_be_canonical_decimal() {
        // Anything else would parse to a key that formats to different bytes.
        let cases = [
            ("ec:0123:f:v", BucketProblem::LeadingZero),
            ("ec:-3600:f:v", BucketProblem::NotDecimal),
            ("ec:+3600:f:v", BucketProblem::NotDecimal),
            ("ec: 3600:f:v", BucketProblem::NotDecimal),
            ("ec:3600.0:f:v", BucketProblem::NotDecimal),
            ("ec::f:v", BucketProblem::Empty),
            ("ec:12:f:v", BucketProblem::NotHourStart),
            ("ec:1700000123:f:v", BucketProblem::NotHourStart),
            ("ec:99999999999999999999:f:v", BucketProblem::OutOfRange),
            ("ec:9999999999999999999:f:v", BucketProblem::OutOfRange),
            ("ec:9223372036854775807:f:v", BucketProblem::OutOfRange),
            ("ec:253402300800:f:v", BucketProblem::OutOfRange),
        ];
        for (text, expected) in cases {
            match reason(text) {
                KeyErrorReason::InvalidBucket { problem, .. } => {
                    assert_eq!(problem, expected, "{text}");
                }
                other => panic!("{text}: unexpected {other:?}"),
            }
        }
        assert_eq!(parse("ec:0:f:v").unwrap().bucket(), Some(bucket(0)));
        assert_eq!(
            parse("ec:253402297200:f:v").unwrap().bucket(),
            Some(bucket(MAX_BUCKET_SECS))
        );
    }

    #[test]
    fn error_names_the_key_and_the_problem() {
        // Operators read these in prune logs; they must say which key and what is wrong.
        assert_eq!(
            parse("ec:12:f:v").unwrap_err().to_string(),
            "key \"ec:12:f:v\": bucket timestamp 12 is not the start of a UTC hour"
        );
        assert_eq!(
            parse("ec:+3600:f:v").unwrap_err().to_string(),
            "key \"ec:+3600:f:v\": bucket timestamp \"+3600\" is not plain decimal digits (no sign, no spaces)"
        );
        assert_eq!(
            parse("ec:3600:f").unwrap_err().to_string(),
            "key \"ec:3600:f\": ec key has 3 ':'-separated segments after any environment prefix, \
             expected ec:<bucket_ts>:<flag>:<variation>"
        );
        assert_eq!(
            Key::experiment(None, "a b").unwrap_err().to_string(),
            "key \"exp:a b\": flag \"a b\" contains whitespace ' '"
        );
    }

    #[test]
    fn error_key_is_truncated_and_lossy() {
        // A hostile key must not flood logs or break on invalid UTF-8.
        let long = format!("exp:{}", "x".repeat(1000));
        let err = parse(&long).unwrap_err();
        let shown = err.key().unwrap();
        assert_eq!(shown.chars().count(), ERROR_KEY_CHARS + 1);
        assert!(shown.ends_with('…'));
        let err = Key::parse(b"ec:\xff:f:v").unwrap_err();
        assert_eq!(err.reason(), &KeyErrorReason::NotUtf8 { valid_up_to: 3 });
        assert_eq!(err.key(), Some("ec:\u{fffd}:f:v"));
        assert_eq!(err.reason().category(), "not_utf8");
    }

    #[test]
    fn wrong_segment_counts_are_rejected() {
        // A missing or extra segment would silently shift flag into variation.
        for text in [
            "ec",
            "ec:",
            "ec:3600",
            "ec:3600:f",
            "ec:3600:f:v:extra",
            "gc:3600:f:v",
            "gc:3600:f:g:v:extra",
            "dd",
            "dd:397cd045cdc3965268d3fa191e072f17360c2f35:x",
            "as",
            "as:f",
            "exp",
            "exp:f:g",
            "tmp",
            "tmp:a:b",
            "prod:ec:3600:f",
        ] {
            assert!(
                matches!(reason(text), KeyErrorReason::WrongSegmentCount { .. }),
                "{text}: {:?}",
                reason(text)
            );
        }
    }

    #[test]
    fn empty_segments_are_rejected() {
        // "a::b" style keys come from buggy writers and must not parse to an empty id.
        for text in [
            "ec:3600::v",
            "ec:3600:f:",
            "gc:3600:f::v",
            "as::u",
            "as:f:",
            "exp:",
            "tmp:",
            "dd:",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
        assert_eq!(reason(""), KeyErrorReason::Empty);
        assert!(matches!(
            reason(":ec:3600:f:v"),
            KeyErrorReason::InvalidEnv {
                problem: ValueProblem::Empty,
                ..
            }
        ));
    }

    #[test]
    fn environment_detection_uses_the_first_two_segments() {
        // An env can never be a kind tag, so the first segment decides unambiguously.
        assert!(matches!(
            reason("prod:xx:3600:f:v"),
            KeyErrorReason::UnknownKind { segment } if segment == "xx"
        ));
        assert!(matches!(
            reason("bad env:ec:3600:f:v"),
            KeyErrorReason::InvalidEnv { .. }
        ));
        assert!(matches!(
            reason("foo bar:baz"),
            KeyErrorReason::UnknownKind { segment } if segment == "foo bar"
        ));
        assert!(matches!(reason("prod"), KeyErrorReason::UnknownKind { .. }));
        assert!(matches!(
            reason("EC:3600:f:v"),
            KeyErrorReason::UnknownKind { .. }
        ));
        // "as" first means no env even when the rest looks like another key.
        let key = parse("as:f:prod:ec:3600:f:v").unwrap();
        assert_eq!(key.env(), None);
        assert_eq!(key.kind(), KeyKind::Assignment);
    }

    #[test]
    fn env_rules_are_enforced() {
        // The env is the only free-form prefix; these rules keep it unambiguous.
        assert!(Env::new("prod_1.eu-west").is_ok());
        assert!(Env::new(&"a".repeat(64)).is_ok());
        assert!(Env::new(&"a".repeat(65)).is_err());
        assert!(Env::new("").is_err());
        assert!(Env::new("pr:od").is_err());
        assert!(Env::new("prød").is_err());
        for kind in KeyKind::ALL {
            let err = Env::new(kind.tag()).unwrap_err();
            assert!(matches!(
                err.reason(),
                KeyErrorReason::InvalidEnv {
                    problem: ValueProblem::IsKindTag,
                    ..
                }
            ));
        }
        assert!(Env::new("EC").is_ok());
        assert_eq!(
            Env::new("a b").unwrap_err().to_string(),
            "environment \"a b\" contains ' '; only A-Z, a-z, 0-9, '_', '.' and '-' are allowed"
        );
    }

    #[test]
    fn id_components_reject_colon_control_whitespace_and_bad_lengths() {
        // The same rules apply to constructors and parse, so both accept the same keys.
        let b = bucket(HOUR);
        let ok = "x".repeat(256);
        let too_long = "x".repeat(257);
        for bad in [
            "",
            "a:b",
            "a b",
            "a\tb",
            "a\u{7f}",
            "a\u{85}",
            "a\u{3000}",
            &too_long,
        ] {
            let kind = CounterKind::EvaluationCount;
            assert!(
                CounterKey::evaluation(None, kind, b, bad, "v").is_err(),
                "{bad:?}"
            );
            assert!(
                CounterKey::evaluation(None, kind, b, "f", bad,).is_err(),
                "{bad:?}"
            );
            let kind = CounterKind::GoalCount;
            assert!(
                CounterKey::goal(None, kind, b, "f", bad, "v").is_err(),
                "{bad:?}"
            );
            assert!(Key::experiment(None, bad).is_err(), "{bad:?}");
            if !bad.contains(':') && !bad.is_empty() {
                assert!(parse(&format!("ec:{HOUR}:{bad}:v")).is_err(), "{bad:?}");
                assert!(parse(&format!("gu:{HOUR}:f:{bad}:v")).is_err(), "{bad:?}");
                assert!(parse(&format!("exp:{bad}")).is_err(), "{bad:?}");
            }
        }
        assert!(Key::experiment(None, &ok).is_ok());
        assert!(parse(&format!("exp:{ok}")).is_ok());
        assert!(Key::experiment(None, "フラグ").is_ok());
    }

    #[test]
    fn user_rules_allow_colons_but_not_control_chars_or_over_512_bytes() {
        // The user is the last segment, so ':' is safe there; control bytes are not.
        assert!(Key::assignment(None, "f", &"u".repeat(512)).is_ok());
        assert!(Key::assignment(None, "f", &"u".repeat(513)).is_err());
        assert!(Key::assignment(None, "f", "").is_err());
        assert!(Key::assignment(None, "f", "a\nb").is_err());
        assert!(Key::assignment(None, "f:g", "u").is_err());
        assert!(parse("as:f:a\u{0}b").is_err());
        assert!(parse(&format!("as:f:{}", "u".repeat(513))).is_err());
        assert!(parse("as:f::").is_ok());
    }

    #[test]
    fn counter_constructors_refuse_the_other_family() {
        // A goal kind without a goal segment would format to an unparsable key.
        let b = bucket(HOUR);
        let err = CounterKey::evaluation(None, CounterKind::GoalCount, b, "f", "v").unwrap_err();
        assert_eq!(err.reason().category(), "wrong_counter_kind");
        assert!(CounterKey::goal(None, CounterKind::EvaluationUsers, b, "f", "g", "v").is_err());
    }

    #[test]
    fn dedup_digest_must_be_40_lowercase_hex() {
        // Uppercase would decode to the same digest but re-format differently.
        for text in [
            "dd:397CD045CDC3965268D3FA191E072F17360C2F35",
            "dd:397cd045cdc3965268d3fa191e072f17360c2f3",
            "dd:397cd045cdc3965268d3fa191e072f17360c2f355",
            "dd:397cd045cdc3965268d3fa191e072f17360c2fzz",
        ] {
            assert!(
                matches!(reason(text), KeyErrorReason::InvalidDigest { .. }),
                "{text}"
            );
        }
    }

    #[test]
    fn dedup_event_id_must_be_1_to_256_bytes() {
        // Bounded input keeps hashing cheap and catches missing ids.
        assert!(Key::dedup(None, EventKind::Goal, "").is_err());
        assert!(Key::dedup(None, EventKind::Goal, &"e".repeat(256)).is_ok());
        assert!(Key::dedup(None, EventKind::Goal, &"e".repeat(257)).is_err());
    }

    #[test]
    fn temp_id_is_1_to_64_alphanumerics_or_dashes() {
        // Temp keys are SCAN-matched and deleted; a narrow alphabet keeps them recognisable.
        assert!(Key::temp(None, &"a".repeat(64)).is_ok());
        assert!(Key::temp(None, &"a".repeat(65)).is_err());
        assert!(Key::temp(None, "a_b").is_err());
        assert!(Key::temp(None, "").is_err());
        assert!(parse("tmp:a.b").is_err());
    }

    #[test]
    fn bucket_timestamp_range_and_alignment() {
        // Out-of-range or misaligned stamps would create keys no reader ever asks for.
        assert!(BucketTimestamp::from_secs(0).is_ok());
        assert!(BucketTimestamp::from_secs(MAX_BUCKET_SECS).is_ok());
        assert!(BucketTimestamp::from_secs(MAX_BUCKET_SECS + 3600).is_err());
        assert!(BucketTimestamp::from_secs(-3600).is_err());
        assert!(BucketTimestamp::from_secs(1_700_000_000).is_err());
        assert!(bucket(DAY).is_day_start());
        assert!(!bucket(HOUR).is_day_start());
    }

    #[test]
    fn containing_floors_to_the_hour_or_day_start() {
        // Writers derive buckets from event times with this.
        let t = 1_700_000_000;
        assert_eq!(
            BucketTimestamp::containing(t, Granularity::Hour)
                .unwrap()
                .secs(),
            1_699_999_200
        );
        assert_eq!(
            BucketTimestamp::containing(t, Granularity::Day)
                .unwrap()
                .secs(),
            1_699_920_000
        );
        assert_eq!(Granularity::default(), Granularity::Hour);
        assert!(BucketTimestamp::containing(-1, Granularity::Hour).is_err());
        assert!(BucketTimestamp::containing(i64::MIN, Granularity::Day).is_err());
        assert!(BucketTimestamp::containing(i64::MAX, Granularity::Day).is_err());
        let last = MAX_BUCKET_SECS + 3599;
        assert_eq!(
            BucketTimestamp::containing(last, Granularity::Hour)
                .unwrap()
                .secs(),
            MAX_BUCKET_SECS
        );
        assert_eq!(
            BucketTimestamp::containing(last, Granularity::Day)
                .unwrap()
                .secs(),
            MAX_BUCKET_SECS - 23 * 3600
        );
        assert!(BucketTimestamp::containing(last + 1, Granularity::Hour).is_err());
    }

    #[test]
    fn next_steps_one_bucket_and_stops_at_the_end() {
        // Range reads walk buckets with next(); it must end cleanly at year 9999.
        assert_eq!(
            bucket(HOUR).next(Granularity::Hour).unwrap().secs(),
            HOUR + 3600
        );
        assert_eq!(
            bucket(DAY).next(Granularity::Day).unwrap().secs(),
            DAY + 86_400
        );
        assert!(bucket(MAX_BUCKET_SECS).next(Granularity::Hour).is_err());
        let counter =
            CounterKey::evaluation(None, CounterKind::EvaluationCount, bucket(HOUR), "f", "v")
                .unwrap();
        assert_eq!(
            counter.with_bucket(bucket(DAY)).to_string(),
            "ec:1700006400:f:v"
        );
    }

    #[test]
    fn kind_tags_and_scan_patterns() {
        // Prune and backup build SCAN patterns from these.
        let tags: Vec<_> = KeyKind::ALL.iter().map(|k| k.tag()).collect();
        assert_eq!(
            tags,
            ["ec", "uc", "gc", "gu", "dd", "as", "exp", "exps", "tmp"]
        );
        for kind in KeyKind::ALL {
            assert_eq!(KeyKind::from_tag(kind.tag()), Some(kind));
        }
        for kind in CounterKind::ALL {
            assert_eq!(kind.key_kind().counter_kind(), Some(kind));
        }
        assert!(CounterKind::GoalUsers.is_goal() && CounterKind::GoalUsers.is_unique_users());
        assert!(!CounterKind::EvaluationCount.is_goal());
        assert!(!CounterKind::EvaluationCount.is_unique_users());
        assert_eq!(EventKind::Evaluation.tag(), "evaluation");
        assert_eq!(
            KeyKind::GoalUsers.scan_pattern(Some(&env("prod"))),
            "prod:gu:*"
        );
        assert_eq!(KeyKind::Temp.scan_pattern(None), "tmp:*");
        assert_eq!(KeyKind::ExperimentIndex.scan_pattern(None), "exps");
        assert_eq!(
            KeyKind::ExperimentIndex.scan_pattern(Some(&env("prod"))),
            "prod:exps"
        );
    }

    #[test]
    fn the_experiment_index_is_one_key_per_environment() {
        for (text, env_name) in [("exps", None), ("prod:exps", Some("prod"))] {
            let key = Key::parse(text.as_bytes()).unwrap();
            assert_eq!(key.kind(), KeyKind::ExperimentIndex);
            assert_eq!(
                key.env().map(|e| e.to_string()),
                env_name.map(str::to_owned)
            );
            assert_eq!(key.flag(), None);
            assert_eq!(key.to_string(), text, "round trip");
            assert_eq!(
                Key::experiment_index(env_name.map(env).as_ref()).to_string(),
                text
            );
        }
        assert!(Key::parse(b"exps:extra").is_err());
    }
}
