//! The backup format: one JSON object per key (JSON lines, zstd-compressed into parts) and the
//! manifest that makes a backup complete. Pure code, no I/O: backup encodes with [`PartWriter`],
//! verify and restore check a part against the manifest with [`decode_part`].

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::ControlFlow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Written as `format` in every manifest; anything else is a foreign archive.
pub const FORMAT_NAME: &str = "abstore-backup";
/// The newest format this build writes and reads; a manifest with a higher version is refused.
pub const FORMAT_VERSION: u32 = 1;
/// The object that makes a backup folder a backup; written last.
pub const MANIFEST_NAME: &str = "manifest.json";
const PART_PREFIX: &str = "part-";
const PART_SUFFIX: &str = ".jsonl.zst";
/// zstd level 1: on these records (short JSON lines) it compresses within 2 % of level 3 at half
/// the CPU, and the backup shares the machine with Redis (docs/benchmarks.md).
pub const ZSTD_LEVEL: i32 = 1;
/// JSON bytes gathered before each call into zstd.
const COMPRESS_CHUNK: usize = 128 * 1024;
/// Read buffer for decoding a part's lines.
const DECODE_BUFFER: usize = 256 * 1024;
/// Kind of keys the `abstore` schema does not know.
pub const FOREIGN_KIND: &str = "foreign";
/// Said in every manifest, because SCAN sees keys at different moments.
pub const NOT_POINT_IN_TIME_NOTE: &str = "SCAN-based backup: keys were read one batch at a time \
     while the store kept serving writes, so this is not a point-in-time snapshot; keys written or \
     deleted during the run may or may not be included.";

/// Bytes that may not be UTF-8 (keys, values, HyperLogLogs). Written as a JSON string when they
/// are valid UTF-8, so backups stay readable, else as `{"b64": "…"}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Blob(pub Vec<u8>);

impl Blob {
    /// The bytes for messages: lossy UTF-8.
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => serializer.serialize_str(text),
            Err(_) => {
                use serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("b64", &BASE64.encode(&self.0))?;
                map.end()
            }
        }
    }
}

/// A string, or `{"b64": "…"}`. A visitor rather than an untagged enum: serde's untagged enums
/// buffer every value before trying each variant, which made decoding a part several times slower.
struct BlobVisitor;

impl<'de> serde::de::Visitor<'de> for BlobVisitor {
    type Value = Blob;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string or {\"b64\": \"…\"}")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Blob, E> {
        Ok(Blob(text.as_bytes().to_vec()))
    }

    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Blob, E> {
        Ok(Blob(text.into_bytes()))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Blob, A::Error> {
        let mut blob = None;
        while let Some(field) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if field != "b64" {
                return Err(serde::de::Error::unknown_field(&field, &["b64"]));
            }
            if blob.is_some() {
                return Err(serde::de::Error::duplicate_field("b64"));
            }
            let text: std::borrow::Cow<'de, str> = map.next_value()?;
            blob = Some(
                BASE64
                    .decode(text.as_bytes())
                    .map(Blob)
                    .map_err(serde::de::Error::custom)?,
            );
        }
        blob.ok_or_else(|| serde::de::Error::missing_field("b64"))
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BlobVisitor)
    }
}

/// A key's value, read with the type's own commands (not DUMP), so a backup restores into any
/// Redis or Valkey version and merge can combine values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Data {
    /// Strings, integer counters and HyperLogLogs, byte-exact.
    String(Blob),
    Hash(Vec<(Blob, Blob)>),
    Set(Vec<Blob>),
    /// In list order.
    List(Vec<Blob>),
    /// Members with their scores as Redis prints them (`inf` survives, unlike in JSON numbers).
    Zset(Vec<(Blob, String)>),
}

impl Data {
    /// The Redis type name (`TYPE`'s answer).
    pub fn type_name(&self) -> &'static str {
        match self {
            Data::String(_) => "string",
            Data::Hash(_) => "hash",
            Data::Set(_) => "set",
            Data::List(_) => "list",
            Data::Zset(_) => "zset",
        }
    }
}

