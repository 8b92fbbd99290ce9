output "automatic_failover_enabled" {
  description = "Whether a replica is promoted automatically when the primary fails: true exactly when replicas exist."
  value       = local.automatic_failover
}

output "multi_az_enabled" {
  description = "Whether replicas are spread over availability zones (follows automatic failover)."
  value       = local.automatic_failover
}

output "node_count" {
  description = "Nodes of the store: each shard's primary plus its replicas."
  value       = local.node_count
}

output "member_ids" {
  description = "ElastiCache member cluster ids of a replication group named after the store (<name>-001, …; in cluster mode <name>-0001-001, …), for per-node alarms."
  value       = local.member_ids
}

output "maxmemory_policy" {
  description = "The only eviction policy ABStore accepts: noeviction."
  value       = local.maxmemory_policy
}

output "redis_parameters" {
  description = "Redis parameters every managed store gets (and cluster-enabled yes in cluster mode)."
  value       = local.redis_parameters
}

output "cluster_mode" {
  description = "Whether the store is sharded (cluster mode)."
  value       = var.cluster_mode
}

output "shards" {
  description = "Primaries the slots are split over: 1 without cluster mode."
  value       = local.shards
}

output "data_retention_days" {
  description = "Days day-keyed counters are kept (abstore-jobs prune --retention-days)."
  value       = local.data_retention_days
}

output "tls_enabled" {
  description = "TLS in transit: always on."
  value       = true
}

output "acl_roles" {
  description = "Least-privilege roles the jobs and the app connect as: enabled, key patterns and commands of each (app, backup, prune, restore)."
  value       = local.roles
}

output "elasticache_access_strings" {
  description = "ElastiCache RBAC access string of each role."
  value       = local.access_strings
}

output "elasticache_default_user_access_string" {
  description = "Access string of the disabled \"default\" user every ElastiCache user group must contain."
  value       = local.default_user_access_string
}

output "url_formats" {
  description = "Per role, a format() string taking host and port that gives the --redis URL of abstore-jobs and the app (rediss://, password from the mounted file, no secret)."
  value       = local.url_formats
}

output "password_file" {
  description = "Where the jobs' pods mount their role's password."
  value       = local.password_file
}

output "ca_file" {
  description = "Where the jobs' pods mount a private server CA (Memorystore)."
  value       = local.ca_file
}

output "backup_prefix" {
  description = "The backups' object prefix, without a trailing slash."
  value       = var.backup_prefix
}

output "object_prefix" {
  description = "The backups' object prefix with its trailing slash, as used in policies and lifecycle filters."
  value       = local.object_prefix
}

output "lifecycle" {
  description = "Bucket lifecycle of the backups: expiry (> 31 days), noncurrent version expiry and aborting unfinished multipart uploads."
  value = {
    expiration_days                    = var.backup_expiration_days
    noncurrent_version_expiration_days = var.noncurrent_version_expiration_days
    abort_incomplete_upload_days       = var.abort_incomplete_upload_days
  }
}

output "s3_backup_object_actions" {
  description = "S3 actions of the backup identity on <bucket>/<prefix>/* (write, no read)."
  value       = local.s3_backup_object_actions
}

output "s3_restore_object_actions" {
  description = "S3 actions of the restore identity on <bucket>/<prefix>/* (read, no write)."
  value       = local.s3_restore_object_actions
}

output "s3_list_actions" {
  description = "S3 bucket actions both identities need, limited to the prefix by s3_list_prefixes."
  value       = local.s3_list_actions
}

output "s3_list_prefixes" {
  description = "Values of the s3:prefix condition key that limit listing to the backups' prefix."
  value       = local.s3_list_prefixes
}

output "gcs_backup_permissions" {
  description = "GCS permissions of the backup identity (a custom role bound on the bucket with a prefix condition)."
  value       = local.gcs_backup_permissions
}

output "gcs_restore_permissions" {
  description = "GCS permissions of the restore identity (bound on the bucket with a prefix condition)."
  value       = local.gcs_restore_permissions
}

output "kubernetes_namespace" {
  description = "Namespace of the abstore-jobs CronJobs."
  value       = var.kubernetes_namespace
}

output "backup_service_account" {
  description = "ServiceAccount of the backup CronJob."
  value       = var.backup_service_account
}

output "restore_service_account" {
  description = "ServiceAccount that runs list, verify and restore."
  value       = var.restore_service_account
}

output "backup_subject" {
  description = "Kubernetes subject (system:serviceaccount:<ns>:<sa>) of the backup identity, for IRSA trust policies."
  value       = local.backup_subject
}

output "restore_subject" {
  description = "Kubernetes subject of the restore identity."
  value       = local.restore_subject
}
