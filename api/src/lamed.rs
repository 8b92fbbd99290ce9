//! Lamed/Gimel compatibility, the pure part: the parameters of `track`, `experiment`, `all` and
//! `delete` as Lamed reads them (lamed 0.4.3, `lamed/lamed.py`; gimel 1.5.0 is the same API with
//! unique counts), checked against the ABStore key schema, and the JSON shapes it answers with.
//!
//! Mapping onto the data model: the namespace is the keys' environment prefix, the experiment
//! the flag, the variant the variation; `participate` is an evaluation and any other event a goal,
//! both with the uuid as the user. Lamed counts a uuid once per counter per 24 h (a flag
//! `sha1("<counter key> <uuid>")` with a 24 h expiry); the event id here is that same digest, and
//! the recorder's dedup window is the same 24 h, so the counts agree exactly.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use abstore::keys::{Env, Key};
use serde::Serialize;
use sha1::{Digest, Sha1};

/// Lamed's default namespace.
pub const DEFAULT_NAMESPACE: &str = "alephbet";
/// The event that counts a trial; every other event name is a goal.
pub const PARTICIPATE: &str = "participate";
/// Longest uuid accepted (the key schema's user id limit).
const MAX_UUID_BYTES: usize = 512;

/// A request parameter that is missing or would break the key schema: a 400 naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("missing parameter {param:?}")]
    Missing { param: &'static str },
    #[error("parameter {param:?} is invalid: {reason}")]
    Invalid { param: &'static str, reason: String },
}

impl ParamError {
    /// The parameter it names.
    pub fn param(&self) -> &'static str {
        match self {
            ParamError::Missing { param } | ParamError::Invalid { param, .. } => param,
        }
    }
}

/// Request parameters (query string or form body), as Lamed's `event` dict.
pub type Params = BTreeMap<String, String>;

/// The parameters of a query string or an `application/x-www-form-urlencoded` body
/// (percent-escapes and `+` decoded; a repeated name keeps its last value).
pub fn parse_params(text: &[u8]) -> Params {
    form_urlencoded::parse(text).into_owned().collect()
}

/// The five parameters `track` reads, borrowed from the query string and form body they were
/// read from (owned only where a percent-escape or `+` was decoded): `track` is the hot path,
/// and this reads it without building a [`Params`] map. Same rules as [`parse_params`]: a
/// repeated name keeps its last value, and a later [`TrackParams::read`] overrides an earlier.
#[derive(Debug, Default)]
pub struct TrackParams<'a> {
    values: [Option<Cow<'a, str>>; TRACK_PARAMS.len()],
}

/// What [`TrackParams`] keeps; every other parameter is ignored, as Lamed ignores it.
const TRACK_PARAMS: [&str; 5] = ["namespace", "experiment", "variant", "event", "uuid"];

impl<'a> TrackParams<'a> {
    /// Reads a query string or an `application/x-www-form-urlencoded` body.
    pub fn read(&mut self, text: &'a [u8]) {
        for pair in text.split(|b| *b == b'&').filter(|pair| !pair.is_empty()) {
            // A pair with nothing to decode is split in place; any other is decoded by
            // `form_urlencoded` itself, so both read exactly what `parse_params` reads.
            let (name, value) = match plain_pair(pair) {
                Some((name, value)) => (Cow::Borrowed(name), Cow::Borrowed(value)),
                None => match form_urlencoded::parse(pair).next() {
                    Some(decoded) => decoded,
                    None => continue,
                },
            };
            if let Some(i) = TRACK_PARAMS.iter().position(|known| *known == name) {
                self.values[i] = Some(value);
            }
        }
    }

    fn get(&self, param: &str) -> Option<&str> {
        let i = TRACK_PARAMS.iter().position(|known| *known == param)?;
        self.values[i].as_deref()
    }
}

/// `name=value` (or `name`) with no percent-escape or `+` and in UTF-8: its two halves as they
/// are; `None` when something must be decoded.
fn plain_pair(pair: &[u8]) -> Option<(&str, &str)> {
    if pair.iter().any(|b| matches!(b, b'%' | b'+')) {
        return None;
    }
    let text = std::str::from_utf8(pair).ok()?;
    Some(text.split_once('=').unwrap_or((text, "")))
}

/// Looks a parameter up: a [`Params`] map or a [`TrackParams`].
pub trait Lookup {
    fn lookup(&self, param: &str) -> Option<&str>;
}

impl Lookup for Params {
    fn lookup(&self, param: &str) -> Option<&str> {
        self.get(param).map(String::as_str)
    }
}

impl Lookup for TrackParams<'_> {
    fn lookup(&self, param: &str) -> Option<&str> {
        self.get(param)
    }
}

fn required<'a>(params: &'a impl Lookup, param: &'static str) -> Result<&'a str, ParamError> {
    params
        .lookup(param)
        .filter(|v| !v.is_empty())
        .ok_or(ParamError::Missing { param })
}

