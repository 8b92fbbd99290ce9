# Azure Managed Redis for ABStore: high availability (a replica on another node), persistence,
# TLS only, NoEviction, no public network access (a private endpoint instead), access keys
# and/or Entra principals, and metric alerts.

module "conventions" {
  source = "../abstore-conventions"

  name = var.name
  # High availability keeps one replica per shard and fails over by itself.
  replicas     = 1
  cluster_mode = var.cluster_mode
  # The database has access keys (or Entra tokens), no per-role users.
  auth_mode = "auth_token"
}

locals {
  tags = merge(var.tags, { "abstore.dev/store" = var.name })
  # NoEviction in Azure's spelling of module.conventions.maxmemory_policy.
  eviction_policy = { noeviction = "NoEviction" }[module.conventions.maxmemory_policy]
}

resource "azurerm_managed_redis" "this" {
  name                = var.name
  resource_group_name = var.resource_group_name
  location            = var.location
  sku_name            = var.sku_name

  high_availability_enabled = module.conventions.automatic_failover_enabled
  public_network_access     = "Disabled"

  dynamic "identity" {
    for_each = var.user_assigned_identity_id == null ? [] : [var.user_assigned_identity_id]
    content {
      type         = "UserAssigned"
      identity_ids = [identity.value]
    }
  }

  dynamic "customer_managed_key" {
    for_each = var.customer_managed_key_id == null ? [] : [var.customer_managed_key_id]
    content {
      key_vault_key_id          = customer_managed_key.value
      user_assigned_identity_id = var.user_assigned_identity_id
    }
  }

  default_database {
    client_protocol                    = "Encrypted"
    access_keys_authentication_enabled = var.access_keys_enabled
    # NoCluster: one shard, ABStore's Bucketeer-compatible layout through one endpoint.
    # OSSCluster (cluster_mode): the Redis Cluster protocol, so clients (the abstore library's
    # rediss+cluster://, the jobs) reach every shard; ABStore's cluster key layout keeps an
    # event's keys in one slot. Never EnterpriseCluster: its proxy refuses multi-key scripts
    # across slots without telling a cluster client where keys live.
    clustering_policy = var.cluster_mode ? "OSSCluster" : "NoCluster"
    eviction_policy   = local.eviction_policy

    persistence_redis_database_backup_frequency   = var.persistence == "rdb" ? var.rdb_frequency : null
    persistence_append_only_file_backup_frequency = var.persistence == "aof" ? "1s" : null
  }

  tags = local.tags
}

resource "azurerm_managed_redis_access_policy_assignment" "entra" {
  for_each = var.entra_object_ids

  managed_redis_id = azurerm_managed_redis.this.id
  object_id        = each.value
}

resource "azurerm_private_endpoint" "this" {
  name                = "${var.name}-redis"
  resource_group_name = var.resource_group_name
  location            = var.location
  subnet_id           = var.subnet_id

  private_service_connection {
    name                           = "${var.name}-redis"
    private_connection_resource_id = azurerm_managed_redis.this.id
    subresource_names              = ["redisEnterprise"]
    is_manual_connection           = false
  }

  dynamic "private_dns_zone_group" {
    for_each = length(var.private_dns_zone_ids) > 0 ? [var.private_dns_zone_ids] : []
    content {
      name                 = "default"
      private_dns_zone_ids = private_dns_zone_group.value
    }
  }

  tags = local.tags
}

# --- Alerts (Microsoft.Cache/redisEnterprise metrics) ------------------------------------------

locals {
  alerts = {
    memory = {
      metric      = "usedmemorypercentage"
      aggregation = "Maximum"
      threshold   = var.memory_alert_percent
      severity    = 2
      description = "used memory above ${var.memory_alert_percent}%: with NoEviction, writes fail when it is full"
    }
    evictions = {
      metric      = "evictedkeys"
      aggregation = "Total"
      threshold   = 0
      severity    = 1
      description = "keys were evicted, which NoEviction should make impossible"
    }
    cpu = {
      metric      = "percentProcessorTime"
      aggregation = "Average"
      threshold   = var.cpu_alert_percent
      severity    = 2
      description = "CPU above ${var.cpu_alert_percent}%"
    }
    connections = {
      metric      = "connectedclients"
      aggregation = "Maximum"
      threshold   = var.connections_alert_threshold
      severity    = 3
      description = "more than ${var.connections_alert_threshold} client connections"
    }
  }
}

resource "azurerm_monitor_metric_alert" "this" {
  for_each = local.alerts

  name                = "${var.name}-${each.key}"
  resource_group_name = var.resource_group_name
  scopes              = [azurerm_managed_redis.this.id]
  description         = "ABStore ${var.name}: ${each.value.description}"
  severity            = each.value.severity
  frequency           = "PT1M"
  window_size         = "PT5M"

  criteria {
    metric_namespace = "Microsoft.Cache/redisEnterprise"
    metric_name      = each.value.metric
    aggregation      = each.value.aggregation
    operator         = "GreaterThan"
    threshold        = each.value.threshold
  }

  dynamic "action" {
    for_each = toset(var.action_group_ids)
    content {
      action_group_id = action.value
    }
  }

  tags = local.tags
}
