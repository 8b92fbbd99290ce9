variable "name" {
  description = "Name of the store: the Memorystore instance id and the base of the alert policies' names."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,38}[a-z0-9]$", var.name)) && !strcontains(var.name, "--")
    error_message = "name must be 2-40 characters of lowercase letters, digits and single hyphens, start with a letter and end with a letter or digit."
  }
}

variable "project_id" {
  description = "Project of the instance and the alert policies."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id."
  }
}

variable "region" {
  description = "Region of the instance, e.g. europe-west1."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a region name such as europe-west1."
  }
}

variable "location_id" {
  description = "Zone of the primary (null lets Memorystore choose); the replicas go to other zones."
  type        = string
  default     = null

  validation {
    condition     = var.location_id == null || can(regex("^[a-z]+-[a-z]+[0-9]+-[a-z]$", var.location_id))
    error_message = "location_id must be a zone such as europe-west1-b, or null."
  }
}

variable "alternative_location_id" {
  description = "Zone of the first replica (null lets Memorystore choose); must differ from location_id."
  type        = string
  default     = null

  validation {
    condition     = var.alternative_location_id == null || (can(regex("^[a-z]+-[a-z]+[0-9]+-[a-z]$", var.alternative_location_id)) && var.alternative_location_id != var.location_id)
    error_message = "alternative_location_id must be a zone other than location_id, or null."
  }
}

variable "memory_size_gb" {
  description = "Memory of the instance in GiB."
  type        = number
  default     = 5

  validation {
    condition     = var.memory_size_gb >= 1 && var.memory_size_gb <= 300 && floor(var.memory_size_gb) == var.memory_size_gb
    error_message = "memory_size_gb must be a whole number from 1 to 300."
  }
}

variable "redis_version" {
  description = "Redis version, REDIS_7_0 or later (abstore-jobs reads PEXPIRETIME, the library sends EXPIREAT … NX)."
  type        = string
  default     = "REDIS_7_2"

  validation {
    condition     = can(regex("^REDIS_[0-9]+_[0-9X]+$", var.redis_version)) && try(tonumber(split("_", var.redis_version)[1]) >= 7, false)
    error_message = "redis_version must be REDIS_7_0 or later, e.g. REDIS_7_2."
  }
}

variable "replicas" {
  description = "Replicas of the STANDARD_HA instance (1-5); one is promoted automatically when the primary fails. More than one turns on read replicas (a read endpoint)."
  type        = number
  default     = 1

  validation {
    condition     = var.replicas >= 1 && var.replicas <= 5 && floor(var.replicas) == var.replicas
    error_message = "replicas must be a whole number from 1 to 5: STANDARD_HA always has a replica."
  }
}

variable "authorized_network" {
  description = "VPC network (id or self link) the instance is reachable from; it gets a private IP only."
  type        = string

  validation {
    condition     = can(regex("^(https://www.googleapis.com/compute/v1/)?projects/[^/]+/global/networks/[^/]+$", var.authorized_network))
    error_message = "authorized_network must be projects/<project>/global/networks/<network> or its self link."
  }
}

variable "connect_mode" {
  description = "PRIVATE_SERVICE_ACCESS (recommended: a private services connection of the network) or DIRECT_PEERING."
  type        = string
  default     = "PRIVATE_SERVICE_ACCESS"

  validation {
    condition     = contains(["PRIVATE_SERVICE_ACCESS", "DIRECT_PEERING"], var.connect_mode)
    error_message = "connect_mode must be PRIVATE_SERVICE_ACCESS or DIRECT_PEERING."
  }
}

variable "reserved_ip_range" {
  description = "Name of the allocated range (PRIVATE_SERVICE_ACCESS) or CIDR (DIRECT_PEERING) for the instance; null lets Memorystore choose."
  type        = string
  default     = null

  validation {
    condition     = var.reserved_ip_range == null || length(var.reserved_ip_range) > 0
    error_message = "reserved_ip_range must be non-empty or null."
  }
}

variable "rdb_snapshot_period" {
  description = "How often the RDB snapshot is taken: ONE_HOUR, SIX_HOURS, TWELVE_HOURS or TWENTY_FOUR_HOURS."
  type        = string
  default     = "ONE_HOUR"

  validation {
    condition     = contains(["ONE_HOUR", "SIX_HOURS", "TWELVE_HOURS", "TWENTY_FOUR_HOURS"], var.rdb_snapshot_period)
    error_message = "rdb_snapshot_period must be ONE_HOUR, SIX_HOURS, TWELVE_HOURS or TWENTY_FOUR_HOURS."
  }
}

variable "maintenance_day" {
  description = "Day of the weekly maintenance window."
  type        = string
  default     = "SUNDAY"

  validation {
    condition     = contains(["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"], var.maintenance_day)
    error_message = "maintenance_day must be a day name in capitals, e.g. SUNDAY."
  }
}

variable "maintenance_hour" {
  description = "UTC hour the weekly maintenance window starts."
  type        = number
  default     = 5

  validation {
    condition     = var.maintenance_hour >= 0 && var.maintenance_hour <= 23 && floor(var.maintenance_hour) == var.maintenance_hour
    error_message = "maintenance_hour must be a whole number from 0 to 23."
  }
}

variable "kms_key_name" {
  description = "Cloud KMS key (projects/…/cryptoKeys/…) for customer-managed encryption at rest; null uses Google-managed encryption (at rest is encrypted either way)."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k> or null."
  }
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channel ids the alert policies notify."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "notification_channels must be projects/<p>/notificationChannels/<id>."
  }
}

variable "memory_alert_ratio" {
  description = "Alert when memory usage ratio exceeds this (0-1). With noeviction a full instance refuses writes."
  type        = number
  default     = 0.8

  validation {
    condition     = var.memory_alert_ratio > 0 && var.memory_alert_ratio < 1
    error_message = "memory_alert_ratio must be between 0 and 1."
  }
}

variable "replication_lag_alert_seconds" {
  description = "Alert when a replica lags the primary by more than this many seconds."
  type        = number
  default     = 10

  validation {
    condition     = var.replication_lag_alert_seconds > 0
    error_message = "replication_lag_alert_seconds must be positive."
  }
}

variable "labels" {
  description = "Labels for the instance and the alert policies."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))])
    error_message = "labels must use lowercase keys and values (letters, digits, _ and -), at most 63 characters."
  }
}
