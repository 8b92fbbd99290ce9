# Offline tests of the rules the cloud modules share (no provider is needed: `terraform test`).

variables {
  name = "abstore-prod"
}

run "failover_and_multi_az_follow_replicas" {
  command = plan

  assert {
    condition     = output.automatic_failover_enabled && output.multi_az_enabled
    error_message = "the default (2 replicas) must fail over automatically across zones"
  }
  assert {
    condition     = output.node_count == 3
    error_message = "2 replicas and a primary are 3 nodes"
  }
  assert {
    condition     = output.member_ids == tolist(["abstore-prod-001", "abstore-prod-002", "abstore-prod-003"])
    error_message = "member ids must follow ElastiCache's <group>-NNN naming: ${jsonencode(output.member_ids)}"
  }
}

run "a_single_node_has_no_failover" {
  command = plan
  variables {
    replicas = 0
  }

  assert {
    condition     = !output.automatic_failover_enabled && !output.multi_az_enabled && output.node_count == 1
    error_message = "without a replica there is nothing to fail over to"
  }
}

run "an_explicit_failover_that_agrees_is_accepted" {
  command = plan
  variables {
    replicas           = 1
    automatic_failover = true
  }

  assert {
    condition     = output.automatic_failover_enabled
    error_message = "one replica with failover on is the minimal HA setup"
  }
}

run "replicas_with_failover_off_are_rejected" {
  command = plan
  variables {
    replicas           = 2
    automatic_failover = false
  }
  expect_failures = [var.automatic_failover]
}

run "failover_without_a_replica_is_rejected" {
  command = plan
  variables {
    replicas           = 0
    automatic_failover = true
  }
  expect_failures = [var.automatic_failover]
}

run "more_than_five_replicas_are_rejected" {
  command = plan
  variables {
    replicas = 6
  }
  expect_failures = [var.replicas]
}

run "noeviction_is_the_only_policy" {
  command = plan

  assert {
    condition     = output.maxmemory_policy == "noeviction" && output.redis_parameters["maxmemory-policy"] == "noeviction"
    error_message = "counters must never be evicted"
  }
  assert {
    condition     = output.tls_enabled
    error_message = "TLS in transit is always on"
  }
}

run "backups_outlive_the_data_they_hold" {
  command = plan

  assert {
    condition     = output.lifecycle.expiration_days > output.data_retention_days
    error_message = "backups must be kept longer than the 31 days of day-keyed data"
  }
  assert {
    condition     = output.lifecycle.abort_incomplete_upload_days == 1
    error_message = "a killed backup's multipart upload must be aborted after a day"
  }
}

run "lifecycle_expiry_of_31_days_is_rejected" {
  command = plan
  variables {
    backup_expiration_days = 31
  }
  expect_failures = [var.backup_expiration_days]
}

run "lifecycle_expiry_of_a_week_is_rejected" {
  command = plan
  variables {
    backup_expiration_days = 7
  }
  expect_failures = [var.backup_expiration_days]
}

run "lifecycle_expiry_of_32_days_is_accepted" {
  command = plan
  variables {
    backup_expiration_days = 32
  }

  assert {
    condition     = output.lifecycle.expiration_days == 32
    error_message = "32 days is the shortest valid expiry"
  }
}

