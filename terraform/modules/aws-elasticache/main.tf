# ElastiCache (Valkey or Redis OSS) for ABStore: one replication group — cluster mode disabled
# (one primary), or with cluster_mode its shards (ABStore's cluster key layout) — with failover
# across zones when replicas exist, TLS required, encryption at rest, per-role
# RBAC users, noeviction, snapshots, slow log and alarms. The decisions come from
# abstore-conventions, which is tested offline.

module "conventions" {
  source = "../abstore-conventions"

  name                 = var.name
  replicas             = var.replicas
  cluster_mode         = var.cluster_mode
  shards               = var.shards
  automatic_failover   = var.automatic_failover
  auth_mode            = var.auth_mode
  restore_user_enabled = var.restore_user_enabled
}

locals {
  rbac        = var.auth_mode == "rbac"
  major       = tonumber(split(".", var.engine_version)[0])
  param_group = "${var.engine}${local.major}"
  # ElastiCache user ids are unique per account and region, user names per user group.
  user_ids = { for role in keys(module.conventions.acl_roles) : role => "${var.name}-${role}" }
  tags     = merge(var.tags, { "abstore.dev/store" = var.name })
}

resource "aws_elasticache_subnet_group" "this" {
  name        = var.name
  description = "ABStore ${var.name}: private subnets of the replication group"
  subnet_ids  = var.subnet_ids
  tags        = local.tags
}

resource "aws_security_group" "this" {
  name        = "${var.name}-redis"
  description = "ABStore ${var.name}: clients of the replication group"
  vpc_id      = var.vpc_id
  tags        = local.tags
  # No egress rule: the nodes never open connections to clients.
}