/// The namespace (Lamed's default `alephbet`) as a key environment.
pub fn namespace(params: &impl Lookup) -> Result<Env, ParamError> {
    let ns = params
        .lookup("namespace")
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE);
    Env::new(ns).map_err(|e| ParamError::Invalid {
        param: "namespace",
        reason: e.to_string(),
    })
}

/// An experiment (flag), variant (variation) or goal name: what the key schema accepts.
fn name(params: &impl Lookup, param: &'static str) -> Result<String, ParamError> {
    let value = required(params, param)?;
    // The experiment key validates a flag; variants and goals follow the same rules.
    Key::experiment(None, value).map_err(|e| ParamError::Invalid {
        param,
        reason: e.to_string(),
    })?;
    Ok(value.to_owned())
}

/// One `track` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub namespace: Env,
    pub experiment: String,
    pub variant: String,
    /// `participate` or a goal name.
    pub event: String,
    pub uuid: String,
}

impl Track {
    pub fn parse(params: &impl Lookup) -> Result<Track, ParamError> {
        let namespace = namespace(params)?;
        let experiment = name(params, "experiment")?;
        let variant = name(params, "variant")?;
        let event = name(params, "event")?;
        let uuid = required(params, "uuid")?;
        if uuid.len() > MAX_UUID_BYTES || uuid.chars().any(|c| c.is_control()) {
            return Err(ParamError::Invalid {
                param: "uuid",
                reason: format!("at most {MAX_UUID_BYTES} bytes and no control characters"),
            });
        }
        Ok(Track {
            namespace,
            experiment,
            variant,
            event,
            uuid: uuid.to_owned(),
        })
    }

    /// Whether this is a trial (`participate`) rather than a goal.
    pub fn is_participation(&self) -> bool {
        self.event == PARTICIPATE
    }

    /// Lamed's counter key for this event: `<ns>:counters:<experiment>:<event>:<variant>`.
    pub fn lamed_counter_key(&self) -> String {
        format!(
            "{}:counters:{}:{}:{}",
            self.namespace, self.experiment, self.event, self.variant
        )
    }

    /// The event id: Lamed's dedup digest, `sha1("<counter key> <uuid>")` in hex.
    pub fn event_id(&self) -> String {
        // Hashed in pieces: the same bytes as `format!("{} {}", lamed_counter_key(), uuid)`
        // without building the string (once per tracked event).
        let mut hasher = Sha1::new();
        for piece in [
            self.namespace.as_str(),
            ":counters:",
            &self.experiment,
            ":",
            &self.event,
            ":",
            &self.variant,
            " ",
            &self.uuid,
        ] {
            hasher.update(piece.as_bytes());
        }
        // Written through a buffer: `hex::encode` collects char by char (every event).
        let mut hex = [0u8; 40];
        // 20 bytes always fit 40 digits, which are ASCII.
        let _ = hex::encode_to_slice(hasher.finalize(), &mut hex);
        String::from_utf8_lossy(&hex).into_owned()
    }

    /// The registry entry of this event's series (`<event>:<variant>` in the `exp:` hash).
    pub fn series(&self) -> String {
        format!("{}:{}", self.event, self.variant)
    }
}

/// One variant's numbers for one goal, as Lamed answers them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VariantResult {
    pub label: String,
    pub successes: u64,
    pub trials: u64,
}

/// One goal of an experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GoalResults {
    pub goal: String,
    pub results: Vec<VariantResult>,
}

/// What an experiment has seen: its variants and goals, from the registry's series names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Series {
    pub variants: BTreeSet<String>,
    pub goals: BTreeSet<String>,
}

impl Series {
    /// Reads `<event>:<variant>` entries; `participate` is not a goal.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a str>) -> Series {
        let mut series = Series::default();
        for entry in entries {
            if let Some((event, variant)) = entry.split_once(':') {
                series.variants.insert(variant.to_owned());
                if event != PARTICIPATE {
                    series.goals.insert(event.to_owned());
                }
            }
        }
        series
    }
}