/// One key of a backup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub key: Blob,
    /// Absolute expiry in unix milliseconds; absent for keys without expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_at_ms: Option<i64>,
    pub value: Data,
}

impl Record {
    /// Whether the key would already have expired at `now_ms`.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expire_at_ms.is_some_and(|at| at <= now_ms)
    }
}

/// The `abstore` key kind (`ec`, `uc`, …) or [`FOREIGN_KIND`].
pub fn kind_of(key: &[u8]) -> &'static str {
    abstore::keys::Key::parse(key)
        .map(|k| k.kind().tag())
        .unwrap_or(FOREIGN_KIND)
}

/// `part-00000.jsonl.zst`
pub fn part_name(index: usize) -> String {
    format!("{PART_PREFIX}{index:05}{PART_SUFFIX}")
}

/// Whether `name` is a part name this format writes (and so safe to join to a folder).
pub fn is_part_name(name: &str) -> bool {
    name.strip_prefix(PART_PREFIX)
        .and_then(|rest| rest.strip_suffix(PART_SUFFIX))
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// The folder of a backup started at `started`: `YYYY/MM/DD/<YYYYMMDDTHHMMSSZ>-<run-id>`.
pub fn backup_folder(started: DateTime<Utc>, run_id: &str) -> String {
    format!(
        "{:04}/{:02}/{:02}/{}-{run_id}",
        started.year(),
        started.month(),
        started.day(),
        started.format("%Y%m%dT%H%M%SZ")
    )
}

/// The start time encoded in a backup folder's last component, if it has the layout's shape.
pub fn folder_start(folder: &str) -> Option<DateTime<Utc>> {
    let last = folder.rsplit('/').next()?;
    let stamp = last.get(..16)?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// One part as the manifest records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    pub name: String,
    /// Hex sha256 of the compressed object.
    pub sha256: String,
    /// Size of the compressed object.
    pub bytes: u64,
    pub records: u64,
}

/// Where the data came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The URL given, password masked.
    pub url: String,
    /// The node actually read (`host:port`).
    pub server: String,
    /// `redis_version` from INFO server (Valkey reports a compatible one).
    pub redis_version: String,
    pub from_replica: bool,
}

/// Keys counted by schema kind and by Redis type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub by_kind: BTreeMap<String, u64>,
    pub by_type: BTreeMap<String, u64>,
}

impl Counts {
    pub fn add(&mut self, record: &Record) {
        *self
            .by_kind
            .entry(kind_of(&record.key.0).to_owned())
            .or_default() += 1;
        *self
            .by_type
            .entry(record.value.type_name().to_owned())
            .or_default() += 1;
    }
}

/// Keys SCAN returned that are not in the backup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Deleted or expired between SCAN and the read.
    pub vanished: u64,
    /// Of a type the format does not hold (streams, modules' types); named in the logs.
    pub unsupported: u64,
}

/// How long the run took.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// RFC 3339, UTC.
    pub started_at: String,
    /// RFC 3339, UTC.
    pub finished_at: String,
    pub duration_ms: u64,
}

/// `manifest.json`: written last; its presence is what makes a backup exist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub run_id: String,
    pub point_in_time: bool,
    pub note: String,
    pub source: Source,
    /// The `--match` globs; empty means every key.
    #[serde(default)]
    pub match_patterns: Vec<String>,
    /// Records in all parts.
    pub keys: u64,
    /// Compressed bytes in all parts.
    pub bytes: u64,
    pub counts: Counts,
    pub skipped: Skipped,
    pub timings: Timings,
    pub parts: Vec<PartInfo>,
}

