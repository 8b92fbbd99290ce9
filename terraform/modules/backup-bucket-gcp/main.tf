# The GCS bucket abstore-jobs backs up to, and the GKE Workload Identity of its pods: a backup
# service account that can create (and list) objects under the prefix but never read or delete
# one, and a restore service account that can read (and list) them but never write. Versioned,
# uniform access, public access prevented, lifecycle longer than the data.

module "conventions" {
  source = "../abstore-conventions"

  name                               = var.name
  backup_prefix                      = var.backup_prefix
  backup_expiration_days             = var.expiration_days
  noncurrent_version_expiration_days = var.noncurrent_version_expiration_days
  abort_incomplete_upload_days       = var.abort_incomplete_upload_days
  kubernetes_namespace               = var.kubernetes_namespace
  backup_service_account             = var.backup_service_account
  restore_service_account            = var.restore_service_account
}

locals {
  labels        = merge(var.labels, { "abstore-store" = var.name })
  pool_project  = coalesce(var.workload_identity_project_id, var.project_id)
  object_prefix = module.conventions.object_prefix
  # IAM condition that limits a binding to the prefix: object names for get/create, the list
  # request's prefix parameter for list (a list request names the bucket, not an object).
  prefix_condition = join(" || ", [
    "resource.name.startsWith(\"projects/_/buckets/${var.bucket_name}/objects/${local.object_prefix}\")",
    "api.getAttribute(\"storage.googleapis.com/objectListPrefix\", \"\").startsWith(\"${local.object_prefix}\")",
  ])
  # Service account ids are 6-30 characters.
  account_base = trimsuffix(substr(var.name, 0, 22), "-")
}

resource "google_storage_bucket" "this" {
  #checkov:skip=CKV_GCP_62:Usage logging needs a log bucket the module does not own; set var.access_log_bucket to turn it on.
  name          = var.bucket_name
  project       = var.project_id
  location      = var.location
  storage_class = "STANDARD"
  force_destroy = false

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  soft_delete_policy {
    retention_duration_seconds = var.soft_delete_days * 86400
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  dynamic "logging" {
    for_each = var.access_log_bucket == null ? [] : [var.access_log_bucket]
    content {
      log_bucket        = logging.value
      log_object_prefix = "gcs-usage/${var.bucket_name}/"
    }
  }

  # A backup (live version) is deleted, i.e. made noncurrent, after expiration_days …
  lifecycle_rule {
    condition {
      age            = var.expiration_days
      matches_prefix = [local.object_prefix]
      with_state     = "LIVE"
    }
    action {
      type = "Delete"
    }
  }

  # … and a noncurrent version is removed noncurrent_version_expiration_days later.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_expiration_days
      matches_prefix             = [local.object_prefix]
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = var.abort_incomplete_upload_days
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  labels = local.labels
}

# --- Workload identity ---------------------------------------------------------------------------

locals {
  identities = {
    for id, i in {
      backup = {
        kubernetes_service_account = module.conventions.backup_service_account
        account_id                 = "${local.account_base}-backup"
        display                    = "ABStore ${var.name} backup: writes backups, cannot read them"
      }
      restore = {
        kubernetes_service_account = module.conventions.restore_service_account
        account_id                 = "${local.account_base}-restore"
        display                    = "ABStore ${var.name} restore: reads backups, cannot write them"
      }
    } : id => i if id == "backup" || var.create_restore_identity
  }
}

resource "google_service_account" "this" {
  for_each = local.identities

  project      = var.project_id
  account_id   = each.value.account_id
  display_name = each.value.display
}

# GKE Workload Identity: the Kubernetes ServiceAccount may act as the Google service account.
resource "google_service_account_iam_member" "workload_identity" {
  for_each = local.identities

  service_account_id = google_service_account.this[each.key].name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${local.pool_project}.svc.id.goog[${module.conventions.kubernetes_namespace}/${each.value.kubernetes_service_account}]"
}

# No predefined role creates and lists without reading: objectCreator cannot list, and the
# jobs list the prefix when they open a destination.
resource "google_project_iam_custom_role" "backup_writer" {
  project     = var.project_id
  role_id     = "abstoreBackupWriter_${replace(var.name, "-", "_")}"
  title       = "ABStore ${var.name} backup writer"
  description = "Create and list backup objects; no read, no delete."
  permissions = module.conventions.gcs_backup_permissions
}

resource "google_storage_bucket_iam_member" "backup" {
  bucket = google_storage_bucket.this.name
  role   = google_project_iam_custom_role.backup_writer.name
  member = "serviceAccount:${google_service_account.this["backup"].email}"

  condition {
    title       = "abstore-backup-prefix"
    description = "Only objects under ${local.object_prefix}"
    expression  = local.prefix_condition
  }
}

resource "google_storage_bucket_iam_member" "restore" {
  count = var.create_restore_identity ? 1 : 0

  bucket = google_storage_bucket.this.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.this["restore"].email}"

  condition {
    title       = "abstore-restore-prefix"
    description = "Only objects under ${local.object_prefix}"
    expression  = local.prefix_condition
  }
}
