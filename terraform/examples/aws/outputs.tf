output "redis_primary_endpoint" {
  description = "Primary endpoint of the replication group."
  value       = module.redis.primary_endpoint_address
}

output "redis_urls" {
  description = "--redis URL per role (no secrets)."
  value       = module.redis.redis_urls
}

output "backup_destination" {
  description = "--to / --from of abstore-jobs."
  value       = module.backups.destination
}

output "backup_role_arn" {
  description = "Role the backup CronJob's ServiceAccount gets through EKS Pod Identity."
  value       = module.backups.backup_role_arn
}

output "restore_role_arn" {
  description = "Read-only role for list, verify and restore."
  value       = module.backups.restore_role_arn
}

output "abstore_jobs_manifest" {
  description = "ServiceAccounts and the backup and prune CronJobs, wired to the outputs above: terraform output -raw abstore_jobs_manifest | kubectl apply -f -"
  value       = local.abstore_jobs_manifest
}

output "passwords" {
  description = "RBAC passwords per role. Sensitive."
  value       = module.redis.passwords
  sensitive   = true
}
