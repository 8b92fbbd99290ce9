//! Credentials: the built-in ACL roles and the declared users, their passwords (kept once made,
//! generated when missing) and the names of the Secrets that carry them. Pure apart from
//! `generate_password`, which the caller passes in so tests stay deterministic.

use std::collections::BTreeMap;
use std::fmt;

use rand::Rng;

use crate::model::Model;
use crate::rotation::{Previous, password_hash};

/// Key of the password in a credentials Secret (and the file name when only the password is
/// mounted).
pub const PASSWORD_KEY: &str = "password";
/// Key of the user name in a credentials Secret.
pub const USERNAME_KEY: &str = "username";
/// Suffix of credentials Secrets: `<store>-user-<username>`.
pub const USER_SECRET_INFIX: &str = "user";
/// Suffix of the ACL Secret: `<store>-acl`.
pub const ACL_SECRET_SUFFIX: &str = "acl";
/// Length of generated passwords: 43 characters of a 64-letter alphabet are 258 bits.
pub const GENERATED_PASSWORD_LEN: usize = 43;
/// URL-safe alphabet (RFC 4648 §5): passwords go into URLs, shell variables and config files
/// without quoting trouble.
const PASSWORD_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A built-in ACL role. Each is one Redis ACL user of the same name, least privilege for its job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Applications: the data commands of the abstore library on the schema's keys.
    App,
    /// The tracking API (`abstore-api`): the app's commands plus its experiment registry.
    Api,
    /// The backup job: read-only SCAN and typed reads of every key.
    Backup,
    /// The prune job: SCAN and UNLINK of day-keyed counters.
    Prune,
    /// redis_exporter and the pods' probes: INFO, PING, ROLE and other read-only introspection.
    Exporter,
    /// Replicas authenticating to their primary (`masteruser`).
    Replication,
    /// Sentinel's connections to the data nodes (`sentinel auth-user`).
    Sentinel,
    /// The operator's healing connections: admin.
    Operator,
}

impl Role {
    /// Every role, in the order they appear in the ACL file and in `Credentials::users`.
    pub const ALL: [Role; 8] = [
        Role::App,
        Role::Api,
        Role::Backup,
        Role::Prune,
        Role::Exporter,
        Role::Replication,
        Role::Sentinel,
        Role::Operator,
    ];

    /// The ACL user name of the role.
    pub fn username(self) -> &'static str {
        match self {
            Role::App => "app",
            Role::Api => "api",
            Role::Backup => "backup",
            Role::Prune => "prune",
            Role::Exporter => "exporter",
            Role::Replication => "replication",
            Role::Sentinel => "sentinel",
            Role::Operator => "operator",
        }
    }

    /// The role whose user name is `name`.
    pub fn from_username(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.username() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.username())
    }
}

/// User name → password for every built-in role and declared user of one store. `Debug` never
/// shows the passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Built-in roles first (in `Role::ALL` order), then declared users in spec order.
    users: Vec<(String, String)>,
    /// Users whose previous password still works (a rotation in progress, see `rotation`).
    previous: BTreeMap<String, Previous>,
}

impl Credentials {
    /// Keeps passwords that exist (read by the controller from the existing credential
    /// Secrets), generates the missing ones with `generate`. Pure.
    ///
    /// An existing password is kept only if it can be written into redis.conf and sentinel.conf
    /// as it is (see `is_usable_password`); one that cannot (empty, whitespace, quotes, control
    /// characters, a hand-edited Secret) is replaced, because a pod that cannot authenticate its
    /// replication is worse than a rotated password.
    pub fn resolve(
        model: &Model,
        existing: &BTreeMap<String, String>,
        generate: &mut dyn FnMut() -> String,
    ) -> Credentials {
        let names = Role::ALL
            .iter()
            .map(|role| role.username().to_owned())
            .chain(model.spec.auth.users.iter().map(|user| user.name.clone()));
        let mut users: Vec<(String, String)> = Vec::new();
        for name in names {
            if users.iter().any(|(known, _)| *known == name) {
                // validate refuses duplicates; a second entry would only shadow the first.
                continue;
            }
            let password = match existing.get(&name) {
                Some(password) if is_usable_password(password) => password.clone(),
                _ => generate(),
            };
            users.push((name, password));
        }
        Credentials {
            users,
            previous: BTreeMap::new(),
        }
    }

    /// The same passwords with these rotations in progress.
    pub fn with_previous(mut self, previous: BTreeMap<String, Previous>) -> Credentials {
        self.previous = previous;
        self
    }

    /// The previous password of `username` while its rotation runs.
    pub fn previous(&self, username: &str) -> Option<&Previous> {
        self.previous.get(username)
    }

    /// SHA-256 hashes of the passwords `username` may log in with: the current one, then the
    /// previous one during a rotation.
    pub fn accepted_hashes(&self, username: &str) -> Vec<String> {
        self.password(username)
            .map(password_hash)
            .into_iter()
            .chain(self.previous(username).map(|p| p.sha256.clone()))
            .collect()
    }

    /// Users with a rotation in progress.
    pub fn rotating(&self) -> impl Iterator<Item = &str> {
        self.previous.keys().map(String::as_str)
    }

    /// The password of `username`, if that user exists.
    pub fn password(&self, username: &str) -> Option<&str> {
        self.users
            .iter()
            .find(|(name, _)| name == username)
            .map(|(_, password)| password.as_str())
    }

    /// The password of a built-in role (always present).
    pub fn role_password(&self, role: Role) -> &str {
        self.password(role.username()).unwrap_or_default()
    }

