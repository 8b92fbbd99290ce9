# Provider-free on purpose: `terraform init` and `terraform test` run offline, so every rule the
# cloud modules share (failover with replicas, noeviction, ACL command sets, URL shapes, bucket
# lifecycle bounds) is tested in CI without downloading a provider.
terraform {
  # Validation conditions that refer to other variables need 1.9.
  required_version = ">= 1.9.0"
}
