# Memorystore for Redis (STANDARD_HA) for ABStore: automatic failover to a replica in another
# zone, RDB persistence, AUTH, TLS with server authentication, noeviction, a private IP only,
# a maintenance window and alert policies on memory, evictions and replication.

module "conventions" {
  source = "../abstore-conventions"

  name     = var.name
  replicas = var.replicas
  # Memorystore for Redis has one AUTH string, no per-role users.
  auth_mode = "auth_token"
}

locals {
  labels = merge(var.labels, { "abstore-store" = var.name })
}

resource "google_redis_instance" "this" {
  name         = var.name
  display_name = "ABStore ${var.name}"
  project      = var.project_id
  region       = var.region

  # STANDARD_HA: a replica in another zone, promoted automatically when the primary fails.
  tier                    = "STANDARD_HA"
  replica_count           = var.replicas
  read_replicas_mode      = var.replicas > 1 ? "READ_REPLICAS_ENABLED" : "READ_REPLICAS_DISABLED"
  location_id             = var.location_id
  alternative_location_id = var.alternative_location_id

  memory_size_gb = var.memory_size_gb
  redis_version  = var.redis_version
  redis_configs  = module.conventions.redis_parameters

  # Private IP only, in the given network.
  authorized_network = var.authorized_network
  connect_mode       = var.connect_mode
  reserved_ip_range  = var.reserved_ip_range

  auth_enabled            = true
  transit_encryption_mode = "SERVER_AUTHENTICATION"
  customer_managed_key    = var.kms_key_name

  persistence_config {
    persistence_mode    = "RDB"
    rdb_snapshot_period = var.rdb_snapshot_period
  }

  maintenance_policy {
    description = "ABStore ${var.name} weekly maintenance"
    weekly_maintenance_window {
      day = var.maintenance_day
      start_time {
        hours   = var.maintenance_hour
        minutes = 0
        seconds = 0
        nanos   = 0
      }
    }
  }

  labels = local.labels
}

# --- Alert policies ------------------------------------------------------------------------------

locals {
  instance_filter = "resource.type = \"redis_instance\" AND resource.labels.instance_id = \"${google_redis_instance.this.id}\""
  alerts = {
    memory = {
      title     = "memory usage above ${var.memory_alert_ratio * 100}%"
      metric    = "redis.googleapis.com/stats/memory/usage_ratio"
      aligner   = "ALIGN_MAX"
      threshold = var.memory_alert_ratio
      duration  = "300s"
      why       = "With maxmemory-policy noeviction a full instance refuses writes: scale memory_size_gb or lower retention before it fills."
    }
    evictions = {
      title     = "keys evicted"
      metric    = "redis.googleapis.com/stats/evicted_keys"
      aligner   = "ALIGN_RATE"
      threshold = 0
      duration  = "0s"
      why       = "noeviction should make evictions impossible: check redis_configs of the instance."
    }
    replication_lag = {
      title     = "replica lag above ${var.replication_lag_alert_seconds}s"
      metric    = "redis.googleapis.com/replication/master/slaves/lag"
      aligner   = "ALIGN_MAX"
      threshold = var.replication_lag_alert_seconds
      duration  = "180s"
      why       = "A failover now would lose the writes the replica has not received."
    }
  }
}

resource "google_monitoring_alert_policy" "this" {
  for_each = local.alerts

  project               = var.project_id
  display_name          = "ABStore ${var.name}: ${each.value.title}"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "${var.name} ${each.value.title}"
    condition_threshold {
      filter          = "${local.instance_filter} AND metric.type = \"${each.value.metric}\""
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = each.value.duration
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = each.value.aligner
      }
    }
  }

  documentation {
    content   = each.value.why
    mime_type = "text/markdown"
  }
}
