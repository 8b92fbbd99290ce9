//! Deterministic weighted assignment: which variation of a flag a user gets.
//! The choice depends only on (flag, user, variations in order), using SHA-256 and integer math,
//! so every process, platform and version agrees without coordination.

use std::collections::HashSet;

/// Versions the hash input: changing it would reassign every user, so it never changes silently.
const DOMAIN: &[u8] = b"abstore-assign-v1";

/// A variation and its relative weight; weights need not sum to any particular total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedVariation {
    pub id: String,
    pub weight: u32,
}

/// Why no variation could be chosen; always names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    #[error("flag {flag:?}: no variations to assign from")]
    NoVariations { flag: String },
    #[error("flag {flag:?}: variation #{index} has an empty id")]
    EmptyId { flag: String, index: usize },
    #[error("flag {flag:?}: variation id {id:?} appears more than once")]
    DuplicateId { flag: String, id: String },
    #[error("flag {flag:?}: all variation weights are 0, so no user can be assigned")]
    ZeroTotalWeight { flag: String },
}

/// The user's position in hash space: the first 8 bytes, big-endian, of
/// SHA-256("abstore-assign-v1" || 0x00 || flag || 0x00 || user). The 0x00 separators keep
/// ("ab", "c") and ("a", "bc") apart.
pub fn assignment_point(flag: &str, user: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(DOMAIN)
        .chain_update([0])
        .chain_update(flag.as_bytes())
        .chain_update([0])
        .chain_update(user.as_bytes())
        .finalize();
    // SHA-256 output is 32 bytes, so the chunk is always there.
    u64::from_be_bytes(digest.first_chunk::<8>().copied().unwrap_or_default())
}