impl Manifest {
    /// Parses and checks a manifest: ours, not newer than this build, internally consistent.
    /// The error is the reason only; callers add the URL.
    pub fn parse(data: &[u8]) -> Result<Manifest, String> {
        // Format and version first, from a loose parse, so a newer format whose fields changed
        // is reported as newer rather than as a parse error.
        let loose: serde_json::Value =
            serde_json::from_slice(data).map_err(|e| format!("manifest is not JSON: {e}"))?;
        let format = loose.get("format").and_then(|f| f.as_str());
        if format != Some(FORMAT_NAME) {
            return Err(format!(
                "not an ABStore backup: format is {format:?}, expected {FORMAT_NAME:?}"
            ));
        }
        let version = loose.get("format_version").and_then(|v| v.as_u64());
        match version {
            Some(v) if v > u64::from(FORMAT_VERSION) => {
                return Err(format!(
                    "format version {v} is newer than this abstore-jobs reads ({FORMAT_VERSION}); use a newer abstore-jobs"
                ));
            }
            Some(v) if v >= 1 => {}
            other => return Err(format!("invalid format_version {other:?}")),
        }
        let manifest: Manifest =
            serde_json::from_value(loose).map_err(|e| format!("invalid manifest: {e}"))?;
        manifest.check()?;
        Ok(manifest)
    }

    fn check(&self) -> Result<(), String> {
        if let Some(part) = self.parts.iter().find(|p| !is_part_name(&p.name)) {
            return Err(format!("invalid part name {:?}", part.name));
        }
        let records: u64 = self.parts.iter().map(|p| p.records).sum();
        if records != self.keys {
            return Err(format!(
                "parts hold {records} records but the manifest counts {} keys",
                self.keys
            ));
        }
        let bytes: u64 = self.parts.iter().map(|p| p.bytes).sum();
        if bytes != self.bytes {
            return Err(format!(
                "parts hold {bytes} bytes but the manifest counts {}",
                self.bytes
            ));
        }
        Ok(())
    }

    pub fn to_json(&self) -> Result<Bytes, String> {
        serde_json::to_vec_pretty(self)
            .map(Bytes::from)
            .map_err(|e| format!("encoding the manifest: {e}"))
    }
}

/// Streams records into one compressed part, hashing the compressed bytes as they come out.
pub struct PartWriter {
    name: String,
    encoder: zstd::stream::write::Encoder<'static, Vec<u8>>,
    /// JSON lines not yet handed to zstd.
    pending: Vec<u8>,
    sha: Sha256,
    bytes: u64,
    records: u64,
    uncompressed: u64,
}

