terraform {
  required_version = ">= 1.9.0"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # azurerm_managed_redis and azurerm_managed_redis_access_policy_assignment (Azure Managed
      # Redis replaces Azure Cache for Redis, which is being retired).
      version = ">= 4.40.0, < 6.0.0"
    }
  }
}
