output "id" {
  description = "Resource id of the Managed Redis."
  value       = azurerm_managed_redis.this.id
}

output "hostname" {
  description = "Hostname of the database endpoint (resolves to the private endpoint through the private DNS zone)."
  value       = azurerm_managed_redis.this.hostname
}

output "port" {
  description = "TLS port of the database endpoint (10000)."
  value       = azurerm_managed_redis.this.default_database[0].port
}

output "redis_url" {
  description = "The --redis URL of abstore-jobs and the app: rediss:// (rediss+cluster:// with cluster_mode; the server certificate is publicly trusted), the access key from the mounted password file. No secret. Every role uses the same key: Managed Redis has no per-role users."
  value       = format(module.conventions.url_formats["backup"], azurerm_managed_redis.this.hostname, azurerm_managed_redis.this.default_database[0].port)
}

output "password_file" {
  description = "Where the URL expects the access key."
  value       = module.conventions.password_file
}

output "private_endpoint_ip" {
  description = "Private IP of the private endpoint."
  value       = azurerm_private_endpoint.this.private_service_connection[0].private_ip_address
}

output "primary_access_key" {
  description = "Primary access key (null with access keys off). Sensitive."
  value       = var.access_keys_enabled ? azurerm_managed_redis.this.default_database[0].primary_access_key : null
  sensitive   = true
}

output "alert_ids" {
  description = "Metric alerts (memory, evictions, CPU, connections)."
  value       = { for k, a in azurerm_monitor_metric_alert.this : k => a.id }
}
