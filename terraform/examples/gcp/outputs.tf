output "redis_host" {
  description = "Private IP of the Memorystore primary endpoint."
  value       = module.redis.host
}

output "redis_url" {
  description = "--redis URL of abstore-jobs (no secret)."
  value       = module.redis.redis_url
}

output "backup_destination" {
  description = "--to / --from of abstore-jobs."
  value       = module.backups.destination
}

output "backup_service_account_email" {
  description = "Google service account the backup CronJob acts as through Workload Identity."
  value       = module.backups.backup_service_account_email
}

output "abstore_jobs_manifest" {
  description = "ServiceAccounts (with their Workload Identity annotations), the server CA and the backup and prune CronJobs: terraform output -raw abstore_jobs_manifest | kubectl apply -f -"
  value       = local.abstore_jobs_manifest
}

output "auth_string" {
  description = "Memorystore AUTH string. Sensitive."
  value       = module.redis.auth_string
  sensitive   = true
}