/// Lamed's `experiment` answer: every goal but `participate`, each with every variant's
/// successes (that goal's count) and trials (its `participate` count); 0 where nothing was
/// counted. Lamed iterates sets, so its order is arbitrary; here it is sorted.
pub fn experiment_results(
    series: &Series,
    trials: &BTreeMap<String, u64>,
    successes: &BTreeMap<(String, String), u64>,
) -> Vec<GoalResults> {
    series
        .goals
        .iter()
        .map(|goal| GoalResults {
            goal: goal.clone(),
            results: series
                .variants
                .iter()
                .map(|variant| VariantResult {
                    label: variant.clone(),
                    successes: successes
                        .get(&(goal.clone(), variant.clone()))
                        .copied()
                        .unwrap_or(0),
                    trials: trials.get(variant).copied().unwrap_or(0),
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `track`'s borrowed reading gives what the `Params` map gives, on every kind of pair:
    /// escapes (good, bad, cut short), `+`, repeated names, no `=`, two `=`, empty pairs, bytes
    /// that are not UTF-8, and a later read overriding an earlier (a POST body over its query).
    #[test]
    fn track_params_read_what_parse_params_reads() {
        let pieces: [&[u8]; 22] = [
            b"namespace",
            b"experiment",
            b"variant",
            b"event",
            b"uuid",
            b"other",
            b"=",
            b"=",
            b"&",
            b"&",
            b"%3A",
            b"%3a",
            b"%",
            b"%4",
            b"%zz",
            b"+",
            b"a",
            b"b1",
            b"\xff",
            b"\xc3\xa9",
            b"ev%65nt",
            b"uu+id",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            usize::try_from(seed >> 33).unwrap() % n
        };
        for _ in 0..5_000 {
            let mut texts: Vec<Vec<u8>> = Vec::new();
            for _ in 0..2 {
                let mut text = Vec::new();
                for _ in 0..next(16) {
                    text.extend_from_slice(pieces[next(pieces.len())]);
                }
                texts.push(text);
            }
            let mut borrowed = TrackParams::default();
            let mut map = Params::new();
            for text in &texts {
                borrowed.read(text);
                map.extend(parse_params(text));
            }
            for name in TRACK_PARAMS {
                assert_eq!(
                    borrowed.lookup(name),
                    map.lookup(name),
                    "{name} in {:?}",
                    texts
                        .iter()
                        .map(|t| String::from_utf8_lossy(t).into_owned())
                        .collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn parameters_are_decoded_and_a_repeated_name_keeps_its_last_value() {
        let parsed =
            parse_params(b"experiment=big+button&variant=r%C3%A9d&uuid=1&uuid=2&empty=&flag");
        assert_eq!(parsed["experiment"], "big button");
        assert_eq!(parsed["variant"], "réd");
        assert_eq!(parsed["uuid"], "2");
        assert_eq!(parsed["empty"], "");
        assert_eq!(parsed["flag"], "");
        assert!(parse_params(b"").is_empty());
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn track_reads_lamed_parameters_with_its_default_namespace_and_its_dedup_digest() {
        let t = Track::parse(&params(&[
            ("experiment", "button"),
            ("variant", "red"),
            ("event", "participate"),
            ("uuid", "u-1"),
        ]))
        .unwrap();
        assert_eq!(t.namespace.to_string(), "alephbet");
        assert!(t.is_participation());
        assert_eq!(
            t.lamed_counter_key(),
            "alephbet:counters:button:participate:red"
        );
        // hashlib.sha1("alephbet:counters:button:participate:red u-1".encode()).hexdigest()
        let expected = hex::encode(Sha1::digest("alephbet:counters:button:participate:red u-1"));
        assert_eq!(t.event_id(), expected);
        assert_eq!(t.series(), "participate:red");
    }

    #[test]
    fn bad_parameters_are_refused_naming_the_parameter() {
        let base = [
            ("experiment", "button"),
            ("variant", "red"),
            ("event", "click"),
            ("uuid", "u"),
        ];
        for (param, value) in [
            ("experiment", "a:b"),
            ("variant", "has space"),
            ("event", "tab\there"),
            ("namespace", "no/slash"),
            ("uuid", "bell\u{7}"),
        ] {
            let mut p = params(&base);
            p.insert(param.to_owned(), value.to_owned());
            let error = Track::parse(&p).unwrap_err();
            assert_eq!(error.param(), param, "{error}");
        }
        for missing in ["experiment", "variant", "event", "uuid"] {
            let mut p = params(&base);
            p.remove(missing);
            assert_eq!(
                Track::parse(&p).unwrap_err(),
                ParamError::Missing { param: missing }
            );
        }
        let mut long = params(&base);
        long.insert("experiment".into(), "x".repeat(300));
        assert_eq!(Track::parse(&long).unwrap_err().param(), "experiment");
    }

    #[test]
    fn experiment_results_have_lamed_shape_with_zeros_where_nothing_was_counted() {
        let series = Series::from_entries([
            "participate:red",
            "participate:blue",
            "click:red",
            "buy:blue",
        ]);
        assert_eq!(series.goals.iter().collect::<Vec<_>>(), ["buy", "click"]);
        let trials = BTreeMap::from([("red".to_owned(), 10), ("blue".to_owned(), 8)]);
        let successes = BTreeMap::from([(("click".to_owned(), "red".to_owned()), 3)]);
        let results = experiment_results(&series, &trials, &successes);
        let json = serde_json::to_value(&results).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"goal": "buy", "results": [
                    {"label": "blue", "successes": 0, "trials": 8},
                    {"label": "red", "successes": 0, "trials": 10}]},
                {"goal": "click", "results": [
                    {"label": "blue", "successes": 0, "trials": 8},
                    {"label": "red", "successes": 3, "trials": 10}]}
            ])
        );
    }
}
