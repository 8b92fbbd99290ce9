output "bucket" {
  description = "Name of the backup bucket."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the backup bucket."
  value       = aws_s3_bucket.this.arn
}

output "bucket_region" {
  description = "Region of the bucket: set it as AWS_REGION of the jobs' pods."
  value       = aws_s3_bucket.this.region
}

output "destination" {
  description = "The abstore-jobs destination: backup --to, list --from and restore --from (s3://<bucket>/<prefix>)."
  value       = "s3://${aws_s3_bucket.this.id}/${module.conventions.backup_prefix}"
}

output "backup_role_arn" {
  description = "IAM role of the backup CronJob (write and list the prefix, no read)."
  value       = aws_iam_role.this["backup"].arn
}

output "restore_role_arn" {
  description = "IAM role of list, verify and restore runs (read and list the prefix, no write); null when not created."
  value       = var.create_restore_identity ? aws_iam_role.this["restore"].arn : null
}

output "service_accounts" {
  description = "Per identity (backup, restore): namespace, ServiceAccount name and the annotations it needs (the IRSA role annotation; none with Pod Identity)."
  value = {
    for id, i in local.identities : id => {
      namespace   = module.conventions.kubernetes_namespace
      name        = i.service_account
      annotations = local.irsa ? { "eks.amazonaws.com/role-arn" = aws_iam_role.this[id].arn } : {}
    }
  }
}

output "lifecycle" {
  description = "The bucket's lifecycle: expiry days (> 31), noncurrent version expiry days, days before an unfinished multipart upload is aborted."
  value       = module.conventions.lifecycle
}
