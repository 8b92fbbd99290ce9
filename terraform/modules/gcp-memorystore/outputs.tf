output "id" {
  description = "Instance id (projects/<p>/locations/<r>/instances/<name>)."
  value       = google_redis_instance.this.id
}

output "host" {
  description = "Private IP of the primary endpoint (follows failover)."
  value       = google_redis_instance.this.host
}

output "port" {
  description = "Port of the primary endpoint (6378 with TLS)."
  value       = google_redis_instance.this.port
}

output "read_endpoint" {
  description = "Read endpoint over the replicas (only with more than one replica)."
  value       = google_redis_instance.this.read_endpoint
}

output "read_endpoint_port" {
  description = "Port of the read endpoint."
  value       = google_redis_instance.this.read_endpoint_port
}

output "server_ca_certs" {
  description = "PEM certificates of the instance's private server CA (not secret): mount them as the jobs' and app's ca.crt, the file the URLs' ca_file names."
  value       = join("\n", [for c in google_redis_instance.this.server_ca_certs : c.cert])
}

output "redis_url" {
  description = "The --redis URL of abstore-jobs (backup, prune, restore) and the app: rediss:// to the primary endpoint, the AUTH string from the mounted password file, the CA from the mounted CA file. No secret. Memorystore has one AUTH string, so every role uses the same credentials."
  value       = "${format(module.conventions.url_formats["backup"], google_redis_instance.this.host, google_redis_instance.this.port)}&ca_file=${module.conventions.ca_file}"
}

output "password_file" {
  description = "Where the URL expects the AUTH string."
  value       = module.conventions.password_file
}

output "ca_file" {
  description = "Where the URL expects the server CA (server_ca_certs)."
  value       = module.conventions.ca_file
}

output "auth_string" {
  description = "The AUTH string. Sensitive: read it with `terraform output -raw auth_string` into the jobs' Secret."
  value       = google_redis_instance.this.auth_string
  sensitive   = true
}

output "alert_policy_ids" {
  description = "Alert policies (memory, evictions, replication lag)."
  value       = { for k, p in google_monitoring_alert_policy.this : k => p.name }
}
