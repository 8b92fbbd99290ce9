output "replication_group_id" {
  description = "Id of the replication group."
  value       = aws_elasticache_replication_group.this.id
}

output "arn" {
  description = "ARN of the replication group."
  value       = aws_elasticache_replication_group.this.arn
}

output "primary_endpoint_address" {
  description = "Primary endpoint: follows failover, takes writes. Give it to the app, backup (or reader endpoint with care), prune and restore."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "reader_endpoint_address" {
  description = "Reader endpoint: spreads connections over the replicas (the primary when there is none)."
  value       = aws_elasticache_replication_group.this.reader_endpoint_address
}

output "port" {
  description = "Port of both endpoints."
  value       = var.port
}

output "member_clusters" {
  description = "Node (cache cluster) ids of the replication group."
  value       = aws_elasticache_replication_group.this.member_clusters
}

output "automatic_failover_enabled" {
  description = "Whether a replica is promoted when the primary fails (true exactly when replicas exist)."
  value       = aws_elasticache_replication_group.this.automatic_failover_enabled
}

output "configuration_endpoint_address" {
  description = "Cluster mode: the configuration endpoint, which names every shard (null without cluster mode)."
  value       = var.cluster_mode ? aws_elasticache_replication_group.this.configuration_endpoint_address : null
}

output "redis_urls" {
  description = "Per role (app, backup, prune, restore), the --redis URL for abstore-jobs and the app: rediss:// to the primary endpoint (cluster mode: rediss+cluster:// to the configuration endpoint), the user name in RBAC mode, the password read from the file the pod mounts. No secret."
  value = {
    for role, f in module.conventions.url_formats :
    role => format(
      f,
      var.cluster_mode ? aws_elasticache_replication_group.this.configuration_endpoint_address : aws_elasticache_replication_group.this.primary_endpoint_address,
      var.port,
    )
  }
}

output "reader_redis_url" {
  description = "The backup role's URL on the reader endpoint: backups that read from replicas, not the primary. The jobs' --from-replica needs Sentinel; with ElastiCache use this URL instead. Cluster mode: null (give the jobs the cluster URL with --from-replica, which reads one replica per shard)."
  value       = var.cluster_mode ? null : format(module.conventions.url_formats["backup"], aws_elasticache_replication_group.this.reader_endpoint_address, var.port)
}

output "password_file" {
  description = "Where the URLs expect the role's password: mount the role's password there."
  value       = module.conventions.password_file
}

output "user_group_id" {
  description = "RBAC user group (null in auth_token mode)."
  value       = var.auth_mode == "rbac" ? aws_elasticache_user_group.this[0].user_group_id : null
}

output "user_names" {
  description = "RBAC user name of each role (empty in auth_token mode)."
  value       = { for role, u in aws_elasticache_user.role : role => u.user_name }
}

output "passwords" {
  description = "RBAC password of each role (app, backup, prune, restore). Sensitive: read with `terraform output -json passwords` into the jobs' Secrets."
  value       = { for role, p in random_password.user : role => p.result }
  sensitive   = true
}

output "auth_token" {
  description = "The AUTH token in auth_token mode (null in RBAC mode). Sensitive."
  value       = var.auth_mode == "auth_token" ? random_password.auth_token[0].result : null
  sensitive   = true
}

output "security_group_id" {
  description = "Security group of the nodes: add ingress rules to it for more clients."
  value       = aws_security_group.this.id
}

output "parameter_group_name" {
  description = "Parameter group (maxmemory-policy noeviction)."
  value       = aws_elasticache_parameter_group.this.name
}

output "slow_log_group_name" {
  description = "CloudWatch Logs group receiving the slow log."
  value       = aws_cloudwatch_log_group.slow_log.name
}

output "alarm_arns" {
  description = "ARNs of the CloudWatch alarms (memory, evictions, CPU, connections per node; replication lag per node when replicas exist)."
  value = concat(
    [for a in aws_cloudwatch_metric_alarm.node : a.arn],
    [for a in aws_cloudwatch_metric_alarm.replication_lag : a.arn],
  )
}