run "roles_mirror_the_operators_least_privilege" {
  command = plan

  # backup: read-only commands on every key.
  assert {
    condition     = output.elasticache_access_strings.backup == "on ~* -@all +role +scan +type +get +pexpiretime +hgetall +smembers +zrange +lrange +info +dbsize"
    error_message = "backup access string: ${output.elasticache_access_strings.backup}"
  }
  assert {
    condition = length(setintersection(output.acl_roles.backup.commands,
    ["set", "del", "unlink", "incrby", "pfadd", "pfmerge", "hset", "eval", "flushall", "flushdb", "config", "keys"])) == 0
    error_message = "the backup role must not hold a write, script, admin or KEYS command"
  }
  # prune: UNLINK only on day-keyed counters, with and without an environment prefix.
  assert {
    condition     = startswith(output.elasticache_access_strings.prune, "on ~ec:* ~*:ec:* ~uc:* ~*:uc:* ~gc:* ~*:gc:* ~gu:* ~*:gu:* -@all ")
    error_message = "prune keys: ${output.elasticache_access_strings.prune}"
  }
  assert {
    condition     = contains(output.acl_roles.prune.commands, "unlink") && !contains(output.acl_roles.prune.commands, "del") && !contains(output.acl_roles.prune.keys, "*") && !contains(output.acl_roles.prune.keys, "as:*")
    error_message = "prune may UNLINK counters only"
  }
  # app: the schema's key kinds, no administration.
  assert {
    condition     = contains(output.acl_roles.app.keys, "ec:*") && contains(output.acl_roles.app.keys, "*:dd:*") && !contains(output.acl_roles.app.keys, "*")
    error_message = "app keys: ${jsonencode(output.acl_roles.app.keys)}"
  }
  assert {
    condition     = contains(output.acl_roles.app.commands, "evalsha") && contains(output.acl_roles.app.commands, "wait") && length(setintersection(output.acl_roles.app.commands, ["flushall", "config", "keys", "scan", "acl"])) == 0
    error_message = "app commands: ${jsonencode(output.acl_roles.app.commands)}"
  }
  # Every string disables everything first and never uses ElastiCache's forbidden reset rules.
  assert {
    condition     = alltrue([for s in values(output.elasticache_access_strings) : strcontains(s, " -@all") && !strcontains(s, "reset") && !strcontains(s, "+@all")])
    error_message = "access strings must start from -@all and must not use reset rules"
  }
  assert {
    condition     = output.elasticache_default_user_access_string == "off -@all"
    error_message = "the mandatory default user must be off"
  }
}

run "the_restore_user_is_off_until_needed" {
  command = plan

  assert {
    condition     = startswith(output.elasticache_access_strings.restore, "off ~* -@all ") && !output.acl_roles.restore.enabled
    error_message = "restore: ${output.elasticache_access_strings.restore}"
  }
  assert {
    condition     = alltrue([for c in ["set", "incrby", "pfmerge", "pexpireat", "renamenx", "hset", "sadd", "rpush", "zadd", "multi", "exec"] : contains(output.acl_roles.restore.commands, c)])
    error_message = "restore must be able to send every command of abstore-jobs restore"
  }
}

run "the_restore_user_can_be_switched_on" {
  command = plan
  variables {
    restore_user_enabled = true
  }

  assert {
    condition     = startswith(output.elasticache_access_strings.restore, "on ~* -@all ")
    error_message = "restore: ${output.elasticache_access_strings.restore}"
  }
}

run "urls_are_tls_with_the_role_and_no_secret" {
  command = plan

  assert {
    condition     = format(output.url_formats.backup, "master.abstore-prod.abc.euw1.cache.amazonaws.com", 6379) == "rediss://backup@master.abstore-prod.abc.euw1.cache.amazonaws.com:6379?password_file=/var/run/abstore/credentials/password"
    error_message = "backup URL: ${output.url_formats.backup}"
  }
  assert {
    condition     = alltrue([for f in values(output.url_formats) : startswith(f, "rediss://") && !strcontains(f, ":%s@") && strcontains(f, "password_file=")])
    error_message = "every URL must be rediss:// and take the password from a file"
  }
}

run "auth_token_urls_have_no_user" {
  command = plan
  variables {
    auth_mode = "auth_token"
  }

  assert {
    condition     = format(output.url_formats.prune, "10.0.0.3", 6378) == "rediss://10.0.0.3:6378?password_file=/var/run/abstore/credentials/password"
    error_message = "prune URL: ${output.url_formats.prune}"
  }
}

run "an_unknown_auth_mode_is_rejected" {
  command = plan
  variables {
    auth_mode = "none"
  }
  expect_failures = [var.auth_mode]
}