/// Picks the variation for `user`. Order matters: appending a variation leaves earlier users in
/// place only if the earlier cumulative weights are unchanged.
pub fn assign<'a>(
    flag: &str,
    user: &str,
    variations: &'a [WeightedVariation],
) -> Result<&'a WeightedVariation, AssignmentError> {
    let flag_name = || flag.to_owned();
    if variations.is_empty() {
        return Err(AssignmentError::NoVariations { flag: flag_name() });
    }
    let mut seen = HashSet::with_capacity(variations.len());
    for (index, variation) in variations.iter().enumerate() {
        if variation.id.is_empty() {
            return Err(AssignmentError::EmptyId {
                flag: flag_name(),
                index,
            });
        }
        if !seen.insert(variation.id.as_str()) {
            return Err(AssignmentError::DuplicateId {
                flag: flag_name(),
                id: variation.id.clone(),
            });
        }
    }
    // u64 cannot overflow: it would take more than 2^32 variations of weight u32::MAX.
    let total: u64 = variations.iter().map(|v| u64::from(v.weight)).sum();
    if total == 0 {
        return Err(AssignmentError::ZeroTotalWeight { flag: flag_name() });
    }
    // Multiply-shift maps the point uniformly onto [0, total) without modulo bias or floats.
    let slot = ((u128::from(assignment_point(flag, user)) * u128::from(total)) >> 64) as u64;
    let mut cumulative = 0u64;
    variations
        .iter()
        .find(|v| {
            cumulative += u64::from(v.weight);
            cumulative > slot
        })
        // Unreachable: slot < total and the cumulative sum reaches total.
        .ok_or_else(|| AssignmentError::ZeroTotalWeight { flag: flag_name() })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn variations(weights: &[(&str, u32)]) -> Vec<WeightedVariation> {
        weights
            .iter()
            .map(|(id, weight)| WeightedVariation {
                id: (*id).to_owned(),
                weight: *weight,
            })
            .collect()
    }

    /// (flag, user, weighted variations in order, expected variation id)
    type Vector<'a> = (&'a str, &'a str, &'a [(&'a str, u32)], &'a str);

    fn chosen(flag: &str, user: &str, weights: &[(&str, u32)]) -> String {
        assign(flag, user, &variations(weights)).unwrap().id.clone()
    }

    #[test]
    fn assignment_point_matches_independent_python_vectors() {
        // Pinned so a refactor or a dependency bump can never reassign users.
        // python3 -c "import hashlib;f,u='flag-1','user-1';print(int.from_bytes(hashlib.sha256(b'abstore-assign-v1\0'+f.encode()+b'\0'+u.encode()).digest()[:8],'big'))"
        let vectors = [
            ("flag-1", "user-1", 954_999_080_655_061_046),
            ("flag-1", "user-2", 9_909_243_629_562_065_716),
            ("", "x", 13_318_658_977_789_606_758),
            ("checkout-button", "ユーザー-42", 8_584_578_165_767_071_304),
            ("f", "tenant:7:user", 3_930_532_756_068_407_143),
            ("émoji-🚀", "👤", 9_700_025_554_783_261_319),
        ];
        for (flag, user, point) in vectors {
            assert_eq!(assignment_point(flag, user), point, "{flag:?}/{user:?}");
        }
    }

    #[test]
    fn assign_matches_independent_python_vectors() {
        // The whole selection (slot math and cumulative walk) must agree with a reimplementation.
        // python3 -c "import hashlib;p=lambda f,u:int.from_bytes(hashlib.sha256(b'abstore-assign-v1\0'+f.encode()+b'\0'+u.encode()).digest()[:8],'big');f,u,ws='pricing','u-1009',[('a',1),('b',2),('c',3),('d',4)];t=sum(w for _,w in ws);s=(p(f,u)*t)>>64;import itertools;c=list(itertools.accumulate(w for _,w in ws));print(next(i for (i,_),x in zip(ws,c) if x>s))"
        let halves = [("a", 1), ("b", 1)];
        let three = [("control", 10), ("treatment", 30), ("big", 60)];
        let four = [("a", 1), ("b", 2), ("c", 3), ("d", 4)];
        let vectors: [Vector; 12] = [
            ("flag-1", "user-1", &halves, "a"),
            ("flag-1", "user-2", &halves, "b"),
            ("checkout-button", "ユーザー-42", &three, "big"),
            ("checkout-button", "user-6", &three, "control"),
            ("checkout-button", "user-3", &three, "treatment"),
            (
                "f",
                "tenant:7:user",
                &[("off", 0), ("on", 5), ("dead", 0)],
                "on",
            ),
            (
                "émoji-🚀",
                "👤",
                &[("a", 0), ("b", u32::MAX), ("c", u32::MAX)],
                "c",
            ),
            ("flag-1", "user-3", &[("only", 7)], "only"),
            ("pricing", "u-1009", &four, "a"),
            ("pricing", "u-1003", &four, "b"),
            ("pricing", "u-1001", &four, "c"),
            ("pricing", "u-1000", &four, "d"),
        ];
        for (flag, user, weights, expected) in vectors {
            assert_eq!(chosen(flag, user, weights), expected, "{flag:?}/{user:?}");
        }
    }

    #[test]
    fn weights_10_30_60_split_100k_users_within_one_and_a_half_points() {
        // The hash must spread users in proportion to the weights, or experiments are biased.
        let vs = variations(&[("a", 10), ("b", 30), ("c", 60)]);
        let mut counts = [0u32; 3];
        let users = 100_000;
        for i in 0..users {
            let v = assign("distribution-flag", &format!("user-{i}"), &vs).unwrap();
            let slot = vs.iter().position(|x| x == v).unwrap();
            counts[slot] += 1;
        }
        for (count, expected_pct) in counts.iter().zip([10.0, 30.0, 60.0]) {
            let pct = f64::from(*count) * 100.0 / f64::from(users);
            assert!((pct - expected_pct).abs() <= 1.5, "{counts:?}");
        }
    }

    #[test]
    fn zero_weight_variations_are_never_chosen() {
        // Weight 0 is how a variation is switched off without reordering the list.
        let vs = variations(&[("off", 0), ("on", 1), ("also-off", 0)]);
        for i in 0..1_000 {
            assert_eq!(assign("f", &format!("u{i}"), &vs).unwrap().id, "on");
        }
    }

    #[test]
    fn invalid_variation_lists_are_rejected_naming_the_flag() {
        // A misconfigured experiment must fail loudly, not send everyone to one arm.
        let err = assign("f1", "u", &[]).unwrap_err();
        assert_eq!(err.to_string(), "flag \"f1\": no variations to assign from");
        let err = assign("f1", "u", &variations(&[("a", 0), ("b", 0)])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "flag \"f1\": all variation weights are 0, so no user can be assigned"
        );
        let err = assign("f1", "u", &variations(&[("a", 1), ("a", 2)])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "flag \"f1\": variation id \"a\" appears more than once"
        );
        let err = assign("f1", "u", &variations(&[("a", 1), ("", 2)])).unwrap_err();
        assert_eq!(err.to_string(), "flag \"f1\": variation #1 has an empty id");
    }

    #[test]
    fn separators_keep_flag_and_user_apart() {
        // Without the 0x00 separator ("ab","c") and ("a","bc") would hash alike.
        assert_ne!(assignment_point("ab", "c"), assignment_point("a", "bc"));
    }
}
