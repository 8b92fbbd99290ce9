variable "name" {
  description = "Name of the store: the base of every cloud resource name (replication group, instance, roles, alarms). Lowercase letters, digits and single hyphens, 2 to 40 characters, starting with a letter."
  type        = string

  validation {
    # The strictest of the three clouds: ElastiCache ids (no "--", no trailing hyphen, 40 chars
    # leave room for the "-001" member suffix), Memorystore ids (lowercase) and Azure names.
    condition     = can(regex("^[a-z][a-z0-9-]{0,38}[a-z0-9]$", var.name)) && !strcontains(var.name, "--")
    error_message = "name must be 2-40 characters of lowercase letters, digits and single hyphens, start with a letter and end with a letter or digit."
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
  description = "Shard the store: the managed service's cluster mode, ABStore's cluster key layout and rediss+cluster:// URLs (docs/cluster.md). Off (the default): one primary with its replicas."
  type        = bool
  default     = false

  validation {
    condition     = var.cluster_mode != null
    error_message = "cluster_mode must be true or false."
  }
}

variable "shards" {
  description = "Primaries a cluster-mode store splits its slots over (1-500), each with `replicas` replicas. Only read with cluster_mode."
  type        = number
  default     = 3

  validation {
    condition     = var.shards >= 1 && var.shards <= 500 && floor(var.shards) == var.shards
    error_message = "shards must be a whole number from 1 to 500."
  }
}

variable "automatic_failover" {
  description = "Leave null: failover follows the replicas (on with at least one replica, off without). An explicit value must agree with that; a replica that is never promoted is a second copy that does not protect the counters."
  type        = bool
  default     = null

  validation {
    condition     = var.automatic_failover == null || var.automatic_failover == (var.replicas >= 1)
    error_message = "automatic_failover must be on when replicas exist (and cannot be on without a replica): leave it null to follow replicas."
  }
}

variable "auth_mode" {
  description = "How clients authenticate: \"rbac\" (one user per role with least privilege: app, backup, prune, restore) or \"auth_token\" (one shared password, no per-role limits)."
  type        = string
  default     = "rbac"

  validation {
    condition     = contains(["rbac", "auth_token"], var.auth_mode)
    error_message = "auth_mode must be \"rbac\" or \"auth_token\"."
  }
}

variable "restore_user_enabled" {
  description = "Whether the restore user (the only role that may write every key) can log in. Off by default: switch it on for an incident, restore, switch it off again."
  type        = bool
  default     = false

  validation {
    condition     = var.restore_user_enabled != null
    error_message = "restore_user_enabled must be true or false."
  }
}

variable "backup_prefix" {
  description = "Object prefix the backups go under (abstore-jobs backup --to s3://BUCKET/PREFIX). No leading or trailing slash."
  type        = string
  default     = "abstore"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", var.backup_prefix))
    error_message = "backup_prefix must be non-empty path segments of letters, digits, '.', '_' or '-' separated by single slashes, with no leading or trailing slash."
  }
}

variable "backup_expiration_days" {
  description = "Days a backup object is kept before the bucket's lifecycle rule deletes it. Must be longer than the 31 days day-keyed data is kept, or the last backup of a day could go before the data it is the only copy of."
  type        = number
  default     = 90

  validation {
    condition     = var.backup_expiration_days > 31 && var.backup_expiration_days <= 3650 && floor(var.backup_expiration_days) == var.backup_expiration_days
    error_message = "backup_expiration_days must be a whole number of days greater than 31 (the data retention) and at most 3650."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days an overwritten or deleted backup object version is kept (versioned buckets) before it is removed."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && var.noncurrent_version_expiration_days <= 3650 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a whole number from 1 to 3650."
  }
}

variable "abort_incomplete_upload_days" {
  description = "Days after which an unfinished multipart upload (a backup job killed mid-upload) is aborted by the bucket."
  type        = number
  default     = 1

  validation {
    condition     = var.abort_incomplete_upload_days >= 1 && var.abort_incomplete_upload_days <= 7 && floor(var.abort_incomplete_upload_days) == var.abort_incomplete_upload_days
    error_message = "abort_incomplete_upload_days must be a whole number from 1 to 7."
  }
}

variable "kubernetes_namespace" {
  description = "Namespace of the abstore-jobs CronJobs (the workload identity trusts ServiceAccounts there only)."
  type        = string
  default     = "abstore"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.kubernetes_namespace))
    error_message = "kubernetes_namespace must be a DNS-1123 label."
  }
}

variable "backup_service_account" {
  description = "ServiceAccount of the backup CronJob: the identity allowed to write backups."
  type        = string
  default     = "abstore-backup"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", var.backup_service_account))
    error_message = "backup_service_account must be a DNS-1123 subdomain."
  }
}

variable "restore_service_account" {
  description = "ServiceAccount that runs list, verify and restore: the identity allowed to read backups. Must differ from the backup one, so the scheduled job cannot read what it wrote."
  type        = string
  default     = "abstore-restore"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", var.restore_service_account)) && var.restore_service_account != var.backup_service_account
    error_message = "restore_service_account must be a DNS-1123 subdomain different from backup_service_account."
  }
}
