//! Password rotation: when a user's password changes (its credentials Secret edited by a person,
//! External Secrets or Vault, or the `password` key deleted so the operator generates a new
//! one), the previous password keeps working for `spec.auth.rotationGraceSeconds`, so clients
//! that still hold it reconnect without an error, and then stops.
//!
//! What was accepted last time is kept in the ACL Secret under [`STATE_KEY`] (password hashes,
//! when each rotation began, and the operator's own password: the operator must still log in
//! with the old one until every node knows the new one). Pure: [`roll`] takes the time.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::credentials::{Credentials, Role};

/// Key of the rotation state in the ACL Secret (never mounted into pods).
pub const STATE_KEY: &str = "passwords.json";

/// SHA-256 (hex) of a password: how Redis ACL files name passwords (`#<hash>`).
pub fn password_hash(password: &str) -> String {
    hex::encode(Sha256::digest(password.as_bytes()))
}

/// The previous password of a user during its rotation.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Previous {
    /// SHA-256 of the previous password.
    pub sha256: String,
    /// When the rotation began; the previous password stops at `since + grace`.
    pub since: DateTime<Utc>,
    /// The previous password itself: kept for the operator's own user only (it logs in with
    /// it until the nodes know the new one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl fmt::Debug for Previous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Previous")
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

/// What the ACL Secret records between reconciles. `Debug` shows no hashes or passwords.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordState {
    /// User → what was accepted.
    pub users: BTreeMap<String, UserState>,
    /// The operator's password as last applied: the previous one when its Secret is edited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_password: Option<String>,
}

/// One user's accepted passwords.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserState {
    /// SHA-256 of the current password.
    pub sha256: String,
    /// The previous password while its rotation runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
}

impl fmt::Debug for UserState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserState")
            .field("previous", &self.previous)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for PasswordState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rotating: Vec<&String> = self
            .users
            .iter()
            .filter(|(_, user)| user.previous.is_some())
            .map(|(name, _)| name)
            .collect();
        f.debug_struct("PasswordState")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("rotating", &rotating)
            .finish_non_exhaustive()
    }
}

impl PasswordState {
    /// The state recorded in the ACL Secret's [`STATE_KEY`].
    pub fn parse(json: &[u8]) -> Result<PasswordState, serde_json::Error> {
        serde_json::from_slice(json)
    }

    /// What goes into the ACL Secret.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The state `credentials` stand for.
    pub fn of(credentials: &Credentials) -> PasswordState {
        PasswordState {
            users: credentials
                .users()
                .map(|(name, password)| {
                    (
                        name.to_owned(),
                        UserState {
                            sha256: password_hash(password),
                            previous: credentials.previous(name).cloned(),
                        },
                    )
                })
                .collect(),
            operator_password: Some(credentials.role_password(Role::Operator).to_owned()),
        }
    }
}

/// A rotation that began or ended in this pass (for Events; no secrets inside).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotationEvent {
    /// `user`'s password changed; the previous one works until `until`.
    Started {
        user: String,
        until: DateTime<Utc>,
        /// A rotation of the same user was still running: its older password stopped now.
        superseded: bool,
    },
    /// `user`'s previous password stopped working.
    Completed { user: String },
}

impl RotationEvent {
    /// Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            RotationEvent::Started { .. } => "PasswordRotationStarted",
            RotationEvent::Completed { .. } => "PasswordRotationCompleted",
        }
    }

    /// Event note.
    pub fn note(&self) -> String {
        match self {
            RotationEvent::Started {
                user,
                until,
                superseded,
            } => format!(
                "the password of user {user} changed; the previous one is accepted until {}{}",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                if *superseded {
                    " (the password before it, from a rotation still running, stopped now)"
                } else {
                    ""
                }
            ),
            RotationEvent::Completed { user } => {
                format!("the previous password of user {user} no longer works")
            }
        }
    }
}

