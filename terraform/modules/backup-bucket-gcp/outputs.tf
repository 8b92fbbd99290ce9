output "bucket" {
  description = "Name of the backup bucket."
  value       = google_storage_bucket.this.name
}

output "bucket_url" {
  description = "gs:// URL of the bucket."
  value       = google_storage_bucket.this.url
}

output "destination" {
  description = "The abstore-jobs destination: backup --to, list --from and restore --from (gs://<bucket>/<prefix>)."
  value       = "gs://${google_storage_bucket.this.name}/${module.conventions.backup_prefix}"
}

output "backup_service_account_email" {
  description = "Google service account of the backup CronJob (create and list under the prefix, no read, no delete)."
  value       = google_service_account.this["backup"].email
}

output "restore_service_account_email" {
  description = "Google service account of list, verify and restore runs (read and list the prefix, no write); null when not created."
  value       = var.create_restore_identity ? google_service_account.this["restore"].email : null
}

output "service_accounts" {
  description = "Per identity (backup, restore): namespace, Kubernetes ServiceAccount name and the Workload Identity annotation it needs."
  value = {
    for id, i in local.identities : id => {
      namespace   = module.conventions.kubernetes_namespace
      name        = i.kubernetes_service_account
      annotations = { "iam.gke.io/gcp-service-account" = google_service_account.this[id].email }
    }
  }
}

output "lifecycle" {
  description = "The bucket's lifecycle: expiry days (> 31), noncurrent version expiry days, days before an unfinished multipart upload is aborted."
  value       = module.conventions.lifecycle
}
