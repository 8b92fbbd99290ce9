variable "name" {
  description = "Name of the store: the base of the service accounts' and custom role's names."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,38}[a-z0-9]$", var.name)) && !strcontains(var.name, "--")
    error_message = "name must be 2-40 characters of lowercase letters, digits and single hyphens, start with a letter and end with a letter or digit."
  }
}

variable "project_id" {
  description = "Project of the bucket, the service accounts and the custom role."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id."
  }
}

variable "workload_identity_project_id" {
  description = "Project of the GKE cluster whose workload identity pool (<project>.svc.id.goog) the jobs' ServiceAccounts belong to; null means project_id."
  type        = string
  default     = null

  validation {
    condition     = var.workload_identity_project_id == null || can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.workload_identity_project_id))
    error_message = "workload_identity_project_id must be a Google Cloud project id or null."
  }
}

variable "bucket_name" {
  description = "Name of the GCS bucket the backups go to (created by this module)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.bucket_name)) && !startswith(var.bucket_name, "goog")
    error_message = "bucket_name must be a valid GCS bucket name (3-63 lowercase letters, digits, '.', '_' and '-', not starting with goog)."
  }
}

variable "location" {
  description = "Location of the bucket: a region (europe-west1) or multi-region (EU)."
  type        = string
  default     = "EU"

  validation {
    condition     = can(regex("^([A-Z0-9]+|[a-z]+-[a-z]+[0-9]+)$", var.location))
    error_message = "location must be a region such as europe-west1 or a multi-region such as EU."
  }
}

variable "backup_prefix" {
  description = "Prefix the backups go under: abstore-jobs backup --to gs://<bucket>/<prefix>. No leading or trailing slash."
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
  description = "Days after which an unfinished XML-API multipart upload is aborted (abstore-jobs uses resumable uploads, which GCS discards after a week by itself)."
  type        = number
  default     = 1

  validation {
    condition     = var.abort_incomplete_upload_days >= 1 && var.abort_incomplete_upload_days <= 7 && floor(var.abort_incomplete_upload_days) == var.abort_incomplete_upload_days
    error_message = "abort_incomplete_upload_days must be a whole number from 1 to 7."
  }
}

variable "soft_delete_days" {
  description = "Days a deleted object can still be restored (GCS soft delete; 0 turns it off, otherwise 7-90)."
  type        = number
  default     = 7

  validation {
    condition     = var.soft_delete_days == 0 || (var.soft_delete_days >= 7 && var.soft_delete_days <= 90)
    error_message = "soft_delete_days must be 0 or from 7 to 90."
  }
}

variable "kms_key_name" {
  description = "Cloud KMS key for customer-managed default encryption; null uses Google-managed encryption (objects are encrypted either way). The project's GCS service agent needs encrypter/decrypter on the key."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k> or null."
  }
}

variable "access_log_bucket" {
  description = "Bucket receiving usage logs of the backup bucket; null turns usage logging off."
  type        = string
  default     = null

  validation {
    condition     = var.access_log_bucket == null || can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.access_log_bucket))
    error_message = "access_log_bucket must be a GCS bucket name or null."
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
  description = "Kubernetes ServiceAccount of the backup CronJob: may create (and list) objects under the prefix, never read or delete one."
  type        = string
  default     = "abstore-backup"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", var.backup_service_account))
    error_message = "backup_service_account must be a DNS-1123 subdomain."
  }
}

variable "restore_service_account" {
  description = "Kubernetes ServiceAccount of list, verify and restore runs: may read (and list) the prefix, never write."
  type        = string
  default     = "abstore-restore"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", var.restore_service_account)) && var.restore_service_account != var.backup_service_account
    error_message = "restore_service_account must be a DNS-1123 subdomain different from backup_service_account."
  }
}

variable "create_restore_identity" {
  description = "Whether to create the read-only restore identity next to the backup one."
  type        = bool
  default     = true

  validation {
    condition     = var.create_restore_identity != null
    error_message = "create_restore_identity must be true or false."
  }
}

variable "labels" {
  description = "Labels for the bucket."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))])
    error_message = "labels must use lowercase keys and values (letters, digits, _ and -), at most 63 characters."
  }
}