impl std::fmt::Debug for PartWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartWriter")
            .field("name", &self.name)
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl PartWriter {
    pub fn new(name: String) -> Result<PartWriter, String> {
        let encoder = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)
            .map_err(|e| format!("starting zstd for {name}: {e}"))?;
        Ok(PartWriter {
            name,
            encoder,
            pending: Vec::with_capacity(COMPRESS_CHUNK + 4096),
            sha: Sha256::new(),
            bytes: 0,
            records: 0,
            uncompressed: 0,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// JSON bytes written so far (before compression), for rolling parts.
    pub fn uncompressed(&self) -> u64 {
        self.uncompressed
    }

    /// Appends one record as a JSON line.
    pub fn push(&mut self, record: &Record) -> Result<(), String> {
        let before = self.pending.len();
        if let Err(e) = serde_json::to_writer(&mut self.pending, record) {
            self.pending.truncate(before);
            return Err(format!("encoding key {:?}: {e}", record.key.display()));
        }
        self.pending.push(b'\n');
        self.records += 1;
        self.uncompressed += (self.pending.len() - before) as u64;
        if self.pending.len() >= COMPRESS_CHUNK {
            self.compress_pending()?;
        }
        Ok(())
    }

    /// Hands the buffered JSON lines to zstd: one call per chunk instead of one per line.
    fn compress_pending(&mut self) -> Result<(), String> {
        self.encoder
            .write_all(&self.pending)
            .map_err(|e| format!("compressing {}: {e}", self.name))?;
        self.pending.clear();
        Ok(())
    }

    /// The compressed bytes produced so far (possibly none), to hand to the uploader.
    pub fn take_output(&mut self) -> Bytes {
        let out = std::mem::take(self.encoder.get_mut());
        self.account(&out);
        Bytes::from(out)
    }

    /// Ends the zstd frame: the last bytes and the part's manifest entry.
    pub fn finish(mut self) -> Result<(Bytes, PartInfo), String> {
        self.compress_pending()?;
        let pending = std::mem::take(self.encoder.get_mut());
        self.account(&pending);
        let name = self.name;
        let tail = self
            .encoder
            .finish()
            .map_err(|e| format!("finishing {name}: {e}"))?;
        self.sha.update(&tail);
        self.bytes += tail.len() as u64;
        let mut out = pending;
        out.extend_from_slice(&tail);
        Ok((
            Bytes::from(out),
            PartInfo {
                name,
                sha256: hex::encode(self.sha.finalize()),
                bytes: self.bytes,
                records: self.records,
            },
        ))
    }

    fn account(&mut self, chunk: &[u8]) {
        self.sha.update(chunk);
        self.bytes += chunk.len() as u64;
    }
}

/// Checks a downloaded part's size and sha256 against its manifest entry. The error is the
/// reason only; callers add the part's URL.
pub fn check_part(data: &[u8], expected: &PartInfo) -> Result<(), String> {
    if data.len() as u64 != expected.bytes {
        return Err(format!(
            "size is {} bytes, the manifest says {} (truncated or replaced)",
            data.len(),
            expected.bytes
        ));
    }
    let sha = hex::encode(Sha256::digest(data));
    if sha != expected.sha256 {
        return Err(format!(
            "sha256 is {sha}, the manifest says {} (corrupted)",
            expected.sha256
        ));
    }
    Ok(())
}

/// Decodes a part (already checked with [`check_part`]) line by line, handing its records to
/// `each` in batches of up to `batch` records, and checks the record count at the end. Memory
/// stays at one batch plus zstd's window, whatever the part's size. `each` may stop the decoding
/// early with [`ControlFlow::Break`] (the count is then not checked).
pub fn decode_part_batches(
    data: &[u8],
    expected: &PartInfo,
    batch: usize,
    mut each: impl FnMut(Vec<Record>) -> ControlFlow<()>,
) -> Result<(), String> {
    use std::io::BufRead;
    let decoder =
        zstd::stream::read::Decoder::new(data).map_err(|e| format!("not valid zstd: {e}"))?;
    let mut lines = std::io::BufReader::with_capacity(DECODE_BUFFER, decoder);
    let batch = batch.max(1);
    let mut records = Vec::with_capacity(batch);
    let mut line = Vec::new();
    let mut count = 0u64;
    let mut number = 0u64;
    loop {
        line.clear();
        let read = lines
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("not valid zstd: {e}"))?;
        if read == 0 {
            break;
        }
        number += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.is_empty() {
            continue;
        }
        let record: Record = serde_json::from_slice(text)
            .map_err(|e| format!("line {number}: not a valid record: {e}"))?;
        records.push(record);
        count += 1;
        if records.len() >= batch
            && each(std::mem::replace(&mut records, Vec::with_capacity(batch))).is_break()
        {
            return Ok(());
        }
    }
    if count != expected.records {
        return Err(format!(
            "holds {count} records, the manifest says {}",
            expected.records
        ));
    }
    if !records.is_empty() {
        let _ = each(records);
    }
    Ok(())
}

/// Checks that every line of a part (already checked with [`check_part`]) is a record this
/// format can decode, and the record count, without building the records: the same grammar as
/// [`Record`] read into borrowed shapes, so verifying costs a fraction of decoding.
pub fn check_part_records(data: &[u8], expected: &PartInfo) -> Result<(), String> {
    use std::io::BufRead;
    let decoder =
        zstd::stream::read::Decoder::new(data).map_err(|e| format!("not valid zstd: {e}"))?;
    let mut lines = std::io::BufReader::with_capacity(DECODE_BUFFER, decoder);
    let mut line = Vec::new();
    let (mut count, mut number) = (0u64, 0u64);
    loop {
        line.clear();
        if lines
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("not valid zstd: {e}"))?
            == 0
        {
            break;
        }
        number += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.is_empty() {
            continue;
        }
        serde_json::from_slice::<shape::Record<'_>>(text)
            .map_err(|e| format!("line {number}: not a valid record: {e}"))?;
        count += 1;
    }
    if count != expected.records {
        return Err(format!(
            "holds {count} records, the manifest says {}",
            expected.records
        ));
    }
    Ok(())
}