resource "aws_vpc_security_group_ingress_rule" "from_security_groups" {
  for_each = toset(var.allowed_security_group_ids)

  security_group_id            = aws_security_group.this.id
  description                  = "Redis/Valkey (TLS) from ${each.value}"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  tags                         = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "from_cidr_blocks" {
  for_each = toset(var.allowed_cidr_blocks)

  security_group_id = aws_security_group.this.id
  description       = "Redis/Valkey (TLS) from ${each.value}"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = var.port
  to_port           = var.port
  tags              = local.tags
}

resource "aws_elasticache_parameter_group" "this" {
  name        = "${var.name}-${replace(local.param_group, ".", "-")}"
  family      = local.param_group
  description = "ABStore ${var.name}: noeviction, so counters are never evicted"
  tags        = local.tags

  dynamic "parameter" {
    for_each = module.conventions.redis_parameters
    content {
      name  = parameter.key
      value = parameter.value
    }
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_cloudwatch_log_group" "slow_log" {
  name              = "/aws/elasticache/${var.name}/slow-log"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn
  tags              = local.tags
}

# --- Authentication ------------------------------------------------------------------------------

# Passwords live in the state (as any random_password does) and leave the module only as a
# sensitive output; put them into the jobs' Secrets with your secrets tooling.
resource "random_password" "user" {
  for_each = { for role, r in module.conventions.acl_roles : role => r if local.rbac }

  length  = 40
  special = false
}

resource "random_password" "default_user" {
  count = local.rbac ? 1 : 0

  length  = 40
  special = false
}

resource "random_password" "auth_token" {
  count = local.rbac ? 0 : 1

  length  = 64
  special = false
}

# Every user group must contain a user named "default"; this one is switched off.
resource "aws_elasticache_user" "default" {
  count = local.rbac ? 1 : 0

  user_id       = "${var.name}-default"
  user_name     = "default"
  engine        = var.engine
  access_string = module.conventions.elasticache_default_user_access_string
  tags          = local.tags

  authentication_mode {
    type      = "password"
    passwords = [random_password.default_user[0].result]
  }
}

resource "aws_elasticache_user" "role" {
  for_each = { for role, r in module.conventions.acl_roles : role => r if local.rbac }

  user_id       = local.user_ids[each.key]
  user_name     = each.key
  engine        = var.engine
  access_string = module.conventions.elasticache_access_strings[each.key]
  tags          = local.tags

  authentication_mode {
    type      = "password"
    passwords = [random_password.user[each.key].result]
  }
}

resource "aws_elasticache_user_group" "this" {
  count = local.rbac ? 1 : 0

  user_group_id = var.name
  engine        = var.engine
  user_ids      = concat([aws_elasticache_user.default[0].user_id], [for u in aws_elasticache_user.role : u.user_id])
  tags          = local.tags
}

# --- The replication group -----------------------------------------------------------------------

resource "aws_elasticache_replication_group" "this" {
  #checkov:skip=CKV_AWS_191:A customer-managed KMS key is optional (var.kms_key_arn); without one, at-rest encryption uses the ElastiCache-managed key and is still on.
  #checkov:skip=CKV_AWS_31:RBAC mode authenticates per-role users of the user group instead of one AUTH token; auth_mode = "auth_token" sets the token. TLS is required either way.
  #checkov:skip=CKV2_AWS_50:Failover and Multi-AZ come from module.conventions, which checkov does not evaluate: on whenever replicas >= 1 (the default is 2), off only for a deliberate single node; tested in abstore-conventions/tests and asserted by tests/tests/terraform.rs.
  replication_group_id = var.name
  description          = "ABStore ${var.name}"
  engine               = var.engine
  engine_version       = var.engine_version
  node_type            = var.node_type
  port                 = var.port
  parameter_group_name = aws_elasticache_parameter_group.this.name
  subnet_group_name    = aws_elasticache_subnet_group.this.name
  security_group_ids   = [aws_security_group.this.id]

  # Cluster mode disabled: one primary endpoint, which the abstore client and the jobs use.
  # Enabled: shards of a primary and its replicas behind a configuration endpoint
  # (rediss+cluster:// URLs; the parameter group sets cluster-enabled).
  cluster_mode               = var.cluster_mode ? "enabled" : "disabled"
  num_cache_clusters         = var.cluster_mode ? null : module.conventions.node_count
  num_node_groups            = var.cluster_mode ? var.shards : null
  replicas_per_node_group    = var.cluster_mode ? var.replicas : null
  automatic_failover_enabled = module.conventions.automatic_failover_enabled
  multi_az_enabled           = module.conventions.multi_az_enabled

  transit_encryption_enabled = true
  transit_encryption_mode    = "required"
  at_rest_encryption_enabled = true
  kms_key_id                 = var.kms_key_arn

  user_group_ids = local.rbac ? [aws_elasticache_user_group.this[0].user_group_id] : null
  auth_token     = local.rbac ? null : random_password.auth_token[0].result

  snapshot_retention_limit  = var.snapshot_retention_limit
  snapshot_window           = var.snapshot_window
  maintenance_window        = var.maintenance_window
  final_snapshot_identifier = var.final_snapshot ? "${var.name}-final" : null

  auto_minor_version_upgrade = true
  apply_immediately          = var.apply_immediately

  log_delivery_configuration {
    destination      = aws_cloudwatch_log_group.slow_log.name
    destination_type = "cloudwatch-logs"
    log_format       = "json"
    log_type         = "slow-log"
  }

  tags = local.tags
}

# --- Alarms (one per node: ElastiCache publishes these metrics per cache cluster) ----------------

locals {
  members = toset(module.conventions.member_ids)
  # Only replicas publish ReplicationLag; the primary's missing data is not a breach.
  node_alarms = {
    memory = {
      metric      = "DatabaseMemoryUsagePercentage"
      statistic   = "Maximum"
      threshold   = var.memory_alarm_percent
      periods     = 3
      description = "memory above ${var.memory_alarm_percent}%: with noeviction, writes fail when it is full"
    }
    evictions = {
      metric      = "Evictions"
      statistic   = "Sum"
      threshold   = 0
      periods     = 1
      description = "keys were evicted, which noeviction should make impossible: check the parameter group"
    }
    cpu = {
      metric      = "EngineCPUUtilization"
      statistic   = "Average"
      threshold   = var.cpu_alarm_percent
      periods     = 5
      description = "the engine thread is above ${var.cpu_alarm_percent}% CPU"
    }
    connections = {
      metric      = "CurrConnections"
      statistic   = "Maximum"
      threshold   = var.connections_alarm_threshold
      periods     = 3
      description = "more than ${var.connections_alarm_threshold} client connections"
    }
  }
  node_alarm_pairs = merge([
    for alarm, a in local.node_alarms : {
      for member in local.members : "${alarm}/${member}" => merge(a, { member = member, alarm = alarm })
    }
  ]...)
}

resource "aws_cloudwatch_metric_alarm" "node" {
  for_each = local.node_alarm_pairs

  alarm_name          = "${each.value.member}-${each.value.alarm}"
  alarm_description   = "ABStore ${var.name} node ${each.value.member}: ${each.value.description}"
  namespace           = "AWS/ElastiCache"
  metric_name         = each.value.metric
  dimensions          = { CacheClusterId = each.value.member }
  statistic           = each.value.statistic
  period              = 60
  evaluation_periods  = each.value.periods
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.threshold
  treat_missing_data  = "missing"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags

  depends_on = [aws_elasticache_replication_group.this]
}

resource "aws_cloudwatch_metric_alarm" "replication_lag" {
  for_each = module.conventions.automatic_failover_enabled ? local.members : toset([])

  alarm_name          = "${each.value}-replication-lag"
  alarm_description   = "ABStore ${var.name} node ${each.value}: replica more than ${var.replication_lag_alarm_seconds}s behind the primary (a failover now would lose those writes)"
  namespace           = "AWS/ElastiCache"
  metric_name         = "ReplicationLag"
  dimensions          = { CacheClusterId = each.value }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.replication_lag_alarm_seconds
  # Whichever node is the primary publishes no ReplicationLag.
  treat_missing_data = "notBreaching"
  alarm_actions      = var.alarm_actions
  ok_actions         = var.alarm_actions
  tags               = local.tags

  depends_on = [aws_elasticache_replication_group.this]
}
