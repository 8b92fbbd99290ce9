# The S3 bucket abstore-jobs backs up to, and the identities of its pods: a backup role that can
# write (and list) the prefix but never read an object, and a restore role that can read (and
# list) it but never write. Versioned, encrypted, private, HTTPS only, with a lifecycle that
# keeps backups longer than the data and aborts uploads a killed job left behind.

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
  tags        = merge(var.tags, { "abstore.dev/store" = var.name })
  bucket_arn  = aws_s3_bucket.this.arn
  objects_arn = "${aws_s3_bucket.this.arn}/${module.conventions.object_prefix}*"
}

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is a choice of the account's DR design (a replica bucket, a role, another region), not of this module; versioning, which it needs, is on.
  #checkov:skip=CKV_AWS_145:A customer-managed KMS key is optional (var.kms_key_arn); without one, default encryption is SSE-KMS with the AWS-managed aws/s3 key.
  #checkov:skip=CKV2_AWS_62:Nothing consumes bucket events; abstore-jobs reports each run in its JSON summary and the ABStore status.
  #checkov:skip=CKV_AWS_18:Server access logging needs a log bucket the module does not own; set var.access_log_bucket to turn it on.
  bucket = var.bucket_name
  tags   = local.tags
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket = aws_s3_bucket.this.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

# The days are the module's variables, which module.conventions validates (expiry > 31 days);
# used directly so that checkov can read them.
resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "abstore-backups"
    status = "Enabled"

    filter {
      prefix = module.conventions.object_prefix
    }

    expiration {
      days = var.expiration_days
    }

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
  }

  # Bucket-wide: an upload a killed job left anywhere costs storage and is never usable.
  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_upload_days
    }
  }

  # Versioning must be on before a noncurrent-version rule is accepted.
  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_logging" "this" {
  count = var.access_log_bucket == null ? 0 : 1

  bucket        = aws_s3_bucket.this.id
  target_bucket = var.access_log_bucket
  target_prefix = "s3-access/${var.bucket_name}/"
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [local.bucket_arn, "${local.bucket_arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  })

  # The public access block must exist first, or a policy change could briefly allow more.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

# --- Workload identity ---------------------------------------------------------------------------

locals {
  irsa = var.identity == "irsa"
  # The OIDC issuer host/path the token's claims are keyed by (the ARN's part after "oidc-provider/").
  oidc_issuer = local.irsa ? split("oidc-provider/", var.oidc_provider_arn)[1] : ""

  # Listing is limited to the prefix: abstore-jobs lists it once when it opens a destination.
  list_statement = {
    Sid       = "ListThePrefixOnly"
    Effect    = "Allow"
    Action    = module.conventions.s3_list_actions
    Resource  = [local.bucket_arn]
    Condition = { StringLike = { "s3:prefix" = module.conventions.s3_list_prefixes } }
  }
  # SSE-KMS multipart uploads need Decrypt as well as GenerateDataKey; reads need Decrypt.
  kms_statements = {
    backup  = var.kms_key_arn == null ? [] : [{ Sid = "UseTheBucketKey", Effect = "Allow", Action = ["kms:GenerateDataKey", "kms:Decrypt"], Resource = [var.kms_key_arn] }]
    restore = var.kms_key_arn == null ? [] : [{ Sid = "UseTheBucketKey", Effect = "Allow", Action = ["kms:Decrypt"], Resource = [var.kms_key_arn] }]
  }

  # Each identity as strings only (policy documents already encoded), so both fit one map type.
  all_identities = {
    backup = {
      service_account = module.conventions.backup_service_account
      subject         = module.conventions.backup_subject
      policy = jsonencode({
        Version = "2012-10-17"
        Statement = concat([
          local.list_statement,
          {
            Sid      = "WriteBackupsNeverRead"
            Effect   = "Allow"
            Action   = module.conventions.s3_backup_object_actions
            Resource = [local.objects_arn]
          },
        ], local.kms_statements.backup)
      })
    }
    restore = {
      service_account = module.conventions.restore_service_account
      subject         = module.conventions.restore_subject
      policy = jsonencode({
        Version = "2012-10-17"
        Statement = concat([
          local.list_statement,
          {
            Sid      = "ReadBackupsNeverWrite"
            Effect   = "Allow"
            Action   = module.conventions.s3_restore_object_actions
            Resource = [local.objects_arn]
          },
        ], local.kms_statements.restore)
      })
    }
  }
  identities = { for id, i in local.all_identities : id => i if id == "backup" || var.create_restore_identity }

  trust_policies = {
    for id, i in local.identities : id => (local.irsa
      ? jsonencode({
        Version = "2012-10-17"
        Statement = [{
          Effect    = "Allow"
          Principal = { Federated = var.oidc_provider_arn }
          Action    = "sts:AssumeRoleWithWebIdentity"
          Condition = {
            StringEquals = {
              "${local.oidc_issuer}:sub" = i.subject
              "${local.oidc_issuer}:aud" = "sts.amazonaws.com"
            }
          }
        }]
      })
      : jsonencode({
        Version = "2012-10-17"
        Statement = [{
          Effect    = "Allow"
          Principal = { Service = "pods.eks.amazonaws.com" }
          Action    = ["sts:AssumeRole", "sts:TagSession"]
        }]
      })
    )
  }
}

resource "aws_iam_role" "this" {
  for_each = local.identities

  name                 = "${var.name}-${each.key}"
  description          = "ABStore ${var.name}: abstore-jobs ${each.key} (${each.value.subject})"
  assume_role_policy   = local.trust_policies[each.key]
  max_session_duration = 3600
  tags                 = local.tags
}

resource "aws_iam_role_policy" "this" {
  for_each = local.identities

  name   = "${var.name}-${each.key}-backups"
  role   = aws_iam_role.this[each.key].id
  policy = each.value.policy
}

resource "aws_eks_pod_identity_association" "this" {
  for_each = { for id, i in local.identities : id => i if !local.irsa }

  cluster_name    = var.eks_cluster_name
  namespace       = module.conventions.kubernetes_namespace
  service_account = each.value.service_account
  role_arn        = aws_iam_role.this[each.key].arn
  tags            = local.tags
}
