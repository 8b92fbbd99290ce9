terraform {
  required_version = ">= 1.9.0"

  required_providers {
    google = {
      source = "hashicorp/google"
      # persistence_config and maintenance_policy of google_redis_instance, alert policies with
      # severity.
      version = ">= 5.20.0, < 8.0.0"
    }
  }
}
