//! Property tests for the key schema: valid keys round-trip exactly, and no input (random,
//! or a valid key mangled the way buggy writers and corrupt dumps mangle keys) makes parsing
//! panic or accept something that would not format back to the same bytes.
#![allow(clippy::unwrap_used)]

use abstore::keys::{
    BucketTimestamp, CounterKey, CounterKind, Env, EventKind, Key, KeyKind, MAX_BUCKET_SECS,
};
use proptest::prelude::*;

fn env() -> impl Strategy<Value = Option<Env>> {
    proptest::option::of("[A-Za-z0-9_.-]{1,64}".prop_filter_map("kind tag", |s| Env::new(&s).ok()))
}

fn bucket() -> impl Strategy<Value = BucketTimestamp> {
    prop_oneof![
        Just(0),
        Just(MAX_BUCKET_SECS),
        (0..=MAX_BUCKET_SECS / 3600).prop_map(|h| h * 3600),
    ]
    .prop_map(|secs| BucketTimestamp::from_secs(secs).unwrap())
}

/// Flag, goal and variation ids: anything but ':', whitespace and control characters.
fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_.-]{1,40}",
        "[^:\\s\\p{Cc}]{1,40}",
        Just("x".repeat(256)),
    ]
}

/// Users may contain ':' and spaces; only ASCII control characters are refused.
fn user() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^\\x00-\\x1F\\x7F]{1,60}",
        "[a:]{1,20}",
        Just("u".repeat(512)),
    ]
}

fn valid_key() -> impl Strategy<Value = Key> {
    let evaluation = (
        env(),
        prop::sample::select(vec![
            CounterKind::EvaluationCount,
            CounterKind::EvaluationUsers,
        ]),
        bucket(),
        id(),
        id(),
    )
        .prop_map(|(e, kind, b, flag, variation)| {
            CounterKey::evaluation(e.as_ref(), kind, b, &flag, &variation)
                .unwrap()
                .into()
        });
    let goal = (
        env(),
        prop::sample::select(vec![CounterKind::GoalCount, CounterKind::GoalUsers]),
        bucket(),
        id(),
        id(),
        id(),
    )
        .prop_map(|(e, kind, b, flag, goal, variation)| {
            CounterKey::goal(e.as_ref(), kind, b, &flag, &goal, &variation)
                .unwrap()
                .into()
        });
    let dedup = (
        env(),
        prop::sample::select(vec![EventKind::Evaluation, EventKind::Goal]),
        "\\PC{1,64}",
    )
        .prop_map(|(e, kind, event)| Key::dedup(e.as_ref(), kind, &event).unwrap());
    let assignment = (env(), id(), user())
        .prop_map(|(e, flag, user)| Key::assignment(e.as_ref(), &flag, &user).unwrap());
    let experiment =
        (env(), id()).prop_map(|(e, flag)| Key::experiment(e.as_ref(), &flag).unwrap());
    let temp =
        (env(), "[A-Za-z0-9-]{1,64}").prop_map(|(e, id)| Key::temp(e.as_ref(), &id).unwrap());
    prop_oneof![evaluation, goal, dedup, assignment, experiment, temp]
}

/// The ways keys get damaged: stray separators, signs and digits, huge numbers, cut-offs,
/// invalid UTF-8 and dropped segments.
#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, Vec<u8>),
    Truncate(usize),
    Remove(usize, usize),
    EmptySegment(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let payload = prop_oneof![
        Just(b":".to_vec()),
        Just(b"::".to_vec()),
        Just(b"-".to_vec()),
        Just(b"+".to_vec()),
        Just(b"0".to_vec()),
        "[0-9]{1,25}".prop_map(String::into_bytes),
        Just(b"99999999999999999999".to_vec()),
        Just(b"9223372036854775808".to_vec()),
        Just(vec![0xff]),
        Just(vec![0xc3]),
        Just(vec![0xe3, 0x81]),
        Just(b" ".to_vec()),
        Just(b"\x00".to_vec()),
        prop::sample::select(KeyKind::ALL.to_vec())
            .prop_map(|k| format!("{}:", k.tag()).into_bytes()),
    ];
    prop_oneof![
        (any::<usize>(), payload).prop_map(|(at, p)| Mutation::Insert(at, p)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1..4usize).prop_map(|(at, n)| Mutation::Remove(at, n)),
        any::<usize>().prop_map(Mutation::EmptySegment),
    ]
}

fn apply(mut bytes: Vec<u8>, mutation: &Mutation) -> Vec<u8> {
    let at = |i: usize, len: usize| i % (len + 1);
    match mutation {
        Mutation::Insert(i, payload) => {
            let i = at(*i, bytes.len());
            bytes.splice(i..i, payload.iter().copied());
        }
        Mutation::Truncate(i) => bytes.truncate(at(*i, bytes.len())),
        Mutation::Remove(i, n) => {
            let i = at(*i, bytes.len());
            let end = (i + n).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::EmptySegment(i) => {
            // Blank out the n-th segment, keeping its separators.
            let segments: Vec<&[u8]> = bytes.split(|b| *b == b':').collect();
            let blank = i % segments.len();
            let rebuilt: Vec<&[u8]> = segments
                .iter()
                .enumerate()
                .map(|(n, s)| if n == blank { &b""[..] } else { *s })
                .collect();
            bytes = rebuilt.join(&b':');
        }
    }
    bytes
}

/// A parse may fail, but a success must describe exactly the bytes it was given.
fn assert_total_and_exact(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(key) = Key::parse(bytes) {
        let formatted = key.to_string();
        prop_assert_eq!(formatted.as_bytes(), bytes, "parsed {:?}", key);
    }
    Ok(())
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(KeyKind::ALL.to_vec()).prop_map(|k| k.tag().to_owned()),
        prop::sample::select(vec![
            "0",
            "3600",
            "1699999200",
            "1700006400",
            "1700000000",
            "-3600"
        ])
        .prop_map(str::to_owned),
        "[a-f0-9]{40}",
        "[A-Za-z0-9_.-]{0,8}",
        "\\PC{0,4}",
    ]
}

proptest! {
    #[test]
    fn valid_keys_round_trip_through_text(key in valid_key()) {
        // format -> parse gives the same key, and parse -> format the same bytes.
        let text = key.to_string();
        let parsed = Key::parse(text.as_bytes()).unwrap();
        prop_assert_eq!(&parsed, &key);
        prop_assert_eq!(parsed.to_string(), text);
        prop_assert_eq!(parsed.kind(), key.kind());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        // SCAN can return anything that another client wrote.
        assert_total_and_exact(&bytes)?;
    }

    #[test]
    fn mutated_valid_keys_parse_exactly_or_fail(
        key in valid_key(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        // Near-misses exercise every validation branch, unlike uniformly random bytes.
        let bytes = mutations
            .iter()
            .fold(key.to_string().into_bytes(), apply);
        assert_total_and_exact(&bytes)?;
    }

    #[test]
    fn keys_assembled_from_plausible_segments_parse_exactly_or_fail(
        segments in prop::collection::vec(segment(), 1..7),
    ) {
        // Random layouts built from real tags and stamps reach the successful parse paths too.
        assert_total_and_exact(segments.join(":").as_bytes())?;
    }
}
