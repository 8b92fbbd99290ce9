variable "name" {
  description = "Name of the store: the replication group id and the base of every other name (subnet, parameter and user groups, security group, log group, alarms)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,38}[a-z0-9]$", var.name)) && !strcontains(var.name, "--")
    error_message = "name must be 2-40 characters of lowercase letters, digits and single hyphens, start with a letter and end with a letter or digit."
  }
}

variable "engine" {
  description = "Cache engine: \"valkey\" or \"redis\" (ElastiCache for Redis OSS)."
  type        = string
  default     = "valkey"

  validation {
    condition     = contains(["valkey", "redis"], var.engine)
    error_message = "engine must be \"valkey\" or \"redis\"."
  }
}

variable "engine_version" {
  description = "Engine version, major.minor (7.0 or later: abstore-jobs reads PEXPIRETIME and the library sends EXPIREAT … NX)."
  type        = string
  default     = "8.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+$", var.engine_version)) && try(tonumber(split(".", var.engine_version)[0]) >= 7, false)
    error_message = "engine_version must be major.minor and at least 7.0."
  }
}

variable "node_type" {
  description = "Instance class of every node, e.g. cache.r7g.large."
  type        = string
  default     = "cache.r7g.large"

  validation {
    condition     = can(regex("^cache\\.[a-z0-9]+\\.[a-z0-9]+$", var.node_type))
    error_message = "node_type must look like cache.<family>.<size>, e.g. cache.r7g.large."
  }
}

variable "replicas" {
  description = "Read replicas next to the primary (0-5). With at least one, automatic failover and Multi-AZ are on."
  type        = number
  default     = 2

  validation {
    condition     = var.replicas >= 0 && var.replicas <= 5 && floor(var.replicas) == var.replicas
    error_message = "replicas must be a whole number from 0 to 5."
  }
}

variable "cluster_mode" {
  description = "Cluster mode enabled: `shards` node groups, each a primary and `replicas` replicas, behind the configuration endpoint. Applications use ABStore's cluster key layout through rediss+cluster:// (docs/cluster.md). Off: one primary with its replicas."
  type        = bool
  default     = false

  validation {
    condition     = var.cluster_mode != null
    error_message = "cluster_mode must be true or false."
  }
}

variable "shards" {
  description = "Node groups (shards) of a cluster-mode replication group (1-500). Only read with cluster_mode."
  type        = number
  default     = 3

  validation {
    condition     = var.shards >= 1 && var.shards <= 500 && floor(var.shards) == var.shards
    error_message = "shards must be a whole number from 1 to 500."
  }
}

variable "automatic_failover" {
  description = "Leave null: automatic failover and Multi-AZ follow replicas. An explicit value must agree (checked by the abstore-conventions module)."
  type        = bool
  default     = null

  validation {
    condition     = var.automatic_failover == null || var.automatic_failover == (var.replicas >= 1)
    error_message = "automatic_failover must be on when replicas exist (and off without one): leave it null."
  }
}

variable "vpc_id" {
  description = "VPC of the replication group and its security group."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be a VPC id (vpc-…)."
  }
}

variable "subnet_ids" {
  description = "Private subnets of the cache subnet group; at least two (in different availability zones) when replicas exist, for Multi-AZ."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= (var.replicas >= 1 ? 2 : 1) && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "subnet_ids must be subnet ids (subnet-…), at least two when replicas exist."
  }
}

variable "port" {
  description = "Port the nodes listen on."
  type        = number
  default     = 6379

  validation {
    condition     = var.port >= 1024 && var.port <= 65535
    error_message = "port must be between 1024 and 65535."
  }
}

variable "allowed_security_group_ids" {
  description = "Security groups (the EKS nodes' or pods') allowed to connect to the port."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.allowed_security_group_ids : can(regex("^sg-[0-9a-f]+$", s))])
    error_message = "allowed_security_group_ids must be security group ids (sg-…)."
  }
}

variable "allowed_cidr_blocks" {
  description = "IPv4 CIDR blocks allowed to connect to the port (private ranges; 0.0.0.0/0 is refused)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.allowed_cidr_blocks : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "allowed_cidr_blocks must be IPv4 CIDR blocks other than 0.0.0.0/0."
  }
}

variable "kms_key_arn" {
  description = "KMS key for encryption at rest. Null uses the ElastiCache-managed key: at-rest encryption is on either way."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN or null."
  }
}

variable "auth_mode" {
  description = "\"rbac\": one ElastiCache user per role (app, backup, prune, restore) with least privilege, in a user group. \"auth_token\": one shared AUTH token."
  type        = string
  default     = "rbac"

  validation {
    condition     = contains(["rbac", "auth_token"], var.auth_mode)
    error_message = "auth_mode must be \"rbac\" or \"auth_token\"."
  }
}

