//! YAML as kubectl and Helm read it. serde_yaml writes YAML 1.2, where `no`, `yes`, `on` and
//! `off` are strings and need no quotes; kubectl and Helm parse with YAML 1.1 rules, where they
//! are booleans. Everything the operator prints (`crd`, `render`) goes through `to_yaml`, which
//! quotes those words so that `appendfsync: no` stays the string "no".

use serde::Serialize;

/// Plain scalars that YAML 1.1 (go-yaml v2, behind sigs.k8s.io/yaml) resolves to a boolean
/// but YAML 1.2 does not, so serde_yaml leaves them unquoted. (`true`, `false` and `null` are
/// the same in both: serde_yaml quotes such strings itself, and a bare one is a real boolean.)
const YAML_1_1_WORDS: [&str; 16] = [
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
    "OFF",
];

/// Serialises `value` as YAML that YAML 1.1 and 1.2 readers read the same way.
pub fn to_yaml<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_yaml::Error> {
    Ok(quote_yaml_1_1_words(&serde_yaml::to_string(value)?))
}

/// Quotes the plain mapping values and sequence items of serde_yaml's output that YAML 1.1
/// would read as booleans; block scalars (`|`, `>`) are text and left as they are.
fn quote_yaml_1_1_words(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len() + 16);
    // Indentation of the line that opened a block scalar: deeper lines belong to it.
    let mut block_parent_indent: Option<usize> = None;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(parent) = block_parent_indent {
            if line.trim().is_empty() || indent > parent {
                out.push_str(line);
                out.push('\n');
                continue;
            }
            block_parent_indent = None;
        }
        let (prefix, value) = split_value(line);
        if is_block_indicator(value) {
            block_parent_indent = Some(indent);
        }
        out.push_str(prefix);
        if YAML_1_1_WORDS.contains(&value) {
            out.push('\'');
            out.push_str(value);
            out.push('\'');
        } else {
            out.push_str(value);
        }
        out.push('\n');
    }
    out
}

/// Splits a line into everything up to its scalar value and the value: `key: value`,
/// `- value`, `- key: value` (the value is empty for `key:` and nested collections).
fn split_value(line: &str) -> (&str, &str) {
    let mut start = line.len() - line.trim_start().len();
    while line[start..].starts_with("- ") {
        start += 2;
    }
    let rest = &line[start..];
    // A plain or quoted key ends at the first ": " outside quotes; serde_yaml quotes keys
    // containing ": ", so the first occurrence after an unquoted key is the separator.
    let key_end = if rest.starts_with('\'') || rest.starts_with('"') {
        let quote = rest.as_bytes()[0] as char;
        rest[1..].find(quote).map(|i| i + 2)
    } else {
        Some(0)
    };
    if let Some(key_end) = key_end
        && let Some(colon) = rest[key_end..].find(": ")
    {
        let split = start + key_end + colon + 2;
        return (&line[..split], &line[split..]);
    }
    if rest.ends_with(':') {
        return (line, "");
    }
    (&line[..start], rest)
}

fn is_block_indicator(value: &str) -> bool {
    let mut chars = value.chars();
    matches!(chars.next(), Some('|' | '>')) && chars.all(|c| matches!(c, '-' | '+' | '0'..='9'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_1_1_booleans_are_quoted_in_values_and_sequences() {
        // appendfsync's enum value `no` must not become `false` in kubectl.
        let yaml = to_yaml(&json!({
            "enum": ["always", "everysec", "no"], "default": "on", "n": 1, "real": true, "s": "true"
        }))
        .unwrap();
        assert!(yaml.contains("real: true\n"), "{yaml}");
        assert!(yaml.contains("s: 'true'\n"), "{yaml}");
        assert!(yaml.contains("- 'no'\n"), "{yaml}");
        assert!(yaml.contains("default: 'on'\n"), "{yaml}");
        assert!(yaml.contains("- always\n"), "{yaml}");
        assert!(yaml.contains("n: 1\n"), "{yaml}");
    }

    #[test]
    fn sequences_of_mappings_quote_their_values() {
        let yaml = to_yaml(&json!([{"name": "fsync", "value": "off"}])).unwrap();
        assert!(yaml.contains("value: 'off'"), "{yaml}");
    }

    #[test]
    fn block_scalars_are_text_and_stay_unquoted() {
        // A config file in a ConfigMap carries `appendfsync no` lines verbatim.
        let text = "appendonly yes\nno\n  no\n";
        let yaml = to_yaml(&json!({"data": {"redis.conf": text}, "after": "no"})).unwrap();
        let back: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back["data"]["redis.conf"], text);
        assert_eq!(back["after"], "no");
        assert!(yaml.contains("after: 'no'"), "{yaml}");
    }

    #[test]
    fn output_reads_back_as_the_same_value() {
        let value = json!({"a": ["no", "yes", "maybe", ""], "b": {"c": "off: x", "d": "N"}});
        let back: serde_json::Value = serde_yaml::from_str(&to_yaml(&value).unwrap()).unwrap();
        assert_eq!(back, value);
    }
}