/// The credentials with their rotations: each user whose password differs from the one `prior`
/// recorded starts a rotation (the recorded one stays accepted for `grace`), rotations older
/// than `grace` end. Without `prior` (a new store, or a store from before rotations existed)
/// nothing rotates. Also returns when the next rotation ends, for the requeue.
pub fn roll(
    credentials: Credentials,
    prior: Option<&PasswordState>,
    now: DateTime<Utc>,
    grace: Duration,
) -> (Credentials, Vec<RotationEvent>, Option<DateTime<Utc>>) {
    let Some(prior) = prior else {
        return (credentials, Vec::new(), None);
    };
    let mut events = Vec::new();
    let mut previous = BTreeMap::new();
    for (name, password) in credentials.users() {
        let Some(recorded) = prior.users.get(name) else {
            continue;
        };
        let current = password_hash(password);
        if recorded.sha256 == current {
            match &recorded.previous {
                Some(p) if now < p.since + grace && p.sha256 != current => {
                    previous.insert(name.to_owned(), p.clone());
                }
                Some(_) => events.push(RotationEvent::Completed {
                    user: name.to_owned(),
                }),
                None => {}
            }
            continue;
        }
        let superseded = recorded
            .previous
            .as_ref()
            .is_some_and(|p| now < p.since + grace);
        if grace > Duration::zero() {
            let operator = Role::from_username(name) == Some(Role::Operator);
            previous.insert(
                name.to_owned(),
                Previous {
                    sha256: recorded.sha256.clone(),
                    since: now,
                    password: if operator {
                        prior.operator_password.clone()
                    } else {
                        None
                    },
                },
            );
        }
        events.push(RotationEvent::Started {
            user: name.to_owned(),
            until: now + grace,
            superseded,
        });
    }
    let next_end = previous.values().map(|p| p.since + grace).min();
    (credentials.with_previous(previous), events, next_end)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::crd::ABStoreSpec;
    use crate::model::Model;

    fn model() -> Model {
        Model {
            name: "shop".to_owned(),
            namespace: "ab".to_owned(),
            owner: None,
            spec: ABStoreSpec::default(),
            maxmemory_bytes: None,
            platform: crate::model::Platform::default(),
        }
    }

    fn credentials(app: &str, operator: &str) -> Credentials {
        let existing = BTreeMap::from([
            ("app".to_owned(), app.to_owned()),
            ("operator".to_owned(), operator.to_owned()),
        ]);
        let mut n = 0;
        Credentials::resolve(&model(), &existing, &mut || {
            n += 1;
            format!("generated-password-{n:04}")
        })
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    const GRACE: i64 = 900;

    fn step(
        creds: Credentials,
        prior: &PasswordState,
        seconds: i64,
    ) -> (Credentials, Vec<RotationEvent>, Option<DateTime<Utc>>) {
        roll(creds, Some(prior), at(seconds), Duration::seconds(GRACE))
    }

    #[test]
    fn a_changed_password_keeps_the_previous_one_for_the_grace_period_then_drops_it() {
        // The whole life of one rotation, as the controller sees it reconcile after reconcile.
        let before = credentials("app-password-old-1", "operator-password-1");
        let state = PasswordState::of(&before);

        let (during, events, next) = step(
            credentials("app-password-new-2", "operator-password-1"),
            &state,
            0,
        );
        assert_eq!(
            events,
            [RotationEvent::Started {
                user: "app".to_owned(),
                until: at(GRACE),
                superseded: false
            }]
        );
        assert_eq!(next, Some(at(GRACE)));
        assert_eq!(
            during.accepted_hashes("app"),
            [
                password_hash("app-password-new-2"),
                password_hash("app-password-old-1")
            ]
        );
        // The app's old password itself is not kept, only its hash.
        assert_eq!(during.previous("app").unwrap().password, None);

        let state = PasswordState::of(&during);
        let (still, events, next) = step(
            credentials("app-password-new-2", "operator-password-1"),
            &state,
            GRACE - 1,
        );
        assert!(events.is_empty());
        assert_eq!(next, Some(at(GRACE)));
        assert_eq!(still.accepted_hashes("app").len(), 2);

        let (after, events, next) = step(
            credentials("app-password-new-2", "operator-password-1"),
            &PasswordState::of(&still),
            GRACE,
        );
        assert_eq!(
            events,
            [RotationEvent::Completed {
                user: "app".to_owned()
            }]
        );
        assert_eq!(next, None);
        assert_eq!(
            after.accepted_hashes("app"),
            [password_hash("app-password-new-2")]
        );
    }

    #[test]
    fn the_operator_keeps_its_previous_password_to_log_in_with() {
        // Nodes only know the old operator password until heal adds the new one, and heal
        // must log in to add it.
        let state = PasswordState::of(&credentials("app-password-old-1", "operator-password-1"));
        let (during, _, _) = step(
            credentials("app-password-old-1", "operator-password-2"),
            &state,
            10,
        );
        assert_eq!(
            during.previous("operator").unwrap().password.as_deref(),
            Some("operator-password-1")
        );
        assert_eq!(during.role_password(Role::Operator), "operator-password-2");
        // And the next state records the new one as the operator's password.
        assert_eq!(
            PasswordState::of(&during).operator_password.as_deref(),
            Some("operator-password-2")
        );
    }

    #[test]
    fn a_second_change_during_a_rotation_supersedes_it() {
        // Only two passwords are ever accepted: the newest and the one before it.
        let state = PasswordState::of(&credentials("app-password-one-1", "operator-password-1"));
        let (second, _, _) = step(
            credentials("app-password-two-2", "operator-password-1"),
            &state,
            0,
        );
        let (third, events, _) = step(
            credentials("app-password-three-3", "operator-password-1"),
            &PasswordState::of(&second),
            60,
        );
        assert_eq!(
            events,
            [RotationEvent::Started {
                user: "app".to_owned(),
                until: at(60 + GRACE),
                superseded: true
            }]
        );
        assert_eq!(
            third.accepted_hashes("app"),
            [
                password_hash("app-password-three-3"),
                password_hash("app-password-two-2")
            ]
        );
    }

    #[test]
    fn no_prior_state_or_a_zero_grace_rotates_nothing_into_the_acl() {
        // A store from before rotations existed starts with what it has; grace 0 stops the
        // old password at once (the Event still says it changed).
        let creds = credentials("app-password-new-2", "operator-password-1");
        let (same, events, next) = roll(creds.clone(), None, at(0), Duration::seconds(GRACE));
        assert!(events.is_empty());
        assert_eq!(next, None);
        assert_eq!(same.accepted_hashes("app").len(), 1);

        let state = PasswordState::of(&credentials("app-password-old-1", "operator-password-1"));
        let (now, events, next) = roll(creds, Some(&state), at(0), Duration::zero());
        assert_eq!(events.len(), 1);
        assert_eq!(next, None);
        assert_eq!(
            now.accepted_hashes("app"),
            [password_hash("app-password-new-2")]
        );
    }

    #[test]
    fn the_state_round_trips_through_json_and_debug_shows_no_secrets() {
        let state = PasswordState::of(&credentials("app-password-old-1", "operator-password-1"));
        let (during, _, _) = step(
            credentials("app-password-new-2", "operator-password-2"),
            &state,
            0,
        );
        let state = PasswordState::of(&during);
        assert_eq!(
            PasswordState::parse(state.to_json().as_bytes()).unwrap(),
            state
        );
        let debug = format!("{state:?} {:?}", during.previous("operator"));
        assert!(!debug.contains("operator-password"), "{debug}");
        assert!(
            !debug.contains(&password_hash("app-password-old-1")),
            "{debug}"
        );
        assert!(debug.contains("app"), "{debug}");
    }
}
