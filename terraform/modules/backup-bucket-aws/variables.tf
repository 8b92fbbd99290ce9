variable "name" {
  description = "Name of the store: the base of the IAM roles' names."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,38}[a-z0-9]$", var.name)) && !strcontains(var.name, "--")
    error_message = "name must be 2-40 characters of lowercase letters, digits and single hyphens, start with a letter and end with a letter or digit."
  }
}

variable "bucket_name" {
  description = "Name of the S3 bucket the backups go to (created by this module)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name)) && !strcontains(var.bucket_name, "..")
    error_message = "bucket_name must be a valid S3 bucket name (3-63 lowercase letters, digits, '.' and '-')."
  }
}

variable "backup_prefix" {
  description = "Prefix the backups go under: abstore-jobs backup --to s3://<bucket>/<prefix>. No leading or trailing slash."
  type        = string
  default     = "abstore"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", var.backup_prefix))
    error_message = "backup_prefix must be path segments separated by single slashes, without a leading or trailing slash."
  }
}

variable "expiration_days" {
  description = "Days a backup is kept. Must be longer than the 31 days day-keyed data lives."
  type        = number
  default     = 90

  validation {
    condition     = var.expiration_days > 31 && var.expiration_days <= 3650 && floor(var.expiration_days) == var.expiration_days
    error_message = "expiration_days must be a whole number greater than 31 (the data retention) and at most 3650."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days a noncurrent object version (overwritten or deleted) is kept."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a positive whole number."
  }
}

variable "abort_incomplete_upload_days" {
  description = "Days after which an unfinished multipart upload (a backup killed mid-upload) is aborted."
  type        = number
  default     = 1

  validation {
    condition     = var.abort_incomplete_upload_days >= 1 && var.abort_incomplete_upload_days <= 7 && floor(var.abort_incomplete_upload_days) == var.abort_incomplete_upload_days
    error_message = "abort_incomplete_upload_days must be a whole number from 1 to 7."
  }
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for the bucket's default encryption (SSE-KMS with a bucket key). Null uses the AWS-managed aws/s3 key: objects are encrypted either way."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN or null."
  }
}

variable "access_log_bucket" {
  description = "Bucket receiving S3 server access logs of the backup bucket; null turns access logging off."
  type        = string
  default     = null

  validation {
    condition     = var.access_log_bucket == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.access_log_bucket))
    error_message = "access_log_bucket must be an S3 bucket name or null."
  }
}

variable "identity" {
  description = "How the jobs' pods get AWS credentials: \"irsa\" (IAM roles for service accounts: OIDC trust, annotate the ServiceAccount) or \"pod_identity\" (EKS Pod Identity associations, no annotation)."
  type        = string
  default     = "pod_identity"

  validation {
    condition     = contains(["irsa", "pod_identity"], var.identity)
    error_message = "identity must be \"irsa\" or \"pod_identity\"."
  }
}

variable "oidc_provider_arn" {
  description = "IAM OIDC provider of the EKS cluster (arn:aws:iam::<account>:oidc-provider/oidc.eks.<region>.amazonaws.com/id/<id>); required with identity = \"irsa\"."
  type        = string
  default     = null

  validation {
    condition     = var.identity != "irsa" || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+$", var.oidc_provider_arn))
    error_message = "oidc_provider_arn must be the cluster's IAM OIDC provider ARN when identity is \"irsa\"."
  }
}

variable "eks_cluster_name" {
  description = "EKS cluster of the Pod Identity associations; required with identity = \"pod_identity\"."
  type        = string
  default     = null

  validation {
    condition     = var.identity != "pod_identity" || can(regex("^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$", var.eks_cluster_name))
    error_message = "eks_cluster_name must be an EKS cluster name when identity is \"pod_identity\"."
  }
}

variable "kubernetes_namespace" {
  description = "Namespace of the abstore-jobs pods."
  type        = string
  default     = "abstore"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.kubernetes_namespace))
    error_message = "kubernetes_namespace must be a DNS-1123 label."
  }
}

variable "backup_service_account" {
  description = "ServiceAccount of the backup CronJob: may write (and list) the prefix, never read an object."
  type        = string
  default     = "abstore-backup"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", var.backup_service_account))
    error_message = "backup_service_account must be a DNS-1123 subdomain."
  }
}

variable "restore_service_account" {
  description = "ServiceAccount of list, verify and restore runs: may read (and list) the prefix, never write."
  type        = string
  default     = "abstore-restore"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", var.restore_service_account)) && var.restore_service_account != var.backup_service_account
    error_message = "restore_service_account must be a DNS-1123 subdomain different from backup_service_account."
  }
}

variable "create_restore_identity" {
  description = "Whether to create the read-only restore role (and association) next to the backup one."
  type        = bool
  default     = true

  validation {
    condition     = var.create_restore_identity != null
    error_message = "create_restore_identity must be true or false."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.tags : length(k) <= 128 && length(v) <= 256])
    error_message = "tag keys must be at most 128 and values at most 256 characters."
  }
}