/// [`Record`]'s grammar with borrowed, unconverted values, for checking without decoding. Kept
/// next to the owned types; a test checks both accept and refuse the same lines.
mod shape {
    use std::borrow::Cow;

    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) struct Record<'a> {
        #[serde(borrow, rename = "key")]
        _key: Blob<'a>,
        #[serde(default, rename = "expire_at_ms")]
        _expire_at_ms: Option<i64>,
        #[serde(borrow, rename = "value")]
        _value: Data<'a>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code)] // parsed to check the grammar, never read
    pub(super) enum Data<'a> {
        String(#[serde(borrow)] Blob<'a>),
        Hash(#[serde(borrow)] Vec<(Blob<'a>, Blob<'a>)>),
        Set(#[serde(borrow)] Vec<Blob<'a>>),
        List(#[serde(borrow)] Vec<Blob<'a>>),
        Zset(#[serde(borrow)] Vec<(Blob<'a>, Cow<'a, str>)>),
    }

    /// A string, or `{"b64": "…"}` whose base64 decodes (the owned `Blob`'s grammar).
    pub(super) struct Blob<'a>(std::marker::PhantomData<&'a ()>);

    struct BlobVisitor;

    impl<'de> serde::de::Visitor<'de> for BlobVisitor {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or {\"b64\": \"…\"}")
        }

        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
            Ok(())
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            use base64::Engine;
            let mut seen = false;
            while let Some(field) = map.next_key::<Cow<'de, str>>()? {
                if field != "b64" {
                    return Err(serde::de::Error::unknown_field(&field, &["b64"]));
                }
                if seen {
                    return Err(serde::de::Error::duplicate_field("b64"));
                }
                let text: Cow<'de, str> = map.next_value()?;
                super::BASE64
                    .decode(text.as_bytes())
                    .map_err(serde::de::Error::custom)?;
                seen = true;
            }
            if seen {
                Ok(())
            } else {
                Err(serde::de::Error::missing_field("b64"))
            }
        }
    }

    impl<'de: 'a, 'a> Deserialize<'de> for Blob<'a> {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer
                .deserialize_any(BlobVisitor)
                .map(|()| Blob(std::marker::PhantomData))
        }
    }
}

