variable "project_id" {
  description = "Project of everything (and of the GKE cluster's workload identity pool)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id."
  }
}

variable "region" {
  description = "Region of the instance."
  type        = string
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a region such as europe-west1."
  }
}

variable "name" {
  description = "Name of the store."
  type        = string
  default     = "abstore-prod"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,38}[a-z0-9]$", var.name))
    error_message = "name must be 2-40 lowercase letters, digits and hyphens."
  }
}

variable "network" {
  description = "VPC network of the GKE cluster, with a private services connection (projects/<p>/global/networks/<n>)."
  type        = string

  validation {
    condition     = can(regex("^projects/[^/]+/global/networks/[^/]+$", var.network))
    error_message = "network must be projects/<project>/global/networks/<network>."
  }
}

variable "backup_bucket_name" {
  description = "Name of the backup bucket to create."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.backup_bucket_name))
    error_message = "backup_bucket_name must be a valid GCS bucket name."
  }
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channels of the alerts."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "notification_channels must be projects/<p>/notificationChannels/<id>."
  }
}

variable "jobs_image" {
  description = "abstore-jobs image the CronJobs run."
  type        = string
  default     = "ghcr.io/abstore/abstore-jobs:0.1.0"

  validation {
    condition     = length(var.jobs_image) > 0
    error_message = "jobs_image must not be empty."
  }
}
