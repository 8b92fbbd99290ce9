variable "name" {
  description = "Name of the store: the Managed Redis name (a DNS label under redis.azure.net) and the base of the private endpoint's and alerts' names."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,38}[a-z0-9]$", var.name)) && !strcontains(var.name, "--")
    error_message = "name must be 2-40 characters of lowercase letters, digits and single hyphens, start with a letter and end with a letter or digit."
  }
}

variable "resource_group_name" {
  description = "Resource group of every resource of the module."
  type        = string

  validation {
    condition     = can(regex("^[-\\w._()]{1,90}$", var.resource_group_name)) && !endswith(var.resource_group_name, ".")
    error_message = "resource_group_name must be 1-90 letters, digits, '-', '_', '.', '(' or ')', not ending with '.'."
  }
}

variable "location" {
  description = "Azure region, e.g. westeurope."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]+$", var.location))
    error_message = "location must be a region name such as westeurope."
  }
}

variable "sku_name" {
  description = "Managed Redis SKU, e.g. Balanced_B5. The database runs unclustered (NoCluster), which the smaller SKUs of each family support: the abstore library's scripts touch several keys of one event at once, which a sharded database could split."
  type        = string
  default     = "Balanced_B5"

  validation {
    condition     = can(regex("^(Balanced_B|ComputeOptimized_X|MemoryOptimized_M|FlashOptimized_A)[0-9]+$", var.sku_name))
    error_message = "sku_name must be a Managed Redis SKU (Balanced_B*, ComputeOptimized_X*, MemoryOptimized_M*, FlashOptimized_A*)."
  }
}

variable "cluster_mode" {
  description = "OSSCluster clustering policy: the database's shards (as many as the SKU has) spoken to with the Redis Cluster protocol through rediss+cluster:// and ABStore's cluster key layout (docs/cluster.md). Off: NoCluster, one shard."
  type        = bool
  default     = false

  validation {
    condition     = var.cluster_mode != null
    error_message = "cluster_mode must be true or false."
  }
}

variable "persistence" {
  description = "Persistence of the database: \"rdb\" (snapshots every rdb_frequency) or \"aof\" (append-only file, written every second)."
  type        = string
  default     = "rdb"

  validation {
    condition     = contains(["rdb", "aof"], var.persistence)
    error_message = "persistence must be \"rdb\" or \"aof\": ABStore's counters are not a cache, a restart must not lose them."
  }
}

variable "rdb_frequency" {
  description = "How often the RDB snapshot is taken when persistence is \"rdb\": 1h, 6h or 12h."
  type        = string
  default     = "1h"

  validation {
    condition     = contains(["1h", "6h", "12h"], var.rdb_frequency)
    error_message = "rdb_frequency must be 1h, 6h or 12h."
  }
}

variable "access_keys_enabled" {
  description = "Whether the database accepts its access keys. abstore-jobs and the abstore library authenticate with a password (from a file), not with Entra tokens, so the jobs need this on."
  type        = bool
  default     = true

  validation {
    condition     = var.access_keys_enabled != null
    error_message = "access_keys_enabled must be true or false."
  }
}

variable "entra_object_ids" {
  description = "Entra principals (name => object id) given the database's access policy, for clients that authenticate with Entra tokens. Managed Redis has a single data access policy, so each gets full data access."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for id in values(var.entra_object_ids) : can(regex("^[0-9a-fA-F-]{36}$", id))])
    error_message = "entra_object_ids must map names to object ids (GUIDs)."
  }
  validation {
    condition     = var.access_keys_enabled || length(var.entra_object_ids) > 0
    error_message = "with access keys off, at least one Entra principal must be assigned, or nothing can connect."
  }
}

variable "subnet_id" {
  description = "Subnet of the private endpoint; public network access is disabled."
  type        = string

  validation {
    condition     = can(regex("(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.Network/virtualNetworks/[^/]+/subnets/[^/]+$", var.subnet_id))
    error_message = "subnet_id must be a subnet resource id."
  }
}

variable "private_dns_zone_ids" {
  description = "Private DNS zones (privatelink.redis.azure.net) the private endpoint registers in, so the hostname resolves to the private IP."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for z in var.private_dns_zone_ids : can(regex("(?i)/providers/Microsoft.Network/privateDnsZones/", z))])
    error_message = "private_dns_zone_ids must be private DNS zone resource ids."
  }
}

variable "customer_managed_key_id" {
  description = "Key Vault key id for customer-managed encryption at rest (with user_assigned_identity_id); null uses Microsoft-managed keys (at rest is encrypted either way)."
  type        = string
  default     = null

  validation {
    condition     = var.customer_managed_key_id == null || can(regex("^https://[^/]+/keys/[^/]+", var.customer_managed_key_id))
    error_message = "customer_managed_key_id must be a Key Vault key id (https://<vault>/keys/<name>/<version>) or null."
  }
}

variable "user_assigned_identity_id" {
  description = "User-assigned identity that can read the customer-managed key; required with customer_managed_key_id."
  type        = string
  default     = null

  validation {
    condition     = (var.user_assigned_identity_id == null) == (var.customer_managed_key_id == null)
    error_message = "user_assigned_identity_id and customer_managed_key_id must be set together."
  }
}

variable "action_group_ids" {
  description = "Azure Monitor action groups the alerts notify."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.action_group_ids : can(regex("(?i)/providers/Microsoft.Insights/actionGroups/", a))])
    error_message = "action_group_ids must be action group resource ids."
  }
}

variable "memory_alert_percent" {
  description = "Alert when used memory exceeds this percentage. With NoEviction a full database refuses writes."
  type        = number
  default     = 80

  validation {
    condition     = var.memory_alert_percent > 0 && var.memory_alert_percent < 100
    error_message = "memory_alert_percent must be between 0 and 100."
  }
}

variable "cpu_alert_percent" {
  description = "Alert when CPU exceeds this percentage."
  type        = number
  default     = 80

  validation {
    condition     = var.cpu_alert_percent > 0 && var.cpu_alert_percent <= 100
    error_message = "cpu_alert_percent must be between 0 and 100."
  }
}

variable "connections_alert_threshold" {
  description = "Alert when connected clients exceed this."
  type        = number
  default     = 5000

  validation {
    condition     = var.connections_alert_threshold >= 1
    error_message = "connections_alert_threshold must be positive."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.tags : length(k) <= 512 && length(v) <= 256])
    error_message = "tag names must be at most 512 and values at most 256 characters."
  }
}