    /// `(username, password)` pairs: built-in roles in `Role::ALL` order, then declared users
    /// in spec order.
    pub fn users(&self) -> impl Iterator<Item = (&str, &str)> {
        self.users
            .iter()
            .map(|(name, password)| (name.as_str(), password.as_str()))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field(
                "users",
                &self.users.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("rotating", &self.previous.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Whether a password can be used unquoted in a config file line and a shell variable: at
/// least 16 printable ASCII characters without whitespace, quotes or backslashes.
pub fn is_usable_password(password: &str) -> bool {
    password.len() >= 16
        && password
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\'))
}

/// A fresh password: `GENERATED_PASSWORD_LEN` characters of a URL-safe alphabet from the
/// thread-local CSPRNG (ChaCha, seeded from the OS).
pub fn generate_password() -> String {
    let mut rng = rand::rng();
    (0..GENERATED_PASSWORD_LEN)
        .map(|_| char::from(PASSWORD_ALPHABET[rng.random_range(0..PASSWORD_ALPHABET.len())]))
        .collect()
}

/// `<store>-user-<username>`: the Secret with `username` and `password` of one user.
pub fn credentials_secret_name(model: &Model, username: &str) -> String {
    model.child_name(&format!("{USER_SECRET_INFIX}-{username}"))
}

/// `<store>-acl`: the Secret with the ACL file.
pub fn acl_secret_name(model: &Model) -> String {
    model.child_name(ACL_SECRET_SUFFIX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::crd::{ABStoreSpec, UserSpec};

    fn model_with_users(users: &[&str]) -> Model {
        let mut spec = ABStoreSpec::default();
        spec.auth.users = users
            .iter()
            .map(|name| UserSpec {
                name: (*name).to_owned(),
                keys: vec!["ec:*".to_owned()],
                channels: Vec::new(),
                commands: "+@read".to_owned(),
            })
            .collect();
        Model {
            name: "shop".to_owned(),
            namespace: "ab".to_owned(),
            owner: None,
            spec,
            maxmemory_bytes: None,
            platform: crate::model::Platform::default(),
        }
    }

    fn counter() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("generated-password-{n:04}")
        }
    }

    #[test]
    fn existing_passwords_are_kept_and_missing_ones_generated() {
        // A reconcile must never rotate a password clients already use.
        let existing = BTreeMap::from([("app".to_owned(), "kept-app-password-1234".to_owned())]);
        let creds = Credentials::resolve(&model_with_users(&[]), &existing, &mut counter());
        assert_eq!(creds.password("app"), Some("kept-app-password-1234"));
        assert_eq!(creds.password("api"), Some("generated-password-0001"));
        assert_eq!(creds.password("backup"), Some("generated-password-0002"));
        assert_eq!(
            creds.role_password(Role::Operator),
            "generated-password-0007"
        );
    }

    #[test]
    fn declared_users_get_passwords_after_the_built_in_roles() {
        // The ACL file and the credentials Secrets are rendered from this order; a stable order
        // keeps the rendered objects (and the config hash) stable between reconciles.
        let creds = Credentials::resolve(
            &model_with_users(&["reporting", "dashboard"]),
            &BTreeMap::new(),
            &mut counter(),
        );
        let names: Vec<&str> = creds.users().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            [
                "app",
                "api",
                "backup",
                "prune",
                "exporter",
                "replication",
                "sentinel",
                "operator",
                "reporting",
                "dashboard"
            ]
        );
        assert!(creds.password("dashboard").is_some());
        assert_eq!(creds.password("nobody"), None);
    }

    #[test]
    fn resolving_twice_with_the_first_result_changes_nothing() {
        // What the controller does on every reconcile: read back what it wrote last time.
        let model = model_with_users(&["reporting"]);
        let first = Credentials::resolve(&model, &BTreeMap::new(), &mut || generate_password());
        let existing: BTreeMap<String, String> = first
            .users()
            .map(|(u, p)| (u.to_owned(), p.to_owned()))
            .collect();
        let second = Credentials::resolve(&model, &existing, &mut || {
            panic!("nothing should be generated")
        });
        assert_eq!(first, second);
    }

    #[test]
    fn an_unusable_existing_password_is_replaced() {
        // A hand-edited Secret with a space would break `masterauth` in redis.conf.
        let existing = BTreeMap::from([
            ("replication".to_owned(), "has a space in it!!".to_owned()),
            ("app".to_owned(), String::new()),
        ]);
        let creds = Credentials::resolve(&model_with_users(&[]), &existing, &mut counter());
        assert!(
            creds
                .password("replication")
                .unwrap()
                .starts_with("generated")
        );
        assert!(creds.password("app").unwrap().starts_with("generated"));
    }

    #[test]
    fn generated_passwords_are_long_url_safe_and_different() {
        // They go into URLs and config files unquoted, and must not repeat.
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.len(), GENERATED_PASSWORD_LEN);
        assert!(a.bytes().all(|c| PASSWORD_ALPHABET.contains(&c)));
        assert!(is_usable_password(&a));
        assert_ne!(a, b);
    }

    #[test]
    fn debug_output_names_users_but_not_passwords() {
        // Credentials end up in `{:?}` of bigger structs that get logged.
        let creds = Credentials::resolve(&model_with_users(&[]), &BTreeMap::new(), &mut counter());
        let text = format!("{creds:?}");
        assert!(text.contains("app"));
        assert!(!text.contains("generated-password"));
    }

    #[test]
    fn secret_names_follow_the_store_name() {
        // Applications find their credentials by this name; it is part of the contract.
        let model = model_with_users(&[]);
        assert_eq!(credentials_secret_name(&model, "app"), "shop-user-app");
        assert_eq!(acl_secret_name(&model), "shop-acl");
    }
}
