output "redis_hostname" {
  description = "Hostname of the Managed Redis endpoint (private through the DNS zone)."
  value       = module.redis.hostname
}

output "redis_url" {
  description = "--redis URL of abstore-jobs (no secret)."
  value       = module.redis.redis_url
}

output "abstore_jobs_manifest" {
  description = "The backup volume claim and the backup and prune CronJobs: terraform output -raw abstore_jobs_manifest | kubectl apply -f -"
  value       = local.abstore_jobs_manifest
}

output "primary_access_key" {
  description = "Access key of the database. Sensitive."
  value       = module.redis.primary_access_key
  sensitive   = true
}