variable "restore_user_enabled" {
  description = "Whether the restore user (write access to every key) can log in. Keep it off except during a restore."
  type        = bool
  default     = false

  validation {
    condition     = var.restore_user_enabled != null
    error_message = "restore_user_enabled must be true or false."
  }
}

variable "snapshot_retention_limit" {
  description = "Days ElastiCache keeps its automatic daily snapshots (1-35). These are the engine's own RDB snapshots, next to the abstore-jobs key-level backups."
  type        = number
  default     = 7

  validation {
    condition     = var.snapshot_retention_limit >= 1 && var.snapshot_retention_limit <= 35 && floor(var.snapshot_retention_limit) == var.snapshot_retention_limit
    error_message = "snapshot_retention_limit must be a whole number of days from 1 to 35."
  }
}

variable "snapshot_window" {
  description = "Daily UTC window of the automatic snapshot, hh:mm-hh:mm (at least 60 minutes; must not overlap the maintenance window)."
  type        = string
  default     = "03:00-04:00"

  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$", var.snapshot_window))
    error_message = "snapshot_window must be hh:mm-hh:mm in UTC."
  }
}

variable "maintenance_window" {
  description = "Weekly UTC maintenance window, ddd:hh:mm-ddd:hh:mm (at least 60 minutes)."
  type        = string
  default     = "sun:05:00-sun:06:00"

  validation {
    condition     = can(regex("^(mon|tue|wed|thu|fri|sat|sun):([01][0-9]|2[0-3]):[0-5][0-9]-(mon|tue|wed|thu|fri|sat|sun):([01][0-9]|2[0-3]):[0-5][0-9]$", var.maintenance_window))
    error_message = "maintenance_window must be ddd:hh:mm-ddd:hh:mm in UTC, e.g. sun:05:00-sun:06:00."
  }
}

variable "final_snapshot" {
  description = "Whether deleting the replication group first takes a final snapshot named <name>-final."
  type        = bool
  default     = true

  validation {
    condition     = var.final_snapshot != null
    error_message = "final_snapshot must be true or false."
  }
}

variable "apply_immediately" {
  description = "Apply changes now instead of in the next maintenance window."
  type        = bool
  default     = false

  validation {
    condition     = var.apply_immediately != null
    error_message = "apply_immediately must be true or false."
  }
}

variable "log_retention_days" {
  description = "Days the slow log is kept in CloudWatch Logs."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653)."
  }
}

variable "log_kms_key_arn" {
  description = "KMS key for the slow log group. Null uses CloudWatch Logs' own encryption."
  type        = string
  default     = null

  validation {
    condition     = var.log_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.log_kms_key_arn))
    error_message = "log_kms_key_arn must be a KMS key ARN or null."
  }
}

variable "alarm_actions" {
  description = "ARNs (SNS topics) notified when an alarm fires and when it recovers."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.alarm_actions : can(regex("^arn:aws[a-z-]*:", a))])
    error_message = "alarm_actions must be ARNs."
  }
}

variable "memory_alarm_percent" {
  description = "Alarm when DatabaseMemoryUsagePercentage of a node exceeds this. With noeviction a full node refuses writes, so alarm well before 100."
  type        = number
  default     = 80

  validation {
    condition     = var.memory_alarm_percent > 0 && var.memory_alarm_percent < 100
    error_message = "memory_alarm_percent must be between 0 and 100."
  }
}

variable "cpu_alarm_percent" {
  description = "Alarm when EngineCPUUtilization (the Redis thread) of a node exceeds this."
  type        = number
  default     = 80

  validation {
    condition     = var.cpu_alarm_percent > 0 && var.cpu_alarm_percent <= 100
    error_message = "cpu_alarm_percent must be between 0 and 100."
  }
}

variable "replication_lag_alarm_seconds" {
  description = "Alarm when a replica's ReplicationLag exceeds this many seconds."
  type        = number
  default     = 10

  validation {
    condition     = var.replication_lag_alarm_seconds > 0
    error_message = "replication_lag_alarm_seconds must be positive."
  }
}

variable "connections_alarm_threshold" {
  description = "Alarm when CurrConnections of a node exceeds this (a connection leak or a client storm)."
  type        = number
  default     = 5000

  validation {
    condition     = var.connections_alarm_threshold >= 1 && floor(var.connections_alarm_threshold) == var.connections_alarm_threshold
    error_message = "connections_alarm_threshold must be a positive whole number."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.tags : length(k) <= 128 && length(v) <= 256])
    error_message = "tag keys must be at most 128 and values at most 256 characters."
  }
}
