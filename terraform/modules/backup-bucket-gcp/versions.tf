terraform {
  required_version = ">= 1.9.0"

  required_providers {
    google = {
      source = "hashicorp/google"
      # soft_delete_policy and lifecycle conditions with matches_prefix on google_storage_bucket.
      version = ">= 5.20.0, < 8.0.0"
    }
  }
}
