variable "name" {
  description = "Name of the store (and of its Managed Redis, globally unique under redis.azure.net)."
  type        = string
  default     = "abstore-prod"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,38}[a-z0-9]$", var.name))
    error_message = "name must be 2-40 lowercase letters, digits and hyphens."
  }
}

variable "resource_group_name" {
  description = "Existing resource group of the store."
  type        = string

  validation {
    condition     = length(var.resource_group_name) > 0
    error_message = "resource_group_name must not be empty."
  }
}

variable "location" {
  description = "Azure region."
  type        = string
  default     = "westeurope"

  validation {
    condition     = can(regex("^[a-z0-9]+$", var.location))
    error_message = "location must be a region name such as westeurope."
  }
}

variable "aks_subnet_id" {
  description = "Subnet (of the AKS cluster's virtual network) for the private endpoint."
  type        = string

  validation {
    condition     = can(regex("(?i)/subnets/[^/]+$", var.aks_subnet_id))
    error_message = "aks_subnet_id must be a subnet resource id."
  }
}

variable "private_dns_zone_id" {
  description = "Private DNS zone privatelink.redis.azure.net linked to the AKS virtual network."
  type        = string

  validation {
    condition     = can(regex("(?i)/privateDnsZones/privatelink\\.redis\\.azure\\.net$", var.private_dns_zone_id))
    error_message = "private_dns_zone_id must be the privatelink.redis.azure.net zone's id."
  }
}

variable "action_group_id" {
  description = "Action group the alerts notify (null: alerts without notification)."
  type        = string
  default     = null

  validation {
    condition     = var.action_group_id == null || can(regex("(?i)/actionGroups/", var.action_group_id))
    error_message = "action_group_id must be an action group id or null."
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
