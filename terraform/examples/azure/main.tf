# ABStore on Azure without Redis in the cluster: Azure Managed Redis (Azure Cache for Redis is
# being retired) behind a private endpoint, and the abstore-jobs CronJobs that use it (rendered as
# the `abstore_jobs_manifest` output). abstore-jobs writes to file://, s3:// and gs:// only, so
# here the backups go to an Azure Files volume (file://) the CronJob mounts; there is no
# workload identity to set up because the volume is the cluster's.

module "redis" {
  source = "../../modules/azure-managed-redis"

  name                 = var.name
  resource_group_name  = var.resource_group_name
  location             = var.location
  sku_name             = "Balanced_B5"
  persistence          = "aof"
  subnet_id            = var.aks_subnet_id
  private_dns_zone_ids = [var.private_dns_zone_id]
  action_group_ids     = var.action_group_id == null ? [] : [var.action_group_id]
}

locals {
  backup_dir = "/var/backups/abstore"
  abstore_jobs_manifest = templatefile("${path.module}/abstore-jobs.yaml.tftpl", {
    namespace       = "abstore"
    image           = var.jobs_image
    redis_url       = module.redis.redis_url
    credentials_dir = trimsuffix(module.redis.password_file, "/password")
    backup_dir      = local.backup_dir
    destination     = "file://${local.backup_dir}/${var.name}"
  })
}
