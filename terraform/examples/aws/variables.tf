variable "region" {
  description = "AWS region of everything."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be an AWS region such as eu-west-1."
  }
}

variable "name" {
  description = "Name of the store."
  type        = string
  default     = "abstore-prod"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,38}[a-z0-9]$", var.name))
    error_message = "name must be 2-40 lowercase letters, digits and hyphens."
  }
}

variable "vpc_id" {
  description = "VPC of the EKS cluster."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be a VPC id."
  }
}

variable "private_subnet_ids" {
  description = "Private subnets in at least two availability zones."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "give at least two private subnets (Multi-AZ)."
  }
}

variable "eks_cluster_name" {
  description = "EKS cluster the abstore-jobs CronJobs run in (Pod Identity agent add-on installed)."
  type        = string

  validation {
    condition     = length(var.eks_cluster_name) > 0
    error_message = "eks_cluster_name must not be empty."
  }
}

variable "eks_node_security_group_id" {
  description = "Security group of the EKS nodes (or pods), allowed to reach Redis."
  type        = string

  validation {
    condition     = can(regex("^sg-[0-9a-f]+$", var.eks_node_security_group_id))
    error_message = "eks_node_security_group_id must be a security group id."
  }
}

variable "backup_bucket_name" {
  description = "Name of the backup bucket to create."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.backup_bucket_name))
    error_message = "backup_bucket_name must be a valid S3 bucket name."
  }
}

variable "alarm_topic_arn" {
  description = "SNS topic the alarms notify (null: alarms without notification)."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_topic_arn == null || can(regex("^arn:aws[a-z-]*:sns:", var.alarm_topic_arn))
    error_message = "alarm_topic_arn must be an SNS topic ARN or null."
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