/// Checks a part against its manifest entry (size, sha256, decodability, record count) and
/// returns all its records.
pub fn decode_part(data: &[u8], expected: &PartInfo) -> Result<Vec<Record>, String> {
    check_part(data, expected)?;
    let mut records = Vec::new();
    decode_part_batches(data, expected, 4096, |batch| {
        records.extend(batch);
        ControlFlow::Continue(())
    })?;
    Ok(records)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn record(key: &[u8], value: Data, expire_at_ms: Option<i64>) -> Record {
        Record {
            key: Blob(key.to_vec()),
            expire_at_ms,
            value,
        }
    }

    fn sample() -> Vec<Record> {
        vec![
            record(
                b"ec:1699999200:flag:v1",
                Data::String(Blob(b"42".to_vec())),
                None,
            ),
            record(
                b"\xff\x00binary",
                Data::String(Blob(vec![0, 159, 146, 150, 255])),
                Some(1_900_000_000_000),
            ),
            record(b"empty", Data::String(Blob(Vec::new())), None),
            record(
                b"h",
                Data::Hash(vec![(Blob(b"f".to_vec()), Blob(b"\xfe".to_vec()))]),
                None,
            ),
            record(b"s", Data::Set(vec![Blob(b"a".to_vec())]), None),
            record(
                b"l",
                Data::List(vec![Blob(b"x".to_vec()), Blob(b"x".to_vec())]),
                None,
            ),
            record(
                b"z",
                Data::Zset(vec![
                    (Blob(b"m".to_vec()), "-inf".to_owned()),
                    (Blob(b"n".to_vec()), "1.5".to_owned()),
                ]),
                None,
            ),
        ]
    }

    fn encode(records: &[Record]) -> (Bytes, PartInfo) {
        let mut writer = PartWriter::new(part_name(0)).unwrap();
        let mut data = Vec::new();
        for r in records {
            writer.push(r).unwrap();
            data.extend_from_slice(&writer.take_output());
        }
        let (tail, info) = writer.finish().unwrap();
        data.extend_from_slice(&tail);
        (Bytes::from(data), info)
    }

    fn manifest(parts: Vec<PartInfo>) -> Manifest {
        let now = Utc::now().to_rfc3339();
        Manifest {
            format: FORMAT_NAME.to_owned(),
            format_version: FORMAT_VERSION,
            run_id: "r".to_owned(),
            point_in_time: false,
            note: NOT_POINT_IN_TIME_NOTE.to_owned(),
            source: Source {
                url: "redis://h".to_owned(),
                server: "h:6379".to_owned(),
                redis_version: "7.0.15".to_owned(),
                from_replica: false,
            },
            match_patterns: Vec::new(),
            keys: parts.iter().map(|p| p.records).sum(),
            bytes: parts.iter().map(|p| p.bytes).sum(),
            counts: Counts::default(),
            skipped: Skipped::default(),
            timings: Timings {
                started_at: now.clone(),
                finished_at: now,
                duration_ms: 0,
            },
            parts,
        }
    }

    #[test]
    fn records_of_every_type_survive_encoding_byte_exact() {
        // Binary keys, HLL bytes and empty values must come back identical, or restore corrupts.
        let records = sample();
        let (data, info) = encode(&records);
        assert_eq!(info.records, records.len() as u64);
        assert_eq!(decode_part(&data, &info).unwrap(), records);
    }

    #[test]
    fn text_stays_readable_and_binary_goes_to_base64() {
        // Readable backups help on-call; base64 only where JSON strings cannot hold the bytes.
        let text = serde_json::to_string(&Blob(b"ec:1:f:v".to_vec())).unwrap();
        assert_eq!(text, "\"ec:1:f:v\"");
        let binary = serde_json::to_string(&Blob(vec![0xff, 0x00])).unwrap();
        assert_eq!(binary, "{\"b64\":\"/wA=\"}");
    }

    #[test]
    fn the_checking_grammar_accepts_and_refuses_exactly_what_decoding_does() {
        // Verify checks lines without building records; restore then decodes them. If the two
        // disagreed, a verified backup could fail half-way through a restore.
        let mut lines: Vec<String> = sample()
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        lines.extend(
            [
                r#"{"value":{"string":"1"}}"#,
                r#"{"key":"k","value":{"stream":"1"}}"#,
                r#"{"key":"k","value":{"string":{"b64":"***"}}}"#,
                r#"{"key":{"b64":"AA==","x":1},"value":{"string":"1"}}"#,
                r#"{"key":{},"value":{"string":"1"}}"#,
                r#"{"key":"k","expire_at_ms":"soon","value":{"string":"1"}}"#,
                r#"{"key":"k","value":{"zset":[["m",1.5]]}}"#,
                r#"{"key":"k","value":{"hash":[["f"]]}}"#,
                r#"{"key":7,"value":{"string":"1"}}"#,
                r#"{"key":"k","value":{"set":["a","b"]},"extra":true}"#,
                r#"{"key":"k\u00e9","value":{"list":["a\n"]}}"#,
                "not json",
            ]
            .map(str::to_owned),
        );
        for line in &lines {
            let decoded = serde_json::from_str::<Record>(line).is_ok();
            let checked = serde_json::from_str::<shape::Record<'_>>(line).is_ok();
            assert_eq!(decoded, checked, "{line}");
        }
        let (data, info) = encode(&sample());
        assert!(check_part_records(&data, &info).is_ok());
        let wrong = PartInfo {
            records: info.records - 1,
            ..info
        };
        assert!(
            check_part_records(&data, &wrong)
                .unwrap_err()
                .contains("records")
        );
    }

    #[test]
    fn a_flipped_byte_a_truncation_or_a_wrong_count_is_refused() {
        // Restore relies on this check to refuse damaged archives before writing anything.
        let (data, info) = encode(&sample());
        let mut flipped = data.to_vec();
        flipped[data.len() / 2] ^= 0x01;
        assert!(decode_part(&flipped, &info).unwrap_err().contains("sha256"));
        assert!(
            decode_part(&data[..data.len() - 3], &info)
                .unwrap_err()
                .contains("truncated")
        );
        let wrong_count = PartInfo {
            records: info.records + 1,
            ..info.clone()
        };
        assert!(
            decode_part(&data, &wrong_count)
                .unwrap_err()
                .contains("records")
        );
    }

    #[test]
    fn manifests_round_trip_and_foreign_or_newer_ones_are_refused() {
        // A newer format may change meaning silently; refusing is the only safe answer.
        let (_, info) = encode(&sample());
        let m = manifest(vec![info]);
        let json = m.to_json().unwrap();
        assert_eq!(Manifest::parse(&json).unwrap(), m);

        let mut value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        value["format_version"] = serde_json::json!(FORMAT_VERSION + 1);
        let newer = Manifest::parse(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(newer.contains("newer"), "{newer}");

        value["format"] = serde_json::json!("something-else");
        let foreign = Manifest::parse(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(foreign.contains("not an ABStore backup"), "{foreign}");
    }

    #[test]
    fn a_manifest_whose_totals_disagree_with_its_parts_is_refused() {
        // The totals are what list shows; they must describe the parts restore will read.
        let (_, info) = encode(&sample());
        let mut m = manifest(vec![info]);
        m.keys += 1;
        assert!(
            Manifest::parse(&m.to_json().unwrap())
                .unwrap_err()
                .contains("records")
        );
        let mut m = manifest(vec![PartInfo {
            name: "../escape".to_owned(),
            sha256: String::new(),
            bytes: 0,
            records: 0,
        }]);
        m.keys = 0;
        assert!(
            Manifest::parse(&m.to_json().unwrap())
                .unwrap_err()
                .contains("part name")
        );
    }

    #[test]
    fn folders_follow_the_date_layout_and_give_back_their_start() {
        // list and "newest backup" depend on the folder name sorting by time.
        let started = DateTime::parse_from_rfc3339("2025-03-07T04:05:06Z")
            .unwrap()
            .with_timezone(&Utc);
        let folder = backup_folder(started, "abcd1234");
        assert_eq!(folder, "2025/03/07/20250307T040506Z-abcd1234");
        assert_eq!(folder_start(&folder), Some(started));
        assert!(is_part_name(&part_name(3)));
        assert!(!is_part_name("part-.jsonl.zst"));
    }

    #[test]
    fn keys_are_counted_by_schema_kind_with_foreign_for_the_rest() {
        assert_eq!(kind_of(b"ec:1699999200:flag:v1"), "ec");
        assert_eq!(kind_of(b"\xff"), FOREIGN_KIND);
        assert_eq!(kind_of(b"session:42"), FOREIGN_KIND);
    }
}
