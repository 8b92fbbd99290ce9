# The rules every ABStore cloud module follows, as plain values: the modules that create
# resources read them from here, and tests/abstore_conventions.tftest.hcl checks them offline.

locals {
  # --- Topology --------------------------------------------------------------------------------
  has_replicas = var.replicas >= 1
  # A replica that is never promoted protects nothing: failover and Multi-AZ follow the replicas
  # (the variable's validation rejects an explicit value that disagrees).
  automatic_failover = local.has_replicas
  shards             = var.cluster_mode ? var.shards : 1
  node_count         = (var.replicas + 1) * local.shards
  # ElastiCache names the nodes of a cluster-mode-disabled replication group <id>-001, -002, …,
  # and those of a cluster-mode one <id>-<shard 0001…>-<node 001…>; known at plan time, so
  # there is one alarm per node without reading the group first.
  member_ids = var.cluster_mode ? tolist(flatten([
    for s in range(var.shards) : [
      for i in range(var.replicas + 1) : format("%s-%04d-%03d", var.name, s + 1, i + 1)
    ]
  ])) : tolist([for i in range(local.node_count) : format("%s-%03d", var.name, i + 1)])

  # --- Redis settings ----------------------------------------------------------------------------
  # Counters and HyperLogLogs must never be evicted to make room: a full store refuses writes
  # (the client sees OOM and retries or reports) instead of silently dropping experiment data.
  maxmemory_policy = "noeviction"
  redis_parameters = merge(
    { "maxmemory-policy" = local.maxmemory_policy },
    var.cluster_mode ? { "cluster-enabled" = "yes" } : {},
  )
  # Day-keyed keys expire after this many days (abstore's RecorderConfig and abstore-jobs prune).
  data_retention_days = 31

  # --- ACL roles, mirroring the operator's built-in roles (operator/src/config/mod.rs) ---------
  key_kinds     = ["ec", "uc", "gc", "gu", "dd", "as", "exp", "tmp"]
  counter_kinds = ["ec", "uc", "gc", "gu"]
  # Each kind with and without an environment prefix (`[<env>:]ec:…`).
  app_key_patterns   = flatten([for k in local.key_kinds : ["${k}:*", "*:${k}:*"]])
  prune_key_patterns = flatten([for k in local.counter_kinds : ["${k}:*", "*:${k}:*"]])

  # Every abstore connection checks with ROLE that it reached the primary; AUTH and HELLO need no
  # rule. The lists are the ones tests/tests/least_privilege.rs measures against real Redis.
  connect_commands = ["role"]
  # Exactly what the abstore library sends: the record and union scripts and their commands,
  # reads, sticky assignments, the WAIT durability option.
  app_commands = [
    "eval", "evalsha", "script|load", "set", "mget", "incrby", "pfadd", "pfcount", "pfmerge",
    "expireat", "pexpire", "unlink", "wait",
  ]
  # Exactly what abstore-jobs backup sends: SCAN and typed reads. No write command is granted,
  # so the key pattern can be ~*. Same list as the operator's backup role.
  backup_commands = [
    "scan", "type", "get", "pexpiretime", "hgetall", "smembers", "zrange", "lrange", "info", "dbsize",
  ]
  # Exactly what abstore-jobs prune sends: SCAN everything, UNLINK only day-keyed counters (the
  # key patterns limit the UNLINK), DBSIZE for progress.
  prune_commands = ["scan", "unlink", "dbsize"]
  # What abstore-jobs restore sends (jobs/src/restore.rs) in every --mode, and nothing else.
  restore_commands = [
    "set", "exists", "type", "incrby", "pfmerge", "pexpireat", "del", "renamenx",
    "hset", "sadd", "rpush", "zadd", "multi", "exec", "discard", "info", "dbsize",
  ]

  # Cluster mode, as measured for the operator's roles (operator/src/config/mod.rs
  # cluster_commands): every client reads the slot map (CLUSTER SLOTS) instead of asking ROLE;
  # writers follow ASK redirects during a migration (ASKING); the app's range unions are one
  # multi-key PFCOUNT per partition (no union script: no EVAL, PFMERGE, PEXPIRE); backup reads a
  # replica after READONLY.
  cluster_connect_commands = ["cluster|slots"]
  app_cluster_commands = concat(
    local.cluster_connect_commands,
    ["asking"],
    [for c in local.app_commands : c if !contains(["eval", "pfmerge", "pexpire"], c)],
  )

  roles = {
    app = {
      enabled  = true
      keys     = local.app_key_patterns
      commands = var.cluster_mode ? local.app_cluster_commands : concat(local.connect_commands, local.app_commands)
    }
    backup = {
      enabled = true
      keys    = ["*"]
      commands = concat(
        var.cluster_mode ? concat(local.cluster_connect_commands, ["readonly"]) : local.connect_commands,
        local.backup_commands,
      )
    }
    prune = {
      enabled  = true
      keys     = local.prune_key_patterns
      commands = concat(var.cluster_mode ? local.cluster_connect_commands : local.connect_commands, local.prune_commands)
    }
    restore = {
      enabled = var.restore_user_enabled
      keys    = ["*"]
      commands = concat(
        var.cluster_mode ? concat(local.cluster_connect_commands, ["asking"]) : local.connect_commands,
        local.restore_commands,
      )
    }
  }

  # ElastiCache access strings: `on|off ~pattern… -@all +cmd…` (ElastiCache refuses `reset*`
  # rules and passwords in the string; no channel is granted).
  access_strings = {
    for role, r in local.roles : role => join(" ", concat(
      [r.enabled ? "on" : "off"],
      [for k in r.keys : "~${k}"],
      ["-@all"],
      [for c in r.commands : "+${c}"],
    ))
  }
  # Every ElastiCache user group must hold a user named "default"; ours can do nothing.
  default_user_access_string = "off -@all"

  # --- Connection URLs (no secret: the password comes from a mounted file) ----------------------
  # The jobs CronJobs mount the role's password and, where the server's CA is private, the CA at
  # the same paths the operator uses (operator/src/build/cronjobs.rs).
  password_file = "/var/run/abstore/credentials/password"
  ca_file       = "/var/run/abstore/tls/ca.crt"
  # format(url_formats[role], host, port); TLS is always on, so always rediss:// (a cluster:
  # rediss+cluster:// to the configuration endpoint, which the client asks for the slot map).
  scheme = var.cluster_mode ? "rediss+cluster" : "rediss"
  url_formats = {
    for role in keys(local.roles) : role => (
      var.auth_mode == "rbac"
      ? "${local.scheme}://${role}@%s:%d?password_file=${local.password_file}"
      : "${local.scheme}://%s:%d?password_file=${local.password_file}"
    )
  }

  # --- Backup buckets ----------------------------------------------------------------------------
  # Objects of one backup: <prefix>/<YYYY>/<MM>/<DD>/<start>-<run>/part-*.jsonl.zst + manifest.json.
  object_prefix = "${var.backup_prefix}/"

  # abstore-jobs opens a destination by listing its prefix once (jobs/src/storage/s3.rs,
  # gcs.rs) before any upload, so even the backup identity needs List on the prefix: it sees
  # object names and sizes, never contents. Reading contents is for the restore identity only.
  s3_backup_object_actions  = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
  s3_restore_object_actions = ["s3:GetObject"]
  s3_list_actions           = ["s3:ListBucket"]
  s3_list_prefixes          = [local.object_prefix, "${local.object_prefix}*"]

  # GCS: resumable uploads need only objects.create; no delete, so an object once written cannot
  # be overwritten by the backup identity.
  gcs_backup_permissions = [
    "storage.objects.create",
    "storage.objects.list",
    "storage.multipartUploads.create",
    "storage.multipartUploads.abort",
    "storage.multipartUploads.listParts",
  ]
  gcs_restore_permissions = ["storage.objects.get", "storage.objects.list"]

  # --- Workload identity subjects ------------------------------------------------------------------
  backup_subject  = "system:serviceaccount:${var.kubernetes_namespace}:${var.backup_service_account}"
  restore_subject = "system:serviceaccount:${var.kubernetes_namespace}:${var.restore_service_account}"
}
