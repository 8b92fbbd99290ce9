# ABStore on Google Cloud without Redis in the cluster: Memorystore (STANDARD_HA), a GCS backup
# bucket, GKE Workload Identity for the jobs, and the abstore-jobs CronJobs that use them
# (rendered as the `abstore_jobs_manifest` output; apply it with kubectl).

module "redis" {
  source = "../../modules/gcp-memorystore"

  name                  = var.name
  project_id            = var.project_id
  region                = var.region
  authorized_network    = var.network
  memory_size_gb        = 5
  replicas              = 1
  notification_channels = var.notification_channels
}

module "backups" {
  source = "../../modules/backup-bucket-gcp"

  name          = var.name
  project_id    = var.project_id
  bucket_name   = var.backup_bucket_name
  location      = "EU"
  backup_prefix = "${var.name}/redis"
}

locals {
  abstore_jobs_manifest = templatefile("${path.module}/abstore-jobs.yaml.tftpl", {
    namespace               = module.backups.service_accounts["backup"].namespace
    image                   = var.jobs_image
    backup_service_account  = module.backups.service_accounts["backup"].name
    backup_gsa              = module.backups.backup_service_account_email
    restore_service_account = module.backups.service_accounts["restore"].name
    restore_gsa             = module.backups.restore_service_account_email
    # One AUTH string: Memorystore has no per-role users.
    redis_url       = module.redis.redis_url
    destination     = module.backups.destination
    credentials_dir = trimsuffix(module.redis.password_file, "/password")
    tls_dir         = trimsuffix(module.redis.ca_file, "/ca.crt")
    server_ca       = module.redis.server_ca_certs
  })
}
