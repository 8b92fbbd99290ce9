# ABStore on AWS without Redis in the cluster: ElastiCache (Valkey) with per-role users, an S3
# backup bucket, EKS Pod Identity for the jobs, and the abstore-jobs CronJobs that use them
# (rendered as the `abstore_jobs_manifest` output; apply it with kubectl).

module "redis" {
  source = "../../modules/aws-elasticache"

  name                       = var.name
  vpc_id                     = var.vpc_id
  subnet_ids                 = var.private_subnet_ids
  allowed_security_group_ids = [var.eks_node_security_group_id]
  replicas                   = 2
  alarm_actions              = var.alarm_topic_arn == null ? [] : [var.alarm_topic_arn]
}

module "backups" {
  source = "../../modules/backup-bucket-aws"

  name             = var.name
  bucket_name      = var.backup_bucket_name
  backup_prefix    = "${var.name}/redis"
  identity         = "pod_identity"
  eks_cluster_name = var.eks_cluster_name
}

locals {
  namespace = module.backups.service_accounts["backup"].namespace
  abstore_jobs_manifest = templatefile("${path.module}/abstore-jobs.yaml.tftpl", {
    namespace               = local.namespace
    image                   = var.jobs_image
    region                  = var.region
    backup_service_account  = module.backups.service_accounts["backup"].name
    restore_service_account = module.backups.service_accounts["restore"].name
    # Backups read the replicas through the reader endpoint; prune writes through the primary.
    backup_url  = module.redis.reader_redis_url
    prune_url   = module.redis.redis_urls["prune"]
    restore_url = module.redis.redis_urls["restore"]
    destination = module.backups.destination
    # The URLs read the password from this file; the Secret is mounted on its directory.
    credentials_dir = trimsuffix(module.redis.password_file, "/password")
  })
}