run "backup_identity_writes_and_lists_but_cannot_read" {
  command = plan
  variables {
    backup_prefix = "prod/abstore"
  }

  assert {
    condition     = contains(output.s3_backup_object_actions, "s3:PutObject") && contains(output.s3_backup_object_actions, "s3:AbortMultipartUpload") && !contains(output.s3_backup_object_actions, "s3:GetObject") && !contains(output.s3_backup_object_actions, "s3:DeleteObject")
    error_message = "backup S3 actions: ${jsonencode(output.s3_backup_object_actions)}"
  }
  assert {
    condition     = output.s3_restore_object_actions == ["s3:GetObject"]
    error_message = "restore reads objects and nothing else"
  }
  assert {
    condition     = output.s3_list_prefixes == ["prod/abstore/", "prod/abstore/*"]
    error_message = "listing must be limited to the prefix: ${jsonencode(output.s3_list_prefixes)}"
  }
  assert {
    condition     = contains(output.gcs_backup_permissions, "storage.objects.create") && !contains(output.gcs_backup_permissions, "storage.objects.get") && !contains(output.gcs_backup_permissions, "storage.objects.delete")
    error_message = "backup GCS permissions: ${jsonencode(output.gcs_backup_permissions)}"
  }
}

run "identity_subjects_name_the_namespace_and_service_accounts" {
  command = plan
  variables {
    kubernetes_namespace = "experimentation"
  }

  assert {
    condition     = output.backup_subject == "system:serviceaccount:experimentation:abstore-backup" && output.restore_subject == "system:serviceaccount:experimentation:abstore-restore"
    error_message = "subjects: ${output.backup_subject}, ${output.restore_subject}"
  }
}

run "backup_and_restore_must_be_different_identities" {
  command = plan
  variables {
    restore_service_account = "abstore-backup"
  }
  expect_failures = [var.restore_service_account]
}

run "a_prefix_with_a_leading_slash_is_rejected" {
  command = plan
  variables {
    backup_prefix = "/abstore/"
  }
  expect_failures = [var.backup_prefix]
}

run "names_elasticache_would_refuse_are_rejected" {
  command = plan
  variables {
    name = "Abstore--prod-"
  }
  expect_failures = [var.name]
}

run "cluster_mode_multiplies_nodes_names_them_per_shard_and_switches_urls_and_grants" {
  command = plan
  variables {
    cluster_mode = true
    shards       = 3
    replicas     = 1
  }

  assert {
    condition     = output.node_count == 6 && output.shards == 3
    error_message = "3 shards of a primary and a replica are 6 nodes"
  }
  assert {
    condition     = output.member_ids == tolist(["abstore-prod-0001-001", "abstore-prod-0001-002", "abstore-prod-0002-001", "abstore-prod-0002-002", "abstore-prod-0003-001", "abstore-prod-0003-002"])
    error_message = "cluster-mode member ids follow ElastiCache's <group>-NNNN-NNN naming: ${jsonencode(output.member_ids)}"
  }
  assert {
    condition     = output.redis_parameters["cluster-enabled"] == "yes" && output.redis_parameters["maxmemory-policy"] == "noeviction"
    error_message = "cluster mode needs cluster-enabled and keeps noeviction"
  }
  assert {
    condition     = startswith(output.url_formats["app"], "rediss+cluster://app@")
    error_message = "a cluster's URLs are rediss+cluster://: ${output.url_formats["app"]}"
  }
  assert {
    condition     = contains(output.acl_roles["app"].commands, "cluster|slots") && contains(output.acl_roles["app"].commands, "asking") && !contains(output.acl_roles["app"].commands, "role") && !contains(output.acl_roles["app"].commands, "eval")
    error_message = "the app's cluster grants are the measured ones: ${jsonencode(output.acl_roles["app"].commands)}"
  }
  assert {
    condition     = contains(output.acl_roles["backup"].commands, "readonly") && contains(output.acl_roles["prune"].commands, "cluster|slots")
    error_message = "backup reads replicas after READONLY; every client reads the slot map"
  }
}

run "without_cluster_mode_shards_are_not_read" {
  command = plan
  variables {
    shards = 5
  }

  assert {
    condition     = output.node_count == 3 && output.shards == 1 && !contains(keys(output.redis_parameters), "cluster-enabled") && startswith(output.url_formats["app"], "rediss://")
    error_message = "shards only count in cluster mode"
  }
}

run "zero_shards_are_rejected" {
  command = plan
  variables {
    cluster_mode = true
    shards       = 0
  }
  expect_failures = [var.shards]
}
